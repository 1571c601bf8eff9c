"""Send times inside the recipient's business hours: zones, DST, weekends, evenings, the spread."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from shared.gate import GateSettings
from shared.gate.schedule import in_business_hours, next_send_time, resolve_zone, spread

UTC = dt.timezone.utc
NY = zoneinfo.ZoneInfo("America/New_York")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NO_SPREAD = GateSettings(spread_seconds=0)


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("now, zones, expected_local", [
    # Inside hours: now.
    (utc(2025, 1, 15, 15, 0), ["America/New_York"], dt.datetime(2025, 1, 15, 10, 0, tzinfo=NY)),
    # Before opening: 09:00 the same day.
    (utc(2025, 1, 15, 12, 0), ["America/New_York"], dt.datetime(2025, 1, 15, 9, 0, tzinfo=NY)),
    # Evening: 09:00 the next day.
    (utc(2025, 1, 15, 23, 30), ["America/New_York"], dt.datetime(2025, 1, 16, 9, 0, tzinfo=NY)),
    # Exactly at closing: the next day (the window is half-open).
    (utc(2025, 1, 15, 22, 0), ["America/New_York"], dt.datetime(2025, 1, 16, 9, 0, tzinfo=NY)),
    # Friday evening and Saturday: Monday 09:00.
    (utc(2025, 1, 17, 23, 0), ["America/New_York"], dt.datetime(2025, 1, 20, 9, 0, tzinfo=NY)),
    (utc(2025, 1, 18, 15, 0), ["America/New_York"], dt.datetime(2025, 1, 20, 9, 0, tzinfo=NY)),
    # Monday 01:00 UTC is still Sunday evening in New York: Monday 09:00 New York.
    (utc(2025, 1, 20, 1, 0), ["America/New_York"], dt.datetime(2025, 1, 20, 9, 0, tzinfo=NY)),
    # Already Monday 02:00 in Berlin while Sunday in UTC: Monday 09:00 Berlin.
    (utc(2025, 1, 19, 23, 0), ["Europe/Berlin"], dt.datetime(2025, 1, 20, 9, 0, tzinfo=BERLIN)),
])
def test_next_window(now, zones, expected_local):
    assert next_send_time(now, "wf-1", zones, NO_SPREAD) == expected_local.astimezone(UTC)


def test_spring_forward_moves_opening_by_an_hour_in_utc():
    # New York springs forward on Sunday 2025-03-09: Friday opens at 14:00 UTC, Monday at 13:00 UTC.
    friday_evening = utc(2025, 3, 7, 23, 0)
    monday = next_send_time(friday_evening, "wf-1", ["America/New_York"], NO_SPREAD)
    assert monday == utc(2025, 3, 10, 13, 0)
    assert next_send_time(utc(2025, 3, 7, 1, 0), "wf-1", ["America/New_York"], NO_SPREAD) == utc(2025, 3, 7, 14, 0)


def test_fall_back_in_europe():
    # Berlin falls back on Sunday 2025-10-26: Friday opens at 07:00 UTC, Monday at 08:00 UTC.
    assert next_send_time(utc(2025, 10, 24, 5, 0), "wf", ["Europe/Berlin"], NO_SPREAD) == utc(2025, 10, 24, 7, 0)
    assert next_send_time(utc(2025, 10, 24, 18, 0), "wf", ["Europe/Berlin"], NO_SPREAD) == utc(2025, 10, 27, 8, 0)


def test_hours_set_inside_a_dst_gap_still_land_on_a_real_instant():
    settings = GateSettings(business_start=dt.time(2, 30), business_end=dt.time(4, 0), spread_seconds=0,
                            business_days=(7,))
    # 02:30 does not exist in New York on 2025-03-09; the window opens at the first real instant after it.
    start = next_send_time(utc(2025, 3, 9, 0, 0), "wf", ["America/New_York"], settings)
    assert start.astimezone(NY).hour == 3 and start.astimezone(NY).date() == dt.date(2025, 3, 9)


@pytest.mark.parametrize("zones, expected", [
    (["Asia/Tokyo", "America/New_York"], "Asia/Tokyo"),
    ([None, "America/New_York"], "America/New_York"),
    (["Not/AZone", ""], "UTC"),
    (["../../etc/passwd", "Europe/Berlin"], "Europe/Berlin"),
    ([], "UTC"),
])
def test_zone_fallback(zones, expected):
    assert str(resolve_zone(zones)) == expected


def test_missing_zone_means_utc_hours():
    assert next_send_time(utc(2025, 1, 15, 7, 0), "wf", [None, None], NO_SPREAD) == utc(2025, 1, 15, 9, 0)


def test_spread_is_deterministic_bounded_and_varies_by_workflow():
    values = {spread(f"wf-{i}", 900) for i in range(200)}
    assert all(0 <= v < 900 for v in values) and len(values) > 100
    assert spread("wf-7", 900) == spread("wf-7", 900)
    assert spread("wf-7", 0) == 0


def test_a_batch_is_spread_inside_the_window_and_never_past_its_end():
    settings = GateSettings(spread_seconds=900)
    inside = utc(2025, 1, 15, 15, 0)  # 10:00 New York
    times = [next_send_time(inside, f"wf-{i}", ["America/New_York"], settings) for i in range(100)]
    assert len(set(times)) > 50
    assert all(inside <= t < inside + dt.timedelta(seconds=900) for t in times)
    near_close = utc(2025, 1, 15, 21, 58)  # 16:58 New York: two minutes left
    late = [next_send_time(near_close, f"wf-{i}", ["America/New_York"], settings) for i in range(100)]
    assert all(in_business_hours(t, ["America/New_York"]) for t in late)
    assert next_send_time(inside, "wf-3", ["America/New_York"], settings) == times[3]


def test_custom_days_and_hours():
    settings = GateSettings(business_days=(7,), business_start=dt.time(10), business_end=dt.time(12), spread_seconds=0)
    wednesday = utc(2025, 1, 15, 11, 0)
    assert next_send_time(wednesday, "wf", ["UTC"], settings) == utc(2025, 1, 19, 10, 0)


def test_in_business_hours():
    assert in_business_hours(utc(2025, 1, 15, 15, 0), ["America/New_York"])
    assert not in_business_hours(utc(2025, 1, 18, 15, 0), ["America/New_York"])  # Saturday
    assert not in_business_hours(utc(2025, 1, 15, 22, 30), ["America/New_York"])
