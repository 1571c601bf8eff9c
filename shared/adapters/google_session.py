"""A rep's authorized Google session, built from the refresh token kept in the secret store.

``token-refresh`` stores each rep's refresh token as ``google-refresh-<rep id>``. Every adapter that acts
for a rep (Drive, Gmail, Calendar) turns it into a ``google.auth.transport.requests.AuthorizedSession``
here, so the credentials logic and the meaning of a failed refresh live in one place.

Access tokens are reused for the life of the instance: google-auth refreshes a token only when it is
within its refresh threshold of expiry (a few minutes before the ``expires_in`` Google returned), and a
new refresh token in the store (the rep reconnected) replaces the cached session.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests

from shared.ports import SecretNotFound, SecretStore
from shared.voice.sources import google_refresh_secret

log = logging.getLogger(__name__)

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_API_BASE_URL = "https://www.googleapis.com"

REVOKED = "revoked"
RETRY = "retry"
MISCONFIGURED = "misconfigured"


class NoRefreshToken(LookupError):
    """The rep has no Google refresh token in the secret store: they never connected, or disconnected."""


def read_refresh_token(secrets: SecretStore, rep_id: Any) -> str:
    """The rep's refresh token.

    Raises:
        NoRefreshToken: none is stored (or it is empty).
    """
    try:
        token = secrets.access(google_refresh_secret(rep_id)).decode("utf-8").strip()
    except SecretNotFound:
        token = ""
    if not token:
        raise NoRefreshToken(str(rep_id))
    return token


def rep_session(secrets: SecretStore, rep_id: Any, *, client_id: str, client_secret: str,
                token_uri: str = GOOGLE_TOKEN_URI, http: requests.Session | None = None,
                refresh_token: str | None = None) -> Any:
    """A new ``AuthorizedSession`` acting for the rep.

    No access token is fetched here: the first request refreshes one, so a revoked grant surfaces as a
    ``google.auth.exceptions.RefreshError`` on that request (see ``refresh_failure_kind``).

    Args:
        secrets: The secret store holding ``google-refresh-<rep id>``.
        rep_id: The rep.
        client_id: The OAuth client the refresh token was issued to.
        client_secret: That client's secret.
        token_uri: Google's token endpoint (a stand-in's in tests).
        http: The ``requests.Session`` used for token refreshes (default: a new one).
        refresh_token: The token, when the caller has read it already.

    Raises:
        NoRefreshToken: the rep has no Google connection.
    """
    token = refresh_token or read_refresh_token(secrets, rep_id)
    # Imported here so that functions which never act for a rep do not pay for google-auth's transport.
    from google.auth.transport.requests import AuthorizedSession, Request
    from google.oauth2.credentials import Credentials

    # No scopes: a refresh then returns a token for whatever the rep granted at connect time, where
    # asking for scopes could be refused as invalid_scope.
    credentials = Credentials(token=None, refresh_token=token, token_uri=token_uri, client_id=client_id,
                              client_secret=client_secret)
    return AuthorizedSession(credentials, auth_request=Request(session=http or requests.Session()))


class RepSessions:
    """One cached ``AuthorizedSession`` per rep for the life of the instance.

    Args:
        secrets: The secret store.
        client_id: The OAuth client id.
        client_secret: The OAuth client secret.
        token_uri: Google's token endpoint.
        http: The ``requests.Session`` used for token refreshes.
    """

    def __init__(self, secrets: SecretStore, *, client_id: str, client_secret: str,
                 token_uri: str = GOOGLE_TOKEN_URI, http: requests.Session | None = None):
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        self._secrets = secrets
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_uri = token_uri
        self._http = http
        self._lock = threading.Lock()
        # rep id → (refresh token, session): a new refresh token (the rep reconnected) replaces the session.
        self._sessions: dict[str, tuple[str, Any]] = {}

    def get(self, rep_id: Any) -> Any:
        """The rep's session, reusing the cached one while the stored refresh token is unchanged.

        Raises:
            NoRefreshToken: the rep has no Google connection.
        """
        token = read_refresh_token(self._secrets, rep_id)
        key = str(rep_id)
        with self._lock:
            cached = self._sessions.get(key)
            if cached and cached[0] == token:
                return cached[1]
        session = rep_session(self._secrets, rep_id, client_id=self._client_id, client_secret=self._client_secret,
                              token_uri=self._token_uri, http=self._http, refresh_token=token)
        with self._lock:
            self._sessions[key] = (token, session)
        return session

    def forget(self, session: Any) -> None:
        """Drop a session whose grant failed, so the next call reads the secret store again."""
        with self._lock:
            for key, (_, cached) in list(self._sessions.items()):
                if cached is session:
                    del self._sessions[key]


def refresh_failure_kind(exc: Exception) -> str:
    """What a ``RefreshError`` means: ``revoked`` (the rep must reconnect), ``retry`` or ``misconfigured``.

    https://developers.google.com/identity/protocols/oauth2#expiration: a refresh token stops working
    when the person revokes access, changes password (with Gmail scopes), or leaves it unused for six
    months; the token endpoint then answers ``invalid_grant``.
    """
    text = str(exc.args[0]) if exc.args else ""
    if "invalid_grant" in text or "unauthorized_client" in text:
        return REVOKED
    if getattr(exc, "retryable", False):
        return RETRY
    if "invalid_client" in text:
        # Our OAuth client is wrong, not the rep's grant: an operator has to fix the configuration.
        log.error("google token refresh refused our OAuth client (invalid_client)")
        return MISCONFIGURED
    return REVOKED


# --- calling a Google API with a rep's session -------------------------------------------------------

# https://developers.google.com/gmail/api/guides/handle-errors: a 403 with one of these reasons means "slow down".
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
REVOKED_MESSAGE = ("The rep's Google connection has expired or was revoked; the rep must reconnect their Google "
                   "account.")


def refresh_error(exc: Exception) -> Exception:
    """The project's error for a failed token refresh (``google.auth.exceptions.RefreshError``)."""
    from shared.errors import DependencyDown
    from shared.mail.ports import GoogleAccessRevoked

    kind = refresh_failure_kind(exc)
    if kind == RETRY:
        return DependencyDown("Google could not refresh the connection just now.")
    if kind == MISCONFIGURED:
        return DependencyDown("Our OAuth client is misconfigured (invalid_client).")
    return GoogleAccessRevoked(REVOKED_MESSAGE)


def request_json(owner: Any, session: Any, method: str, url: str, *, params: dict[str, str] | None,
                 payload: Any, what: str, timeout: float) -> Any:
    """Send one request with a rep's session, translating credential and transport failures.

    ``owner.forget(session)`` drops a session whose grant failed, so the next call reads the store again.
    """
    from google.auth import exceptions as gexc

    from shared.errors import DependencyDown

    try:
        return session.request(method, url, params=params, json=payload, timeout=timeout)
    except gexc.RefreshError as exc:
        owner.forget(session)
        raise refresh_error(exc) from None
    except gexc.TransportError:
        raise DependencyDown(f"Could not reach Google to renew the {what} connection.") from None
    except requests.Timeout:
        raise DependencyDown(f"{what} did not answer in time.") from None
    except requests.RequestException:
        raise DependencyDown(f"Could not reach {what}.") from None


def checked_json(response: Any, what: str, *, code: str = "google_refused") -> dict[str, Any]:
    """The JSON object of a 200/204 (``{}`` when empty), or the project's error for Google's error shape.

    429 and rate-limit 403s are ``RateLimited``, 5xx ``DependencyDown`` (both retried), 401 (google-auth
    already refreshed once) ``GoogleAccessRevoked``, any other 4xx a ``PermanentError`` with ``code``.
    """
    from shared.errors import DependencyDown, PermanentError, RateLimited
    from shared.mail.ports import GoogleAccessRevoked

    try:
        status = response.status_code
        if status in (200, 204):
            if not response.content:
                return {}
            try:
                body = response.json()
            except ValueError:
                raise DependencyDown(f"{what} sent an answer that could not be read.") from None
            if not isinstance(body, dict):
                raise DependencyDown(f"{what} sent an answer that could not be read.")
            return body
        reason, message = "", ""
        try:
            error = response.json().get("error") or {}
            message = str(error.get("message") or "")
            reason = str(((error.get("errors") or [{}])[0]).get("reason") or "")
        except (ValueError, AttributeError, IndexError, TypeError):
            pass
        if status == 429 or (status == 403 and reason in _RATE_REASONS):
            raise RateLimited(f"{what} is limiting requests right now; it will be tried again shortly.")
        if status >= 500:
            raise DependencyDown(f"{what} answered HTTP {status}.")
        if status == 401:
            raise GoogleAccessRevoked(REVOKED_MESSAGE)
        log.warning("google api refused a request", extra={"fields": {"api": what, "status": status,
                                                                      "reason": reason or None}})
        detail = reason if status == 403 else message[:160]
        raise PermanentError(f"{what} refused the request (HTTP {status}{': ' + detail if detail else ''}).",
                             code=code)
    finally:
        response.close()
