"""When an email leaves: the next moment inside the recipient's business hours.

The zone is the lead's, else the rep's, else UTC (the first that ``zoneinfo`` knows). Business hours are
wall-clock times on business days in that zone, so a daylight-saving change moves them with the clock:
09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.

A send that is due now still gets a small delay derived from the workflow id, so a batch of leads that
arrived together does not leave in the same second (and each workflow gets the same time on a retry).
The delay never leaves the window it starts in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections.abc import Iterable

from shared.gate import GateSettings

UTC = dt.timezone.utc


def resolve_zone(candidates: Iterable[str | None]) -> zoneinfo.ZoneInfo | dt.timezone:
    """The first valid IANA zone among ``candidates`` (lead's, then rep's), else UTC."""
    for name in candidates:
        if not isinstance(name, str) or not name.strip():
            continue
        try:
            return zoneinfo.ZoneInfo(name.strip())
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return UTC


def spread(workflow_id: str, seconds: int) -> int:
    """A deterministic delay in ``[0, seconds)`` for one workflow."""
    if seconds <= 0:
        return 0
    return int.from_bytes(hashlib.sha256(workflow_id.encode()).digest()[:8], "big") % seconds


def next_send_time(now: dt.datetime, workflow_id: str, zones: Iterable[str | None],
                   settings: GateSettings = GateSettings()) -> dt.datetime:
    """The moment to send, in UTC.

    Args:
        now: The current time (timezone-aware; naive means UTC).
        workflow_id: The workflow (picks its spread).
        zones: Candidate zone names in order of preference; invalid or empty ones are skipped.
        settings: Business days, hours and the spread.

    Returns:
        ``now`` plus the workflow's spread when ``now`` is inside business hours, else the start of the
        next business window plus the spread; always inside a window.
    """
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    zone = resolve_zone(zones)
    local_day = now.astimezone(zone).date()
    for offset in range(0, 15):  # two weeks always contain a business day (at least one is configured)
        day = local_day + dt.timedelta(days=offset)
        if day.isoweekday() not in settings.business_days:
            continue
        start, end = _window(day, zone, settings)
        if now >= end:
            continue
        begin = max(now, start)
        room = int((end - begin).total_seconds()) - 1  # stay strictly before the end
        return begin + dt.timedelta(seconds=spread(workflow_id, min(settings.spread_seconds, max(room, 0))))
    raise ValueError("no business day within two weeks")  # unreachable with validated settings


def in_business_hours(moment: dt.datetime, zones: Iterable[str | None],
                      settings: GateSettings = GateSettings()) -> bool:
    """Whether ``moment`` is inside business hours in the first valid zone of ``zones``."""
    zone = resolve_zone(zones)
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    day = moment.astimezone(zone).date()
    if day.isoweekday() not in settings.business_days:
        return False
    start, end = _window(day, zone, settings)
    return start <= moment < end


def _window(day: dt.date, zone, settings: GateSettings) -> tuple[dt.datetime, dt.datetime]:
    # Wall times → UTC. A wall time in a spring-forward gap (only if hours are set around 02:00) is
    # read with the offset before the change, which lands just after the gap: still the right hour.
    start = dt.datetime.combine(day, settings.business_start, tzinfo=zone).astimezone(UTC)
    end = dt.datetime.combine(day, settings.business_end, tzinfo=zone).astimezone(UTC)
    return start, end
