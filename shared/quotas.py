"""Send quotas: per rep per UTC day and per ISO week, plus a global daily cap, exact under concurrency.

A counter document updated in a transaction would be the obvious design, but every gate instance would
then contend on one document per rep, and Firestore settles contention with lock waits and aborts (the
emulator waits seconds before aborting). Instead each unit of a limit is a *slot document*
``quota_slots/{scope}:{period}:{i}`` for ``i < limit``, taken with a create-if-absent, which the store
decides atomically and without locks. A limit of N therefore grants at most N reservations, however many
race for them.

Idempotency per workflow:

- ``quota_holds/{scope}:{period}:{workflow}`` records which slot a workflow holds in a period. Two
  attempts of the same workflow that each grab a slot settle there: the first hold created wins and the
  loser gives its slot back.
- ``quota_reservations/{workflow}`` records a granted reservation, so a retry (even on a later day)
  returns it with one read and consumes nothing.
- A slot names its workflow, so an attempt that died between taking a slot and writing its hold finds
  the slot again on retry instead of taking a second one.

Each workflow starts probing at an offset derived from its id, so concurrent reservations mostly try
different slots first. Documents carry ``expires_at`` for a Firestore TTL policy; ``prune`` does the
same for the embedded store.

A period counts as full when ``limit`` distinct workflows hold its slots; while a workflow's racing
attempts briefly hold two slots, competitors wait for the surplus to come back instead of being refused.
One case stays conservative: a slot taken by a workflow that a later limit then refuses is given back
at once, and a competitor looking in that moment is refused. Refusals err on the side of not sending;
grants are never above a limit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import random
import time
import urllib.parse
from typing import Any

from shared import flags as flags_mod
from shared.errors import BadRequest, Conflict
from shared.ports import DocumentStore, TransactionConflict

log = logging.getLogger(__name__)
_random = random.Random()

SLOTS = "quota_slots"
HOLDS = "quota_holds"
RESERVATIONS = "quota_reservations"

# Long enough to outlive the ISO week a document counts towards, and a week of retries after that.
RETENTION = dt.timedelta(days=15)
# Creates tried per listing of a period. Under a race most free slots a listing shows are gone a moment
# later; a fresh listing costs one call and tells which are still free, where blind probing costs one
# call per taken slot (measured in bench/bench_quotas.py).
_PROBES_PER_ROUND = 2
# Extra rounds allowed for churn: slots released and re-taken, or surplus slots of a workflow whose
# attempts raced being given back, while a reservation probes.
_MAX_ROUNDS = 12

REP_DAY = "rep_day"
REP_WEEK = "rep_week"
GLOBAL_DAY = "global_day"


@dataclasses.dataclass(frozen=True)
class Limits:
    """The limits a reservation is checked against.

    Attributes:
        per_day: A rep's emails per UTC day.
        per_week: A rep's emails per ISO week.
        global_per_day: All reps together per UTC day; None for no global cap.
    """

    per_day: int
    per_week: int
    global_per_day: int | None = None


@dataclasses.dataclass(frozen=True)
class Reservation:
    """The answer to ``reserve``.

    Attributes:
        granted: Whether the workflow may send.
        rep_id: The rep.
        workflow_id: The workflow.
        day: The UTC day (``2025-01-31``) the reservation counts towards.
        week: The ISO week (``2025-W05``) it counts towards.
        reason: Why it was refused, naming the limit (None when granted).
        limit: Which limit refused it: ``rep_day``, ``rep_week`` or ``global_day``.
        slots: Limit name → slot index held (granted reservations).
    """

    granted: bool
    rep_id: str
    workflow_id: str
    day: str
    week: str
    reason: str | None = None
    limit: str | None = None
    slots: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Usage:
    """Slots taken in the periods containing a moment."""

    rep_id: str
    day: str
    week: str
    rep_day: int
    rep_week: int
    global_day: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Scope:
    name: str  # REP_DAY, REP_WEEK, GLOBAL_DAY
    key: str  # rep or global part of the document ids
    period: str
    limit: int

    @property
    def prefix(self) -> str:
        return f"{self.key}:{self.period}:"

    def slot_id(self, index: int) -> str:
        return f"{self.prefix}{index:06d}"

    def hold_id(self, workflow_id: str) -> str:
        return f"{self.prefix}{_quote(workflow_id)}"


def limits_for(store: DocumentStore, rep_id: str) -> Limits:
    """The configured limits of a rep (``shared.flags``), with the global cap."""
    rep = flags_mod.get_quota_limits(store, rep_id)
    return Limits(per_day=rep.per_day, per_week=rep.per_week, global_per_day=flags_mod.get_global_cap(store))


def periods(now: dt.datetime) -> tuple[str, str]:
    """The UTC day and ISO week containing ``now``: ``("2025-01-31", "2025-W05")``."""
    utc = _utc(now)
    iso = utc.isocalendar()
    return utc.date().isoformat(), f"{iso.year}-W{iso.week:02d}"


def reserve(store: DocumentStore, rep_id: str, workflow_id: str, limits: Limits, now: dt.datetime, *,
            day_limit: int | None = None) -> Reservation:
    """Take one send from the rep's day and week and from the global day, or refuse.

    Idempotent per workflow: a retry returns the first grant and consumes nothing more.

    Args:
        store: The document store.
        rep_id: The rep who sends.
        workflow_id: The workflow that sends (the idempotency key).
        limits: The limits to check.
        now: When the send is decided; picks the day and the week.
        day_limit: A lower effective daily limit for this rep (a warm-up ramp for a newly connected
            mailbox); the smaller of it and ``limits.per_day`` applies.

    Returns:
        A granted reservation, or a refused one whose ``reason`` names the limit.

    Raises:
        BadRequest: an empty rep or workflow id.
        Conflict: the workflow already holds a reservation for another rep.
        TransactionConflict: the slots kept changing under the reservation (extreme churn).
    """
    _check_id("rep_id", rep_id)
    _check_id("workflow_id", workflow_id)
    record = store.get(RESERVATIONS, _quote(workflow_id))
    if record is not None:
        if record.get("rep_id") != rep_id:
            raise Conflict("This workflow already holds a quota reservation for another rep.")
        return Reservation(granted=True, rep_id=rep_id, workflow_id=workflow_id, day=record["day"],
                           week=record["week"], slots=dict(record.get("slots", {})))

    day, week = periods(now)
    per_day = limits.per_day if day_limit is None else min(limits.per_day, day_limit)
    scopes = _scopes(rep_id, day, week, per_day, limits.per_week, limits.global_per_day)
    expires = _utc(now) + RETENTION
    taken: list[tuple[_Scope, int]] = []
    for scope in scopes:
        index = _acquire(store, scope, workflow_id, now, expires)
        if index is None:
            for held_scope, held_index in taken:
                _give_back(store, held_scope, workflow_id, held_index)
            reason = _reason(scope, rep_id, warm_up=day_limit is not None and per_day < limits.per_day)
            log.info("quota refused", extra={"workflow_id": workflow_id, "limit": scope.name})
            return Reservation(granted=False, rep_id=rep_id, workflow_id=workflow_id, day=day, week=week,
                               reason=reason, limit=scope.name)
        taken.append((scope, index))

    slots = {scope.name: index for scope, index in taken}
    store.set(RESERVATIONS, _quote(workflow_id), {
        "rep_id": rep_id, "workflow_id": workflow_id, "day": day, "week": week, "slots": slots,
        "scopes": {scope.name: {"key": scope.key, "period": scope.period} for scope, _ in taken},
        "at": _utc(now), "expires_at": expires,
    })
    log.info("quota granted", extra={"workflow_id": workflow_id})
    return Reservation(granted=True, rep_id=rep_id, workflow_id=workflow_id, day=day, week=week, slots=slots)


def release(store: DocumentStore, rep_id: str, workflow_id: str, now: dt.datetime) -> bool:
    """Give back what a workflow reserved (it did not send after all). Safe to repeat.

    The reservation's own periods are released, even when ``now`` is a later day; without a
    reservation record (an attempt that died half-way), the periods containing ``now`` are searched.

    Returns:
        Whether a reservation was found.
    """
    _check_id("rep_id", rep_id)
    _check_id("workflow_id", workflow_id)
    record = store.get(RESERVATIONS, _quote(workflow_id))
    if record is not None:
        scopes = [_Scope(name, spec["key"], spec["period"], 0) for name, spec in record.get("scopes", {}).items()]
        slots = record.get("slots", {})
        for scope in scopes:
            _give_back(store, scope, workflow_id, slots.get(scope.name))
        # The record goes last: until then a repeated release still knows what to give back.
        store.delete(RESERVATIONS, _quote(workflow_id))
        log.info("quota released", extra={"workflow_id": workflow_id})
        return True
    day, week = periods(now)
    found = False
    for scope in _scopes(rep_id, day, week, 0, 0, 0):
        found = _give_back(store, scope, workflow_id, None) or found
    return found


def usage(store: DocumentStore, rep_id: str, now: dt.datetime) -> Usage:
    """How many sends are reserved in the rep's day and week and in the global day containing ``now``."""
    _check_id("rep_id", rep_id)
    day, week = periods(now)
    rep_day, rep_week, global_day = (
        len(store.list(SLOTS, prefix=scope.prefix)) for scope in _scopes(rep_id, day, week, 0, 0, 0))
    return Usage(rep_id=rep_id, day=day, week=week, rep_day=rep_day, rep_week=rep_week, global_day=global_day)


def prune(store: DocumentStore, now: dt.datetime) -> int:
    """Delete quota documents past their ``expires_at`` (the embedded store has no TTL policy).

    Returns:
        How many documents were deleted.
    """
    deleted = 0
    for collection in (SLOTS, HOLDS, RESERVATIONS):
        for doc_id, doc in store.list(collection):
            expires = doc.get("expires_at")
            if isinstance(expires, dt.datetime) and expires <= _utc(now):
                deleted += store.delete(collection, doc_id)
    return deleted


# --- internals -----------------------------------------------------------------------------------


def _scopes(rep_id: str, day: str, week: str, per_day: int, per_week: int,
            global_per_day: int | None) -> list[_Scope]:
    rep_key = "r." + _quote(rep_id)
    # Smallest limit first: most refusals are decided before a slot elsewhere is taken and given back.
    scopes = [_Scope(REP_DAY, rep_key, day, per_day), _Scope(REP_WEEK, rep_key, week, per_week)]
    if global_per_day is not None:
        scopes.append(_Scope(GLOBAL_DAY, "g", day, global_per_day))
    return scopes


def _acquire(store: DocumentStore, scope: _Scope, workflow_id: str, now: dt.datetime,
             expires: dt.datetime) -> int | None:
    """Take a slot of ``scope`` for the workflow (or find the one it has); None when the limit is reached."""
    if scope.limit <= 0:
        return None
    start = _offset(workflow_id, scope.limit)
    waits = 0
    # A failed create means another workflow took that slot, so every round that ends empty-handed saw
    # the count grow: the number of rounds is bounded by the limit, plus slack for concurrent releases.
    for _ in range(scope.limit // _PROBES_PER_ROUND + _MAX_ROUNDS):
        owners = _owners(store, scope)
        mine = sorted(i for i, owner in owners.items() if owner == workflow_id)
        if mine:
            return _settle(store, scope, workflow_id, mine, now, expires)
        if len(owners) >= scope.limit:
            if len(set(owners.values())) >= scope.limit:
                return None
            # Full only because some workflow holds two slots: two attempts of it raced and the loser is
            # giving one back. Refusing now would under-grant; help the loser, then look again.
            _reclaim_surplus(store, scope, owners)
            waits += 1
            time.sleep(_random.uniform(0.5, 1.0) * min(0.5, 0.01 * 2 ** waits))
            continue
        free = sorted((i for i in range(scope.limit) if i not in owners), key=lambda i: (i - start) % scope.limit)
        for index in free[:_PROBES_PER_ROUND]:
            slot = {"workflow_id": workflow_id, "at": _utc(now), "expires_at": expires}
            if store.create(SLOTS, scope.slot_id(index), slot):
                return _settle(store, scope, workflow_id, [index], now, expires)
    raise TransactionConflict(f"quota slots of {scope.name} kept changing; no decision reached")


def _settle(store: DocumentStore, scope: _Scope, workflow_id: str, mine: list[int], now: dt.datetime,
            expires: dt.datetime) -> int:
    """Make the hold name exactly one of the workflow's slots, and give back any other."""
    hold_id = scope.hold_id(workflow_id)
    held: int | None = None
    for _ in range(_MAX_ROUNDS):
        if store.create(HOLDS, hold_id, {"slot": mine[0], "workflow_id": workflow_id, "at": _utc(now),
                                         "expires_at": expires}):
            held = mine[0]
            break
        hold = store.get(HOLDS, hold_id)
        if hold is not None:  # None: released in between; try to create it again
            held = hold["slot"]
            break
    if held is None:
        raise TransactionConflict(f"the {scope.name} hold of a workflow kept changing")
    for index in mine:
        if index != held:
            # A concurrent attempt of the same workflow holds another slot: this one is surplus.
            _delete_slot_if_owned(store, scope, index, workflow_id)
    return held


def _reclaim_surplus(store: DocumentStore, scope: _Scope, owners: dict[int, str | None]) -> None:
    """Delete the extra slots of workflows whose hold already names the one slot they keep."""
    by_owner: dict[str | None, list[int]] = {}
    for index, owner in owners.items():
        by_owner.setdefault(owner, []).append(index)
    for owner, indexes in by_owner.items():
        if owner is None or len(indexes) < 2:
            continue
        hold = store.get(HOLDS, scope.hold_id(owner))
        if hold is None:
            continue  # its attempts have not settled yet; the next look will tell
        for index in indexes:
            if index != hold.get("slot"):
                _delete_slot_if_owned(store, scope, index, owner)


def _give_back(store: DocumentStore, scope: _Scope, workflow_id: str, index: int | None) -> bool:
    """Release the workflow's slot in ``scope``: the hold first, then the slot (see the module doc)."""
    hold = store.get(HOLDS, scope.hold_id(workflow_id))
    found = store.delete(HOLDS, scope.hold_id(workflow_id))
    candidates = {i for i in (index, (hold or {}).get("slot")) if i is not None}
    if not candidates:  # no record of the index: look for any slot the workflow still owns
        candidates = {i for i, owner in _owners(store, scope).items() if owner == workflow_id}
    for candidate in candidates:
        found = _delete_slot_if_owned(store, scope, candidate, workflow_id) or found
    return found


def _delete_slot_if_owned(store: DocumentStore, scope: _Scope, index: int, workflow_id: str) -> bool:
    deleted = False

    def fn(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal deleted
        # The slot may already be another workflow's (released and re-taken): leave that one alone.
        deleted = doc is not None and doc.get("workflow_id") == workflow_id
        return None if deleted else doc

    store.update(SLOTS, scope.slot_id(index), fn)
    return deleted


def _owners(store: DocumentStore, scope: _Scope) -> dict[int, str | None]:
    owners = {}
    for doc_id, doc in store.list(SLOTS, prefix=scope.prefix):
        suffix = doc_id[len(scope.prefix):]
        if suffix.isdigit():
            owners[int(suffix)] = doc.get("workflow_id")
    return owners


def _offset(workflow_id: str, limit: int) -> int:
    return int.from_bytes(hashlib.sha256(workflow_id.encode()).digest()[:8], "big") % limit


def _reason(scope: _Scope, rep_id: str, *, warm_up: bool) -> str:
    if scope.name == REP_DAY:
        kind = "warm-up daily limit" if warm_up else "daily limit"
        return f"Rep {rep_id} reached the {kind} of {scope.limit} emails for {scope.period} (UTC)."
    if scope.name == REP_WEEK:
        return f"Rep {rep_id} reached the weekly limit of {scope.limit} emails for ISO week {scope.period}."
    return f"The global daily cap of {scope.limit} emails for {scope.period} (UTC) is reached."


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name} must be a non-empty string.")


def _quote(value: str) -> str:
    # Document ids may not contain '/', and ':' separates the parts of ours.
    return urllib.parse.quote(value, safe="@.-_+")


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
