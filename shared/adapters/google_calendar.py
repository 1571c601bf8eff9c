"""Google Calendar free/busy with the rep's own grant (scope ``calendar.freebusy``).

One call, ``POST /calendar/v3/freeBusy`` (https://developers.google.com/calendar/api/v3/reference/freebusy/query):
``{"timeMin", "timeMax", "items": [{"id": "primary"}]}`` → ``calendars.primary.busy`` as RFC 3339
``{start, end}`` pairs. The query window may span at most about two months, far above what is asked here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.adapters.gmail_sync import GoogleAccountApi
from shared.adapters.google_session import checked_json, request_json
from shared.errors import DependencyDown


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


class GoogleCalendar:
    """The rep's primary calendar's busy times.

    Args:
        account: The rep sessions (shared with the Gmail calls, so one cached access token serves both).
        timeout: Seconds per request.
    """

    def __init__(self, account: GoogleAccountApi, *, timeout: float = 15.0):
        self._account = account
        self._url = account.api_base_url + "/calendar/v3/freeBusy"
        self._timeout = timeout

    def busy(self, rep_id: Any, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        """Busy intervals of the rep's primary calendar between ``start`` and ``end`` (UTC, sorted)."""
        session = self._account.session(rep_id)
        payload = {"timeMin": start.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
                   "timeMax": end.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
                   "items": [{"id": "primary"}]}
        response = request_json(self._account, session, "POST", self._url, params=None, payload=payload,
                                what="Google Calendar", timeout=self._timeout)
        body = checked_json(response, "Google Calendar")
        calendar = (body.get("calendars") or {}).get("primary") or {}
        if calendar.get("errors"):
            reason = str((calendar["errors"][0] or {}).get("reason") or "error")
            raise DependencyDown(f"Google Calendar could not read the rep's calendar ({reason}).")
        return sorted((_parse(b["start"]), _parse(b["end"])) for b in calendar.get("busy") or [])
