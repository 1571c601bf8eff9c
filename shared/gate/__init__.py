"""The gate: decides whether a draft is sent, left as a Gmail draft for the rep, or blocked.

- ``decide``: the pure decision (flags, breakers, guardrails, PII, risk, quota) → ``Decision``.
- ``risk``: the signals that make a draft risky and the 0..1 score they add up to.
- ``schedule``: the next moment inside the recipient's business hours.
- ``breakers``: circuit breakers per outside service, shared by every instance through the document store.
- ``step``: ``gate_step`` loads a drafted workflow, decides, persists and hands over to ``send``.

Settings the gate reads are gathered in ``GateSettings``; each has a safe default, so the gate runs
before its fields are declared in ``shared/config.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclasses.dataclass(frozen=True)
class GateSettings:
    """Thresholds and business hours of the gate.

    Attributes:
        review_threshold: A risk score at or above it leaves the email as a draft for the rep.
        block_threshold: A risk score at or above it blocks the email.
        min_voice_score: A voice score below it leaves the email as a draft (the rep should read it).
        recent_contact_days: Another email to the same contact within this many days is left as a draft.
        warmup_start_per_day: The daily limit of a newly connected mailbox in its first week, doubled
            every week until the rep's own limit; 0 turns the ramp off.
        business_days: ISO weekdays (1 = Monday) on which emails are sent.
        business_start: Local time sending starts.
        business_end: Local time sending ends.
        spread_seconds: At most this much is added to a send time, per workflow, so a batch does not
            leave at one instant.
        hold_max_seconds: How long a draft is held while Gmail's circuit is open before the workflow
            is failed for a person to look at.
    """

    review_threshold: float = 0.3
    block_threshold: float = 0.7
    min_voice_score: float = 0.5
    recent_contact_days: int = 14
    warmup_start_per_day: int = 10
    business_days: tuple[int, ...] = (1, 2, 3, 4, 5)
    business_start: dt.time = dt.time(9, 0)
    business_end: dt.time = dt.time(17, 0)
    spread_seconds: int = 900
    hold_max_seconds: int = 86_400

    def __post_init__(self) -> None:
        if not 0 <= self.review_threshold <= self.block_threshold <= 1:
            raise ValueError("gate thresholds need 0 <= review <= block <= 1")
        if not self.business_days or any(d not in range(1, 8) for d in self.business_days):
            raise ValueError("business days must be a non-empty set of ISO weekdays 1..7")
        if self.business_start >= self.business_end:
            raise ValueError("business hours must start before they end")

    @classmethod
    def from_settings(cls, settings: Any) -> GateSettings:
        """Read the gate's fields from ``Settings``; a field the settings lack keeps its default."""
        base = cls()

        def pick(name: str, default: Any, parse) -> Any:
            value = getattr(settings, name, None)
            if value is None or value == "":
                return default
            return parse(value)

        return cls(
            review_threshold=pick("gate_review_threshold", base.review_threshold, float),
            block_threshold=pick("gate_block_threshold", base.block_threshold, float),
            min_voice_score=pick("gate_min_voice_score", base.min_voice_score, float),
            recent_contact_days=pick("gate_recent_contact_days", base.recent_contact_days, int),
            warmup_start_per_day=pick("gate_warmup_start_per_day", base.warmup_start_per_day, int),
            business_days=pick("gate_business_days", base.business_days, parse_days),
            business_start=pick("gate_business_start", base.business_start, parse_time),
            business_end=pick("gate_business_end", base.business_end, parse_time),
            spread_seconds=pick("gate_send_spread_seconds", base.spread_seconds, int),
            hold_max_seconds=pick("gate_hold_max_seconds", base.hold_max_seconds, int),
        )


def parse_days(value: Any) -> tuple[int, ...]:
    """``"mon,tue,wed"`` or ``"1,2,3"`` (or a sequence of either) → ISO weekdays."""
    items = value.split(",") if isinstance(value, str) else list(value)
    days = set()
    for item in items:
        text = str(item).strip().lower()
        if not text:
            continue
        if text.isdigit():
            days.add(int(text))
        elif text[:3] in _DAY_NAMES:
            days.add(_DAY_NAMES.index(text[:3]) + 1)
        else:
            raise ValueError(f"unknown weekday {item!r}")
    return tuple(sorted(days))


def parse_time(value: Any) -> dt.time:
    """``"09:00"`` → ``time(9, 0)``; a ``time`` is kept."""
    if isinstance(value, dt.time):
        return value
    return dt.time.fromisoformat(str(value).strip())
