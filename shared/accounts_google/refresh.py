"""The scheduled run of ``token-refresh``: keep every connected rep's Google connection alive.

For each connected rep, with bounded concurrency:

* refresh the access token. Drafting and sending mint tokens on demand anyway; this run exists to
  notice a revoked grant before a lead is waiting on it, and to keep the refresh token in use (Google
  expires one unused for six months: https://developers.google.com/identity/protocols/oauth2#expiration).
  If Google rotates the refresh token, the new one becomes the secret's only version;
* renew the Gmail watch when it has less than ``GMAIL_WATCH_RENEW_HOURS`` left (a watch lapses after
  7 days: https://developers.google.com/gmail/api/guides/push#renewing_mailbox_watch, and Google
  recommends renewing daily);
* on ``invalid_grant``: mark the rep ``revoked`` and tell them through one HubSpot task. A revoked rep
  is not refreshed again until they reconnect, so a dead grant costs nothing per run.

Transient failures are reported in ``errors`` and answered 200: the next run tries again, and a
retried run would only refresh everyone a second time.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.accounts_google import CONNECTED, DISCONNECTED, REVOKED
from shared.accounts_google.oauth import start_watch
from shared.errors import AppError
from shared.mail.ports import GoogleAccessRevoked, GoogleNotConnected

log = logging.getLogger(__name__)

DEFAULT_RENEW_HOURS = 48
DEFAULT_CONCURRENCY = 4
RECONNECT_PURPOSE = "reconnect_google"


def run(deps: Any, google: Any, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Refresh every connected rep, renew watches near expiry, and detect revocations.

    Args:
        deps: Has ``db``, ``crm``, ``settings``.
        google: The ``GoogleAccount`` port.
        now: The current time.

    Returns:
        ``{"refreshed": n, "renewed": n, "revoked": n, "errors": [{"rep_id", "error"}]}``.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    settings = deps.settings
    renew_before = now + dt.timedelta(hours=float(getattr(settings, "gmail_watch_renew_hours", DEFAULT_RENEW_HOURS)))
    reps = deps.db.query("SELECT id, email, hubspot_owner_id, google_connected_at, gmail_watch_expires_at "
                         "FROM reps WHERE google_status = %s ORDER BY id", (CONNECTED,))
    workers = max(1, min(int(getattr(settings, "token_refresh_concurrency", DEFAULT_CONCURRENCY)), len(reps) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="token-refresh") as pool:
        outcomes = list(pool.map(lambda rep: _one(deps, google, rep, now, renew_before), reps))
    report: dict[str, Any] = {"refreshed": 0, "renewed": 0, "revoked": 0, "errors": []}
    for outcome in outcomes:
        for key in ("refreshed", "renewed", "revoked"):
            report[key] += int(outcome.get(key, False))
        if outcome.get("error"):
            report["errors"].append({"rep_id": outcome["rep_id"], "error": outcome["error"]})
    # Reps revoked earlier whose HubSpot task could not be created then (HubSpot down, no contact yet).
    for rep in deps.db.query("SELECT id, email, hubspot_owner_id, google_connected_at FROM reps "
                             "WHERE google_status = %s", (REVOKED,)):
        try:
            notify_revoked(deps, rep, now)
        except AppError as exc:
            report["errors"].append({"rep_id": str(rep["id"]), "error": exc.code})
    log.info("token refresh run", extra={"fields": {k: (len(v) if isinstance(v, list) else v)
                                                    for k, v in report.items()}})
    return report


def _one(deps: Any, google: Any, rep: dict[str, Any], now: dt.datetime, renew_before: dt.datetime) -> dict[str, Any]:
    rep_id = str(rep["id"])
    out: dict[str, Any] = {"rep_id": rep_id}
    try:
        refreshed = google.refresh(rep_id)
    except GoogleAccessRevoked:
        out["revoked"] = mark_revoked(deps, rep, now)
        return out
    except GoogleNotConnected:
        # Marked connected but no token is stored (deleted by hand): the rep must connect again.
        deps.db.query("UPDATE reps SET google_status = %s, updated_at = now() WHERE id = %s AND google_status = %s "
                      "RETURNING id", (DISCONNECTED, rep_id, CONNECTED))
        out["error"] = "google_not_connected"
        return out
    except AppError as exc:
        out["error"] = exc.code
        return out
    if refreshed.rotated_token:
        google.store_refresh_token(rep_id, refreshed.rotated_token)
    deps.db.query("UPDATE reps SET google_last_refresh_at = %s, updated_at = now() WHERE id = %s RETURNING id",
                  (now, rep_id))
    out["refreshed"] = True
    expires = rep.get("gmail_watch_expires_at")
    if expires is None or expires < renew_before:
        try:
            out["renewed"] = start_watch(deps, google, rep_id) is not None
        except GoogleAccessRevoked:
            out["revoked"] = mark_revoked(deps, rep, now)
        if not out.get("renewed") and not out.get("revoked"):
            out["error"] = "watch_not_renewed"
    return out


def mark_revoked(deps: Any, rep: dict[str, Any], now: dt.datetime) -> bool:
    """Mark the rep revoked (once) and create the HubSpot task that asks them to reconnect.

    Returns:
        Whether this call made the change (False when another run already had).
    """
    rows = deps.db.query("UPDATE reps SET google_status = %s, gmail_watch_expires_at = NULL, updated_at = now() "
                         "WHERE id = %s AND google_status = %s RETURNING id", (REVOKED, str(rep["id"]), CONNECTED))
    if not rows:
        return False
    log.warning("google access revoked", extra={"fields": {"rep_id": str(rep["id"])}})
    try:
        notify_revoked(deps, rep, now)
    except AppError as exc:
        # The rep is already marked; the next run creates the task (see ``run``).
        log.warning("reconnect task not created yet", extra={"fields": {"rep_id": str(rep["id"]), "error": exc.code}})
    return True


def reconnect_key(rep: dict[str, Any]) -> str:
    """One key per revocation: the connection that was lost is named by when it was made."""
    connected = rep.get("google_connected_at")
    stamp = int(connected.timestamp()) if isinstance(connected, dt.datetime) else 0
    return f"reconnect-google-{rep['id']}-{stamp}"


def notify_revoked(deps: Any, rep: dict[str, Any], now: dt.datetime) -> str | None:
    """Create the rep's "reconnect Google" HubSpot task once per revocation.

    HubSpot has no idempotency keys, so the ``hubspot_tasks`` row (unique ``idempotency_key``) records
    the task's id once it exists; a later call with the same key does nothing. HubSpot tasks belong to a
    record: the task is attached to the contact of the rep's latest lead (the one whose follow-up is now
    held), or to the rep's own contact.

    Returns:
        The HubSpot task id, or None when there is no contact to attach it to yet.
    """
    key = reconnect_key(rep)
    deps.db.query("INSERT INTO hubspot_tasks (rep_id, kind, purpose, idempotency_key) VALUES (%s, 'task', %s, %s) "
                  "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id", (str(rep["id"]), RECONNECT_PURPOSE, key))
    existing = deps.db.query("SELECT hubspot_id FROM hubspot_tasks WHERE idempotency_key = %s", (key,))
    if existing and existing[0]["hubspot_id"]:
        return str(existing[0]["hubspot_id"])
    contact_id = _contact_for(deps, rep)
    if contact_id is None:
        return None
    connect = deps.settings.function_url("token-refresh") + f"/connect?rep={rep['id']}"
    body = ("Google no longer accepts this system's access to your mailbox (the access was revoked, your password "
            "changed, or it expired). Follow-ups cannot be sent from your Gmail until you reconnect: "
            f"{connect}")
    lookup = getattr(deps.crm, "find_by_idempotency_key", None)
    hubspot_id = lookup(key) if lookup is not None else None
    hubspot_id = str(hubspot_id or deps.crm.create_task(contact_id, rep.get("hubspot_owner_id"),
                                                       "Reconnect your Google account", body, now, key))
    deps.db.query("UPDATE hubspot_tasks SET hubspot_id = %s WHERE idempotency_key = %s RETURNING id", (hubspot_id, key))
    log.info("reconnect task created", extra={"fields": {"rep_id": str(rep["id"])}})
    return hubspot_id


def _contact_for(deps: Any, rep: dict[str, Any]) -> str | None:
    rows = deps.db.query("SELECT contact_id FROM workflows WHERE rep_id = %s AND contact_id IS NOT NULL "
                         "ORDER BY created_at DESC LIMIT 1", (str(rep["id"]),))
    if rows:
        return str(rows[0]["contact_id"])
    find = getattr(deps.crm, "find_contact_by_email", None)
    found = find(str(rep["email"])) if find is not None else None
    return str(found["id"]) if found else None
