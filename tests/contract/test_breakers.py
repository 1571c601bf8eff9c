"""Circuit breakers on both DocumentStore implementations: opening, the single half-open probe, closing."""

from __future__ import annotations

import datetime as dt
import logging
import threading

import pytest

from shared.gate import breakers
from shared.gate.breakers import CLOSED, HALF_OPEN, OPEN, BreakerPolicy

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 29, 15, 0, 5, tzinfo=UTC)
POLICY = BreakerPolicy(error_rate=0.10, window_seconds=300, bucket_seconds=60, min_calls=20, cooldown_seconds=60)


def calls(store, service, ok, failed, at=T0):
    """Record ``ok`` successes then ``failed`` failures; return the state after the last one."""
    result = None
    for _ in range(ok):
        result = breakers.record(store, service, True, at, POLICY)
    for _ in range(failed):
        result = breakers.record(store, service, False, at, POLICY)
    return result


def race(n, target):
    barrier = threading.Barrier(n)
    results, failures = [None] * n, []

    def run(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return results


def test_a_new_breaker_is_closed(document_store):
    assert breakers.state(document_store.store, "gmail", T0, POLICY) == CLOSED
    assert breakers.allow(document_store.store, "gmail", T0, POLICY) is True


def test_opens_at_ten_percent_errors_with_enough_calls(document_store, caplog):
    store = document_store.store
    assert calls(store, "gmail", 18, 1) == CLOSED  # 1 of 19: 5%
    with caplog.at_level(logging.WARNING, logger="shared.gate.breakers"):
        assert calls(store, "gmail", 0, 1) == OPEN  # 2 of 20: 10%
    assert breakers.state(store, "gmail", T0, POLICY) == OPEN
    assert breakers.allow(store, "gmail", T0, POLICY) is False
    opened = [r for r in caplog.records if r.getMessage() == "circuit opened"]
    assert len(opened) == 1 and opened[0].fields["service"] == "gmail"
    # Breakers are per service.
    assert breakers.state(store, "hubspot", T0, POLICY) == CLOSED


def test_below_the_rate_or_the_volume_it_stays_closed(document_store):
    store = document_store.store
    assert calls(store, "hubspot", 0, 19) == CLOSED  # every call failed, but only 19 of them
    assert calls(store, "vertex", 28, 3) == CLOSED  # 3 of 31: under 10%


def test_the_window_slides(document_store):
    store = document_store.store
    calls(store, "gmail", 25, 0, at=T0)
    later = T0 + dt.timedelta(minutes=5)  # the first minute's calls have left the window
    assert breakers.window(store, "gmail", later, POLICY) == (0, 0)
    assert calls(store, "gmail", 17, 2, at=later) == CLOSED  # 19 calls in the window: under the volume
    assert calls(store, "gmail", 0, 1, at=later + dt.timedelta(seconds=30)) == OPEN
    assert breakers.window(store, "gmail", later + dt.timedelta(seconds=30), POLICY) == (20, 3)


def test_every_instance_sees_the_same_breaker(document_store):
    calls(document_store.store, "gmail", 18, 2)
    other = document_store.reopen()
    assert breakers.state(other, "gmail", T0, POLICY) == OPEN


def test_half_open_after_the_cooldown_allows_exactly_one_probe_under_concurrency(document_store):
    store = document_store.store
    calls(store, "gmail", 0, 20)
    assert breakers.state(store, "gmail", T0 + dt.timedelta(seconds=59), POLICY) == OPEN
    later = T0 + dt.timedelta(seconds=61)
    assert breakers.state(store, "gmail", later, POLICY) == HALF_OPEN
    allowed = race(12, lambda i: breakers.allow(store, "gmail", later, POLICY))
    assert allowed.count(True) == 1


def test_a_successful_probe_closes_and_clears_the_window(document_store, caplog):
    store = document_store.store
    calls(store, "gmail", 0, 20)
    later = T0 + dt.timedelta(seconds=61)
    assert breakers.allow(store, "gmail", later, POLICY)
    with caplog.at_level(logging.INFO, logger="shared.gate.breakers"):
        assert breakers.record(store, "gmail", True, later, POLICY) == CLOSED
    closed = [r for r in caplog.records if r.getMessage() == "circuit closed"]
    assert len(closed) == 1 and closed[0].fields["service"] == "gmail"
    assert breakers.state(store, "gmail", later, POLICY) == CLOSED
    assert breakers.window(store, "gmail", later, POLICY) == (0, 0)
    # One failure right after closing does not re-open it: the old errors are gone.
    assert breakers.record(store, "gmail", False, later, POLICY) == CLOSED


def test_a_failed_probe_reopens_for_another_cooldown_with_a_new_probe(document_store):
    store = document_store.store
    calls(store, "gmail", 0, 20)
    later = T0 + dt.timedelta(seconds=61)
    assert breakers.allow(store, "gmail", later, POLICY)
    assert breakers.record(store, "gmail", False, later, POLICY) == OPEN
    assert breakers.state(store, "gmail", later + dt.timedelta(seconds=59), POLICY) == OPEN
    again = later + dt.timedelta(seconds=61)
    assert breakers.state(store, "gmail", again, POLICY) == HALF_OPEN
    assert breakers.allow(store, "gmail", again, POLICY) is True  # a new open period has its own probe
    assert breakers.allow(store, "gmail", again, POLICY) is False


def test_concurrent_failures_open_once(document_store, caplog):
    store = document_store.store
    calls(store, "vertex", 15, 0)
    with caplog.at_level(logging.WARNING, logger="shared.gate.breakers"):
        states = race(8, lambda i: breakers.record(store, "vertex", False, T0, POLICY))
    assert OPEN in states
    assert breakers.window(store, "vertex", T0, POLICY) == (23, 8)
    assert len([r for r in caplog.records if r.getMessage() == "circuit opened"]) == 1


def test_unknown_service_is_refused(document_store):
    with pytest.raises(ValueError):
        breakers.record(document_store.store, "smtp", True, T0, POLICY)
