"""Stylometry of a rep's own writing: the profile features people read, and the vectors ``match`` compares.

Two things live here, both pure (no database, no model) and deterministic:

* ``features(texts)`` — what the voice-profile page shows: greeting and sign-off habits, sentence and
  paragraph lengths (with a histogram for a chart), formality, questions, punctuation and emoji habits,
  characteristic words and phrases, typical openers and closers, and how much material there is.
* ``style_vector(text)`` / ``style_model(texts)`` — the authorship representation, and ``similarity``
  between a text's vector and a rep's model. It uses three families of features that the authorship
  literature has shown to carry the writer rather than the topic:

  - function-word frequencies (Mosteller & Wallace's *Federalist* study; Burrows' Delta), compared with
    Cosine Delta (Smith & Aldridge 2011): each word's frequency is z-scored against a background and
    the two z-vectors are compared by cosine, so that rare-but-telling words count as much as "the";
  - character 3- and 4-gram frequencies (Kešelj et al.'s Common N-Grams; Stamatatos's survey finds
    character n-grams among the most robust authorship features), compared by cosine over square-root
    frequencies (the Bhattacharyya / Hellinger form), which keeps the very common grams from dominating;
  - punctuation and layout rates (commas, dashes, semicolons, exclamation and question marks, emoji,
    sentence length), compared by a log-ratio closeness.

A model is small (a few hundred numbers) so that it is stored as JSON in ``voice_profiles.features``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Version of the representation below: a stored model of another version is rebuilt, not compared.
MODEL_VERSION = 1

# Common English function words. Their rates are largely independent of topic and habitual for a writer,
# which is why Mosteller & Wallace and Burrows' Delta build on them. Order is fixed: it indexes vectors.
FUNCTION_WORDS: tuple[str, ...] = (
    "a", "about", "above", "after", "again", "against", "all", "almost", "also", "although", "always",
    "am", "among", "an", "and", "another", "any", "anything", "are", "around", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could",
    "did", "do", "does", "doing", "down", "during", "each", "either", "enough", "even", "ever", "every",
    "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers",
    "herself", "him", "himself", "his", "how", "however", "i", "if", "in", "indeed", "into", "is", "it",
    "its", "itself", "just", "least", "less", "let", "like", "many", "may", "me", "might", "more",
    "most", "much", "must", "my", "myself", "neither", "never", "no", "nor", "not", "nothing", "now",
    "of", "off", "often", "on", "once", "one", "only", "or", "other", "others", "ought", "our", "ours",
    "ourselves", "out", "over", "own", "perhaps", "quite", "rather", "really", "same", "shall", "she",
    "should", "since", "so", "some", "something", "still", "such", "than", "that", "the", "their",
    "theirs", "them", "themselves", "then", "there", "therefore", "these", "they", "this", "those",
    "though", "through", "thus", "to", "too", "toward", "under", "until", "up", "upon", "us", "very",
    "was", "we", "well", "were", "what", "when", "where", "whether", "which", "while", "who", "whom",
    "whose", "why", "will", "with", "within", "without", "would", "yet", "you", "your", "yours",
    "yourself", "yourselves",
)
_FUNCTION_SET = frozenset(FUNCTION_WORDS)

# Background rates (per word) and spreads for the function words, used to z-score them as Delta does.
# Production has no corpus at hand, so the background is a smoothed prior: a word's expected rate is
# its share under a Zipf law over this list's rough frequency rank, and its spread is proportional to
# the square root of the rate (Poisson-like counts). Between several reps, ``background_from_models``
# replaces this prior with the reps' own mean and spread, which is Burrows' original formulation.
_ZIPF_RANK = {w: i + 1 for i, w in enumerate((
    "the", "of", "and", "to", "a", "in", "that", "is", "it", "for", "i", "you", "be", "we", "on", "with",
    "as", "this", "have", "are", "not", "by", "at", "our", "was", "will", "from", "but", "they", "or",
    "your", "an", "all", "can", "my", "which", "has", "more", "if", "their", "so", "would", "there",
    "what", "one", "been", "were", "us", "he", "about", "me", "do", "its", "just", "these", "should",
    "them", "when", "than", "who", "no", "also", "other", "any", "must", "now", "his", "some", "up",
    "out", "like", "may", "how", "only", "had", "new", "those", "each", "into", "most", "could", "over",
    "very", "here", "such", "through", "many", "then", "am", "let", "every", "much", "well", "did",
    "where", "why", "even", "after", "before", "between", "because", "both", "while", "under", "own",
    "same", "again", "still", "against", "since", "without", "upon", "does", "being", "ever", "never",
    "shall", "her", "him", "she", "whether", "yet", "within", "really", "during", "something", "thus",
    "though", "until", "once", "off", "too", "often", "another", "further", "among", "always", "less",
    "least", "rather", "enough", "anything", "however", "therefore", "above", "almost", "although",
    "around", "below", "down", "either", "few", "having", "doing", "others", "perhaps", "quite",
    "toward", "whom", "whose", "nothing", "neither", "nor", "indeed", "ought", "itself", "myself",
    "himself", "herself", "themselves", "ourselves", "yourself", "yourselves", "ours", "yours", "hers",
    "theirs",
))}

_WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n\s*\n|\n(?=\s*[-*•]\s)")
_PARAGRAPH_RE = re.compile(r"\n\s*\n")
_SPACE_RE = re.compile(r"\s+")

GREETING_RE = re.compile(
    r"^\s*(hi|hey|hello|dear|good\s+(?:morning|afternoon|evening)|greetings|hiya|howdy|yo)\b[ \t,]*"
    r"([^\W\d_][\w.'-]*)?", re.IGNORECASE)
SIGNOFF_RE = re.compile(
    r"^\s*(best(?:\s+regards|\s+wishes)?|kind\s+regards|warm(?:est)?\s+regards|regards|cheers|thanks(?:\s+again|"
    r"\s+so\s+much)?|thank\s+you|many\s+thanks|talk\s+soon|speak\s+soon|sincerely(?:\s+yours)?|yours(?:\s+truly)?|"
    r"all\s+the\s+best|take\s+care|warmly|ttyl|\w+\s+wishes)\s*[,.!—-]*\s*$", re.IGNORECASE)

_PUNCTUATION = {
    "comma": ",", "period": ".", "semicolon": ";", "colon": ":", "exclamation": "!", "question": "?",
    "dash": "—–", "hyphen": "-", "parenthesis": "(", "quote": "\"“”", "apostrophe": "'’",
    "ellipsis": "…", "ampersand": "&", "slash": "/",
}

SENTENCE_BINS: tuple[tuple[int, int | None], ...] = (
    (1, 5), (6, 10), (11, 15), (16, 20), (21, 25), (26, 30), (31, 40), (41, None))

# Strength levels by words of the rep's own writing; below "weak" a profile is too thin to trust.
STRENGTH_LEVELS: tuple[tuple[int, str], ...] = ((0, "none"), (1, "weak"), (500, "fair"), (2000, "good"),
                                                (5000, "strong"))

_CHAR_GRAMS = (3, 4)
_CHAR_TOP = 300  # per n: the most frequent grams kept in a stored model


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (letters with inner apostrophes; digits and symbols dropped)."""
    return [w.replace("’", "'") for w in _WORD_RE.findall(text.lower())]


def sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after ``.!?…``, at blank lines and before list bullets."""
    return [s.strip() for s in _SENTENCE_END_RE.split(text) if s and s.strip() and words(s)]


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs that hold at least one word."""
    return [p.strip() for p in _PARAGRAPH_RE.split(text) if words(p)]


def is_emoji(char: str) -> bool:
    """Whether one character is an emoji or pictograph (Unicode "So" symbols in the emoji blocks)."""
    code = ord(char)
    return (0x1F000 <= code <= 0x1FAFF or 0x2600 <= code <= 0x27BF or 0x1F900 <= code <= 0x1F9FF
            or (unicodedata.category(char) == "So" and code >= 0x2190))


# --- the profile the rep reads -----------------------------------------------------------------------


def features(texts: Sequence[str], *, background: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The rep-facing style features of a body of writing.

    Args:
        texts: the rep's own texts (emails, notes, transcripts of what they said), one string each.
        background: word counts of a general background (for example the other reps' writing). Characteristic
            words are scored by log-odds against it; without one, against a flat prior over everything but
            function words.

    Returns:
        A JSON-able dict: ``text_count``, ``word_count``, ``strength``, ``greetings``, ``signoffs``,
        ``sentence_length`` (mean, median, p90), ``sentence_lengths`` (a histogram: ``[{"bin", "count"}]``),
        ``paragraph_length``, ``formality`` (0 casual .. 1 formal), ``questions_per_100_sentences``,
        ``exclamations_per_100_sentences``, ``punctuation_per_1000_words``, ``emoji`` (rate and the most used),
        ``characteristic_words``, ``characteristic_phrases``, ``openers``, ``closers``.
    """
    items = [t for t in texts if isinstance(t, str) and t.strip()]
    all_words: list[str] = []
    sentence_lengths: list[int] = []
    paragraph_lengths: list[int] = []
    greetings: Counter[str] = Counter()
    signoffs: Counter[str] = Counter()
    openers: Counter[str] = Counter()
    closers: Counter[str] = Counter()
    emoji: Counter[str] = Counter()
    punctuation: Counter[str] = Counter()
    doc_freq: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    questions = exclamations = 0
    for text in items:
        body, greeting, signoff = split_envelope(text)
        if greeting:
            greetings[greeting] += 1
        if signoff:
            signoffs[signoff] += 1
        text_words = words(text)
        all_words.extend(text_words)
        doc_freq.update(set(text_words))
        body_words = words(body)
        bigrams.update(f"{a} {b}" for a, b in zip(body_words, body_words[1:])
                       if not (a in _FUNCTION_SET and b in _FUNCTION_SET))
        body_sentences = sentences(body)
        for sentence in body_sentences:
            sentence_lengths.append(len(words(sentence)))
            stripped = sentence.rstrip("\"')] ")
            questions += stripped.endswith("?")
            exclamations += stripped.endswith("!")
        if body_sentences:
            openers[_lead(body_sentences[0])] += 1
            if len(body_sentences) > 1:
                closers[_lead(body_sentences[-1])] += 1
        paragraph_lengths.extend(len(words(p)) for p in paragraphs(body))
        for char in text:
            if is_emoji(char):
                emoji[char] += 1
        for name, chars in _PUNCTUATION.items():
            punctuation[name] += sum(text.count(c) for c in chars)
        punctuation["ellipsis"] += text.count("...")
    n_words = len(all_words)
    n_sentences = len(sentence_lengths)
    per_1000 = 1000.0 / n_words if n_words else 0.0
    per_100_sentences = 100.0 / n_sentences if n_sentences else 0.0
    return {
        "text_count": len(items),
        "word_count": n_words,
        "strength": strength(n_words),
        "greetings": _shares(greetings, len(items)),
        "signoffs": _shares(signoffs, len(items)),
        "sentence_length": _summary(sentence_lengths),
        "sentence_lengths": sentence_histogram(sentence_lengths),
        "paragraph_length": _summary(paragraph_lengths),
        "formality": formality(all_words, "\n\n".join(items)),
        "questions_per_100_sentences": round(questions * per_100_sentences, 2),
        "exclamations_per_100_sentences": round(exclamations * per_100_sentences, 2),
        "punctuation_per_1000_words": {k: round(v * per_1000, 2) for k, v in sorted(punctuation.items())},
        "emoji": {"per_1000_words": round(sum(emoji.values()) * per_1000, 2),
                  "top": [{"emoji": e, "count": c} for e, c in _top(emoji, 5)]},
        "characteristic_words": characteristic_words(all_words, doc_freq, len(items), background=background),
        "characteristic_phrases": [{"phrase": p, "count": c} for p, c in _top(bigrams, 10) if c >= 2],
        "openers": [{"text": t, "count": c} for t, c in _top(openers, 5)],
        "closers": [{"text": t, "count": c} for t, c in _top(closers, 5)],
    }


def split_envelope(text: str) -> tuple[str, str | None, str | None]:
    """Split an email-like text into body, greeting word and sign-off phrase.

    The greeting is the first line when it starts with a salutation ("Hi Dana," → ``"hi"``); the sign-off
    is the last short line (at most four words) that reads as one ("Cheers," → ``"cheers"``), looked for
    among the last three lines so that a name under it does not hide it.

    Returns:
        ``(body, greeting, signoff)``; greeting and sign-off are lower-cased and None when absent.
    """
    lines = [line for line in text.strip().splitlines()]
    greeting = signoff = None
    if lines:
        match = GREETING_RE.match(lines[0])
        if match and len(words(lines[0])) <= 6:
            greeting = _SPACE_RE.sub(" ", match.group(1).lower())
            lines = lines[1:]
    non_blank = [i for i, line in enumerate(lines) if line.strip()]
    for index in reversed(non_blank[-3:]):
        candidate = lines[index]
        if len(words(candidate)) <= 4 and SIGNOFF_RE.match(candidate):
            signoff = _SPACE_RE.sub(" ", SIGNOFF_RE.match(candidate).group(1).lower())
            lines = lines[:index]
            break
    return "\n".join(lines).strip(), greeting, signoff


def strength(word_count: int) -> dict[str, Any]:
    """How much material a profile rests on: a level name and the words needed for the next level."""
    level = STRENGTH_LEVELS[0][1]
    next_at = None
    for threshold, name in STRENGTH_LEVELS:
        if word_count >= threshold:
            level = name
        elif next_at is None:
            next_at = threshold
    return {"level": level, "words": word_count, "next_level_at": next_at}


def sentence_histogram(lengths: Iterable[int]) -> list[dict[str, Any]]:
    """Counts of sentence lengths (in words) in fixed bins, every bin present, for a bar chart."""
    counts = [0] * len(SENTENCE_BINS)
    for length in lengths:
        for index, (low, high) in enumerate(SENTENCE_BINS):
            if length >= low and (high is None or length <= high):
                counts[index] += 1
                break
    return [{"bin": f"{low}-{high}" if high else f"{low}+", "count": count}
            for (low, high), count in zip(SENTENCE_BINS, counts)]


def formality(text_words: Sequence[str], text: str) -> float:
    """A 0 (casual) .. 1 (formal) score.

    Heylighen & Dewaele's F-score needs part-of-speech tags; without a tagger this keeps its idea with
    surface cues: contractions, first/second person, exclamations, emoji and very short sentences push it
    down; long words and long sentences push it up. Each cue is a rate mapped through fixed anchors.
    """
    if not text_words:
        return 0.5
    n = len(text_words)
    contractions = sum("'" in w for w in text_words) / n
    personal = sum(w in ("i", "me", "my", "you", "your", "we", "us") for w in text_words) / n
    long_words = sum(len(w) >= 7 for w in text_words) / n
    exclaim = (text.count("!") + sum(map(is_emoji, text))) / n
    lengths = [len(words(s)) for s in sentences(text)] or [n]
    mean_sentence = sum(lengths) / len(lengths)
    score = (0.5
             - 4.0 * contractions - 1.0 * personal - 6.0 * exclaim
             + 1.2 * (long_words - 0.2) + 0.015 * (mean_sentence - 15))
    return round(min(1.0, max(0.0, score)), 3)


def characteristic_words(text_words: Sequence[str], doc_freq: Mapping[str, int], n_texts: int, *,
                         background: Mapping[str, int] | None = None, limit: int = 15) -> list[dict[str, Any]]:
    """Words that mark this writer: log-odds with an informative Dirichlet prior (Monroe, Colaresi & Quinn,
    "Fightin' Words", 2008) of the writer's counts against ``background``.

    Function words are left out (they are in the matching model, not in what a person wants to read), and
    with more than one text a word must appear in at least two, so one long email about one deal does not
    fill the list with its topic.
    """
    counts = Counter(w for w in text_words if w not in _FUNCTION_SET and len(w) > 2)
    if not counts:
        return []
    min_docs = 2 if n_texts > 1 else 1
    background = background or {}
    n_writer = sum(counts.values())
    n_background = sum(background.values())
    alpha0 = 500.0  # prior strength: large enough that a word seen twice does not top the list
    vocabulary = len(set(counts) | set(background)) or 1
    scored = []
    for word, count in counts.items():
        if doc_freq.get(word, 0) < min_docs:
            continue
        prior = alpha0 * ((background.get(word, 0) + 1.0) / (n_background + vocabulary))
        other = background.get(word, 0)
        log_odds = (math.log((count + prior) / (n_writer + alpha0 - count - prior))
                    - math.log((other + prior) / (n_background + alpha0 - other - prior)))
        variance = 1.0 / (count + prior) + 1.0 / (other + prior)
        scored.append((log_odds / math.sqrt(variance), word, count))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [{"word": w, "count": c, "z": round(z, 2)} for z, w, c in scored[:limit]]


def _lead(sentence: str, n: int = 3) -> str:
    return " ".join(words(sentence)[:n])


def _top(counter: Counter[str], n: int) -> list[tuple[str, int]]:
    # Ties broken by the key so that the output is deterministic across runs and Python versions.
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _shares(counter: Counter[str], total: int) -> list[dict[str, Any]]:
    return [{"text": t, "count": c, "share": round(c / total, 3)} for t, c in _top(counter, 5)] if total else []


def _summary(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0}
    ordered = sorted(values)
    return {"mean": round(sum(ordered) / len(ordered), 2),
            "median": float(ordered[len(ordered) // 2]),
            "p90": float(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))])}


# --- the matching representation ---------------------------------------------------------------------


def _normalise(text: str) -> str:
    return _SPACE_RE.sub(" ", unicodedata.normalize("NFKC", text).lower().replace("’", "'")).strip()


def _counts(text: str) -> dict[str, Any]:
    flat = _normalise(text)
    text_words = words(text)
    grams: dict[str, Counter[str]] = {}
    for n in _CHAR_GRAMS:
        grams[str(n)] = Counter(flat[i:i + n] for i in range(len(flat) - n + 1))
    fw = Counter(w for w in text_words if w in _FUNCTION_SET)
    lengths = [len(words(s)) for s in sentences(text)]
    rates = Counter()
    for name, chars in _PUNCTUATION.items():
        rates[name] = sum(text.count(c) for c in chars)
    rates["emoji"] = sum(map(is_emoji, text))
    rates["newline"] = text.count("\n")
    rates["capital"] = sum(1 for c in text if c.isupper())
    rates["contraction"] = sum("'" in w for w in text_words)
    rates["long_word"] = sum(len(w) >= 7 for w in text_words)
    return {"words": len(text_words), "sentences": len(lengths), "sentence_words": sum(lengths),
            "fw": fw, "grams": grams, "rates": rates}


def style_vector(text: str) -> dict[str, Any]:
    """The matching representation of one text (relative frequencies; all of its grams kept).

    Returns:
        ``{"version", "words", "fw": {word: rate}, "grams": {"3": {gram: rate}, "4": ...},
        "rates": {name: per-word rate}, "sentence_mean": words per sentence}``.
    """
    return _finish(_counts(text), top=None)


def style_model(texts: Sequence[str]) -> dict[str, Any]:
    """The matching representation of a body of writing, small enough to store as JSON.

    Counts are pooled over all texts (a writer's rate is total occurrences over total words, so long texts
    weigh in proportion to their length), then only the ``_CHAR_TOP`` most frequent grams of each size kept.

    Args:
        texts: the writer's texts.

    Returns:
        The same shape as ``style_vector``.
    """
    pooled: dict[str, Any] = {"words": 0, "sentences": 0, "sentence_words": 0, "fw": Counter(),
                              "grams": {str(n): Counter() for n in _CHAR_GRAMS}, "rates": Counter()}
    for text in texts:
        if not text or not text.strip():
            continue
        counts = _counts(text)
        for key in ("words", "sentences", "sentence_words"):
            pooled[key] += counts[key]
        pooled["fw"].update(counts["fw"])
        pooled["rates"].update(counts["rates"])
        for n, grams in counts["grams"].items():
            pooled["grams"][n].update(grams)
    return _finish(pooled, top=_CHAR_TOP)


def _finish(counts: dict[str, Any], *, top: int | None) -> dict[str, Any]:
    n_words = counts["words"]
    per_word = 1.0 / n_words if n_words else 0.0
    grams = {}
    for n, counter in counts["grams"].items():
        total = sum(counter.values()) or 1
        kept = _top(counter, top) if top else sorted(counter.items())
        grams[n] = {g: round(c / total, 7) for g, c in kept}
    return {
        "version": MODEL_VERSION,
        "words": n_words,
        "fw": {w: round(c * per_word, 7) for w, c in sorted(counts["fw"].items())},
        "grams": grams,
        "rates": {k: round(v * per_word, 7) for k, v in sorted(counts["rates"].items())},
        "sentence_mean": round(counts["sentence_words"] / counts["sentences"], 3) if counts["sentences"] else 0.0,
    }


def background_from_models(models: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float]] | None:
    """Mean and standard deviation of each function word's rate across writers (Burrows' Delta background).

    Returns None with fewer than three writers, where a spread is not worth estimating; ``similarity``
    then falls back on the built-in prior.
    """
    usable = [m for m in models if m and m.get("words")]
    if len(usable) < 3:
        return None
    out = {}
    for word in FUNCTION_WORDS:
        rates = [m["fw"].get(word, 0.0) for m in usable]
        mean = sum(rates) / len(rates)
        spread = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1))
        out[word] = (mean, spread)
    return out


def _prior(word: str) -> tuple[float, float]:
    # Zipf over the rank list with a share of ~45% of running words for these function words in English.
    harmonic = sum(1.0 / r for r in _ZIPF_RANK.values())
    mean = 0.45 * (1.0 / _ZIPF_RANK.get(word, len(_ZIPF_RANK))) / harmonic
    return mean, max(0.5 * math.sqrt(mean * 0.01), 1e-4)


def function_word_similarity(text: Mapping[str, Any], model: Mapping[str, Any],
                             background: Mapping[str, tuple[float, float]] | None = None) -> float:
    """Cosine Delta between a text and a model: cosine of their z-scored function-word rates (-1..1)."""
    a, b = [], []
    for word in FUNCTION_WORDS:
        mean, spread = background[word] if background else _prior(word)
        spread = max(spread, 1e-4)
        a.append((text["fw"].get(word, 0.0) - mean) / spread)
        b.append((model["fw"].get(word, 0.0) - mean) / spread)
    return _cosine(a, b)


def char_gram_similarity(text: Mapping[str, Any], model: Mapping[str, Any]) -> float:
    """Mean over gram sizes of the cosine of square-root gram frequencies (0..1), over the model's grams."""
    sims = []
    for n, model_grams in model["grams"].items():
        text_grams = text["grams"].get(n, {})
        if not model_grams or not text_grams:
            continue
        dot = sum(math.sqrt(f * text_grams.get(g, 0.0)) for g, f in model_grams.items())
        norm_text = math.sqrt(sum(text_grams.get(g, 0.0) for g in model_grams))
        norm_model = math.sqrt(sum(model_grams.values()))
        if norm_text and norm_model:
            sims.append(dot / (norm_text * norm_model))
    return sum(sims) / len(sims) if sims else 0.0


def rate_similarity(text: Mapping[str, Any], model: Mapping[str, Any]) -> float:
    """Closeness of punctuation, layout and sentence-length habits: exp(-mean |log ratio|), 0..1.

    Rates get add-one smoothing at the scale of the text (one more occurrence in the text's length), so a
    200-word email without a semicolon is not judged far from a writer who uses one in 500 words.
    """
    n = max(text.get("words", 0), 1)
    smooth = 1.0 / n
    distances = []
    names = sorted(set(text["rates"]) | set(model["rates"]))
    for name in names:
        x = text["rates"].get(name, 0.0) + smooth
        y = model["rates"].get(name, 0.0) + smooth
        distances.append(abs(math.log(x / y)))
    x = text.get("sentence_mean", 0.0) + 1.0
    y = model.get("sentence_mean", 0.0) + 1.0
    distances.append(2.0 * abs(math.log(x / y)))
    return math.exp(-sum(distances) / len(distances)) if distances else 0.0


def similarity(text: Mapping[str, Any], model: Mapping[str, Any],
               background: Mapping[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """The three stylometric similarities between a text's vector and a writer's model.

    Returns:
        ``{"function_words": -1..1, "char_grams": 0..1, "rates": 0..1}``.
    """
    return {"function_words": function_word_similarity(text, model, background),
            "char_grams": char_gram_similarity(text, model),
            "rates": rate_similarity(text, model)}


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
