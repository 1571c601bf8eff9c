"""Quota reservation under a race: 50 workflows at once against a daily limit of 20, on both stores.

``run()`` returns, per store: wall time of the race, store calls made (by kind), calls per reservation,
and how many reservations were granted (it must be exactly the limit).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import tempfile
import threading
import time
from typing import Any

from functions.localstack.emulators.firestore import FirestoreEmulator, available
from shared import quotas
from shared.adapters.firestore_store import FirestoreStore
from shared.adapters.local_store import LocalStore

log = logging.getLogger(__name__)

WORKFLOWS = 50
LIMIT = 20
NOW = dt.datetime(2025, 1, 29, 15, 0, tzinfo=dt.timezone.utc)
LIMITS = quotas.Limits(per_day=LIMIT, per_week=5 * LIMIT, global_per_day=50 * LIMIT)


class CountingStore:
    """Wraps a DocumentStore and counts its calls per method, thread-safely."""

    def __init__(self, store: Any):
        self._store = store
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not callable(target):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
            return target(*args, **kwargs)

        return counted


def race(store: Any) -> dict[str, Any]:
    """50 reservations released together against a limit of 20; the figures of that race."""
    counting = CountingStore(store)
    barrier = threading.Barrier(WORKFLOWS)
    results: list[quotas.Reservation | None] = [None] * WORKFLOWS
    failures: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = quotas.reserve(counting, "bench@example.com", f"bench-wf-{i}", LIMITS, NOW)
        except BaseException as exc:  # surfaced in the figures, not swallowed
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(WORKFLOWS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    granted = sum(1 for r in results if r is not None and r.granted)
    total_calls = sum(counting.calls.values())
    return {
        "workflows": WORKFLOWS,
        "limit": LIMIT,
        "granted": granted,
        "exact": granted == LIMIT and not failures,
        "errors": len(failures),
        "wall_seconds": round(wall, 4),
        "store_calls": total_calls,
        "store_calls_per_reservation": round(total_calls / WORKFLOWS, 2),
        "calls_by_kind": dict(sorted(counting.calls.items())),
    }


def run() -> dict[str, Any]:
    """Run the race on LocalStore and on FirestoreStore (its own emulator, stopped afterwards)."""
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quotas-") as data_dir:
        figures["local"] = race(LocalStore(data_dir))
    reason = available()
    if reason:
        figures["firestore"] = {"skipped": reason}
        return figures
    emulator = FirestoreEmulator()
    started = time.perf_counter()
    emulator.start()
    try:
        startup = time.perf_counter() - started
        store = FirestoreStore("bench-quotas", emulator_host=emulator.host)
        try:
            store.health()  # opens the channel, so the race measures reservations, not the first connect
            figures["firestore"] = {**race(store), "emulator_startup_seconds": round(startup, 2)}
        finally:
            store.close()
    finally:
        emulator.stop()
    return figures


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    log.info("bench_quotas %s", json.dumps(run(), indent=2))
