"""Operational settings kept in the document store: send flags, guardrails, quota limits.

- ``flags/global``: ``send_mode`` (``DRAFT_ONLY`` | ``SEND_ALLOWED``) and ``kill_switch``.
- ``guardrails/global``: which companies the system may write to at all.
- ``quotas/{rep_id}``: per-rep daily and weekly limits; ``quotas/GLOBAL``: the global daily cap.

Every change of any of them writes one ``flag_audit`` entry per changed field: who, when, old, new.
A missing document means the safe defaults below, so a fresh project never sends by accident.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import BadRequest
from shared.ports import DocumentStore

log = logging.getLogger(__name__)

DRAFT_ONLY = "DRAFT_ONLY"
SEND_ALLOWED = "SEND_ALLOWED"
SEND_MODES = (DRAFT_ONLY, SEND_ALLOWED)

FLAGS = "flags"
GUARDRAILS = "guardrails"
QUOTAS = "quotas"
AUDIT = "flag_audit"
GLOBAL_DOC = "global"
GLOBAL_QUOTA_DOC = "GLOBAL"

DEFAULT_PER_DAY = 50
DEFAULT_PER_WEEK = 200
DEFAULT_GLOBAL_PER_DAY = 1000
# Google Workspace lets one user send at most 2,000 messages a day
# (https://support.google.com/a/answer/166852); a higher per-rep limit could never be reached.
MAX_PER_DAY = 2000
MAX_PER_WEEK = 7 * MAX_PER_DAY

_MAX_LIST_ITEMS = 200
_MAX_ITEM_CHARS = 100
# Fields a client may send back unchanged from a GET; they are written by the server, never taken from input.
_READ_ONLY = frozenset({"updated_by", "updated_at"})


# --- flags ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Flags:
    """The global send flags.

    Attributes:
        send_mode: ``DRAFT_ONLY`` (every email stays a Gmail draft) or ``SEND_ALLOWED``.
        kill_switch: When on, nothing is sent, whatever the send mode.
        updated_by: Who changed the flags last (None: never changed, the defaults).
        updated_at: When they were changed last.
    """

    send_mode: str = DRAFT_ONLY
    kill_switch: bool = False
    updated_by: str | None = None
    updated_at: dt.datetime | None = None

    @property
    def sending_allowed(self) -> bool:
        return self.send_mode == SEND_ALLOWED and not self.kill_switch

    def to_json(self) -> dict[str, Any]:
        return {"send_mode": self.send_mode, "kill_switch": self.kill_switch, "updated_by": self.updated_by,
                "updated_at": _iso(self.updated_at)}


class _FlagsCache:
    """The last flags read per store, for ``read_flags``'s short reuse window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # id(store) -> (store, read at, flags); the store itself is kept so a recycled id never matches.
        self._entries: dict[int, tuple[DocumentStore, float, Flags]] = {}

    def get(self, store: DocumentStore, now: float, max_age: float) -> Flags | None:
        with self._lock:
            entry = self._entries.get(id(store))
        if entry is None or entry[0] is not store or now - entry[1] >= max_age or now < entry[1]:
            return None
        return entry[2]

    def put(self, store: DocumentStore, now: float, flags: Flags) -> None:
        with self._lock:
            self._entries[id(store)] = (store, now, flags)

    def forget(self, store: DocumentStore) -> None:
        with self._lock:
            self._entries.pop(id(store), None)


_cache = _FlagsCache()


def read_flags(store: DocumentStore, *, max_age_seconds: float = 5.0,
               clock: Callable[[], float] = time.monotonic) -> Flags:
    """The global flags, reusing what this process read less than ``max_age_seconds`` ago.

    The short reuse window spares a Firestore read per message on busy instances; a change made
    elsewhere is seen within that window. The send path must not rely on it for the kill switch: use
    ``kill_switch_engaged``.

    Args:
        store: The document store.
        max_age_seconds: How old a cached read may be; 0 always reads.
        clock: Monotonic seconds (injected by tests).

    Returns:
        The flags; the defaults (``DRAFT_ONLY``, kill switch off) when none were ever set.
    """
    now = clock()
    if max_age_seconds > 0:
        cached = _cache.get(store, now, max_age_seconds)
        if cached is not None:
            return cached
    flags = _flags_from_doc(store.get(FLAGS, GLOBAL_DOC))
    _cache.put(store, now, flags)
    return flags


def kill_switch_engaged(store: DocumentStore) -> bool:
    """Whether the kill switch is on, read from the store every time (never from the cache).

    A failed read raises (the store's own error): the caller must then not send.
    """
    return _flags_from_doc(store.get(FLAGS, GLOBAL_DOC)).kill_switch


def set_flags(store: DocumentStore, changes: Mapping[str, Any], actor: str, now: dt.datetime) -> Flags:
    """Change some flags in one transaction and audit each field that changed.

    Args:
        store: The document store.
        changes: ``send_mode`` and/or ``kill_switch``; ``updated_by``/``updated_at`` are ignored.
        actor: Who makes the change (an ops email).
        now: The time of the change.

    Returns:
        The flags after the change.

    Raises:
        BadRequest: an unknown key, a bad value, or no actor.
    """
    actor = _check_actor(actor)
    wanted = _only_known(changes, {"send_mode", "kill_switch"}, "flags")
    if "send_mode" in wanted:
        mode = wanted["send_mode"]
        normalised = mode.strip().upper() if isinstance(mode, str) else mode
        if normalised not in SEND_MODES:
            raise BadRequest(f"send_mode must be one of {', '.join(SEND_MODES)}, not {mode!r}.",
                             code="invalid_flag")
        wanted["send_mode"] = normalised
    if "kill_switch" in wanted and not isinstance(wanted["kill_switch"], bool):
        raise BadRequest(f"kill_switch must be true or false, not {wanted['kill_switch']!r}.", code="invalid_flag")
    result = _apply(store, FLAGS, GLOBAL_DOC, wanted, actor, now, audit_prefix="",
                    current_of=lambda doc: dataclasses.asdict(_flags_from_doc(doc)))
    _cache.forget(store)
    return _flags_from_doc(result)


def _flags_from_doc(doc: dict[str, Any] | None) -> Flags:
    if doc is None:
        return Flags()
    mode = doc.get("send_mode", DRAFT_ONLY)
    if mode not in SEND_MODES:
        # A hand edit in the console: fail safe, never towards sending.
        log.warning("unknown send_mode in flags/global; treating it as DRAFT_ONLY")
        mode = DRAFT_ONLY
    kill = doc.get("kill_switch", False)
    if not isinstance(kill, bool):
        log.warning("kill_switch in flags/global is not a boolean; treating it as engaged")
        kill = True
    return Flags(send_mode=mode, kill_switch=kill, updated_by=doc.get("updated_by"),
                 updated_at=doc.get("updated_at"))


# --- guardrails ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Guardrails:
    """Which companies the system may email. An empty list or a None bound means no restriction.

    Attributes:
        allowed_company_stages: Company lifecycle stages allowed (compared case-insensitively).
        allowed_industries: Industries allowed (compared case-insensitively).
        employee_min: Smallest allowed employee count.
        employee_max: Largest allowed employee count.
    """

    allowed_company_stages: tuple[str, ...] = ()
    allowed_industries: tuple[str, ...] = ()
    employee_min: int | None = None
    employee_max: int | None = None
    updated_by: str | None = None
    updated_at: dt.datetime | None = None

    def violations(self, *, company_stage: str | None, industry: str | None,
                   employees: int | None) -> list[str]:
        """Human reasons why a company is outside the guardrails; empty when it is inside.

        An unknown value (None) fails a restricted dimension: the system cannot show it is allowed.
        """
        reasons = []
        if self.allowed_company_stages and not _member(company_stage, self.allowed_company_stages):
            reasons.append(f"company stage {company_stage or 'unknown'} is not one of "
                           f"{', '.join(self.allowed_company_stages)}")
        if self.allowed_industries and not _member(industry, self.allowed_industries):
            reasons.append(f"industry {industry or 'unknown'} is not one of {', '.join(self.allowed_industries)}")
        if self.employee_min is not None or self.employee_max is not None:
            low = self.employee_min if self.employee_min is not None else 0
            high = "" if self.employee_max is None else self.employee_max
            if employees is None:
                reasons.append(f"employee count is unknown (allowed {low}-{high})")
            elif (self.employee_min is not None and employees < self.employee_min) or (
                    self.employee_max is not None and employees > self.employee_max):
                reasons.append(f"{employees} employees is outside the allowed range {low}-{high}")
        return reasons

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["allowed_company_stages"] = list(self.allowed_company_stages)
        out["allowed_industries"] = list(self.allowed_industries)
        out["updated_at"] = _iso(self.updated_at)
        return out


_GUARDRAIL_FIELDS = {"allowed_company_stages", "allowed_industries", "employee_min", "employee_max"}


def get_guardrails(store: DocumentStore) -> Guardrails:
    """The guardrails; no restriction when none were ever set."""
    return _guardrails_from_doc(store.get(GUARDRAILS, GLOBAL_DOC))


def set_guardrails(store: DocumentStore, changes: Mapping[str, Any], actor: str, now: dt.datetime) -> Guardrails:
    """Change some guardrails in one transaction and audit each field that changed.

    Args:
        store: The document store.
        changes: Any of ``allowed_company_stages``, ``allowed_industries`` (lists of strings),
            ``employee_min``, ``employee_max`` (non-negative integers or None).
        actor: Who makes the change.
        now: The time of the change.

    Raises:
        BadRequest: an unknown key, a bad value, or a minimum above the maximum.
    """
    actor = _check_actor(actor)
    wanted = _only_known(changes, _GUARDRAIL_FIELDS, "guardrails")
    for key in ("allowed_company_stages", "allowed_industries"):
        if key in wanted:
            wanted[key] = _string_list(key, wanted[key])
    for key in ("employee_min", "employee_max"):
        if key in wanted and wanted[key] is not None:
            wanted[key] = _count(key, wanted[key], maximum=10_000_000)

    def check(merged: dict[str, Any]) -> None:
        low, high = merged.get("employee_min"), merged.get("employee_max")
        if low is not None and high is not None and low > high:
            raise BadRequest(f"employee_min ({low}) is above employee_max ({high}).", code="invalid_guardrail")

    result = _apply(store, GUARDRAILS, GLOBAL_DOC, wanted, actor, now, audit_prefix="guardrails.",
                    current_of=lambda doc: _plain(dataclasses.asdict(_guardrails_from_doc(doc))), check=check)
    return _guardrails_from_doc(result)


def _guardrails_from_doc(doc: dict[str, Any] | None) -> Guardrails:
    if doc is None:
        return Guardrails()
    return Guardrails(
        allowed_company_stages=tuple(doc.get("allowed_company_stages") or ()),
        allowed_industries=tuple(doc.get("allowed_industries") or ()),
        employee_min=doc.get("employee_min"),
        employee_max=doc.get("employee_max"),
        updated_by=doc.get("updated_by"),
        updated_at=doc.get("updated_at"),
    )


def _member(value: str | None, allowed: tuple[str, ...]) -> bool:
    return value is not None and value.strip().casefold() in {a.casefold() for a in allowed}


# --- quota limits --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QuotaLimits:
    """A rep's sending limits (UTC day, ISO week). ``is_default``: never set for this rep."""

    per_day: int = DEFAULT_PER_DAY
    per_week: int = DEFAULT_PER_WEEK
    updated_by: str | None = None
    updated_at: dt.datetime | None = None
    is_default: bool = True

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["updated_at"] = _iso(self.updated_at)
        return out


def get_quota_limits(store: DocumentStore, rep_id: str) -> QuotaLimits:
    """A rep's limits, or the defaults when none were set for them."""
    doc = store.get(QUOTAS, _rep_doc_id(rep_id))
    if doc is None:
        return QuotaLimits()
    return QuotaLimits(per_day=doc.get("per_day", DEFAULT_PER_DAY), per_week=doc.get("per_week", DEFAULT_PER_WEEK),
                       updated_by=doc.get("updated_by"), updated_at=doc.get("updated_at"), is_default=False)


def set_quota_limits(store: DocumentStore, rep_id: str, changes: Mapping[str, Any], actor: str,
                     now: dt.datetime) -> QuotaLimits:
    """Change a rep's limits and audit each field that changed.

    Args:
        store: The document store.
        rep_id: The rep.
        changes: ``per_day`` (0..2000) and/or ``per_week`` (0..14000); the week may not be below the day.
        actor: Who makes the change.
        now: The time of the change.

    Raises:
        BadRequest: an unknown key, a bad value, a bad rep id, or a week limit below the day limit.
    """
    actor = _check_actor(actor)
    doc_id = _rep_doc_id(rep_id)
    wanted = _only_known(changes, {"per_day", "per_week", "is_default"}, "quota limits")
    wanted.pop("is_default", None)  # read-only, echoed back by GET
    if "per_day" in wanted:
        wanted["per_day"] = _count("per_day", wanted["per_day"], maximum=MAX_PER_DAY)
    if "per_week" in wanted:
        wanted["per_week"] = _count("per_week", wanted["per_week"], maximum=MAX_PER_WEEK)

    def check(merged: dict[str, Any]) -> None:
        if merged["per_week"] < merged["per_day"]:
            raise BadRequest(f"per_week ({merged['per_week']}) is below per_day ({merged['per_day']}).",
                             code="invalid_quota")

    def current_of(doc: dict[str, Any] | None) -> dict[str, Any]:
        doc = doc or {}
        return {"per_day": doc.get("per_day", DEFAULT_PER_DAY), "per_week": doc.get("per_week", DEFAULT_PER_WEEK)}

    _apply(store, QUOTAS, doc_id, wanted, actor, now, audit_prefix=f"quotas.{rep_id}.", current_of=current_of,
           check=check)
    return get_quota_limits(store, rep_id)


def get_global_cap(store: DocumentStore) -> int:
    """Emails the whole system may send per UTC day, all reps together."""
    doc = store.get(QUOTAS, GLOBAL_QUOTA_DOC)
    return DEFAULT_GLOBAL_PER_DAY if doc is None else doc.get("per_day", DEFAULT_GLOBAL_PER_DAY)


def set_global_cap(store: DocumentStore, per_day: int, actor: str, now: dt.datetime) -> int:
    """Change the global daily cap and audit the change.

    Raises:
        BadRequest: not a non-negative integer, or no actor.
    """
    actor = _check_actor(actor)
    value = _count("per_day", per_day, maximum=10_000_000)
    _apply(store, QUOTAS, GLOBAL_QUOTA_DOC, {"per_day": value}, actor, now, audit_prefix="quotas.GLOBAL.",
           current_of=lambda doc: {"per_day": (doc or {}).get("per_day", DEFAULT_GLOBAL_PER_DAY)})
    return get_global_cap(store)


def _rep_doc_id(rep_id: str) -> str:
    if not isinstance(rep_id, str) or not rep_id.strip() or "/" in rep_id or len(rep_id) > 500:
        raise BadRequest("A rep id is a non-empty string without '/'.", code="invalid_rep")
    if rep_id == GLOBAL_QUOTA_DOC:
        raise BadRequest(f"{GLOBAL_QUOTA_DOC} names the global cap, not a rep.", code="invalid_rep")
    return rep_id


# --- audit ---------------------------------------------------------------------------------------


def list_audit(store: DocumentStore, limit: int = 50) -> list[dict[str, Any]]:
    """The latest audit entries, newest first.

    Each entry has ``id``, ``key`` (``send_mode``, ``guardrails.employee_max``, ``quotas.<rep>.per_day``...),
    ``old``, ``new``, ``actor`` and ``at``.
    """
    # Ids are built to sort newest first, so one ordered, limited query returns the latest entries.
    return [{"id": doc_id, **doc} for doc_id, doc in store.list(AUDIT, limit=max(0, limit))]


_ID_CEILING = 10 ** 17  # microseconds since the epoch stay below this until the year 5138
_SEQ_CEILING = 10 ** 12
_sequence = itertools.count()  # next() on a count is atomic in CPython


def _audit_id(now: dt.datetime) -> str:
    micros = int(_utc(now).timestamp() * 1_000_000)
    # Inverted time first, so the newest sorts first; then an inverted per-process sequence, so entries
    # written in the same microsecond still list newest first; then randomness, so two instances never
    # collide.
    return f"{_ID_CEILING - micros:017d}-{_SEQ_CEILING - next(_sequence) % _SEQ_CEILING:012d}-{secrets.token_hex(4)}"


def _write_audit(store: DocumentStore, entries: list[tuple[str, Any, Any]], actor: str, now: dt.datetime) -> None:
    for key, old, new in entries:
        store.create(AUDIT, _audit_id(now), {"key": key, "old": old, "new": new, "actor": actor, "at": _utc(now)})
        # The field name only: a key may carry a rep's email, which stays out of logs.
        log.info("setting changed", extra={"fields": {"area": key.split(".", 1)[0], "field": key.rsplit(".", 1)[-1]}})
        if key.rsplit(".", 1)[-1] == "kill_switch":
            # The alert policy on the kill switch matches this message and field (terraform/monitoring.tf).
            log.warning("kill switch changed", extra={"fields": {"kill_switch": bool(new)}})


# --- shared helpers ------------------------------------------------------------------------------


def _apply(store: DocumentStore, collection: str, doc_id: str, wanted: dict[str, Any], actor: str,
           now: dt.datetime, *, audit_prefix: str, current_of: Callable[[dict[str, Any] | None], dict[str, Any]],
           check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Apply ``wanted`` to one document in a transaction; audit what actually changed."""
    changed: list[tuple[str, Any, Any]] = []

    def fn(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        changed.clear()  # the transaction may run more than once
        current = current_of(doc)
        merged = {**current, **wanted}
        if check is not None:
            check(merged)
        for key, new in wanted.items():
            if current.get(key) != new:
                changed.append((audit_prefix + key, current.get(key), new))
        if not changed:
            return doc  # nothing to write; keep who changed it last
        out = {k: v for k, v in merged.items() if k not in _READ_ONLY}
        out.update(updated_by=actor, updated_at=_utc(now))
        return out

    result = store.update(collection, doc_id, fn)
    _write_audit(store, changed, actor, now)
    return result


def _only_known(changes: Mapping[str, Any], known: set[str], what: str) -> dict[str, Any]:
    if not isinstance(changes, Mapping):
        raise BadRequest(f"The {what} change must be a JSON object.")
    unknown = sorted(set(changes) - known - _READ_ONLY)
    if unknown:
        raise BadRequest(f"Unknown {what} field(s): {', '.join(unknown)}; expected {', '.join(sorted(known))}.",
                         code="unknown_field")
    wanted = {k: v for k, v in changes.items() if k not in _READ_ONLY}
    if not wanted:
        raise BadRequest(f"No {what} field to change; expected {', '.join(sorted(known))}.")
    return wanted


def _check_actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise BadRequest("A change needs the identity of who makes it.")
    return actor.strip()


def _count(key: str, value: Any, *, maximum: int) -> int:
    # bool is an int in Python; `true` is not a count.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise BadRequest(f"{key} must be a whole number from 0 to {maximum}, not {value!r}.", code="invalid_value")
    return value


def _string_list(key: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise BadRequest(f"{key} must be a list of strings.", code="invalid_value")
    out: list[str] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item.strip()) > _MAX_ITEM_CHARS:
            raise BadRequest(f"{key} items must be non-empty strings of at most {_MAX_ITEM_CHARS} characters, "
                             f"not {item!r}.", code="invalid_value")
        if item.strip().casefold() not in seen:
            seen.add(item.strip().casefold())
            out.append(item.strip())
    if len(out) > _MAX_LIST_ITEMS:
        raise BadRequest(f"{key} may hold at most {_MAX_LIST_ITEMS} items.", code="invalid_value")
    return out


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if k not in _READ_ONLY}


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else _utc(moment).isoformat().replace("+00:00", "Z")
