"""Split a sample's text into passages worth embedding one by one.

Passages follow the writer's own structure: paragraphs are kept whole when they fit, long ones are cut
between sentences, and only a sentence longer than a passage is cut between words. Consecutive
passages share a sentence or two (``overlap_words``) so an idea that straddles a boundary is still
found whole in one of them. Every passage stays under the embedding model's input limit, measured
with ``estimate_tokens``, a deliberate over-estimate of WordPiece and SentencePiece counts: a model
silently truncates what is longer, and the cut-off words would never be retrievable.
"""

from __future__ import annotations

import dataclasses
import re

# all-MiniLM-L6-v2 embeds at most 256 WordPiece tokens (its sentence_bert_config.json); Vertex's text
# embedding models take 2,048. The smaller one is the default so a chunk fits either.
DEFAULT_MAX_TOKENS = 256

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
# A sentence ends at . ! ? (optionally followed by closing quotes or brackets) before whitespace and
# an upper-case letter, digit or opening quote; or at a single line break (lists, greetings, sign-offs).
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])|\n")
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One passage: its position in the sample, its text and its size in words."""

    ordinal: int
    text: str
    words: int


def estimate_tokens(text: str) -> int:
    """An upper estimate of the subword tokens a BERT-style tokenizer makes of ``text``.

    Each punctuation mark is a token; a word is one token per started six characters (common words
    are one token, rare long ones split into pieces of about that size), plus the two special tokens.

    Args:
        text: Any text.

    Returns:
        The estimate.
    """
    total = 2
    for token in _TOKEN.findall(text):
        total += 1 if not token[0].isalnum() and token[0] != "_" else max(1, -(-len(token) // 6))
    return total


def sentences(text: str) -> list[str]:
    """The sentences of one paragraph, whitespace tidied, empty ones dropped.

    Args:
        text: A paragraph.

    Returns:
        Its sentences in order.
    """
    return [" ".join(part.split()) for part in _SENTENCE_END.split(text) if part and part.strip()]


def chunk_text(text: str, *, target_words: int = 180, max_words: int = 250, min_words: int = 100,
               overlap_words: int = 30, max_tokens: int = DEFAULT_MAX_TOKENS) -> list[Chunk]:
    """Split text into overlapping passages of about ``target_words`` words.

    Args:
        text: The sample's clean text.
        target_words: A passage is closed once it reaches this many words.
        max_words: No passage is longer than this.
        min_words: A last passage shorter than this is merged into the previous one when they fit.
        overlap_words: At most this many words (whole sentences) of a passage's end open the next one.
        max_tokens: The embedding model's input limit; no passage's ``estimate_tokens`` exceeds it.

    Returns:
        The passages in order, numbered from 0; an empty list for text without words.

    Raises:
        ValueError: The sizes contradict one another.
    """
    if not (0 < min_words <= target_words <= max_words) or overlap_words < 0 or overlap_words >= target_words:
        raise ValueError("need 0 < min_words <= target_words <= max_words and 0 <= overlap_words < target_words")
    if max_tokens < 16:
        raise ValueError("max_tokens must be at least 16")

    def fits(units: list[str]) -> bool:
        joined = " ".join(units)
        return len(joined.split()) <= max_words and estimate_tokens(joined) <= max_tokens

    units = [unit for paragraph in _PARAGRAPH_BREAK.split(text) for unit in _units(paragraph, fits)]
    passages: list[list[str]] = []
    current: list[str] = []
    fresh = 0  # sentences in ``current`` that are not overlap from the previous passage
    for unit in units:
        if current and fresh and not fits(current + [unit]):
            passages.append(current)
            current = _overlap(current, overlap_words, unit, fits)
            fresh = 0
        current.append(unit)
        fresh += 1
        if len(" ".join(current).split()) >= target_words:
            passages.append(current)
            current = _overlap(current, overlap_words, None, fits)
            fresh = 0
    if current and fresh:
        if passages and len(" ".join(current).split()) < min_words:
            tail = current[len(current) - fresh:]
            if fits(passages[-1] + tail):
                passages[-1] = passages[-1] + tail
            else:
                passages.append(current)
        else:
            passages.append(current)
    out = []
    for ordinal, passage in enumerate(passages):
        joined = _join(passage)
        out.append(Chunk(ordinal=ordinal, text=joined, words=len(joined.split())))
    return out


def _units(paragraph: str, fits) -> list[str]:
    """A paragraph as one unit when it fits, else its sentences, each cut between words if needed."""
    tidy = "\n".join(" ".join(line.split()) for line in paragraph.splitlines() if line.strip())
    if not tidy:
        return []
    if "\n" not in tidy and fits([tidy]) and len(tidy.split()) <= 60:
        return [tidy + _PARAGRAPH_MARK]
    out: list[str] = []
    for line in tidy.split("\n"):
        for sentence in sentences(line):
            out.extend([sentence] if fits([sentence]) else _split_words(sentence, fits))
        if out and not out[-1].endswith(_LINE_MARK):
            out[-1] = out[-1] + _LINE_MARK
    if out:
        out[-1] = out[-1].rstrip(_LINE_MARK) + _PARAGRAPH_MARK
    return out


# Appended to the last unit of a paragraph or a line, so the join restores the break. Both count as
# whitespace for str.split and the token estimate, so they change no size.
_PARAGRAPH_MARK = "\u2029"
_LINE_MARK = "\u2028"


def _split_words(sentence: str, fits) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    for word in sentence.split():
        if current and not fits([" ".join(current + [word])]):
            pieces.append(" ".join(current))
            current = []
        current.append(word if fits([word]) else word[:64])
    if current:
        pieces.append(" ".join(current))
    return pieces


def _overlap(passage: list[str], overlap_words: int, following: str | None, fits) -> list[str]:
    """The last whole sentences of ``passage`` (at most ``overlap_words`` words) to open the next one."""
    kept: list[str] = []
    words = 0
    for unit in reversed(passage):
        size = len(unit.split())
        if words + size > overlap_words:
            break
        candidate = [unit] + kept
        if following is not None and not fits(candidate + [following]):
            break
        kept = candidate
        words += size
    return kept


def _join(units: list[str]) -> str:
    text = ""
    for unit in units:
        if text:
            text += "\n\n" if text.endswith(_PARAGRAPH_MARK) else "\n" if text.endswith(_LINE_MARK) else " "
        text += unit
    return text.replace(_PARAGRAPH_MARK, "").replace(_LINE_MARK, "").strip()
