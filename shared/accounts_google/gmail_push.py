"""Gmail push notifications: sync the rep's mailbox history, detect replies, learn from sent mail.

A notification says only "the mailbox of ``emailAddress`` changed; its history id is now
``historyId``" (https://developers.google.com/gmail/api/guides/push#receiving_notifications). The
changes themselves are read with ``users.history.list`` from the last history id this system stored.

History ids increase over time but are not contiguous
(https://developers.google.com/gmail/api/guides/sync#partial_synchronization), so they are compared
numerically and the stored one only moves forward, through a conditional UPDATE: a notification that
arrives late, or twice, finds its id already passed and does nothing. Everything a sync does is
idempotent (a workflow moves to REPLIED by compare-and-set, a sample is unique by content hash, a task
cancel of a missing task is a no-op), so two notifications syncing the same range concurrently are
harmless too. The id is advanced only after the messages were handled: a crash in between repeats
work instead of losing it.

A start id older than Gmail keeps answers 404; then the last ``FULL_SYNC_DAYS`` days (at most
``FULL_SYNC_LIMIT`` messages) are read instead, and the notification's id becomes the new start.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.message
import email.policy
import json
import logging
from typing import Any

from shared.accounts_google import CONNECTED
from shared.errors import NotFound
from shared.leads import workflow
from shared.mail.ports import GoogleAccessRevoked
from shared.voice import pipeline, samples

log = logging.getLogger(__name__)

FULL_SYNC_DAYS = 7
FULL_SYNC_LIMIT = 500
MAX_HISTORY_PAGES = 10
_UNSENT = ("RECEIVED", "DRAFTING", "DRAFTED", "GATED", "SENDING")


def decode(envelope: Any) -> tuple[str, int] | None:
    """``(emailAddress, historyId)`` of a Pub/Sub push body carrying a Gmail notification, or None."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        return None
    data = envelope["message"].get("data")
    if not isinstance(data, str) or len(data) > 10_000:
        return None
    try:
        # Pub/Sub sends standard base64; the URL-safe alphabet is accepted too.
        padded = data.replace("+", "-").replace("/", "_") + "=" * (-len(data) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded))
        address = str(payload["emailAddress"]).strip().lower()
        history_id = int(payload["historyId"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    if "@" not in address or history_id <= 0:
        return None
    return address, history_id


def handle(deps: Any, google: Any, envelope: Any, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Handle one Gmail push delivery.

    Args:
        deps: Has ``db``, ``tasks``, ``blobs``.
        google: The ``GoogleAccount`` port.
        envelope: The Pub/Sub push body.
        now: The current time.

    Returns:
        ``{"status": "ignored", "reason": ...}`` or ``{"status": "synced", "mode": "partial"|"full",
        "messages": n, "replies": n, "samples": n, "history_id": ...}``.

    Raises:
        RetryableError: Gmail or the database failed in a way that may pass (the push is redelivered).
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    parsed = decode(envelope)
    if parsed is None:
        # Redelivering a malformed message cannot help: acknowledge it.
        log.warning("gmail push ignored: not a Gmail notification")
        return {"status": "ignored", "reason": "malformed"}
    address, notified = parsed
    rows = deps.db.query("SELECT id, email, hubspot_owner_id, google_status, google_connected_at, gmail_history_id, "
                         "sync_sent_mail FROM reps WHERE email = %s", (address,))
    if not rows:
        return {"status": "ignored", "reason": "unknown_rep"}
    rep = rows[0]
    rep_id = str(rep["id"])
    if rep["google_status"] != CONNECTED:
        return {"status": "ignored", "reason": "not_connected"}
    stored = int(rep["gmail_history_id"]) if rep["gmail_history_id"] is not None else None
    if stored is None:
        # No start point yet (the watch's id was never recorded): this notification becomes it.
        advance(deps.db, rep_id, notified)
        return {"status": "ignored", "reason": "baseline", "history_id": notified}
    if notified <= stored:
        return {"status": "ignored", "reason": "already_synced", "history_id": stored}
    from shared.adapters.gmail_sync import HistoryExpired  # an exception type, not a client

    try:
        try:
            page = google.history(rep_id, stored, max_pages=MAX_HISTORY_PAGES)
            ids, new_id, mode = page.message_ids, (page.history_id if page.truncated
                                                   else max(page.history_id, notified)), "partial"
        except HistoryExpired:
            log.info("gmail history expired: full sync", extra={"fields": {"rep_id": rep_id}})
            ids = google.recent_messages(rep_id, days=FULL_SYNC_DAYS, limit=FULL_SYNC_LIMIT)
            new_id, mode = notified, "full"
        replies = learned = 0
        for message_id in ids:
            message = google.message(rep_id, message_id)
            if message is None:
                continue
            if "SENT" in message.label_ids:
                learned += int(learn_sent(deps, rep, message))
            elif "DRAFT" not in message.label_ids:
                replies += record_reply(deps, rep_id, message)
    except GoogleAccessRevoked:
        from shared.accounts_google.refresh import mark_revoked

        mark_revoked(deps, rep, now)
        return {"status": "ignored", "reason": "revoked"}
    advance(deps.db, rep_id, new_id)
    log.info("gmail synced", extra={"fields": {"rep_id": rep_id, "mode": mode, "messages": len(ids),
                                               "replies": replies, "samples": learned}})
    return {"status": "synced", "mode": mode, "messages": len(ids), "replies": replies, "samples": learned,
            "history_id": new_id}


def advance(db: Any, rep_id: str, history_id: int) -> bool:
    """Move the rep's stored history id forward to ``history_id``; never back. Returns whether it moved."""
    rows = db.query("UPDATE reps SET gmail_history_id = %s, updated_at = now() WHERE id = %s "
                    "AND (gmail_history_id IS NULL OR gmail_history_id < %s) RETURNING id",
                    (history_id, rep_id, history_id))
    return bool(rows)


# --- replies ---------------------------------------------------------------------------------------


def record_reply(deps: Any, rep_id: str, message: Any) -> int:
    """Mark the lead's workflows REPLIED when ``message`` is the lead answering a thread we sent.

    Every workflow of that lead not sent yet is moved to REPLIED too and its scheduled send cancelled:
    a lead who answered must not receive a fresh follow-up.

    Returns:
        How many workflows moved to REPLIED.
    """
    if not message.thread_id or not message.sender:
        return 0
    threads = deps.db.query(
        "SELECT w.id, lower(w.lead_email) AS lead_email FROM draft_emails d JOIN workflows w ON w.id = d.workflow_id "
        "WHERE d.gmail_thread_id = %s AND w.rep_id = %s", (message.thread_id, rep_id))
    answered = [str(row["id"]) for row in threads if row["lead_email"] == message.sender]
    if not answered:
        return 0
    pending = deps.db.query("SELECT id FROM workflows WHERE lower(lead_email) = %s AND state = ANY(%s)",
                            (message.sender, list(_UNSENT)))
    reason = f"the lead replied (Gmail message {message.id})"
    moved = 0
    for workflow_id in dict.fromkeys(answered + [str(row["id"]) for row in pending]):
        moved += int(mark_replied(deps.db, workflow_id, reason))
    for row in pending:
        # After the move: a send that starts now finds the workflow REPLIED and stops.
        deps.tasks.cancel("send", f"send-{row['id']}")
    return moved


def mark_replied(db: Any, workflow_id: str, reason: str) -> bool:
    """Move a workflow to REPLIED by compare-and-set; False when it already is, or cannot be."""
    for _ in range(3):
        try:
            state = workflow.get(db, workflow_id)["state"]
        except NotFound:
            return False
        if state not in workflow.TRANSITIONS or workflow.REPLIED not in workflow.TRANSITIONS[state]:
            return False  # already REPLIED, or BLOCKED/FAILED
        try:
            workflow.transition(db, workflow_id, workflow.REPLIED, actor="gmail", reason=reason, expect=state)
            return True
        except workflow.StaleTransition:
            continue  # moved meanwhile (a send finished): read again
        except workflow.IllegalTransition:
            return False
    return False


# --- sent mail as voice samples ----------------------------------------------------------------------


def _is_ours(db: Any, message: Any) -> bool:
    header = message.message_id_header
    rows = db.query("SELECT 1 FROM draft_emails WHERE gmail_message_id = %s OR message_id = ANY(%s) LIMIT 1",
                    (message.id, [header, f"<{header}>"] if header else []))
    return bool(rows)


def learn_sent(deps: Any, rep: dict[str, Any], message: Any) -> bool:
    """Queue a sent message as a ``gmail`` voice sample when the rep opted in; True when one was created.

    Mail this system sent is skipped: learning from its own drafts would feed the model its own output.
    The message is stored as an ``.eml`` blob and runs through the same extract step as an uploaded
    email (quoted text and signatures are handled there); the content hash of its text dedupes it.
    """
    if not rep.get("sync_sent_mail") or not message.text.strip() or _is_ours(deps.db, message):
        return False
    normalised = " ".join(message.text.split())
    content_hash = samples.hash_bytes(normalised.encode("utf-8"))
    eml = email.message.EmailMessage(policy=email.policy.SMTP)
    eml["From"] = rep["email"]
    if message.recipients:
        eml["To"] = ", ".join(message.recipients[:20])
    eml["Subject"] = message.subject[:500]
    if message.date:
        eml["Date"] = message.date
    eml.set_content(message.text, subtype="html" if message.html else "plain")
    data = eml.as_bytes()
    blob_key = f"gmail/{rep['id']}/{content_hash.split(':', 1)[1]}.eml"
    deps.blobs.put(blob_key, data, content_type="message/rfc822")
    metadata = {"filename": f"gmail-{message.id}.eml", "content_type": "message/rfc822", "bytes": len(data),
                "gmail_message_id": message.id, "thread_id": message.thread_id}
    # The insert mirrors ``samples.create`` for a source type that module does not list yet.
    rows = deps.db.query(
        "INSERT INTO training_samples (rep_id, source_type, source_id, title, purpose, content_hash, blob_key, "
        "metadata) VALUES (%s, 'gmail', %s, %s, 'voice', %s, %s, %s::jsonb) "
        "ON CONFLICT (rep_id, content_hash) DO NOTHING RETURNING id",
        (str(rep["id"]), message.id, message.subject[:500], content_hash, blob_key, json.dumps(metadata)))
    if not rows:
        return False
    deps.tasks.enqueue(pipeline.extract_task(str(rows[0]["id"])))
    return True
