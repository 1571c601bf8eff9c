"""The gate's decision, as a pure function: everything it looks at is passed in.

``decide`` turns flags, the Gmail breaker, guardrails, personal data and risk into one action, always
with the sentences that explain it:

- ``BLOCK``: the kill switch, a company outside the guardrails, blocking personal data, a signal that
  forbids the email (an opted-out contact, a no-reply address), or a risk at the block threshold.
  A block needs no Gmail, so it is decided even while Gmail is down.
- ``HOLD``: Gmail's breaker is open. Both sending and saving a Gmail draft need Gmail, and a block
  would throw away a good email, so the caller waits for Gmail (``shared.gate.step``).
- ``DRAFT``: ``DRAFT_ONLY``, a signal a person should judge, a risk at the review threshold, or (later,
  in ``with_quota``) a refused quota: a person can still send it.
- ``SEND``: none of the above.

The quota is the one input with a side effect (a reservation), so it is applied afterwards, and only to
a ``SEND``: ``with_quota``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from shared.flags import DRAFT_ONLY, Guardrails
from shared.gate import GateSettings
from shared.gate import risk
from shared.gate.breakers import OPEN
from shared.voice.pii import find_blocking_pii

SEND, DRAFT, BLOCK = risk.SEND, risk.DRAFT, risk.BLOCK
HOLD = "HOLD"

_PII_NAMES = {"card": "a payment card number", "ssn": "a US Social Security number", "iban": "an IBAN"}


@dataclasses.dataclass(frozen=True)
class GateInputs:
    """Everything the decision depends on.

    Attributes:
        subject: The draft's subject.
        body: The draft's body.
        context: ``draft_emails.context`` (lead, company, rep, allowed links, supported text...).
        voice_score: The draft's voice match, None when unscored.
        send_mode: ``DRAFT_ONLY`` or ``SEND_ALLOWED``.
        kill_switch: Whether the kill switch is on.
        gmail: The Gmail breaker's state (``closed``, ``open``, ``half_open``).
        guardrails: The company guardrails.
    """

    subject: str
    body: str
    context: dict[str, Any]
    voice_score: float | None
    send_mode: str
    kill_switch: bool
    gmail: str
    guardrails: Guardrails


@dataclasses.dataclass(frozen=True)
class Decision:
    """The gate's answer.

    Attributes:
        action: ``SEND``, ``DRAFT``, ``BLOCK`` or ``HOLD``.
        reasons: Sentences a person reads, the deciding ones first; never empty.
        risk_score: The combined risk of the draft's signals, 0..1.
        codes: Stable names of what contributed (``kill_switch``, ``guardrail``, ``pii``, signal codes...).
    """

    action: str
    reasons: tuple[str, ...]
    risk_score: float
    codes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "reasons": list(self.reasons), "risk_score": self.risk_score,
                "codes": list(self.codes)}


def decide(inputs: GateInputs, settings: GateSettings = GateSettings()) -> Decision:
    """Decide what happens to a draft (see the module docstring for the order of precedence)."""
    context = inputs.context if isinstance(inputs.context, dict) else {}
    signals = risk.assess(subject=inputs.subject, body=inputs.body, context=context,
                          voice_score=inputs.voice_score, min_voice_score=settings.min_voice_score,
                          recent_contact_days_limit=settings.recent_contact_days)
    score = risk.score(signals)
    floor = risk.strongest_floor(signals)

    blocking: list[tuple[str, str]] = []
    if inputs.kill_switch:
        blocking.append(("kill_switch", "The kill switch is on: nothing is sent."))
    company = context.get("company") if isinstance(context.get("company"), dict) else {}
    for violation in inputs.guardrails.violations(company_stage=_text(company.get("lifecycle_stage")),
                                                  industry=_text(company.get("industry")),
                                                  employees=_int(company.get("employees"))):
        blocking.append(("guardrail", f"Outside the guardrails: {violation}."))
    for kind in find_blocking_pii(f"{inputs.subject}\n{inputs.body}"):
        blocking.append(("pii", f"The draft contains {_PII_NAMES.get(kind, kind)}."))
    blocking += [(s.code, s.reason) for s in signals if s.floor == BLOCK]
    if score >= settings.block_threshold:
        blocking.append(("risk", f"The risk score {score:.2f} is at or above the block threshold "
                                 f"{settings.block_threshold:.2f}."))
    if blocking:
        return _decision(BLOCK, blocking, signals, score)

    if inputs.gmail == OPEN:
        return Decision(HOLD, ("Gmail is failing (its circuit breaker is open); the decision waits until "
                               "Gmail recovers.",), score, ("gmail_open",))

    review: list[tuple[str, str]] = []
    if inputs.send_mode == DRAFT_ONLY:
        review.append(("draft_only", "Send mode is DRAFT_ONLY: the email is left as a Gmail draft for the rep."))
    review += [(s.code, s.reason) for s in signals if s.floor == DRAFT]
    if score >= settings.review_threshold:
        review.append(("risk", f"The risk score {score:.2f} is at or above the review threshold "
                               f"{settings.review_threshold:.2f}."))
    if review or floor == DRAFT:
        return _decision(DRAFT, review, signals, score)

    passed = f"All checks passed: the risk score {score:.2f} is below the review threshold " \
             f"{settings.review_threshold:.2f}."
    return _decision(SEND, [("passed", passed)], signals, score)


def with_quota(decision: Decision, *, granted: bool, reason: str | None) -> Decision:
    """Apply a quota reservation's answer to a ``SEND``: kept when granted, a ``DRAFT`` when refused."""
    if decision.action != SEND:
        return decision
    if granted:
        return dataclasses.replace(decision, reasons=decision.reasons + ("A send quota slot is reserved.",),
                                   codes=decision.codes + ("quota_reserved",))
    refused = (reason or "The send quota is used up.").rstrip()
    return Decision(DRAFT, (f"{refused} The email is left as a Gmail draft; the rep can still send it.",)
                    + tuple(r for r in decision.reasons if not r.startswith("All checks passed")),
                    decision.risk_score, ("quota",) + tuple(c for c in decision.codes if c != "passed"))


def warmup_day_limit(connected_at: dt.datetime | None, now: dt.datetime, *, start: int,
                     rep_per_day: int) -> int | None:
    """The daily limit of a newly connected mailbox, or None once the ramp reaches the rep's own limit.

    Week one allows ``start`` a day, and each further week doubles it. An unknown connection time is
    treated as a mailbox connected today: a new mailbox that sends too much too soon is what spam
    filters punish.

    Args:
        connected_at: When the rep connected Google (``reps.google_connected_at``).
        now: The time of the decision.
        start: The first week's daily limit; 0 or less turns the ramp off.
        rep_per_day: The rep's configured daily limit.
    """
    if start <= 0:
        return None
    weeks = 0
    if connected_at is not None:
        connected = connected_at if connected_at.tzinfo else connected_at.replace(tzinfo=dt.timezone.utc)
        weeks = max(0, (now - connected).days // 7)
    limit = start * 2 ** min(weeks, 20)
    return limit if limit < rep_per_day else None


def _decision(action: str, deciding: list[tuple[str, str]], signals: list[risk.Signal], score: float) -> Decision:
    reasons: list[str] = []
    codes: list[str] = []
    for code, reason in deciding + [(s.code, s.reason) for s in signals]:
        if reason not in reasons:
            reasons.append(reason)
        if code not in codes:
            codes.append(code)
    return Decision(action, tuple(reasons), score, tuple(codes))


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
