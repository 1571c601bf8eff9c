"""The embedded TextGenerator: a short follow-up assembled from the rep's own writing, with no model.

It reads the structured inputs of the prompt, never the rendered prompt, so fenced text cannot steer it.
The email is built the way a rep writes a quick reply:

* the greeting and sign-off are the rep's most frequent ones (voice-profile features), falling back to
  those of the nearest past email, then to "Hi" and "Best";
* an opening that thanks the lead (naming the company when the CRM knows it) and answers what they asked
  about (a demo, pricing, a pilot, security, or a general question), detected from keywords of their
  message; the message itself is never quoted, so nothing it says reaches the email;
* one or two sentences reused from the rep's nearest past emails: short ones (the rep's manner) or
  longer ones that share words with the lead's message, and only if they carry no figures, links,
  dates or other people's names;
* the top asset's link when it is an allowed link;
* a closing question from the rep's own closers when one is safe, else a plain next step.

Deterministic: the same inputs give the same email.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from shared.drafting.generate import Generated, tidy
from shared.drafting.prompt import Passage, Prompt

MODEL = "offline-drafter"

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_UNSAFE = re.compile(
    r"\d|https?://|www\.|@|\[|\]|\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|"
    r"april|june|july|august|september|october|november|december|yesterday|today|tomorrow|"
    r"percent|million|billion|thousand)\b", re.IGNORECASE)
_ALLOWED_CAPITALS = {"I", "I'm", "I'll", "I've", "I'd", "OK"}
_STOP = frozenset("a an and are as at be but by can could do for from have how i if in is it its me my of on or our "
                  "so that the their them they this to us we what when which will with would you your".split())

# Intent → (subject, answer sentence). Checked in order; the first whose keywords appear wins.
_INTENTS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("security", ("security", "compliance", "soc", "gdpr", "privacy", "iso"),
     "Security overview{for_company}", "Happy to share how we handle security and answer any questions your team has."),
    ("pricing", ("price", "pricing", "cost", "costs", "quote", "budget", "plans", "plan"),
     "Pricing{for_company}", "I can walk you through pricing and what would fit your team."),
    ("pilot", ("pilot", "trial", "test", "poc", "evaluate", "evaluation"),
     "A pilot{for_company}", "A short pilot is a good way to check it against your own work."),
    ("demo", ("demo", "walkthrough", "walk", "see", "show", "call", "meeting", "meet"),
     "A quick walkthrough{for_company}", "Happy to show you how it works, focused on what matters to you."),
)
_GENERAL = ("general", (), "Following up on your note", "Happy to help with that.")


class OfflineDrafter:
    """Writes a plausible short follow-up from the rep's own emails and voice profile, offline."""

    model = MODEL

    def generate(self, prompt: Prompt) -> Generated:
        """See ``shared.drafting.generate.TextGenerator``."""
        inputs = prompt.inputs
        lead, company, rep = inputs.lead, inputs.company, inputs.rep
        first_name = _name(lead.get("first_name"))
        company_name = _name(company.get("name"), words=5)
        rep_first = _name(str(rep.get("name") or "").split(" ")[0]) or _name(str(rep.get("email") or "").split("@")[0])
        message = str(lead.get("message") or "")
        intent, subject_pattern, answer = _intent(message)

        greeting = _greeting(inputs.features, inputs.exemplars)
        signoff = _signoff(inputs.features, inputs.exemplars)
        allowed_names = {n for n in (first_name, rep_first, *company_name.split()) if n}

        opening = "Thanks for getting in touch" + (f" from {company_name}" if company_name else "") + "."
        reused = _reusable(inputs.exemplars, message, allowed_names, limit=2)
        asset_line = _asset_line(inputs.assets, inputs.allowed_links)
        closer = _closer(inputs.exemplars, allowed_names, exclude=reused) or _default_closer(intent)
        if inputs.meeting_slots:
            # The lead asked to meet and the rep's calendar is known: offer real times instead.
            closer = "Would one of these work for you? " + _join_slots(inputs.meeting_slots)

        paragraphs = [" ".join([opening, answer]), " ".join(reused)] if reused else [" ".join([opening, answer])]
        if asset_line:
            paragraphs.append(asset_line)
        paragraphs.append(closer)
        salutation = f"{greeting} {first_name}," if first_name else f"{greeting},"
        sign = f"{signoff},\n{rep_first}" if rep_first else f"{signoff},"
        body = "\n\n".join([salutation, *[p for p in paragraphs if p.strip()], sign])
        for_company = f" for {company_name}" if company_name else ""
        subject = subject_pattern.format(for_company=for_company)
        return tidy(subject, body, MODEL)

    def health(self) -> None:
        """Nothing to reach: always healthy."""
        return None


def _join_slots(slots: tuple[str, ...]) -> str:
    shown = [str(slot).strip() for slot in slots[:3] if str(slot).strip()]
    if len(shown) > 1:
        return ", ".join(shown[:-1]) + " or " + shown[-1] + "."
    return (shown[0] + ".") if shown else ""


def _name(value: Any, words: int = 2) -> str:
    # Only letters, spaces and a few joiners, so a name field cannot smuggle a link or a figure in.
    found = _WORD.findall(str(value or ""))[:words]
    return " ".join(w[:1].upper() + w[1:] for w in found)[:60]


def _intent(message: str) -> tuple[str, str, str]:
    tokens = {w.lower() for w in _WORD.findall(message)}
    for name, keywords, subject, answer in _INTENTS:
        if tokens & set(keywords):
            return name, subject, answer
    return _GENERAL[0], _GENERAL[2], _GENERAL[3]


def _top_text(entries: Any) -> str | None:
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        text = " ".join(_WORD.findall(str(entries[0].get("text") or "")))
        return text or None
    return None


def _envelope(exemplars: Sequence[Passage]) -> list[tuple[str | None, str | None]]:
    from shared.voice.style import split_envelope

    return [split_envelope(e.text)[1:] for e in exemplars]


def _greeting(features: Any, exemplars: Sequence[Passage]) -> str:
    word = _top_text((features or {}).get("greetings"))
    if not word:
        word = next((g for g, _ in _envelope(exemplars) if g), None)
    return (word or "hi").capitalize()


def _signoff(features: Any, exemplars: Sequence[Passage]) -> str:
    phrase = _top_text((features or {}).get("signoffs"))
    if not phrase:
        phrase = next((s for _, s in _envelope(exemplars) if s), None)
    return (phrase or "best").capitalize()


def _sentences(text: str) -> list[str]:
    from shared.voice.style import split_envelope

    body = split_envelope(text)[0]
    return [s.strip() for s in _SENTENCE.split(body) if s.strip()]


def _safe(sentence: str, allowed_names: set[str]) -> bool:
    """A sentence that can be reused for another lead: no figures, links, dates or other people's names."""
    words = _WORD.findall(sentence)
    if not 4 <= len(words) <= 28 or _UNSAFE.search(sentence) or not sentence[-1:] in ".!?":
        return False
    for index, word in enumerate(words):
        if index and word[:1].isupper() and word not in _ALLOWED_CAPITALS and word not in allowed_names:
            return False
    return True


def _content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 2}


def _reusable(exemplars: Sequence[Passage], message: str, allowed_names: set[str], limit: int) -> list[str]:
    """Up to ``limit`` statements from the nearest exemplars, most related to the lead's message first."""
    wanted = _content_words(message)
    scored: list[tuple[int, int, int, str]] = []
    for rank, exemplar in enumerate(exemplars):
        sentences = _sentences(exemplar.text)
        for position, sentence in enumerate(sentences[1:-1] if len(sentences) > 2 else sentences):
            if sentence.endswith("?") or not _safe(sentence, allowed_names):
                continue
            overlap = len(wanted & _content_words(sentence))
            # A long sentence is about its own conversation unless it shares words with this lead's
            # message; a short one ("Shout if anything's unclear.") is the rep's manner and fits anywhere.
            if overlap == 0 and len(_WORD.findall(sentence)) > 6:
                continue
            scored.append((-overlap, rank, position, sentence))
    chosen: list[str] = []
    for _, _, _, sentence in sorted(scored):
        if sentence not in chosen:
            chosen.append(sentence)
        if len(chosen) == limit:
            break
    return chosen


def _closer(exemplars: Sequence[Passage], allowed_names: set[str], exclude: Iterable[str]) -> str | None:
    """The rep's own closing question from the nearest exemplar that has a safe one."""
    skip = set(exclude)
    for exemplar in exemplars:
        sentences = _sentences(exemplar.text)
        for sentence in reversed(sentences[-2:]):
            if sentence.endswith("?") and sentence not in skip and _safe(sentence, allowed_names):
                return sentence
    return None


def _default_closer(intent: str) -> str:
    if intent == "security":
        return "Would a short call with your team next week help?"
    return "Would a short call next week work for you?"


def _asset_line(assets: Sequence[Passage], allowed_links: Sequence[str]) -> str | None:
    for asset in assets:
        if asset.url and asset.url in allowed_links:
            title = " ".join(_WORD.findall(asset.title or ""))[:80]
            return f"Here's {('the ' + title) if title else 'something'} that might help in the meantime: {asset.url}"
    return None
