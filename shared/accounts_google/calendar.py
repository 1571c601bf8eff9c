"""Meeting slots a draft can offer: free 30-minute times in both the rep's and the lead's working day.

``wants_meeting(text)`` says whether a lead is asking for a call, a meeting or a demo;
``propose_slots`` reads the rep's free/busy (scope ``calendar.freebusy``: busy times only, never event
details) and offers a few slots on different business days, written in the lead's time zone.

The draft step calls them like this (when the rep's Google account is connected)::

    if wants_meeting(lead_message) and rep["google_status"] == "connected":
        inputs["meeting_slots"] = [s["label"] for s in propose_slots(deps, rep, lead_time_zone, now)]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import zoneinfo
from typing import Any

from shared.accounts_google import CONNECTED
from shared.errors import AppError

log = logging.getLogger(__name__)

SLOT = dt.timedelta(minutes=30)
LOOKAHEAD_DAYS = 10  # calendar days searched: two working weeks cover holidays and full calendars
MIN_NOTICE = dt.timedelta(hours=2)
WORKDAY = (dt.time(9, 0), dt.time(17, 0))
WORKDAYS = frozenset({0, 1, 2, 3, 4})  # Monday to Friday

_ASK = re.compile(
    r"\b(?:"
    r"demo|walk-?through|"
    r"(?:schedule|set\s+up|book|arrange|find|grab|hop\s+on|jump\s+on|get\s+on|have)\s+(?:a\s+|some\s+)?"
    r"(?:quick\s+|short\s+|brief\s+|\d+[- ]?min(?:ute)?\s+)?(?:call|meeting|chat|time|slot)|"
    r"(?:can|could|shall|should)\s+we\s+(?:talk|meet|chat|speak|connect)|"
    r"(?:when|what\s+times?)\s+(?:are\s+you|would\s+you\s+be|works?)\s*(?:free|available)?|"
    r"your\s+availability|available\s+(?:for|to)\s+(?:a\s+)?(?:call|meeting|chat|talk|meet)|"
    r"calendar\s+(?:link|invite)|send\s+(?:me\s+)?(?:an?\s+)?invite|"
    r"meet(?:ing)?\s+(?:next|this)\s+week"
    r")\b", re.IGNORECASE)
_DECLINE = re.compile(r"\b(?:no\s+need\s+(?:for|to)|don'?t\s+(?:need|want)|not\s+(?:interested|looking)\s+(?:in|for)"
                      r"|no\s+(?:call|meeting|demo))\b[^.!?]{0,40}", re.IGNORECASE)


def wants_meeting(text: str | None) -> bool:
    """Whether the lead asks for a call, a meeting or a demo.

    A sentence that declines one ("no need for a demo") does not count.
    """
    if not text:
        return False
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text[:20_000]):
        if _ASK.search(sentence) and not _DECLINE.search(sentence):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class Slot:
    start: dt.datetime  # UTC
    end: dt.datetime
    label: str  # in the lead's time zone

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "label": self.label}


def _zone(name: str | None, fallback: Any) -> Any:
    if name:
        try:
            return zoneinfo.ZoneInfo(str(name).strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return fallback


def _in_workday(moment: dt.datetime, zone: Any) -> bool:
    start, end = moment.astimezone(zone), (moment + SLOT).astimezone(zone)
    return (start.weekday() in WORKDAYS and start.date() == end.date()
            and WORKDAY[0] <= start.time() and end.time() <= WORKDAY[1])


def label(start: dt.datetime, zone: Any) -> str:
    """``Tuesday 14 January, 10:00–10:30 (America/New_York)`` in ``zone``."""
    local, end = start.astimezone(zone), (start + SLOT).astimezone(zone)
    name = getattr(zone, "key", None) or "UTC"
    return f"{local:%A} {local.day} {local:%B}, {local:%H:%M}–{end:%H:%M} ({name})"


def free_slots(busy: list[tuple[dt.datetime, dt.datetime]], *, rep_zone: Any, lead_zone: Any, now: dt.datetime,
               count: int = 3) -> list[Slot]:
    """Up to ``count`` free slots, the first of each day first, so that they fall on different days.

    Args:
        busy: The rep's busy intervals (UTC).
        rep_zone: The rep's time zone.
        lead_zone: The lead's time zone.
        now: The current time (aware).
        count: How many slots.
    """
    first = now.astimezone(dt.timezone.utc) + MIN_NOTICE
    first = first.replace(second=0, microsecond=0)
    first += dt.timedelta(minutes=(-first.minute) % 30)
    last = first + dt.timedelta(days=LOOKAHEAD_DAYS)
    candidates: list[dt.datetime] = []
    moment = first
    while moment < last:
        if (_in_workday(moment, rep_zone) and _in_workday(moment, lead_zone)
                and not any(b_start < moment + SLOT and moment < b_end for b_start, b_end in busy)):
            candidates.append(moment)
        moment += SLOT
    chosen: list[dt.datetime] = []
    days: set[dt.date] = set()
    for candidate in candidates:  # one per lead-local day first ...
        day = candidate.astimezone(lead_zone).date()
        if day not in days:
            days.add(day)
            chosen.append(candidate)
        if len(chosen) == count:
            break
    for candidate in candidates:  # ... then fill up when there are fewer days than slots wanted
        if len(chosen) >= count:
            break
        if candidate not in chosen:
            chosen.append(candidate)
    return [Slot(c, c + SLOT, label(c, lead_zone)) for c in sorted(chosen)]


def propose_slots(deps: Any, rep: dict[str, Any], lead_time_zone: str | None, now: dt.datetime, *, count: int = 3,
                  calendar: Any = None) -> list[dict[str, str]]:
    """Free 30-minute slots of the rep, inside both working days, labelled in the lead's time zone.

    A draft is still worth writing without slots, so an unconnected rep or a Calendar failure gives an
    empty list (logged) rather than failing the draft.

    Args:
        deps: The container (its ``calendar`` port, or one built from its settings).
        rep: The rep (``id``, ``time_zone``, ``google_status``).
        lead_time_zone: An IANA zone name; the rep's zone when unknown.
        now: The current time (aware).
        count: How many slots (2 or 3 read best in an email).
        calendar: The ``Calendar`` port (default: ``deps``'s).

    Returns:
        ``[{"start", "end", "label"}]``, earliest first.
    """
    if rep.get("google_status", CONNECTED) != CONNECTED:
        return []
    rep_zone = _zone(rep.get("time_zone"), dt.timezone.utc)
    lead_zone = _zone(lead_time_zone, rep_zone)
    if calendar is None:
        from shared.accounts_google.wiring import calendar as calendar_of

        calendar = calendar_of(deps)
    start = now.astimezone(dt.timezone.utc)
    try:
        busy = calendar.busy(rep["id"], start, start + dt.timedelta(days=LOOKAHEAD_DAYS + 1))
    except AppError as exc:
        log.warning("no meeting slots: calendar unavailable", extra={"fields": {"rep_id": str(rep["id"]),
                                                                               "error": exc.code}})
        return []
    return [slot.as_dict() for slot in free_slots(busy, rep_zone=rep_zone, lead_zone=lead_zone, now=now, count=count)]
