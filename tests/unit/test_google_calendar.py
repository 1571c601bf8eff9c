"""Meeting slots from free/busy, in both working days, labelled in the lead's zone; spotting meeting requests."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from shared.accounts_google.calendar import free_slots, propose_slots, wants_meeting
from shared.errors import DependencyDown

UTC = dt.timezone.utc
NY = zoneinfo.ZoneInfo("America/New_York")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
MONDAY_8_UTC = dt.datetime(2025, 1, 13, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", [
    "Could we schedule a call next week?", "Happy to see a demo.", "What times work for you?",
    "Can we talk on Thursday?", "Send me an invite for Tuesday", "Let's hop on a quick call.",
    "Do you have a calendar link?", "Share your availability please"])
def test_requests_for_a_meeting_are_spotted(text):
    assert wants_meeting(text)


@pytest.mark.parametrize("text", [
    "Thanks, the pricing sheet is all I needed.", "No need for a call, just send the PDF.",
    "We don't need a demo right now.", "", None, "He called it a so-called solution."])
def test_other_messages_are_not_meeting_requests(text):
    assert not wants_meeting(text)


def test_slots_fall_inside_both_working_days_on_different_days_in_the_leads_zone():
    # Rep in Berlin (9-17 = 08:00-16:00 UTC), lead in New York (9-17 = 14:00-22:00 UTC): overlap 14:00-16:00 UTC.
    slots = free_slots([], rep_zone=BERLIN, lead_zone=NY, now=MONDAY_8_UTC, count=3)
    assert [s.start for s in slots] == [dt.datetime(2025, 1, d, 14, 0, tzinfo=UTC) for d in (13, 14, 15)]
    assert slots[0].label == "Monday 13 January, 09:00–09:30 (America/New_York)"


def test_busy_times_and_weekends_are_skipped():
    friday = dt.datetime(2025, 1, 17, 8, 0, tzinfo=UTC)
    busy = [(dt.datetime(2025, 1, 17, 14, 0, tzinfo=UTC), dt.datetime(2025, 1, 17, 15, 15, tzinfo=UTC))]
    slots = free_slots(busy, rep_zone=BERLIN, lead_zone=NY, now=friday, count=2)
    # 15:15 is busy until a quarter past: the next half-hour boundary is 15:30; Monday follows the weekend.
    assert [s.start for s in slots] == [dt.datetime(2025, 1, 17, 15, 30, tzinfo=UTC),
                                        dt.datetime(2025, 1, 20, 14, 0, tzinfo=UTC)]


def test_no_slots_without_overlapping_hours():
    # London 09-17 is 09:00-17:00 UTC; Sydney 09-17 (summer time) is 22:00-06:00 UTC.
    sydney = zoneinfo.ZoneInfo("Australia/Sydney")
    assert free_slots([], rep_zone=zoneinfo.ZoneInfo("Europe/London"), lead_zone=sydney, now=MONDAY_8_UTC) == []


class _Calendar:
    def __init__(self, fail=False):
        self.fail, self.calls = fail, []

    def busy(self, rep_id, start, end):
        self.calls.append((rep_id, start, end))
        if self.fail:
            raise DependencyDown("calendar down")
        return []


def test_propose_slots_reads_the_reps_calendar_and_degrades_to_none():
    rep = {"id": "r1", "time_zone": "Europe/Berlin", "google_status": "connected"}
    calendar = _Calendar()
    slots = propose_slots(None, rep, "America/New_York", MONDAY_8_UTC, calendar=calendar)
    assert len(slots) == 3 and slots[0]["label"].endswith("(America/New_York)")
    assert calendar.calls[0][0] == "r1"
    assert propose_slots(None, rep, "America/New_York", MONDAY_8_UTC, calendar=_Calendar(fail=True)) == []
    assert propose_slots(None, {**rep, "google_status": "revoked"}, None, MONDAY_8_UTC, calendar=calendar) == []
