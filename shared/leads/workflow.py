"""The workflow of one lead: its states, the one table of legal transitions, and its timeline.

Every transition is a compare-and-set on ``(state, version)``: two deliveries of the same step race
harmlessly, because only one of them moves the row and the other sees ``StaleTransition`` and stops.
Each move is written to ``workflow_events`` in the same transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from shared.errors import Conflict, NotFound, RetryableError
from shared.ports import Cursor, Database

log = logging.getLogger(__name__)

RECEIVED, DRAFTING, DRAFTED, GATED, SENDING = "RECEIVED", "DRAFTING", "DRAFTED", "GATED", "SENDING"
SENT, DRAFT_SAVED, BLOCKED, FAILED, REPLIED = "SENT", "DRAFT_SAVED", "BLOCKED", "FAILED", "REPLIED"

STATES = (RECEIVED, DRAFTING, DRAFTED, GATED, SENDING, SENT, DRAFT_SAVED, BLOCKED, FAILED, REPLIED)
TERMINAL = frozenset({SENT, DRAFT_SAVED, BLOCKED, FAILED})

# from-state -> states it may move to. FAILED and BLOCKED are reachable from every working state so a
# permanent error anywhere ends the workflow visibly; REPLIED is reachable whenever the lead answers
# (a reply cancels whatever was still scheduled).
TRANSITIONS: dict[str, frozenset[str]] = {
    RECEIVED: frozenset({DRAFTING, BLOCKED, FAILED, REPLIED}),
    DRAFTING: frozenset({DRAFTED, BLOCKED, FAILED, REPLIED}),
    DRAFTED: frozenset({GATED, BLOCKED, FAILED, REPLIED}),
    GATED: frozenset({SENDING, BLOCKED, FAILED, REPLIED}),
    SENDING: frozenset({SENT, DRAFT_SAVED, BLOCKED, FAILED, REPLIED}),
    SENT: frozenset({REPLIED}),
    DRAFT_SAVED: frozenset({REPLIED}),
    BLOCKED: frozenset(),
    FAILED: frozenset(),
    REPLIED: frozenset(),
}


class IllegalTransition(Conflict):
    """The table does not allow this move."""

    code = "illegal_transition"


class StaleTransition(Conflict):
    """Someone else moved the workflow first (a duplicate delivery, usually): nothing to do."""

    code = "stale_transition"


def check(from_state: str, to_state: str) -> None:
    if to_state not in TRANSITIONS.get(from_state, frozenset()):
        raise IllegalTransition(f"A workflow cannot go from {from_state} to {to_state}.")


def create_many(cur: Cursor, rows: list[tuple[str, str | None, str | None]], *, actor: str) -> dict[str, str]:
    """Insert RECEIVED workflows for many submissions with two statements, whatever their number.

    Args:
        cur: a cursor in the caller's transaction.
        rows: (submission_id, contact_id, lead_email) each.
        actor: who creates them.

    Returns:
        submission_id -> workflow_id.
    """
    if not rows:
        return {}
    values = ", ".join(["(%s::uuid, %s, %s)"] * len(rows))
    cur.execute(f"INSERT INTO workflows (submission_id, contact_id, lead_email) VALUES {values} "
                "RETURNING submission_id, id", [v for row in rows for v in row])
    created = {str(sub): str(wf) for sub, wf in cur.fetchall()}
    events = ", ".join(["(%s::uuid, NULL, %s, %s, %s)"] * len(created))
    cur.execute(f"INSERT INTO workflow_events (workflow_id, from_state, to_state, actor, reason) VALUES {events}",
                [v for wf in created.values() for v in (wf, RECEIVED, actor, "lead received")])
    return created


def move(cur: Cursor, workflow_id: str, to_state: str, *, actor: str, reason: str = "",
         expect: str | Iterable[str] | None = None, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move a workflow to ``to_state`` inside the caller's transaction.

    Args:
        cur: a cursor in the caller's transaction.
        workflow_id: the workflow.
        to_state: the target state.
        actor: who moves it (a function name, ``ops:<email>``, ``gmail``).
        reason: why, for the timeline.
        expect: the state(s) the caller believes it is in; anything else raises StaleTransition.
        fields: extra workflow columns to set in the same update (``rep_id``, ``scheduled_send_at``).

    Returns:
        The workflow row after the move.

    Raises:
        NotFound, IllegalTransition, StaleTransition.
    """
    cur.execute("SELECT state, version FROM workflows WHERE id = %s FOR UPDATE", (workflow_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"No workflow {workflow_id}.")
    state, version = row
    expected = {expect} if isinstance(expect, str) else set(expect or ())
    if expected and state not in expected:
        raise StaleTransition(f"Workflow {workflow_id} is {state}, not {' or '.join(sorted(expected))}.")
    check(state, to_state)
    assignments = ["state = %s", "version = version + 1", "updated_at = now()"]
    params: list[Any] = [to_state]
    for column, value in (fields or {}).items():
        if column not in _SETTABLE:
            raise ValueError(f"workflow column {column!r} cannot be set here")
        assignments.append(f"{column} = %s")
        params.append(value)
    cur.execute(f"UPDATE workflows SET {', '.join(assignments)} WHERE id = %s AND version = %s "
                "RETURNING id, state, version, rep_id, contact_id, lead_email, scheduled_send_at",
                (*params, workflow_id, version))
    updated = cur.fetchone()
    if updated is None:  # cannot happen under FOR UPDATE, kept as the optimistic-concurrency backstop
        raise StaleTransition(f"Workflow {workflow_id} changed while it was being moved.")
    cur.execute("INSERT INTO workflow_events (workflow_id, from_state, to_state, actor, reason) "
                "VALUES (%s, %s, %s, %s, %s)", (workflow_id, state, to_state, actor, reason[:2000]))
    log.info("workflow moved", extra={"fields": {"workflow_id": workflow_id, "from": state, "to": to_state,
                                                 "actor": actor}})
    names = ("id", "state", "version", "rep_id", "contact_id", "lead_email", "scheduled_send_at")
    return dict(zip(names, updated))


_SETTABLE = frozenset({"rep_id", "contact_id", "lead_email", "scheduled_send_at"})


def transition(db: Database, workflow_id: str, to_state: str, *, actor: str, reason: str = "",
               expect: str | Iterable[str] | None = None, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """``move`` in its own transaction."""
    with db.transaction() as cur:
        return move(cur, workflow_id, to_state, actor=actor, reason=reason, expect=expect, fields=fields)


def record_error(db: Database, workflow_id: str, step: str, *, code: str, message: str, retryable: bool,
                 attempt: int = 1) -> None:
    """Keep a failure with its cause; the workflow's state is moved separately by the step.

    A failure often comes with a sick connection, and a cause lost here is lost for good (the retry that
    follows may succeed and never say what went wrong), so the insert is tried again on a fresh connection
    before giving up. A lost COMMIT acknowledgement may then keep the same cause twice: harmless for a log.
    """
    for tries in range(1, _ERROR_RECORD_TRIES + 1):
        try:
            with db.transaction() as cur:
                cur.execute("INSERT INTO workflow_errors (workflow_id, step, code, message, retryable, attempt) "
                            "VALUES (%s, %s, %s, %s, %s, %s)",
                            (workflow_id, step, code, message[:4000], retryable, attempt))
            return
        except RetryableError:
            if tries == _ERROR_RECORD_TRIES:
                log.error("failure not recorded", extra={"fields": {"workflow_id": workflow_id, "step": step,
                                                                    "error": code}})
                raise
            time.sleep(0.05 * tries)


_ERROR_RECORD_TRIES = 3


def get(db: Database, workflow_id: str) -> dict[str, Any]:
    rows = db.query("SELECT * FROM workflows WHERE id = %s", (workflow_id,))
    if not rows:
        raise NotFound(f"No workflow {workflow_id}.")
    return rows[0]


def timeline(db: Database, workflow_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every transition and every recorded error of a workflow, oldest first."""
    events = db.query("SELECT from_state, to_state, actor, reason, at FROM workflow_events "
                      "WHERE workflow_id = %s ORDER BY id", (workflow_id,))
    errors = db.query("SELECT step, code, message, retryable, attempt, at FROM workflow_errors "
                      "WHERE workflow_id = %s ORDER BY id", (workflow_id,))
    return {"events": events, "errors": errors}
