"""Circuit breakers per outside service (``gmail``, ``hubspot``, ``vertex``), shared by every instance.

Each instance that calls a service reports the outcome with ``record``; ``state`` tells whether the
service should be called at all. Everything lives in the document store, so every function instance
sees the same breaker:

- ``breaker_buckets/{service}:{slot}:{shard}``: call and error counts of one bucket of the sliding
  window. The slots form a ring (``minute % buckets``), so a service never has more than
  ``buckets * shards`` bucket documents and old ones are overwritten rather than piling up; a bucket
  whose ``start`` is outside the window is ignored. Calls are spread over a few shards per bucket,
  because Firestore sustains about one write per second on a single document
  (https://firebase.google.com/docs/firestore/best-practices#high_read_write_and_delete_rates).
- ``breakers/{service}``: ``{"state": "open", "opened_at": ...}`` while open; absent or ``closed``
  otherwise.
- ``breaker_probes/{service}:{opened_at}``: created by the one caller allowed to probe a half-open
  service. Create-if-absent is atomic in both stores, so exactly one caller wins per open period.

Rules: the breaker opens when, over the window, at least ``min_calls`` calls were made and at least
``error_rate`` of them failed. After ``cooldown`` it is half-open: one probe may call. A success
while half-open closes it (and clears the window, so the errors that opened it do not re-open it at
once); a failure re-opens it for another cool-down.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
from typing import Any

from shared.ports import DocumentStore

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
SERVICES = ("gmail", "hubspot", "vertex")

STATES = "breakers"
BUCKETS = "breaker_buckets"
PROBES = "breaker_probes"

_SHARDS = 4
_random = random.Random()


@dataclasses.dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how long it stays open.

    Attributes:
        error_rate: Fraction of failed calls over the window that opens the breaker.
        window_seconds: Length of the sliding window.
        bucket_seconds: Granularity of the window.
        min_calls: Fewer calls than this in the window never open the breaker.
        cooldown_seconds: How long an open breaker refuses calls before one probe is allowed.
    """

    error_rate: float = 0.10
    window_seconds: int = 300
    bucket_seconds: int = 60
    min_calls: int = 20
    cooldown_seconds: int = 60

    def __post_init__(self) -> None:
        if not 0 < self.error_rate <= 1:
            raise ValueError("error_rate must be in (0, 1]")
        if self.bucket_seconds <= 0 or self.window_seconds < self.bucket_seconds:
            raise ValueError("the window must hold at least one bucket")

    @property
    def buckets(self) -> int:
        return -(-self.window_seconds // self.bucket_seconds)

    @classmethod
    def from_settings(cls, settings: Any) -> BreakerPolicy:
        """Read ``breaker_*`` settings; a field the settings lack keeps its default."""
        base = cls()

        def pick(name: str, default: Any, parse) -> Any:
            value = getattr(settings, name, None)
            return default if value in (None, "") else parse(value)

        return cls(error_rate=pick("breaker_error_rate", base.error_rate, float),
                   window_seconds=pick("breaker_window_seconds", base.window_seconds, int),
                   bucket_seconds=pick("breaker_bucket_seconds", base.bucket_seconds, int),
                   min_calls=pick("breaker_min_calls", base.min_calls, int),
                   cooldown_seconds=pick("breaker_cooldown_seconds", base.cooldown_seconds, int))


DEFAULT_POLICY = BreakerPolicy()


def state(store: DocumentStore, service: str, now: dt.datetime, policy: BreakerPolicy = DEFAULT_POLICY) -> str:
    """The breaker's state: ``closed``, ``open`` or ``half_open`` (cool-down over, one probe allowed).

    One document read.
    """
    _check(service)
    return _state_of(store.get(STATES, service), _utc(now), policy)


def allow(store: DocumentStore, service: str, now: dt.datetime, policy: BreakerPolicy = DEFAULT_POLICY) -> bool:
    """Whether the caller may call ``service`` now.

    Closed: yes. Open: no. Half-open: only the first caller to claim the probe of this open period.
    """
    _check(service)
    doc = store.get(STATES, service)
    current = _state_of(doc, _utc(now), policy)
    if current == CLOSED:
        return True
    if current == OPEN:
        return False
    return store.create(PROBES, _probe_id(service, doc["opened_at"]),
                        {"service": service, "at": _utc(now),
                         "expires_at": _utc(now) + dt.timedelta(days=1)})


def record(store: DocumentStore, service: str, ok: bool, now: dt.datetime,
           policy: BreakerPolicy = DEFAULT_POLICY) -> str:
    """Count one call's outcome and move the breaker if that outcome decides it.

    Args:
        store: The document store.
        service: ``gmail``, ``hubspot`` or ``vertex``.
        ok: Whether the call succeeded (a refusal of our own input, a 4xx, counts as a success: the
            service answered).
        now: When the call ended.
        policy: The thresholds.

    Returns:
        The state after this call.
    """
    _check(service)
    now = _utc(now)
    _count(store, service, ok, now, policy)
    doc = store.get(STATES, service)
    current = _state_of(doc, now, policy)
    if current == HALF_OPEN:
        return _close(store, service, now, policy) if ok else _reopen(store, service, now, policy)
    if current == OPEN or ok:
        # Open: a call that started before the breaker opened ended now; it neither extends nor ends
        # the cool-down. Closed and ok: a success never opens a breaker, so the window is not read.
        return current
    calls, errors = window(store, service, now, policy)
    if calls >= policy.min_calls and errors >= policy.error_rate * calls:
        return _open(store, service, now, policy, calls, errors)
    return CLOSED


def window(store: DocumentStore, service: str, now: dt.datetime,
           policy: BreakerPolicy = DEFAULT_POLICY) -> tuple[int, int]:
    """Calls and errors recorded for ``service`` within the window ending at ``now``."""
    _check(service)
    oldest = _bucket_start(_utc(now), policy) - (policy.buckets - 1) * policy.bucket_seconds
    calls = errors = 0
    for _, doc in store.list(BUCKETS, prefix=f"{service}:"):
        if doc.get("start", -1) >= oldest:
            calls += int(doc.get("calls", 0))
            errors += int(doc.get("errors", 0))
    return calls, errors


# --- internals -----------------------------------------------------------------------------------


def _state_of(doc: dict[str, Any] | None, now: dt.datetime, policy: BreakerPolicy) -> str:
    if not doc or doc.get("state") != OPEN:
        return CLOSED
    opened_at = doc.get("opened_at")
    if not isinstance(opened_at, dt.datetime):
        return OPEN  # a hand edit without a time: stay safe
    return HALF_OPEN if now >= _utc(opened_at) + dt.timedelta(seconds=policy.cooldown_seconds) else OPEN


def _count(store: DocumentStore, service: str, ok: bool, now: dt.datetime, policy: BreakerPolicy) -> None:
    start = _bucket_start(now, policy)
    slot = (start // policy.bucket_seconds) % policy.buckets
    doc_id = f"{service}:{slot:03d}:{_random.randrange(_SHARDS)}"

    def fn(doc: dict[str, Any] | None) -> dict[str, Any]:
        if doc is None or doc.get("start") != start:
            doc = {"start": start, "calls": 0, "errors": 0}  # the ring slot held an older bucket: reuse it
        return {**doc, "calls": doc["calls"] + 1, "errors": doc["errors"] + (0 if ok else 1)}

    store.update(BUCKETS, doc_id, fn)


def _open(store: DocumentStore, service: str, now: dt.datetime, policy: BreakerPolicy,
          calls: int, errors: int) -> str:
    changed = False

    def fn(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal changed
        changed = _state_of(doc, now, policy) == CLOSED
        return {"state": OPEN, "opened_at": now, "calls": calls, "errors": errors} if changed else doc

    store.update(STATES, service, fn)
    if changed:
        log.warning("circuit opened", extra={"fields": {"service": service, "calls": calls, "errors": errors,
                                                        "error_rate": round(errors / calls, 3)}})
    return OPEN


def _reopen(store: DocumentStore, service: str, now: dt.datetime, policy: BreakerPolicy) -> str:
    changed = False

    def fn(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal changed
        changed = _state_of(doc, now, policy) == HALF_OPEN
        return {**(doc or {}), "state": OPEN, "opened_at": now} if changed else doc

    store.update(STATES, service, fn)
    if changed:
        log.warning("circuit opened", extra={"fields": {"service": service, "probe": "failed"}})
    return OPEN


def _close(store: DocumentStore, service: str, now: dt.datetime, policy: BreakerPolicy) -> str:
    changed = False

    def fn(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal changed
        changed = _state_of(doc, now, policy) == HALF_OPEN
        return {"state": CLOSED, "closed_at": now} if changed else doc

    store.update(STATES, service, fn)
    if changed:
        # The errors that opened the breaker would open it again at the next failure: start afresh.
        for doc_id, _ in store.list(BUCKETS, prefix=f"{service}:"):
            store.delete(BUCKETS, doc_id)
        log.info("circuit closed", extra={"fields": {"service": service}})
        return CLOSED
    return _state_of(store.get(STATES, service), now, policy)


def _bucket_start(now: dt.datetime, policy: BreakerPolicy) -> int:
    epoch = int(now.timestamp())
    return epoch - epoch % policy.bucket_seconds


def _probe_id(service: str, opened_at: dt.datetime) -> str:
    return f"{service}:{int(_utc(opened_at).timestamp() * 1_000_000)}"


def _check(service: str) -> None:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
