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
