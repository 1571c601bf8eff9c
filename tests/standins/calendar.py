"""Google Calendar's ``freeBusy.query`` on the Google stand-in: ``POST /calendar/v3/freeBusy``.

Busy times are set per account (``busy[account] = [(start, end), ...]`` as aware datetimes) and answered
clipped to ``timeMin``/``timeMax`` in the documented shape:
``{"kind": "calendar#freeBusy", "timeMin", "timeMax", "calendars": {"primary": {"busy": [{"start", "end"}]}}}``.
"""

from __future__ import annotations

import datetime as dt

from tests.standins.google import GoogleStandIn, google_error
from tests.standins.loopback import Reply, Request


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class CalendarStandIn:
    def __init__(self, google: GoogleStandIn):
        self.google = google
        self.busy: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
        self.queries: list[dict] = []
        google.route("POST", r"/calendar/v3/freeBusy", self._free_busy)

    def _free_busy(self, request: Request) -> Reply:
        account = self.google.authorized(request)
        if account is None:
            return google_error(401, "authError", "Request had invalid authentication credentials.")
        body = request.json() or {}
        self.queries.append(body)
        try:
            start, end = _parse(body["timeMin"]), _parse(body["timeMax"])
        except (KeyError, ValueError):
            return google_error(400, "badRequest", "Bad Request")
        if end <= start:
            return google_error(400, "timeRangeEmpty", "The specified time range is empty.")
        calendars = {}
        for item in body.get("items") or []:
            busy = [{"start": _rfc3339(max(s, start)), "end": _rfc3339(min(e, end))}
                    for s, e in sorted(self.busy.get(account, [])) if s < end and e > start]
            calendars[item.get("id")] = {"busy": busy}
        return Reply(200, {"kind": "calendar#freeBusy", "timeMin": body["timeMin"], "timeMax": body["timeMax"],
                           "calendars": calendars})
