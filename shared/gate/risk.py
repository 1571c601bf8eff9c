"""What makes a draft risky: each signal is a human reason, a weight and, for some, a floor on the action.

The score combines the weights as independent chances of harm, ``1 - prod(1 - w)``: it stays within
0..1, never falls when a signal is added, and two moderate signals together weigh more than either.
A *floor* is an action the signal forces whatever the score (an opted-out contact is blocked however
clean the draft is).

The weights follow DESIGN §7 ("the gate blocks drafts that contain links or claims that no source
supports"): an unsupported link or figure alone reaches the default block threshold (0.7). Signals
that a person can judge in seconds (a role address, a repeat contact, a weak voice match, a lead
message that tries to instruct the writer) stay below it and send the email to review.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

SEND, DRAFT, BLOCK = "SEND", "DRAFT", "BLOCK"
_RANK = {SEND: 0, DRAFT: 1, BLOCK: 2}

W_UNKNOWN_LINK = 0.8
W_UNSUPPORTED_FIGURE = 0.75
W_INJECTION = 0.6
W_NO_REPLY = 0.9
W_ROLE_ADDRESS = 0.35
W_OPTED_OUT = 1.0
W_RECENT_CONTACT = 0.4
W_LOW_VOICE = 0.3


@dataclasses.dataclass(frozen=True)
class Signal:
    """One reason a draft is risky.

    Attributes:
        code: A stable name (``unknown_link``, ``opted_out``...) for dashboards and tests.
        reason: The sentence a person reads.
        weight: Its contribution to the score, 0..1.
        floor: The least action it forces (``SEND`` = none).
    """

    code: str
    reason: str
    weight: float
    floor: str = SEND


def score(signals: Iterable[Signal]) -> float:
    """The combined 0..1 risk of some signals (0 when there are none)."""
    clean = 1.0
    for signal in signals:
        clean *= 1.0 - min(max(signal.weight, 0.0), 1.0)
    return round(1.0 - clean, 4)


def strongest_floor(signals: Iterable[Signal]) -> str:
    return max((s.floor for s in signals), key=_RANK.__getitem__, default=SEND)


def assess(*, subject: str, body: str, context: dict[str, Any], voice_score: float | None,
           min_voice_score: float, recent_contact_days_limit: int) -> list[Signal]:
    """Every risk signal of a draft, in a stable order.

    Args:
        subject: The draft's subject.
        body: The draft's body.
        context: What the draft was written from (``draft_emails.context``); missing keys mean unknown.
        voice_score: How much the draft sounds like its rep (0..1), None when it was not scored.
        min_voice_score: Below it the draft goes to review.
        recent_contact_days_limit: An email to the same contact fewer days ago than this sends the
            draft to review.
    """
    lead = _dict(context.get("lead"))
    company = _dict(context.get("company"))
    text = f"{subject}\n{body}"
    signals: list[Signal] = []

    allowed = [u for u in context.get("allowed_links") or [] if isinstance(u, str)]
    for link in unknown_links(text, allowed):
        why = "no links are supported for this rep" if not allowed else "it is not one of the rep's own links"
        signals.append(Signal("unknown_link", f"The draft links to {link}, but {why}.", W_UNKNOWN_LINK))

    sources = [str(context.get("supported_text") or ""), str(lead.get("message") or ""), _company_facts(company)]
    figures = unsupported_figures(text, sources)
    if figures:
        shown = ", ".join(f'"{f}"' for f in figures[:5])
        signals.append(Signal("unsupported_figure",
                              f"The draft states {shown}, which no source the draft was written from supports.",
                              W_UNSUPPORTED_FIGURE))

    markers = injection_markers(str(lead.get("message") or ""))
    if markers:
        signals.append(Signal("prompt_injection",
                              "The lead's message contains text that tries to instruct the writer ("
                              + ", ".join(markers) + "); a person should read the draft.", W_INJECTION, DRAFT))

    kind = address_kind(lead.get("email"))
    if kind == "no_reply":
        signals.append(Signal("no_reply_address", "The lead's address is a no-reply or system mailbox; "
                                                  "nobody would read the email.", W_NO_REPLY, BLOCK))
    elif kind == "role":
        signals.append(Signal("role_address", "The lead's address is a shared role mailbox, not a person.",
                              W_ROLE_ADDRESS, DRAFT))

    if lead.get("opted_out") is True:
        signals.append(Signal("opted_out", "The contact opted out of email in HubSpot.", W_OPTED_OUT, BLOCK))

    days = context.get("recent_contact_days")
    if isinstance(days, (int, float)) and not isinstance(days, bool) and 0 <= days < recent_contact_days_limit:
        signals.append(Signal("recent_contact",
                              f"This contact was emailed {int(days)} day(s) ago (less than "
                              f"{recent_contact_days_limit}); a person should decide on another email.",
                              W_RECENT_CONTACT, DRAFT))

    if voice_score is None:
        signals.append(Signal("low_voice", "The draft has no voice-match score.", W_LOW_VOICE, DRAFT))
    elif voice_score < min_voice_score:
        signals.append(Signal("low_voice", f"The draft's voice match {voice_score:.2f} is below "
                                           f"{min_voice_score:.2f}.", W_LOW_VOICE, DRAFT))
    return signals


# --- links ---------------------------------------------------------------------------------------

_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"'()\[\]{}]+")
_TRAILING = ".,;:!?*_'\""


def find_links(text: str) -> list[str]:
    """http(s) and ``www.`` links in ``text`` (markdown, HTML attributes and plain text), in order."""
    found = []
    for match in _URL.finditer(text):
        link = match.group(0).rstrip(_TRAILING)
        if link not in found:
            found.append(link)
    return found


def normalise_link(link: str) -> str:
    """A link as compared: no scheme, no ``www.``, lower-case host, no fragment, no trailing slash."""
    raw = link.strip()
    if not re.match(r"(?i)^https?://", raw):
        raw = "http://" + raw
    parts = urllib.parse.urlsplit(raw)
    host = (parts.hostname or "").lower().removeprefix("www.")
    port = f":{parts.port}" if parts.port and parts.port not in (80, 443) else ""
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{host}{port}{path}{query}"


def unknown_links(text: str, allowed: Sequence[str]) -> list[str]:
    """Links in ``text`` that are not among ``allowed`` (every link when none is allowed)."""
    known = {normalise_link(u) for u in allowed}
    return [link for link in find_links(text) if normalise_link(link) not in known]


# --- figures -------------------------------------------------------------------------------------

_NUM = r"\d+(?:[.,]\d+)*(?:\s?(?:k|m|bn|b|million|billion|thousand)\b)?"
_MONEY = re.compile(
    rf"(?i)(?:[$€£¥]\s?{_NUM}|\b(?:usd|eur|gbp)\s?{_NUM}|\b{_NUM}\s?(?:usd|eur|gbp|dollars|euros|pounds)\b)")
_PERCENT = re.compile(rf"(?i)\b{_NUM}\s?(?:%|percent\b|per cent\b|pct\b)")
_MULTIPLE = re.compile(r"(?i)\b\d+(?:\.\d+)?\s?(?:x|times)\s+(?:faster|more|better|higher|lower|less|fewer|"
                       r"cheaper|quicker|the)\b|\b\d+(?:\.\d+)?x\b")
_COUNT_NOUNS = ("customers", "clients", "users", "companies", "businesses", "teams", "brands", "reps",
                "accounts", "partners", "organizations", "organisations", "members", "installs", "downloads",
                "countries", "employees", "people", "agencies", "integrations", "leads", "deals", "subscribers",
                "stores", "locations")
_COUNT = re.compile(rf"(?i)\b({_NUM})\+?\s+(?:\w+\s+)?({'|'.join(_COUNT_NOUNS)})\b")
_NUMBER = re.compile(rf"(?i){_NUM}")
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9, "billion": 1e9}


def _value(token: str) -> float | None:
    match = re.search(r"(?i)(\d+(?:[.,]\d+)*)(?:\s?(k|m|bn|b|million|billion|thousand)\b)?", token)
    if not match:
        return None
    digits, scale = match.group(1), (match.group(2) or "").lower()
    # "1,200" and "1.200" are thousands; "1.5" and "2,5" are decimals (a group of 3 digits is thousands).
    groups = re.split(r"[.,]", digits)
    if len(groups) > 1 and all(len(g) == 3 for g in groups[1:]):
        number = float("".join(groups))
    elif len(groups) == 2:
        number = float(f"{groups[0]}.{groups[1]}")
    else:
        number = float("".join(groups))
    return number * _SCALE.get(scale, 1.0)


def _claims(text: str) -> list[tuple[str, str, float | None, str]]:
    """(surface, kind, value, noun) of every figure in ``text``."""
    claims = []
    for kind, pattern in (("money", _MONEY), ("percent", _PERCENT), ("multiple", _MULTIPLE)):
        for m in pattern.finditer(text):
            claims.append((m.group(0).strip(), kind, _value(m.group(0)), ""))
    for m in _COUNT.finditer(text):
        claims.append((m.group(0).strip(), "count", _value(m.group(1)), m.group(2).lower()))
    return claims


def unsupported_figures(text: str, sources: Sequence[str]) -> list[str]:
    """Prices and figures in ``text`` that none of ``sources`` contains.

    A figure is supported when the same kind of figure with the same value appears in a source
    (``$1,200`` by ``USD 1200``; ``30%`` by ``30 percent``), or when a source contains the same number
    next to the same noun (``500 customers``).
    """
    joined = "\n".join(s for s in sources if s)
    supported = {(kind, value, noun) for _, kind, value, noun in _claims(joined)}
    numbers = {_value(m.group(0)) for m in _NUMBER.finditer(joined)}
    out = []
    for surface, kind, value, noun in _claims(text):
        if value is None:
            continue
        if (kind, value, noun) in supported:
            continue
        if kind == "count" and value in numbers and re.search(rf"(?i)\b{re.escape(noun)}\b", joined):
            continue
        if surface not in out:
            out.append(surface)
    return out


# --- prompt injection ----------------------------------------------------------------------------

_INJECTION: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ignore previous instructions", re.compile(
        r"(?i)\b(?:ignore|disregard|forget|override|skip)\b[\w\s,]{0,30}?\b(?:previous|prior|above|earlier|"
        r"preceding|all|any|your|the|these)\b[\w\s]{0,20}?\b(?:instructions?|prompts?|rules|directions|"
        r"guidelines)\b")),
    ("system prompt", re.compile(r"(?i)\b(?:system|developer|hidden|initial|original)\s+(?:prompt|message|"
                                 r"instructions?)\b")),
    ("role-play directive", re.compile(
        r"(?i)\b(?:you\s+are\s+now|from\s+now\s+on\s+you|act\s+as\s+(?:an?\s+)?(?:ai|assistant|model|"
        r"system|admin)|pretend\s+(?:to\s+be|you\s+are)|role-?play\s+as|roleplay|jailbreak|do\s+anything\s+now|"
        r"developer\s+mode)\b")),
    ("instructions to the writer", re.compile(
        r"(?i)(?:\bnew\s+instructions?\s*:|\b(?:assistant|ai|chatbot|language\s+model|llm)\s*[,:]\s*"
        r"(?:please\s+)?(?:write|include|add|insert|send|say|reply)|\b(?:include|insert|add)\s+(?:this|the\s+"
        r"following)\s+link\b|\breveal\s+(?:your|the)\s+(?:prompt|instructions))")),
    ("chat-format markup", re.compile(r"(?i)<\|im_(?:start|end)\|>|\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*"
                                      r"(?:system|instruction|assistant)\b",
                                      re.M)),
    ("hidden text", re.compile("[\u200b\u200c\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
                               r"|<!--[\s\S]*?-->|<\s*(?:span|div|p)[^>]*display\s*:\s*none", re.I)),
)


def injection_markers(message: str) -> list[str]:
    """Labels of the prompt-injection markers in a lead's message (never the message itself)."""
    return [label for label, pattern in _INJECTION if pattern.search(message)]


# --- addresses -----------------------------------------------------------------------------------

_NO_REPLY = re.compile(r"^(?:no-?reply|do-?not-?reply|donotreply|noreply-.*|no_reply|postmaster|mailer-daemon|"
                       r"bounces?|bounce-.*|abuse|devnull|null|nobody)$")
_ROLE = frozenset({"info", "sales", "support", "admin", "administrator", "contact", "hello", "hi", "office",
                   "marketing", "billing", "accounts", "accounting", "finance", "hr", "jobs", "careers", "team",
                   "help", "helpdesk", "webmaster", "enquiries", "inquiries", "service", "customerservice",
                   "press", "media", "legal", "privacy", "security", "it", "ops", "operations", "orders",
                   "reception", "general", "mail", "email", "feedback", "partners"})


def address_kind(email: Any) -> str | None:
    """``no_reply`` for mailboxes nobody reads, ``role`` for shared mailboxes, else None (a person)."""
    if not isinstance(email, str) or "@" not in email:
        return None
    local = email.strip().lower().rsplit("@", 1)[0].split("+", 1)[0]
    if _NO_REPLY.match(local):
        return "no_reply"
    if local in _ROLE:
        return "role"
    return None


def _company_facts(company: dict[str, Any]) -> str:
    employees = company.get("employees")
    return f"{employees} employees" if isinstance(employees, (int, float)) and not isinstance(employees, bool) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
