"""The send step: a GATED workflow → an email sent from the rep's Gmail (or left there as a draft) →
a HubSpot task and note → ``SENT`` or ``DRAFT_SAVED`` → the ``workflow-finished`` event.

Cloud Tasks delivers at least once, so every side effect here is keyed and done once:

* **The email.** Its Message-ID is derived from the workflow (``<wf-{id}@{domain}>``), stored on the
  draft before anything is sent, and looked up in the rep's mailbox (sent, drafts, spam and trash)
  before every send. A send that reached Gmail but whose answer was lost (a 500 after storing, a
  timeout, a crash before the ids were recorded) is found by the retry and recorded, never sent twice.
  Two deliveries running at the same moment are serialised by a lease (a ``step_runs`` row that expires
  after ``SEND_LEASE_SECONDS``, longer than any Gmail call may take): the second answers 503 and its
  retry finds the workflow finished.
  Two limits of the lookup are accepted: Gmail's search may take a few seconds to index a message it
  just accepted, so the send queue's minimum backoff should be at least 10 seconds; and the lookup
  relies on Gmail keeping the Message-ID header the client set on ``messages.send``. That is checked
  here only against the stand-in; confirm it on a real mailbox before ``SEND_ALLOWED``: were Gmail to
  replace the header, the lookup would find nothing and only the Gmail ids recorded right after a
  successful call would guard a retry.
* **The HubSpot task and note.** Each is a ``hubspot_tasks`` row (``task-<id>``, ``note-<id>``) inserted
  before HubSpot is called and given its ``hubspot_id`` right after; a redelivery skips rows that have
  one. HubSpot's engagement APIs take no idempotency key, so one window remains: HubSpot created the
  object and this instance died before the single-row UPDATE that records its id. The retry then
  creates a second one. The window is kept to that one statement (nothing else runs between the call
  and the UPDATE); a backend that can find a record by its key (``find_by_idempotency_key``) is asked
  before creating again, though HubSpot's adapter cannot and answers None.
* **The state.** ``GATED → SENDING`` is a compare-and-set; a delivery that finds ``SENDING`` resumes (the
  crash-between-send-and-state-update case). Terminal states are no-ops.

The kill switch is read fresh from the store right before the send (never from the flags cache), and
so is the send mode: a ``SEND`` decision meets ``DRAFT_ONLY`` → the email is left as a draft, with that
reason. A revoked Google grant blocks the workflow, marks the rep ``revoked`` and asks the rep, through
a HubSpot task, to reconnect. Retryable failures (Gmail or HubSpot 429/5xx) are recorded and raised, so
the queue retries with backoff; the attempt numbered ``SEND_MAX_ATTEMPTS`` gives up: ``FAILED`` with the
cause and the quota given back, unless the email already went out (then the workflow ends ``SENT`` and
the HubSpot failure stays recorded on it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import html
import json
import time
import logging
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from shared import flags as flags_mod
from shared.errors import BadRequest, NotFound, PermanentError, RetryableError
from shared.leads import workflow
from shared.mail.message import InvalidAddress, OutgoingEmail, build_message, message_id_for, text_to_html, to_raw
from shared.mail.ports import DraftRef, GoogleAccessRevoked, GoogleNotConnected, Sender, SentRef

log = logging.getLogger(__name__)

ACTOR = "send"
STEP = "send"
WORKFLOW_FINISHED = "workflow-finished"
SEND, DRAFT = "SEND", "DRAFT"

KILL_SWITCH_REASON = "kill switch was on at send time"
DRAFT_ONLY_REASON = "send mode was DRAFT_ONLY at send time; left as a Gmail draft for the rep"


class SendInProgress(RetryableError):
    """Another delivery of this workflow holds the send lease: retry later (it will find the outcome)."""

    code = "send_in_progress"


@dataclasses.dataclass(frozen=True)
class SendSettings:
    """What the send step reads from ``Settings`` (each with a default until declared in ``config``).

    Attributes:
        footer: Text appended to every email (``EMAIL_FOOTER``).
        message_id_domain: Domain of the Message-IDs; '' uses the rep's (``MESSAGE_ID_DOMAIN``).
        max_attempts: Deliveries of one send task, the first included; the last gives up
            (``SEND_MAX_ATTEMPTS``; the send queue's ``max_attempts`` must be at least this).
        follow_up_days: The HubSpot follow-up task is due this many days later (``FOLLOW_UP_TASK_DAYS``).
        lease_seconds: How long one delivery may hold a workflow's send (``SEND_LEASE_SECONDS``).
    """

    footer: str = ""
    message_id_domain: str = ""
    max_attempts: int = 8
    follow_up_days: int = 3
    lease_seconds: int = 300

    @classmethod
    def from_settings(cls, settings: Any) -> SendSettings:
        base = cls()

        def pick(name: str, default: Any, parse: Callable[[Any], Any]) -> Any:
            value = getattr(settings, name, None)
            return default if value is None or value == "" else parse(value)

        return cls(footer=pick("email_footer", base.footer, str),
                   message_id_domain=pick("message_id_domain", base.message_id_domain, str),
                   max_attempts=max(1, pick("send_max_attempts", base.max_attempts, int)),
                   follow_up_days=max(0, pick("follow_up_task_days", base.follow_up_days, int)),
                   lease_seconds=max(30, pick("send_lease_seconds", base.lease_seconds, int)))


def send_step(deps: Any, workflow_id: str, *, attempt: int = 1, now: dt.datetime | None = None) -> dict[str, Any]:
    """Send a gated workflow's email (or save it as a draft) exactly once and log it in HubSpot.

    Args:
        deps: The container, or any object with ``db``, ``store``, ``mailer``, ``crm``, ``events`` and
            ``settings``.
        workflow_id: The workflow.
        attempt: This delivery's attempt, 1 for the first (``X-CloudTasks-TaskRetryCount`` + 1).
        now: The current time (default: now).

    Returns:
        ``{"workflow_id", "status", "state", ...}``; status is ``sent``, ``draft_saved``, ``blocked``,
        ``failed``, ``duplicate`` (already finished) or ``skipped`` (not a gated workflow).

    Raises:
        BadRequest: ``workflow_id`` is not a UUID.
        NotFound: no such workflow.
        RetryableError: Gmail, HubSpot or a store failed and attempts remain (the queue retries).
    """
    _check_id(workflow_id)
    settings = SendSettings.from_settings(getattr(deps, "settings", None))
    now = now or dt.datetime.now(dt.timezone.utc)
    row = _load(deps.db, workflow_id)
    if row["state"] not in (workflow.GATED, workflow.SENDING):
        return _not_sendable(deps, row)
    with _lease(deps.db, workflow_id, settings.lease_seconds) as held:
        if not held:
            raise SendInProgress("Another delivery of this workflow is sending it right now; try again later.")
        row = _load(deps.db, workflow_id)  # it may have moved while the lease was elsewhere
        if row["state"] not in (workflow.GATED, workflow.SENDING):
            return _not_sendable(deps, row)
        last = attempt >= settings.max_attempts
        try:
            return _run(deps, row, settings, now)
        except workflow.StaleTransition:
            return _not_sendable(deps, _load(deps.db, workflow_id))
        except (GoogleAccessRevoked, GoogleNotConnected) as exc:
            return _disconnected(deps, _load(deps.db, workflow_id), exc, now, attempt, last)
        except PermanentError as exc:
            return _fail(deps, _load(deps.db, workflow_id), exc.code, exc.message, attempt)
        except RetryableError as exc:
            workflow.record_error(deps.db, workflow_id, STEP, code=exc.code, message=exc.message, retryable=True,
                                  attempt=attempt)
            if not last:
                log.info("send will be retried", extra={"fields": {"workflow_id": workflow_id, "error": exc.code,
                                                                   "attempt": attempt}})
                raise
            return _give_up(deps, _load(deps.db, workflow_id), exc.code,
                            f"{exc.message} (gave up after {attempt} attempts)", attempt)
        except Exception:
            if not last:
                raise  # a bug: the router logs the traceback and the 500 makes the queue retry
            log.exception("send failed on its last attempt", extra={"fields": {"workflow_id": workflow_id}})
            workflow.record_error(deps.db, workflow_id, STEP, code="internal", message="unexpected error",
                                  retryable=False, attempt=attempt)
            return _give_up(deps, _load(deps.db, workflow_id), "internal",
                            "An unexpected error stopped this email from being sent.", attempt)


# --- the happy path --------------------------------------------------------------------------------


def _run(deps: Any, row: dict[str, Any], settings: SendSettings, now: dt.datetime) -> dict[str, Any]:
    workflow_id = row["id"]
    if row.get("subject") is None:
        raise PermanentError("The workflow is GATED but has no draft.", code="missing_draft")
    if row.get("decision") not in (SEND, DRAFT):
        raise PermanentError(f"The gate's decision {row.get('decision')!r} is neither SEND nor DRAFT.",
                             code="missing_decision")
    if not row.get("rep_email"):
        raise PermanentError("The workflow has no rep to send from.", code="missing_rep")
    if not row.get("lead_email"):
        raise PermanentError("The workflow has no lead email address to write to.", code="missing_recipient")
    if row["state"] == workflow.GATED:
        workflow.transition(deps.db, workflow_id, workflow.SENDING, actor=ACTOR, reason=f"{row['decision']}",
                            expect=workflow.GATED)
    else:
        log.info("send resumed", extra={"fields": {"workflow_id": workflow_id}})
    sender = Sender(id=str(row["rep_id"]), email=row["rep_email"], display_name=row.get("rep_name") or "")
    try:
        message_id = row.get("message_id") or message_id_for(workflow_id, sender.email, settings.message_id_domain)
    except InvalidAddress as exc:
        raise PermanentError(f"No Message-ID can be made for this email: {exc}.", code="invalid_address") from None
    if not row.get("message_id"):
        # Stored before anything is sent: every later attempt looks up the same id.
        deps.db.query("UPDATE draft_emails SET message_id = %s WHERE workflow_id = %s AND message_id IS NULL "
                      "RETURNING workflow_id", (message_id, workflow_id))

    if not (row.get("gmail_message_id") or row.get("gmail_draft_id")):
        blocked = _deliver(deps, row, sender, message_id, settings, now)
        if blocked is not None:
            return blocked
        row = _load(deps.db, workflow_id)

    outcome = workflow.DRAFT_SAVED if row.get("gmail_draft_id") else workflow.SENT
    if outcome == workflow.DRAFT_SAVED and row.get("quota_reserved"):
        _release_quota(deps, workflow_id)  # a draft sends nothing: its slot goes back
    _log_in_hubspot(deps, row, outcome, settings, now)
    return _finish(deps, row, outcome, _outcome_reason(row, outcome))


def _deliver(deps: Any, row: dict[str, Any], sender: Sender, message_id: str, settings: SendSettings,
             now: dt.datetime) -> dict[str, Any] | None:
    """Send or save the draft, unless the mailbox already has it. Returns the result when blocked."""
    workflow_id = row["id"]
    mailer = deps.mailer
    found = mailer.find_by_message_id(sender, message_id)
    if found is not None:
        log.info("send found the message already in the mailbox", extra={"fields": {"workflow_id": workflow_id}})
        _record_delivery(deps.db, workflow_id, found, None, now)
        return None
    # The last moment: both flags are read from the store now, never from a cache.
    if flags_mod.kill_switch_engaged(deps.store):
        return _block(deps, row, "kill_switch", KILL_SWITCH_REASON)
    mode = flags_mod.read_flags(deps.store, max_age_seconds=0).send_mode
    downgrade = row["decision"] == SEND and mode != flags_mod.SEND_ALLOWED
    as_draft = row["decision"] == DRAFT or downgrade
    raw = to_raw(_message(row, sender, settings, now))
    ref: SentRef | DraftRef = mailer.create_draft(sender, raw) if as_draft else mailer.send(sender, raw)
    _record_delivery(deps.db, workflow_id, ref, DRAFT_ONLY_REASON if downgrade else None, now)
    log.info("email handed to the mailbox", extra={"fields": {"workflow_id": workflow_id,
                                                              "as_draft": as_draft, "downgraded": downgrade}})
    return None


def _message(row: dict[str, Any], sender: Sender, settings: SendSettings, now: dt.datetime):
    try:
        return build_message(OutgoingEmail(
            workflow_id=row["id"], from_address=sender.email, from_name=sender.display_name,
            to_address=row["lead_email"], to_name=_lead_name(row), subject=row["subject"], text=row["body"],
            html=text_to_html(row["body"]), footer=settings.footer, message_id_domain=settings.message_id_domain,
            date=now))
    except InvalidAddress as exc:
        raise PermanentError(f"The email cannot be addressed: {exc}.", code="invalid_address") from None


def _record_delivery(db: Any, workflow_id: str, ref: SentRef | DraftRef, reason: str | None,
                     now: dt.datetime) -> None:
    draft_id = ref.draft_id if isinstance(ref, DraftRef) else None
    sent_at = None if draft_id else now
    extra = json.dumps([reason] if reason else [])
    db.query("UPDATE draft_emails SET gmail_message_id = %s, gmail_thread_id = %s, gmail_draft_id = %s, "
             "sent_at = %s, reasons = reasons || %s::jsonb WHERE workflow_id = %s RETURNING workflow_id",
             (ref.message_id, ref.thread_id or None, draft_id, sent_at, extra, workflow_id))


# --- HubSpot -------------------------------------------------------------------------------------------


def _log_in_hubspot(deps: Any, row: dict[str, Any], outcome: str, settings: SendSettings, now: dt.datetime) -> None:
    workflow_id = row["id"]
    contact_id = row.get("contact_id")
    if not contact_id:
        log.warning("no HubSpot contact on the workflow; task and note skipped",
                    extra={"fields": {"workflow_id": workflow_id}})
        return
    crm = deps.crm
    lead = _lead_name(row) or row["lead_email"]
    sent = outcome == workflow.SENT
    subject = f"Follow up with {lead}"
    body = (f"An email was sent to {lead} (subject: {row['subject']}). Follow up if there is no reply."
            if sent else f"An email to {lead} is waiting as a draft in your Gmail (subject: {row['subject']}). "
                         "Review it, send it, then follow up.")
    due_at = now + dt.timedelta(days=settings.follow_up_days)
    _once(deps.db, workflow_id, row.get("rep_id"), "task", "follow_up", f"task-{workflow_id}",
          lambda key: crm.create_task(contact_id, row.get("hubspot_owner_id"), subject, body, due_at, key),
          getattr(crm, "find_by_idempotency_key", None))
    note = _note_html(row, sent)
    _once(deps.db, workflow_id, row.get("rep_id"), "note", "email_log", f"note-{workflow_id}",
          lambda key: crm.create_note(contact_id, note, row.get("sent_at") or now, key),
          getattr(crm, "find_by_idempotency_key", None))


def _once(db: Any, workflow_id: str | None, rep_id: Any, kind: str, purpose: str, key: str,
          create: Callable[[str], str], lookup: Callable[[str], str | None] | None = None) -> str:
    """Create one HubSpot object for ``key`` unless a row already records its id (see the module doc)."""
    db.query("INSERT INTO hubspot_tasks (workflow_id, rep_id, kind, purpose, idempotency_key) "
             "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
             (workflow_id, rep_id, kind, purpose, key))
    existing = db.query("SELECT hubspot_id FROM hubspot_tasks WHERE idempotency_key = %s", (key,))
    if existing and existing[0]["hubspot_id"]:
        return existing[0]["hubspot_id"]
    hubspot_id = None
    if lookup is not None:
        # An earlier attempt may have created it and died before recording it; a backend that can tell says so.
        hubspot_id = lookup(key)
    hubspot_id = str(hubspot_id or create(key))
    # Nothing may run between the call above and this statement: it is the whole duplicate window. A
    # dropped connection here would leave HubSpot's object unrecorded and a retry would create another
    # (HubSpot has no idempotency keys), so the record is retried at once on a fresh connection first.
    for attempt in range(_RECORD_ATTEMPTS):
        try:
            db.query("UPDATE hubspot_tasks SET hubspot_id = %s WHERE idempotency_key = %s RETURNING id",
                     (hubspot_id, key))
            return hubspot_id
        except RetryableError:
            if attempt == _RECORD_ATTEMPTS - 1:
                log.error("hubspot object created but not recorded", extra={"fields": {"key": key}})
                raise
            time.sleep(0.05 * (attempt + 1))
    return hubspot_id


_RECORD_ATTEMPTS = 5


def _note_html(row: dict[str, Any], sent: bool) -> str:
    reasons = row.get("reasons") or []
    head = "Follow-up email sent" if sent else "Follow-up email left as a Gmail draft for the rep"
    parts = [f"<p><strong>{html.escape(head)}</strong></p>",
             f"<p><strong>Subject:</strong> {html.escape(row['subject'])}</p>",
             text_to_html(row["body"])]
    if reasons:
        items = "".join(f"<li>{html.escape(str(r))}</li>" for r in reasons)
        parts.append(f"<p><strong>Gate decision {html.escape(str(row.get('decision')))}:</strong></p><ul>{items}</ul>")
    return "".join(parts)


# --- endings -------------------------------------------------------------------------------------------


def _finish(deps: Any, row: dict[str, Any], to_state: str, reason: str) -> dict[str, Any]:
    workflow_id = row["id"]
    workflow.transition(deps.db, workflow_id, to_state, actor=ACTOR, reason=reason, expect=workflow.SENDING)
    _publish(deps, workflow_id, to_state)
    return {"workflow_id": workflow_id, "status": to_state.lower(), "state": to_state}


def _block(deps: Any, row: dict[str, Any], code: str, reason: str) -> dict[str, Any]:
    workflow_id = row["id"]
    _release_quota(deps, workflow_id)
    log.info("send blocked", extra={"fields": {"workflow_id": workflow_id, "code": code}})
    result = _finish(deps, row, workflow.BLOCKED, reason)
    return {**result, "reason": reason}


def _disconnected(deps: Any, row: dict[str, Any], exc: PermanentError, now: dt.datetime, attempt: int,
                  last: bool) -> dict[str, Any]:
    """The rep's Google grant is gone: mark the rep, ask them to reconnect, block the workflow."""
    workflow_id = row["id"]
    workflow.record_error(deps.db, workflow_id, STEP, code=exc.code, message=exc.message, retryable=False,
                          attempt=attempt)
    if isinstance(exc, GoogleAccessRevoked) and row.get("rep_id"):
        deps.db.query("UPDATE reps SET google_status = 'revoked', updated_at = now() WHERE id = %s "
                      "RETURNING id", (row["rep_id"],))
    if row.get("contact_id") and row.get("rep_id"):
        # One reconnect task per rep and connection, however many workflows the revocation blocks.
        since = row.get("google_connected_at")
        key = f"reconnect-google-{row['rep_id']}-{int(since.timestamp()) if since else 'never'}"
        subject = "Reconnect your Google account"
        body = ("Emails could not be sent from your Gmail because the connection to your Google account was "
                "revoked or has expired. Reconnect it on the voice-training page; blocked follow-ups are listed on "
                "the dashboard.")
        try:
            _once(deps.db, workflow_id, row["rep_id"], "task", "reconnect_google", key,
                  lambda k: deps.crm.create_task(row["contact_id"], row.get("hubspot_owner_id"), subject, body,
                                                 now, k),
                  getattr(deps.crm, "find_by_idempotency_key", None))
        except RetryableError as failure:
            workflow.record_error(deps.db, workflow_id, STEP, code=failure.code, message=failure.message,
                                  retryable=True, attempt=attempt)
            if not last:
                raise
    return _block(deps, row, exc.code, exc.message)


def _give_up(deps: Any, row: dict[str, Any], code: str, message: str, attempt: int) -> dict[str, Any]:
    workflow_id = row["id"]
    if row["state"] not in (workflow.GATED, workflow.SENDING):
        return _not_sendable(deps, row)
    if row["state"] == workflow.SENDING and (row.get("gmail_message_id") or row.get("gmail_draft_id")):
        # The email went out; only logging it in HubSpot failed. FAILED would claim otherwise.
        outcome = workflow.DRAFT_SAVED if row.get("gmail_draft_id") else workflow.SENT
        log.warning("email delivered but HubSpot logging gave up", extra={"fields": {"workflow_id": workflow_id}})
        return _finish(deps, row, outcome, _outcome_reason(row, outcome) + f"; HubSpot logging failed: {message}")
    return _fail(deps, row, code, message, attempt, recorded=True)


def _fail(deps: Any, row: dict[str, Any], code: str, message: str, attempt: int, *,
          recorded: bool = False) -> dict[str, Any]:
    workflow_id = row["id"]
    if not recorded:
        workflow.record_error(deps.db, workflow_id, STEP, code=code, message=message, retryable=False,
                              attempt=attempt)
    if row["state"] not in (workflow.GATED, workflow.SENDING):
        return {"workflow_id": workflow_id, "status": "duplicate", "state": row["state"]}
    _release_quota(deps, workflow_id)
    # The send-failures alert counts this message (terraform/monitoring.tf).
    log.warning("send failed", extra={"fields": {"workflow_id": workflow_id, "reason": code}})
    workflow.transition(deps.db, workflow_id, workflow.FAILED, actor=ACTOR, reason=message,
                        expect=(workflow.GATED, workflow.SENDING))
    _publish(deps, workflow_id, workflow.FAILED)
    return {"workflow_id": workflow_id, "status": "failed", "state": workflow.FAILED, "error": code}


def _not_sendable(deps: Any, row: dict[str, Any]) -> dict[str, Any]:
    workflow_id = row["id"]
    if row["state"] in workflow.TERMINAL:
        _republish_if_lost(deps, row)
        return {"workflow_id": workflow_id, "status": "duplicate", "state": row["state"]}
    log.info("send skipped: workflow not gated", extra={"fields": {"workflow_id": workflow_id,
                                                                   "state": row["state"]}})
    return {"workflow_id": workflow_id, "status": "skipped", "state": row["state"]}


def _outcome_reason(row: dict[str, Any], outcome: str) -> str:
    if outcome == workflow.SENT:
        return "sent from the rep's Gmail"
    if DRAFT_ONLY_REASON in (row.get("reasons") or []):
        return DRAFT_ONLY_REASON
    return "left as a Gmail draft for the rep"


def _release_quota(deps: Any, workflow_id: str) -> None:
    from shared.gate.step import release_for

    release_for(deps, workflow_id)


# --- the workflow-finished event -------------------------------------------------------------------


def _publish(deps: Any, workflow_id: str, state: str) -> None:
    deps.events.publish(WORKFLOW_FINISHED, {"workflow_id": workflow_id, "state": state})
    deps.db.query("INSERT INTO step_runs (key, result) VALUES (%s, %s::jsonb) ON CONFLICT (key) DO NOTHING "
                  "RETURNING key", (f"send-published:{workflow_id}", json.dumps({"state": state})))


def _republish_if_lost(deps: Any, row: dict[str, Any]) -> None:
    """A delivery that ended the workflow and then failed to publish is retried: publish now (once)."""
    workflow_id = row["id"]
    published = deps.db.query("SELECT 1 FROM step_runs WHERE key = %s", (f"send-published:{workflow_id}",))
    if published:
        return
    ended_here = deps.db.query("SELECT actor FROM workflow_events WHERE workflow_id = %s ORDER BY id DESC LIMIT 1",
                               (workflow_id,))
    if ended_here and ended_here[0]["actor"] == ACTOR:
        _publish(deps, workflow_id, row["state"])


# --- the lease -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lease(db: Any, workflow_id: str, seconds: int) -> Iterator[bool]:
    """Hold ``send-lease:<id>`` in ``step_runs`` while sending; yields whether it was taken.

    An expired lease (its holder died) is taken over. ``seconds`` must exceed the longest a delivery can
    run (Gmail and HubSpot timeouts included), or two holders could overlap; the Message-ID lookup
    still stands behind it.
    """
    key = f"send-lease:{workflow_id}"
    token = secrets.token_hex(8)
    taken = db.query(
        "INSERT INTO step_runs (key, result, at) VALUES (%s, %s::jsonb, now()) "
        "ON CONFLICT (key) DO UPDATE SET result = EXCLUDED.result, at = now() "
        "WHERE step_runs.at < now() - make_interval(secs => %s) RETURNING key",
        (key, json.dumps({"token": token}), float(seconds)))
    try:
        yield bool(taken)
    finally:
        if taken:
            db.query("DELETE FROM step_runs WHERE key = %s AND result->>'token' = %s RETURNING key", (key, token))


# --- loading -------------------------------------------------------------------------------------------


def _load(db: Any, workflow_id: str) -> dict[str, Any]:
    rows = db.query(
        "SELECT w.id, w.state, w.rep_id, w.contact_id, w.lead_email, d.subject, d.body, d.decision, d.reasons, "
        "d.context, d.message_id, d.gmail_message_id, d.gmail_draft_id, d.gmail_thread_id, d.quota_reserved, "
        "d.sent_at, r.email AS rep_email, r.display_name AS rep_name, r.hubspot_owner_id, r.google_status, "
        "r.google_connected_at "
        "FROM workflows w LEFT JOIN draft_emails d ON d.workflow_id = w.id LEFT JOIN reps r ON r.id = w.rep_id "
        "WHERE w.id = %s", (workflow_id,))
    if not rows:
        raise NotFound(f"No workflow {workflow_id}.")
    row = rows[0]
    row["id"] = str(row["id"])
    if row.get("rep_id") is not None:
        row["rep_id"] = str(row["rep_id"])
    for name, empty in (("reasons", []), ("context", {})):
        value = row.get(name)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = empty
        row[name] = value if isinstance(value, type(empty)) else empty
    return row


def _lead_name(row: dict[str, Any]) -> str:
    lead = row.get("context", {}).get("lead")
    lead = lead if isinstance(lead, dict) else {}
    first = lead.get("firstname") or lead.get("first_name") or ""
    last = lead.get("lastname") or lead.get("last_name") or ""
    return (lead.get("name") or f"{first} {last}").strip()


def _check_id(workflow_id: Any) -> None:
    try:
        uuid.UUID(str(workflow_id))
    except ValueError as exc:
        raise BadRequest("workflow_id must be a workflow's UUID.") from exc


# --- the Cloud Task route ------------------------------------------------------------------------


def _router():
    from shared.bootstrap import container
    from shared.errors import BadRequest
    from shared.web import Router, caller, json_body

    router = Router("send")

    @router.route("POST", "/", delivery=True)
    def deliver(request):
        caller(request, "send", via="tasks")
        workflow_id = json_body(request).get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise BadRequest("workflow_id is required.")
        try:
            retries = max(0, int(request.headers.get("X-CloudTasks-TaskRetryCount", "0")))
        except ValueError:
            retries = 0
        return send_step(container(), workflow_id, attempt=retries + 1)

    return router


send_router = _router()
