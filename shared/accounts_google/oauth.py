"""Connecting a rep's Google account: OAuth 2.0 authorization code with PKCE, offline access.

https://developers.google.com/identity/protocols/oauth2/web-server

``start`` builds the authorization URL. Its ``state`` is ``<payload>.<HMAC-SHA256>``: the payload binds
the rep id, a random nonce and an expiry, and the MAC is keyed with a key kept in the secret store
(``google-oauth-state-key``), so a state cannot be forged or moved to another rep. The PKCE
``code_verifier`` never leaves the server: it is kept in the document store under the nonce
(``oauth_states/<nonce>``) and that document is deleted when the callback uses it, which makes every
state single use (a replayed callback finds nothing).

``finish`` checks the state, exchanges the code with the verifier, checks that the Google account that
consented is the rep's own, keeps the refresh token as a new version of ``google-refresh-<rep id>``
(destroying the older ones), records the connection on ``reps`` and starts the Gmail watch.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets as pysecrets
import threading
import urllib.parse
import weakref
from typing import Any

from shared.accounts_google import CONNECTED
from shared.errors import AppError, BadRequest, Forbidden, PermanentError, RetryableError
from shared.ports import SecretNotFound

log = logging.getLogger(__name__)

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
SCOPES = (
    "openid",
    "email",
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/drive.readonly",
    "https://www.googleapis.com/auth/calendar.freebusy",
)
# Without these the system cannot do its job for the rep; the others only narrow what it can import.
REQUIRED_SCOPES = frozenset({"https://www.googleapis.com/auth/gmail.send",
                             "https://www.googleapis.com/auth/gmail.compose"})
STATE_KEY_SECRET = "google-oauth-state-key"
STATES = "oauth_states"
STATE_TTL_SECONDS = 600

_key_lock = threading.Lock()
_key_cache: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


class StateRefused(BadRequest):
    """The callback's state is missing, forged, expired or already used."""

    code = "oauth_state_invalid"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _utc(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.timezone.utc)


def state_key(secrets: Any) -> bytes:
    """The HMAC key for states, created in the secret store on first use and cached per instance."""
    cached = _key_cache.get(secrets)
    if cached:
        return cached
    with _key_lock:
        try:
            key = secrets.access(STATE_KEY_SECRET)
        except SecretNotFound:
            # Two instances racing here each add a version; the newer wins and a state signed with the
            # older one fails once, which the rep answers by clicking Connect again.
            secrets.add_version(STATE_KEY_SECRET, pysecrets.token_hex(32).encode("ascii"))
            key = secrets.access(STATE_KEY_SECRET)
        _key_cache[secrets] = key
        return key


def sign_state(key: bytes, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read_state(key: bytes, state: str, now: dt.datetime) -> dict[str, Any]:
    """The payload of a state this system signed and that has not expired.

    Raises:
        StateRefused: it was not signed with ``key``, is malformed, or has expired.
    """
    body, _, mac = (state or "").partition(".")
    if not body or not mac or len(state) > 2000:
        raise StateRefused("The sign-in link is incomplete. Start connecting your Google account again.")
    expected = _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, mac):
        raise StateRefused("The sign-in link was altered. Start connecting your Google account again.")
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        raise StateRefused("The sign-in link is unreadable. Start connecting your Google account again.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        raise StateRefused("The sign-in link is unreadable. Start connecting your Google account again.")
    if payload["exp"] < now.timestamp():
        raise StateRefused("The sign-in link has expired. Start connecting your Google account again.")
    return payload


def redirect_uri(settings: Any) -> str:
    """The callback URL registered on the OAuth client (exactly this string, per Google's matching rules)."""
    return settings.function_url("token-refresh") + "/callback"


def start(deps: Any, rep: dict[str, Any], *, now: dt.datetime | None = None) -> str:
    """The Google authorization URL that connects ``rep``'s account.

    Args:
        deps: Has ``settings``, ``secrets`` and ``store``.
        rep: The rep (``id``, ``email``).
        now: The current time.

    Returns:
        The URL to redirect the browser to.
    """
    now = _utc(now)
    s = deps.settings
    nonce = pysecrets.token_urlsafe(24)
    # RFC 7636 §4.1: 43-128 characters of [A-Z a-z 0-9 -._~]; 64 random bytes → 86 characters.
    verifier = pysecrets.token_urlsafe(64)
    challenge = _b64(hashlib.sha256(verifier.encode("ascii")).digest())
    expires = int(now.timestamp()) + STATE_TTL_SECONDS
    deps.store.set(STATES, nonce, {"rep_id": str(rep["id"]), "code_verifier": verifier,
                                   "expires_at": dt.datetime.fromtimestamp(expires, dt.timezone.utc)})
    state = sign_state(state_key(deps.secrets), {"rep": str(rep["id"]), "nonce": nonce, "exp": expires})
    params = {
        "client_id": s.oauth_client_id,
        "redirect_uri": redirect_uri(s),
        "response_type": "code",
        "scope": " ".join(SCOPES),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        # A refresh token is issued only with offline access, and again on a reconnect only when consent
        # is shown again (https://developers.google.com/identity/protocols/oauth2/web-server#offline).
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "login_hint": rep.get("email") or "",
    }
    base = getattr(s, "google_auth_uri", "") or GOOGLE_AUTH_URI
    return base + ("&" if "?" in base else "?") + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def _consume(store: Any, nonce: str, rep_id: str, now: dt.datetime) -> str:
    """The code verifier for ``nonce``, deleting it so that the state cannot be used twice."""
    if not isinstance(nonce, str) or not nonce or len(nonce) > 100 or "/" in nonce:
        raise StateRefused("The sign-in link is unreadable. Start connecting your Google account again.")
    record = store.get(STATES, nonce)
    # The delete is the single-use check: of two callbacks racing with the same state, one deletes it.
    if record is None or not store.delete(STATES, nonce):
        raise StateRefused("This sign-in link was already used. Start connecting your Google account again.")
    expires = record.get("expires_at")
    if record.get("rep_id") != rep_id or not isinstance(expires, dt.datetime) or expires < now:
        raise StateRefused("The sign-in link has expired. Start connecting your Google account again.")
    return str(record["code_verifier"])


def finish(deps: Any, google: Any, *, code: str | None, state: str | None, error: str | None = None,
           now: dt.datetime | None = None) -> dict[str, Any]:
    """Complete the connect flow from Google's redirect.

    Args:
        deps: Has ``settings``, ``secrets``, ``store`` and ``db``.
        google: The ``GoogleAccount`` port.
        code: The authorization code.
        state: The state sent with the authorization request.
        error: Google's ``error`` parameter (``access_denied`` when the rep declined).
        now: The current time.

    Returns:
        ``{"rep_id", "email", "scopes", "missing_scopes", "watch_expires_at"}``.

    Raises:
        StateRefused: A forged, expired or reused state.
        Forbidden: The rep declined, or consented with another Google account.
        PermanentError: Google refused the code, or returned no refresh token.
        RetryableError: Google could not be reached.
    """
    from shared.accounts import get_rep

    now = _utc(now)
    payload = read_state(state_key(deps.secrets), state or "", now)
    rep_id = str(payload.get("rep") or "")
    verifier = _consume(deps.store, str(payload.get("nonce") or ""), rep_id, now)
    if error:
        raise Forbidden("Google access was not granted, so nothing was connected. You can connect again at any "
                        "time.", code="oauth_declined")
    if not code or len(code) > 2000:
        raise BadRequest("Google's answer carried no authorization code.")
    rep = get_rep(deps.db, rep_id)
    if rep is None:
        raise StateRefused("The rep this link was made for no longer exists.")
    grant = google.exchange_code(code, verifier, redirect_uri(deps.settings))
    if grant.audience and grant.audience != deps.settings.oauth_client_id:
        raise Forbidden("Google's answer was meant for another application.", code="oauth_wrong_audience")
    if not grant.email or not grant.email_verified or grant.email != str(rep["email"]).lower():
        # Connecting someone else's mailbox would send this rep's email from it.
        log.warning("google connect refused: the account is not the rep's", extra={"fields": {"rep_id": rep_id}})
        raise Forbidden(f"You signed in to Google as a different account. Connect the Google account of "
                        f"{rep['email']}.", code="oauth_wrong_account")
    if not grant.refresh_token:
        raise PermanentError("Google did not grant offline access. Remove this app in your Google account's "
                             "third-party access settings, then connect again.", code="oauth_no_refresh_token")
    google.store_refresh_token(rep_id, grant.refresh_token)
    scopes = list(grant.scopes)
    deps.db.query("UPDATE reps SET google_status = %s, google_scopes = %s, google_connected_at = %s, "
                  "google_last_refresh_at = %s, updated_at = now() WHERE id = %s RETURNING id",
                  (CONNECTED, scopes, now, now, rep_id))
    log.info("google account connected", extra={"fields": {"rep_id": rep_id, "scopes": len(scopes)}})
    watch_expires = start_watch(deps, google, rep_id)
    return {"rep_id": rep_id, "email": rep["email"], "scopes": scopes,
            "missing_scopes": sorted(REQUIRED_SCOPES - set(scopes)), "watch_expires_at": watch_expires}


def push_topic(settings: Any) -> str:
    """The Pub/Sub topic Gmail publishes to (``GMAIL_PUSH_TOPIC``; default ``gmail-push`` in the project)."""
    return getattr(settings, "gmail_push_topic", "") or f"projects/{settings.project_id}/topics/gmail-push"


def start_watch(deps: Any, google: Any, rep_id: str) -> dt.datetime | None:
    """Start or renew the rep's Gmail watch and record its expiry; None when Google refused for now.

    The stored history id only moves forward: a watch's ``historyId`` is the mailbox's current one, and
    an older notification must never take it back (https://developers.google.com/gmail/api/guides/sync).
    A failure is left for the scheduled run, which renews any watch with no or a near expiry.
    """
    try:
        watch = google.watch(rep_id, push_topic(deps.settings))
    except (PermanentError, RetryableError) as exc:
        if isinstance(exc, AppError) and exc.code == "google_revoked":
            raise
        log.warning("gmail watch not started", extra={"fields": {"rep_id": rep_id, "error": exc.code}})
        return None
    deps.db.query("UPDATE reps SET gmail_watch_expires_at = %s, "
                  "gmail_history_id = GREATEST(COALESCE(gmail_history_id, 0), %s), updated_at = now() "
                  "WHERE id = %s RETURNING id", (watch.expires_at, watch.history_id, rep_id))
    return watch.expires_at
