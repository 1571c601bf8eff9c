"""The gate step: a drafted workflow → a decision stored with its reasons → a scheduled ``send`` task.

``gate_step`` is idempotent. The decision and the workflow's move out of ``DRAFTED`` are written in one
transaction, and the move is a compare-and-set, so of two deliveries of the same event only one
decides; the other finds the workflow already ``GATED`` and only enqueues the named ``send-{id}`` task
again, which the queue refuses as a duplicate (and which heals a crash between commit and enqueue).

The quota reservation is idempotent per workflow (``shared.quotas``); when a concurrent delivery won
with another answer, a reservation this one took is given back.

While Gmail's breaker is open the step raises ``DependencyDown``, so Pub/Sub redelivers the event later
with its backoff and nothing is lost. After ``hold_max_seconds`` of waiting (counted from the draft's
creation, well within Pub/Sub's 7-day message retention) the workflow is failed with a recorded error
instead, so a person sees it rather than the event expiring silently.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

from shared import flags as flags_mod
from shared import quotas
from shared.errors import BadRequest, DependencyDown, NotFound, PermanentError
from shared.gate import GateSettings, breakers, schedule
from shared.gate.decide import BLOCK, DRAFT, HOLD, SEND, GateInputs, decide, warmup_day_limit, with_quota
from shared.leads import workflow
from shared.ports import Task

log = logging.getLogger(__name__)

ACTOR = "gate"
SEND_TARGET = "send"


def send_task(workflow_id: str, at: dt.datetime | None) -> Task:
    """The one ``send`` task of a workflow (named, so a second enqueue is a duplicate)."""
    return Task(target=SEND_TARGET, payload={"workflow_id": workflow_id}, name=f"send-{workflow_id}",
                schedule_at=at)


def gate_step(deps: Any, workflow_id: str, *, now: dt.datetime) -> dict[str, Any]:
    """Decide on a drafted workflow, store the decision, and hand SEND or DRAFT over to ``send``.

    Args:
        deps: The container, or any object with ``db``, ``store``, ``tasks`` and ``settings``.
        workflow_id: The workflow whose draft was created.
        now: The time of the decision (timezone-aware).

    Returns:
        ``{"workflow_id", "status", ...}``: ``decided`` (with ``action``, ``reasons``, ``risk_score`` and
        ``scheduled_send_at``), ``duplicate`` (already decided), ``skipped`` (not a drafted workflow),
        or ``failed`` (a permanent problem, recorded on the workflow).

    Raises:
        BadRequest: ``workflow_id`` is not a workflow id (nothing to record it on).
        NotFound: no such workflow.
        DependencyDown: Gmail's breaker is open, or the queue or a store is unavailable: retry later.
    """
    _check_id(workflow_id)
    row = _load(deps.db, workflow_id)
    if row["state"] != workflow.DRAFTED:
        return _already_decided(deps, row)
    try:
        return _gate(deps, row, now)
    except workflow.StaleTransition:
        return {"workflow_id": workflow_id, "status": "duplicate"}
    except PermanentError as exc:
        _fail(deps.db, workflow_id, exc.code, exc.message, retryable=False)
        return {"workflow_id": workflow_id, "status": "failed", "error": exc.code}


def release_for(deps: Any, workflow_id: str, *, now: dt.datetime | None = None) -> bool:
    """Give back the quota a workflow reserved (the send failed for good). Safe to repeat.

    Args:
        deps: Any object with ``db`` and ``store``.
        workflow_id: The workflow.
        now: The current time (default: now).

    Returns:
        Whether a reservation was released.
    """
    _check_id(workflow_id)
    rows = deps.db.query("SELECT w.rep_id, d.context, d.quota_reserved FROM workflows w "
                         "LEFT JOIN draft_emails d ON d.workflow_id = w.id WHERE w.id = %s", (workflow_id,))
    if not rows:
        raise NotFound(f"No workflow {workflow_id}.")
    rep_id = _rep_id(rows[0])
    if not rep_id:
        return False
    released = quotas.release(deps.store, rep_id, workflow_id, now or dt.datetime.now(dt.timezone.utc))
    deps.db.query("UPDATE draft_emails SET quota_reserved = false WHERE workflow_id = %s RETURNING workflow_id",
                  (workflow_id,))
    return released


# --- the decision ----------------------------------------------------------------------------------


def _gate(deps: Any, row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    workflow_id = str(row["id"])
    if row.get("subject") is None:
        raise PermanentError("The workflow is DRAFTED but has no draft.", code="missing_draft")
    settings = GateSettings.from_settings(deps.settings)
    policy = breakers.BreakerPolicy.from_settings(deps.settings)
    store = deps.store
    flags = flags_mod.read_flags(store, max_age_seconds=getattr(deps.settings, "flags_cache_seconds", 5.0))
    context = row["context"]
    inputs = GateInputs(subject=row["subject"], body=row["body"], context=context,
                        voice_score=row.get("voice_score"), send_mode=flags.send_mode,
                        kill_switch=flags.kill_switch, gmail=breakers.state(store, "gmail", now, policy),
                        guardrails=flags_mod.get_guardrails(store))
    decision = decide(inputs, settings)

    if decision.action == HOLD:
        return _hold(deps.db, row, now, settings)

    rep_id = _rep_id(row)
    reserved = False
    if decision.action == SEND:
        if not rep_id:
            raise PermanentError("The workflow has no rep to send from.", code="missing_rep")
        limits = quotas.limits_for(store, rep_id)
        day_limit = warmup_day_limit(_connected_at(row), now, start=settings.warmup_start_per_day,
                                     rep_per_day=limits.per_day)
        reservation = quotas.reserve(store, rep_id, workflow_id, limits, now, day_limit=day_limit)
        reserved = reservation.granted
        decision = with_quota(decision, granted=reservation.granted, reason=reservation.reason)

    at = None
    if decision.action in (SEND, DRAFT):
        lead, rep = _part(context, "lead"), _part(context, "rep")
        at = schedule.next_send_time(now, workflow_id, (lead.get("time_zone"), rep.get("time_zone"),
                                                        row.get("rep_time_zone")), settings)
    try:
        _persist(deps.db, workflow_id, decision, reserved, at, now)
    except workflow.StaleTransition:
        if reserved:
            _give_back_unless_kept(deps, workflow_id, rep_id, now)
        raise
    log.info("gate decided", extra={"fields": {"workflow_id": workflow_id, "action": decision.action,
                                               "risk_score": decision.risk_score, "codes": list(decision.codes)}})
    if at is not None:
        deps.tasks.enqueue(send_task(workflow_id, at))
    return {"workflow_id": workflow_id, "status": "decided", **decision.to_json(),
            "scheduled_send_at": at.isoformat() if at else None}


def _hold(db, row: dict[str, Any], now: dt.datetime, settings: GateSettings) -> dict[str, Any]:
    workflow_id = str(row["id"])
    drafted_at = row.get("drafted_at") or now
    if now - drafted_at < dt.timedelta(seconds=settings.hold_max_seconds):
        log.info("gate held: gmail circuit open", extra={"fields": {"workflow_id": workflow_id}})
        raise DependencyDown("Gmail's circuit breaker is open; the gate will decide when it recovers.")
    hours = settings.hold_max_seconds / 3600
    _fail(db, workflow_id, "gmail_unavailable",
          f"Gmail stayed unavailable (circuit breaker open) for more than {hours:g} hours after the draft was "
          "written; the draft is kept and can be sent by hand.", retryable=True)
    return {"workflow_id": workflow_id, "status": "failed", "error": "gmail_unavailable"}


def _persist(db, workflow_id: str, decision, reserved: bool, at: dt.datetime | None, now: dt.datetime) -> None:
    to_state = workflow.BLOCKED if decision.action == BLOCK else workflow.GATED
    reason = "; ".join(decision.reasons) if to_state == workflow.BLOCKED else \
        f"{decision.action}: " + "; ".join(decision.reasons)
    with db.transaction() as cur:
        workflow.move(cur, workflow_id, to_state, actor=ACTOR, reason=reason, expect=workflow.DRAFTED,
                      fields={"scheduled_send_at": at} if at else None)
        cur.execute("UPDATE draft_emails SET decision = %s, reasons = %s::jsonb, risk_score = %s, decided_at = %s, "
                    "quota_reserved = %s WHERE workflow_id = %s",
                    (decision.action, json.dumps(list(decision.reasons)), decision.risk_score, now, reserved,
                     workflow_id))


def _give_back_unless_kept(deps: Any, workflow_id: str, rep_id: str, now: dt.datetime) -> None:
    rows = deps.db.query("SELECT quota_reserved FROM draft_emails WHERE workflow_id = %s", (workflow_id,))
    if not rows or not rows[0]["quota_reserved"]:
        quotas.release(deps.store, rep_id, workflow_id, now)


def _already_decided(deps: Any, row: dict[str, Any]) -> dict[str, Any]:
    workflow_id = str(row["id"])
    if row["state"] == workflow.GATED and row.get("decision") in (SEND, DRAFT):
        # The decision is stored; the task may not be (a crash between commit and enqueue). The task is
        # named, so re-enqueueing is refused when it exists.
        deps.tasks.enqueue(send_task(workflow_id, row.get("scheduled_send_at")))
        return {"workflow_id": workflow_id, "status": "duplicate", "action": row["decision"]}
    if row["state"] not in (workflow.RECEIVED, workflow.DRAFTING):
        # Decided already, or past the gate (sending, finished, replied): this event is a redelivery.
        return {"workflow_id": workflow_id, "status": "duplicate", "action": row.get("decision")}
    log.info("gate skipped: workflow not drafted", extra={"fields": {"workflow_id": workflow_id,
                                                                     "state": row["state"]}})
    return {"workflow_id": workflow_id, "status": "skipped", "state": row["state"]}


def _fail(db, workflow_id: str, code: str, message: str, *, retryable: bool) -> None:
    workflow.record_error(db, workflow_id, ACTOR, code=code, message=message, retryable=retryable)
    try:
        workflow.transition(db, workflow_id, workflow.FAILED, actor=ACTOR, reason=message, expect=workflow.DRAFTED)
    except workflow.StaleTransition:
        pass  # decided meanwhile by another delivery: its outcome stands
    log.warning("gate failed", extra={"fields": {"workflow_id": workflow_id, "error": code}})


# --- loading ---------------------------------------------------------------------------------------


def _load(db, workflow_id: str) -> dict[str, Any]:
    rows = db.query(
        "SELECT w.id, w.state, w.rep_id, w.scheduled_send_at, d.subject, d.body, d.voice_score, d.context, "
        "d.decision, d.quota_reserved, d.created_at AS drafted_at, r.time_zone AS rep_time_zone, "
        "r.google_connected_at "
        "FROM workflows w LEFT JOIN draft_emails d ON d.workflow_id = w.id LEFT JOIN reps r ON r.id = w.rep_id "
        "WHERE w.id = %s", (workflow_id,))
    if not rows:
        raise NotFound(f"No workflow {workflow_id}.")
    row = rows[0]
    context = row.get("context")
    if isinstance(context, str):
        try:
            context = json.loads(context)
        except json.JSONDecodeError:
            context = {}
    row["context"] = context if isinstance(context, dict) else {}
    if row.get("voice_score") is not None:
        row["voice_score"] = float(row["voice_score"])
    return row


def _rep_id(row: dict[str, Any]) -> str | None:
    if row.get("rep_id"):
        return str(row["rep_id"])
    context = row.get("context")
    if isinstance(context, str):
        context = json.loads(context or "{}")
    rep = _part(context if isinstance(context, dict) else {}, "rep")
    return str(rep["id"]) if rep.get("id") else None


def _connected_at(row: dict[str, Any]) -> dt.datetime | None:
    value = _part(row["context"], "rep").get("google_connected_at") or row.get("google_connected_at")
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return None


def _part(context: dict[str, Any], key: str) -> dict[str, Any]:
    value = context.get(key)
    return value if isinstance(value, dict) else {}


def _check_id(workflow_id: Any) -> None:
    try:
        uuid.UUID(str(workflow_id))
    except ValueError as exc:
        raise BadRequest("workflow_id must be a workflow's UUID.") from exc


# --- the Pub/Sub CloudEvent entry ----------------------------------------------------------------


def handle_event(data: Any, request: Any) -> None:
    """One `draft-created` CloudEvent: check the push caller, then gate the workflow it names.

    Permanent problems are recorded by the step (or the event names no workflow) and end here with a
    2xx; a bad caller and retryable problems abort with their own status, so Pub/Sub redelivers only
    what may still work.
    """
    import flask

    from shared.bootstrap import container
    from shared.errors import PermanentError, RetryableError
    from shared.logs import bind_request
    from shared.web import caller, error_response

    with bind_request(request.headers, container().settings.project_id):
        try:
            caller(request, "gate", via="pubsub")
            gate_step(container(), workflow_id_of(data), now=dt.datetime.now(dt.timezone.utc))
        except PermanentError as exc:
            if exc.status in (401, 403):
                flask.abort(error_response(exc))
            log.warning("gate event dropped", extra={"fields": {"error": exc.code}})
        except RetryableError as exc:
            flask.abort(error_response(exc))


def workflow_id_of(data: Any) -> str:
    """The workflow id in a Pub/Sub message (``{"message": {"data": base64 JSON}}``)."""
    import base64
    import binascii

    from shared.errors import BadRequest

    try:
        payload = json.loads(base64.b64decode(data["message"]["data"], validate=True))
        workflow_id = payload["workflow_id"]
    except (TypeError, KeyError, ValueError, binascii.Error) as exc:
        raise BadRequest("The event is not a draft-created message with a workflow_id.") from exc
    if not isinstance(workflow_id, str) or not workflow_id:
        raise BadRequest("The event's workflow_id must be a non-empty string.")
    return workflow_id
