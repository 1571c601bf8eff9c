"""Quota reservations on both DocumentStore implementations: exact under races, idempotent per workflow."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from shared import quotas
from shared.quotas import Limits

UTC = dt.timezone.utc
# A Wednesday: the ISO week runs from Monday 2025-01-27 to Sunday 2025-02-02.
NOW = dt.datetime(2025, 1, 29, 15, 0, tzinfo=UTC)
REP = "alex@example.com"


def race(n, target):
    """Run ``target(i)`` on ``n`` threads released together by a barrier; return the results in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    failures: list = []

    def run(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def test_fifty_concurrent_workflows_against_a_limit_of_twenty_get_exactly_twenty(document_store):
    store = document_store.store
    limits = Limits(per_day=20, per_week=100, global_per_day=1000)
    results = race(50, lambda i: quotas.reserve(store, REP, f"wf-{i}", limits, NOW))
    granted = [r for r in results if r.granted]
    assert len(granted) == 20
    assert {r.limit for r in results if not r.granted} == {quotas.REP_DAY}
    assert sorted(r.slots[quotas.REP_DAY] for r in granted) == list(range(20))
    use = quotas.usage(store, REP, NOW)
    assert (use.rep_day, use.rep_week, use.global_day) == (20, 20, 20)


def test_a_retried_workflow_consumes_once_even_when_its_attempts_race(document_store):
    store = document_store.store
    limits = Limits(per_day=5, per_week=10, global_per_day=10)
    results = race(12, lambda i: quotas.reserve(store, REP, "wf-retried", limits, NOW))
    assert all(r.granted for r in results)
    assert len({tuple(sorted(r.slots.items())) for r in results}) == 1
    assert quotas.usage(store, REP, NOW).rep_day == 1
    again = quotas.reserve(store, REP, "wf-retried", limits, NOW + dt.timedelta(minutes=5))
    assert again.granted and again.slots == results[0].slots
    assert quotas.usage(store, REP, NOW).rep_day == 1


def test_a_retry_on_a_later_day_returns_the_first_grant(document_store):
    store = document_store.store
    limits = Limits(per_day=1, per_week=5)
    first = quotas.reserve(store, REP, "wf-1", limits, NOW)
    later = quotas.reserve(store, REP, "wf-1", limits, NOW + dt.timedelta(days=1))
    assert later.granted and later.day == first.day == "2025-01-29"
    assert quotas.usage(store, REP, NOW + dt.timedelta(days=1)).rep_day == 0


def test_release_frees_the_slot_and_can_be_repeated(document_store):
    store = document_store.store
    limits = Limits(per_day=2, per_week=10, global_per_day=10)
    assert quotas.reserve(store, REP, "wf-1", limits, NOW).granted
    assert quotas.reserve(store, REP, "wf-2", limits, NOW).granted
    refused = quotas.reserve(store, REP, "wf-3", limits, NOW)
    assert not refused.granted and refused.limit == quotas.REP_DAY

    assert quotas.release(store, REP, "wf-1", NOW) is True
    assert quotas.usage(store, REP, NOW) == quotas.Usage(REP, "2025-01-29", "2025-W05", 1, 1, 1)
    assert quotas.release(store, REP, "wf-1", NOW) is False
    assert quotas.reserve(store, REP, "wf-3", limits, NOW).granted
    assert quotas.usage(store, REP, NOW).rep_day == 2


def test_release_on_a_later_day_frees_the_original_day(document_store):
    store = document_store.store
    limits = Limits(per_day=1, per_week=5)
    quotas.reserve(store, REP, "wf-1", limits, NOW)
    assert quotas.release(store, REP, "wf-1", NOW + dt.timedelta(days=1)) is True
    assert quotas.usage(store, REP, NOW).rep_day == 0
    assert quotas.reserve(store, REP, "wf-2", limits, NOW).granted


def test_a_released_workflow_can_reserve_again(document_store):
    store = document_store.store
    limits = Limits(per_day=1, per_week=5)
    quotas.reserve(store, REP, "wf-1", limits, NOW)
    quotas.release(store, REP, "wf-1", NOW)
    assert quotas.reserve(store, REP, "wf-1", limits, NOW).granted
    assert quotas.usage(store, REP, NOW).rep_day == 1


def test_day_week_and_global_limits_refuse_with_their_own_reason(document_store):
    store = document_store.store
    limits = Limits(per_day=2, per_week=3, global_per_day=4)
    monday = dt.datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
    tuesday = monday + dt.timedelta(days=1)

    assert [quotas.reserve(store, REP, f"a{i}", limits, monday).granted for i in range(2)] == [True, True]
    day = quotas.reserve(store, REP, "a2", limits, monday)
    assert (day.granted, day.limit) == (False, quotas.REP_DAY)
    assert "daily limit of 2" in day.reason and "2025-01-27" in day.reason and REP in day.reason

    assert quotas.reserve(store, REP, "a3", limits, tuesday).granted
    week = quotas.reserve(store, REP, "a4", limits, tuesday)
    assert (week.granted, week.limit) == (False, quotas.REP_WEEK)
    assert "weekly limit of 3" in week.reason and "2025-W05" in week.reason

    other = "sam@example.com"
    assert [quotas.reserve(store, other, f"s{i}", limits, tuesday).granted for i in range(2)] == [True, True]
    # Tuesday now has 3 of the global 4: one more rep's send fits, the next does not.
    third = "kim@example.com"
    assert quotas.reserve(store, third, "k0", limits, tuesday).granted
    capped = quotas.reserve(store, third, "k1", limits, tuesday)
    assert (capped.granted, capped.limit) == (False, quotas.GLOBAL_DAY)
    assert "global daily cap of 4" in capped.reason
    # The refused reservation gave back the day and week slots it had taken on the way.
    assert quotas.usage(store, third, tuesday) == quotas.Usage(third, "2025-01-28", "2025-W05", 1, 1, 4)


def test_periods_roll_over_with_now(document_store):
    store = document_store.store
    limits = Limits(per_day=1, per_week=2)
    sunday_late = dt.datetime(2025, 2, 2, 23, 59, 59, tzinfo=UTC)
    assert quotas.reserve(store, REP, "w1", limits, sunday_late - dt.timedelta(days=1)).granted
    assert quotas.reserve(store, REP, "w2", limits, sunday_late).granted
    assert quotas.reserve(store, REP, "w3", limits, sunday_late).limit == quotas.REP_DAY
    monday = sunday_late + dt.timedelta(seconds=1)
    fresh = quotas.reserve(store, REP, "w3", limits, monday)
    assert fresh.granted and (fresh.day, fresh.week) == ("2025-02-03", "2025-W06")
    # A time zone other than UTC is converted: 01:00 in UTC+2 on Tuesday is still Monday in UTC.
    tz = dt.timezone(dt.timedelta(hours=2))
    assert quotas.reserve(store, REP, "w4", limits, dt.datetime(2025, 2, 4, 1, 0, tzinfo=tz)).limit == quotas.REP_DAY


def test_warm_up_day_limit_applies_below_the_configured_one(document_store):
    store = document_store.store
    limits = Limits(per_day=10, per_week=50)
    assert quotas.reserve(store, REP, "n1", limits, NOW, day_limit=1).granted
    ramped = quotas.reserve(store, REP, "n2", limits, NOW, day_limit=1)
    assert ramped.limit == quotas.REP_DAY and "warm-up daily limit of 1" in ramped.reason
    # A warm-up limit above the configured one does not raise it.
    assert quotas.reserve(store, REP, "n2", Limits(per_day=1, per_week=50), NOW, day_limit=5).limit == quotas.REP_DAY


def test_a_zero_limit_refuses_everything(document_store):
    refused = quotas.reserve(document_store.store, REP, "wf", Limits(per_day=0, per_week=10), NOW)
    assert not refused.granted and refused.limit == quotas.REP_DAY


class _DiesAfterTakingASlot:
    """A store whose first hold write never happens: the process died between taking a slot and holding it."""

    def __init__(self, store):
        self._store = store
        self.died = False

    def create(self, collection, doc_id, data):
        if collection == quotas.HOLDS and not self.died:
            self.died = True
            raise ConnectionError("instance stopped")
        return self._store.create(collection, doc_id, data)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_retry_after_dying_mid_reservation_finds_its_slot(document_store):
    store = document_store.store
    limits = Limits(per_day=3, per_week=10)
    with pytest.raises(ConnectionError):
        quotas.reserve(_DiesAfterTakingASlot(store), REP, "wf-crash", limits, NOW)
    assert quotas.usage(store, REP, NOW).rep_day == 1
    retried = quotas.reserve(store, REP, "wf-crash", limits, NOW)
    assert retried.granted
    assert quotas.usage(store, REP, NOW).rep_day == 1


def test_retried_and_distinct_workflows_racing_together_stay_exact(document_store):
    store = document_store.store
    limits = Limits(per_day=10, per_week=100)
    # 30 threads: 15 distinct workflows, each attempted twice at once.
    results = race(30, lambda i: quotas.reserve(store, REP, f"wf-{i % 15}", limits, NOW))
    granted_workflows = {r.workflow_id for r in results if r.granted}
    assert len(granted_workflows) == 10
    assert quotas.usage(store, REP, NOW).rep_day == 10
    for workflow in granted_workflows:
        slots = {tuple(sorted(r.slots.items())) for r in results if r.workflow_id == workflow and r.granted}
        assert len(slots) == 1


def test_limits_for_reads_the_configured_limits(document_store):
    from shared import flags

    store = document_store.store
    assert quotas.limits_for(store, REP) == Limits(flags.DEFAULT_PER_DAY, flags.DEFAULT_PER_WEEK,
                                                   flags.DEFAULT_GLOBAL_PER_DAY)
    flags.set_quota_limits(store, REP, {"per_day": 3, "per_week": 9}, "ops@example.com", NOW)
    flags.set_global_cap(store, 40, "ops@example.com", NOW)
    assert quotas.limits_for(store, REP) == Limits(3, 9, 40)


def test_prune_deletes_only_expired_documents(document_store):
    store = document_store.store
    limits = Limits(per_day=5, per_week=10, global_per_day=10)
    quotas.reserve(store, REP, "old", limits, NOW)
    later = NOW + quotas.RETENTION + dt.timedelta(days=1)
    quotas.reserve(store, REP, "new", limits, later)
    assert quotas.prune(store, later) == 3 + 3 + 1  # three slots, three holds, one reservation
    assert quotas.usage(store, REP, NOW).rep_day == 0
    assert quotas.usage(store, REP, later).rep_day == 1
