"""A rep's Google connection as the voice-training page shows it, and disconnecting it.

Disconnecting undoes what connecting did, in the order that leaves nothing behind if it stops half-way:
stop the Gmail watch (it needs the token), revoke the grant at Google, delete the refresh-token secret,
then mark the rep ``disconnected``. Each step is harmless to repeat, so a retried request finishes
the job. A lead already gated keeps its place: its send finds no token and leaves the workflow BLOCKED
with "connect your Google account" (``shared.mail.send_step``), as after a revocation.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.accounts_google import DISCONNECTED
from shared.errors import AppError, NotFound
from shared.mail.ports import GoogleAccessRevoked, GoogleNotConnected

log = logging.getLogger(__name__)


def load(db: Any, rep_id: str) -> dict[str, Any]:
    """The rep's row with every connection column."""
    rows = db.query("SELECT id, email, google_status, google_scopes, google_connected_at, google_last_refresh_at, "
                    "gmail_watch_expires_at FROM reps WHERE id = %s", (str(rep_id),))
    if not rows:
        raise NotFound("There is no such rep.")
    return rows[0]


def status(rep: dict[str, Any]) -> dict[str, Any]:
    """What the page shows about a rep's Google connection (never a token); ``rep`` as ``load`` reads it."""

    def stamp(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {"rep_id": str(rep["id"]), "email": rep["email"], "google_status": rep["google_status"],
            "scopes": sorted(rep.get("google_scopes") or []),
            "connected_at": stamp(rep.get("google_connected_at")),
            "last_refresh_at": stamp(rep.get("google_last_refresh_at")),
            "gmail_watch_expires_at": stamp(rep.get("gmail_watch_expires_at"))}


def disconnect(deps: Any, google: Any | None, rep: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """Disconnect the rep's Google account.

    Args:
        deps: The container (``db``).
        google: The ``GoogleAccount`` port, or None when no OAuth client is configured (nothing to revoke).
        rep: The rep's row.
        actor: Who asked (for the log).

    Returns:
        ``status(rep)`` after the change, plus ``watch_stopped`` and ``revoked`` (what Google confirmed).

    Raises:
        DependencyDown: Google could not be reached to revoke the grant; nothing was marked, try again.
    """
    rep_id = str(rep["id"])
    stopped = revoked = False
    if google is not None:
        try:
            google.stop(rep_id)
            stopped = True
        except (GoogleNotConnected, GoogleAccessRevoked):
            pass  # no token, or Google already dropped it: there is no watch to stop
        except AppError as exc:
            # A watch lapses by itself within 7 days, and notifications for a disconnected rep are ignored.
            log.warning("gmail watch not stopped", extra={"fields": {"rep_id": rep_id, "error": exc.code}})
        revoked = google.revoke(rep_id)  # DependencyDown propagates: the grant must not outlive the secret
        google.forget_refresh_token(rep_id)
    else:
        from shared.voice.sources import google_refresh_secret

        deps.secrets.delete(google_refresh_secret(rep_id))
    rows = deps.db.query(
        "UPDATE reps SET google_status = %s, google_scopes = '{}', gmail_history_id = NULL, "
        "gmail_watch_expires_at = NULL, updated_at = now() WHERE id = %s RETURNING *", (DISCONNECTED, rep_id))
    if not rows:
        raise NotFound("There is no such rep.")
    log.info("google account disconnected", extra={"fields": {"rep_id": rep_id, "actor": actor,
                                                              "revoked": revoked, "watch_stopped": stopped}})
    return {**status(rows[0]), "watch_stopped": stopped, "revoked": revoked}
