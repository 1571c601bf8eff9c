"""Google account calls for the connection lifecycle: the OAuth code exchange, token refresh, and the
Gmail calls that keep a mailbox in sync (``users.watch``, ``users.stop``, ``users.history.list``,
``users.messages.list``/``get``).

Plain REST through google-auth's ``AuthorizedSession`` (``shared.adapters.google_session``), like the
mailer and Drive adapters: no discovery client, so a cold start stays small. Sessions are cached per
rep for the life of the instance, and google-auth reuses each access token until shortly before it
expires.

Calls (https://developers.google.com/gmail/api/reference/rest/v1/users):

* ``POST /gmail/v1/users/me/watch`` ``{"topicName", "labelIds", "labelFilterBehavior"}`` →
  ``{"historyId", "expiration"}`` (expiration: epoch milliseconds as a string). A watch lapses after
  7 days and must be renewed (https://developers.google.com/gmail/api/guides/push#renewing_mailbox_watch).
* ``POST /gmail/v1/users/me/stop``.
* ``GET /gmail/v1/users/me/history?startHistoryId=&historyTypes=messageAdded`` → pages of history
  records and the mailbox's current ``historyId``. History ids only grow, but are not contiguous;
  a start id older than what Gmail keeps (typically about a week) answers 404 and the client must do
  a full sync (https://developers.google.com/gmail/api/guides/sync#partial_synchronization).
* ``GET /gmail/v1/users/me/messages?q=newer_than:Nd`` and ``GET .../messages/<id>?format=full``.

Errors map to the project's: 429 and rate-limit 403s → ``RateLimited``; 5xx and transport failures →
``DependencyDown``; a refused refresh (``invalid_grant``) → ``GoogleAccessRevoked``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
from email.utils import getaddresses
from typing import Any

import requests

from shared.adapters.google_session import (
    GOOGLE_API_BASE_URL,
    GOOGLE_TOKEN_URI,
    NoRefreshToken,
    RepSessions,
    checked_json,
    read_refresh_token,
    refresh_error,
    request_json,
)
from shared.errors import DependencyDown, PermanentError
from shared.mail.ports import GoogleNotConnected
from shared.ports import SecretStore
from shared.voice.sources import google_refresh_secret

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 200_000  # a message body larger than this is not a useful voice sample anyway


class HistoryExpired(Exception):
    """Gmail no longer keeps history from the start id (404): a full sync is needed."""


@dataclasses.dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint returned for an authorization code.

    The refresh token is a credential: this object is never logged (``repr`` hides it).
    """

    refresh_token: str = dataclasses.field(repr=False)
    access_token: str = dataclasses.field(repr=False)
    expires_in: int
    scopes: tuple[str, ...]
    email: str
    email_verified: bool
    audience: str


@dataclasses.dataclass(frozen=True)
class Refreshed:
    """The outcome of a refresh: a new refresh token only when Google rotated it."""

    expires_at: dt.datetime | None
    rotated_token: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class Watch:
    history_id: int
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class HistoryPage:
    """Messages added since the start id, and the history id to continue from next time (the mailbox's
    current one, or the last record read when pages were left unread)."""

    message_ids: list[str]
    history_id: int
    truncated: bool  # more pages remained than the caller allowed


@dataclasses.dataclass(frozen=True)
class GmailMessage:
    id: str
    thread_id: str
    label_ids: tuple[str, ...]
    history_id: int
    sender: str  # the From address, lower case
    recipients: tuple[str, ...]
    subject: str
    message_id_header: str  # RFC 5322 Message-ID, without angle brackets
    in_reply_to: str
    date: str
    text: str  # the text/plain body (or text/html stripped by the extractor later)
    html: bool  # True when ``text`` came from a text/html part


def _decode_id_token(id_token: str) -> dict[str, Any]:
    # The ID token comes straight from Google's token endpoint over TLS, authenticated with our client
    # secret, so its claims can be read without checking the signature: "since you are communicating
    # directly with Google over an intermediary-free HTTPS channel ... you can be confident that the
    # token you receive really comes from Google" (https://developers.google.com/identity/openid-connect/
    # openid-connect#obtainuserinfo). The audience is still checked by the caller.
    try:
        payload = id_token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        raise PermanentError("Google returned an unreadable ID token.", code="oauth_bad_id_token") from None


class GoogleAccountApi:
    """A rep's Google account: OAuth exchange and refresh, Gmail watch and sync.

    Args:
        secrets: Where each rep's refresh token lives (``google-refresh-<rep id>``).
        client_id: Our OAuth client id.
        client_secret: Its secret.
        token_uri: Google's token endpoint (a stand-in's in tests).
        api_base_url: ``https://www.googleapis.com`` (a stand-in's in tests).
        timeout: Seconds per HTTP request.
        http: The ``requests.Session`` for token calls (default: a new one).
    """

    def __init__(self, secrets: SecretStore, *, client_id: str, client_secret: str,
                 token_uri: str = GOOGLE_TOKEN_URI, api_base_url: str = GOOGLE_API_BASE_URL,
                 timeout: float = 30.0, http: requests.Session | None = None):
        self._secrets = secrets
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_uri = token_uri
        self._http = http or requests.Session()
        self._sessions = RepSessions(secrets, client_id=client_id, client_secret=client_secret,
                                     token_uri=token_uri, http=self._http)
        self.api_base_url = api_base_url.rstrip("/")
        self._gmail = self.api_base_url + "/gmail/v1/users/me"
        self._timeout = timeout

    # -- OAuth ----------------------------------------------------------------------------------

    def exchange_code(self, code: str, code_verifier: str, redirect_uri: str) -> TokenGrant:
        """Exchange an authorization code (with its PKCE verifier) for tokens.

        https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code

        Raises:
            PermanentError: Google refused the code (used, expired, or the verifier does not match).
            DependencyDown: Google could not be reached.
        """
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": code_verifier,
                "redirect_uri": redirect_uri, "client_id": self._client_id, "client_secret": self._client_secret}
        try:
            response = self._http.post(self._token_uri, data=form, timeout=self._timeout)
        except requests.RequestException:
            raise DependencyDown("Could not reach Google to finish connecting the account.") from None
        if response.status_code >= 500:
            raise DependencyDown(f"Google's token endpoint answered HTTP {response.status_code}.")
        try:
            body = response.json()
        except ValueError:
            raise DependencyDown("Google's token endpoint sent an answer that could not be read.") from None
        if response.status_code != 200:
            error = str(body.get("error") or "error") if isinstance(body, dict) else "error"
            # The error code only (e.g. invalid_grant); the description may echo the request.
            raise PermanentError(f"Google refused the authorization code ({error}).", code="oauth_exchange_failed")
        claims = _decode_id_token(str(body.get("id_token") or "")) if body.get("id_token") else {}
        return TokenGrant(refresh_token=str(body.get("refresh_token") or ""),
                          access_token=str(body.get("access_token") or ""),
                          expires_in=int(body.get("expires_in") or 0),
                          scopes=tuple(sorted(str(body.get("scope") or "").split())),
                          email=str(claims.get("email") or "").strip().lower(),
                          email_verified=claims.get("email_verified") in (True, "true"),
                          audience=str(claims.get("aud") or ""))

    def refresh(self, rep_id: Any) -> Refreshed:
        """Mint a new access token now (the cached session then reuses it).

        Google may return a new refresh token; it is handed back so the caller can store it.

        Raises:
            GoogleNotConnected: No refresh token is stored.
            GoogleAccessRevoked: Google answered ``invalid_grant``: the rep must reconnect.
            DependencyDown: Google could not be reached, or our client is misconfigured.
        """
        from google.auth import exceptions as gexc
        from google.auth.transport.requests import Request

        session = self._session(rep_id)
        credentials = session.credentials
        before = credentials.refresh_token
        try:
            credentials.refresh(Request(session=self._http))
        except gexc.RefreshError as exc:
            self._sessions.forget(session)
            raise refresh_error(exc) from None
        except gexc.TransportError:
            raise DependencyDown("Could not reach Google to refresh the connection.") from None
        expiry = credentials.expiry.replace(tzinfo=dt.timezone.utc) if credentials.expiry else None
        rotated = credentials.refresh_token if credentials.refresh_token and credentials.refresh_token != before \
            else None
        return Refreshed(expires_at=expiry, rotated_token=rotated)

    def store_refresh_token(self, rep_id: Any, token: str) -> None:
        """Keep ``token`` as the newest version of the rep's secret and destroy the older ones.

        Secret Manager limits writes per secret (https://cloud.google.com/secret-manager/quotas: access
        and write requests per minute per project), and each enabled version is billed, so a version is
        added only when the token changes: at connect and when Google rotates it.
        """
        name = google_refresh_secret(rep_id)
        try:
            if read_refresh_token(self._secrets, rep_id) == token:
                return
        except NoRefreshToken:
            pass
        self._secrets.add_version(name, token.encode("utf-8"))
        self._secrets.destroy_old_versions(name, keep=1)

    def revoke(self, rep_id: Any) -> bool:
        """Ask Google to revoke the rep's grant (the refresh token and every access token minted from it).

        https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke: ``POST`` the
        token to the revocation endpoint, next to the token endpoint.

        Returns:
            True when Google revoked it; False when there was no token or Google no longer knew it.

        Raises:
            DependencyDown: Google could not be reached (nothing changed: try again).
        """
        try:
            token = read_refresh_token(self._secrets, rep_id)
        except NoRefreshToken:
            return False
        revoke_uri = self._token_uri.rsplit("/", 1)[0] + "/revoke"
        try:
            response = self._http.post(revoke_uri, data={"token": token}, timeout=self._timeout)
        except requests.RequestException:
            raise DependencyDown("Could not reach Google to revoke the connection.") from None
        if response.status_code >= 500:
            raise DependencyDown(f"Google's revocation endpoint answered HTTP {response.status_code}.")
        return response.status_code == 200  # 400 invalid_token: already revoked or expired

    def forget_refresh_token(self, rep_id: Any) -> bool:
        """Delete the rep's refresh-token secret with all its versions; False when there was none."""
        return self._secrets.delete(google_refresh_secret(rep_id))

    # -- Gmail ----------------------------------------------------------------------------------

    def watch(self, rep_id: Any, topic: str) -> Watch:
        """Start (or renew: the call is idempotent) push notifications for the rep's mailbox."""
        body = self._json(rep_id, "POST", "/watch", payload={"topicName": topic, "labelIds": ["INBOX", "SENT"],
                                                             "labelFilterBehavior": "include"})
        expiration_ms = int(body.get("expiration") or 0)
        return Watch(history_id=int(body["historyId"]),
                     expires_at=dt.datetime.fromtimestamp(expiration_ms / 1000, dt.timezone.utc))

    def stop(self, rep_id: Any) -> None:
        """Stop push notifications for the rep's mailbox."""
        self._json(rep_id, "POST", "/stop", payload={})

    def history(self, rep_id: Any, start_history_id: int, *, max_pages: int = 10) -> HistoryPage:
        """Ids of messages added since ``start_history_id`` (oldest first, de-duplicated).

        Raises:
            HistoryExpired: Gmail answered 404 for the start id.
        """
        ids: list[str] = []
        seen: set[str] = set()
        latest = last_record = start_history_id
        token = None
        for _ in range(max_pages):
            params = {"startHistoryId": str(start_history_id), "historyTypes": "messageAdded", "maxResults": "500"}
            if token:
                params["pageToken"] = token
            body = self._json(rep_id, "GET", "/history", params=params, expired_on_404=True)
            for record in body.get("history") or []:
                last_record = max(last_record, int(record.get("id") or 0))
                for added in record.get("messagesAdded") or []:
                    message_id = str((added.get("message") or {}).get("id") or "")
                    if message_id and message_id not in seen:
                        seen.add(message_id)
                        ids.append(message_id)
            latest = max(latest, int(body.get("historyId") or 0))
            token = body.get("nextPageToken")
            if not token:
                return HistoryPage(ids, latest, truncated=False)
        # Pages remain: advance only to the last record read, so the next sync starts from there.
        return HistoryPage(ids, last_record, truncated=True)

    def recent_messages(self, rep_id: Any, *, days: int = 7, limit: int = 500) -> list[str]:
        """Ids of the rep's messages of the last ``days`` days, newest first, at most ``limit``."""
        ids: list[str] = []
        token = None
        while len(ids) < limit:
            params = {"q": f"newer_than:{int(days)}d", "maxResults": str(min(500, limit - len(ids)))}
            if token:
                params["pageToken"] = token
            body = self._json(rep_id, "GET", "/messages", params=params)
            ids.extend(str(m["id"]) for m in body.get("messages") or [] if m.get("id"))
            token = body.get("nextPageToken")
            if not token:
                break
        return ids[:limit]

    def message(self, rep_id: Any, message_id: str) -> GmailMessage | None:
        """One message with its headers and text body, or None when it is gone (deleted meanwhile)."""
        body = self._json(rep_id, "GET", f"/messages/{message_id}", params={"format": "full"}, none_on_404=True)
        if body is None:
            return None
        return parse_message(body)

    # -- plumbing -------------------------------------------------------------------------------

    def _session(self, rep_id: Any) -> Any:
        try:
            return self._sessions.get(rep_id)
        except NoRefreshToken:
            raise GoogleNotConnected("The rep has not connected a Google account.") from None

    def session(self, rep_id: Any) -> Any:
        """The rep's cached ``AuthorizedSession`` (for other Google APIs: Calendar)."""
        return self._session(rep_id)

    def forget(self, session: Any) -> None:
        self._sessions.forget(session)

    def _json(self, rep_id: Any, method: str, path: str, *, params: dict[str, str] | None = None,
              payload: dict[str, Any] | None = None, expired_on_404: bool = False,
              none_on_404: bool = False) -> Any:
        session = self._session(rep_id)
        response = request_json(self, session, method, self._gmail + path, params=params, payload=payload,
                                what="Gmail", timeout=self._timeout)
        if response.status_code == 404 and expired_on_404:
            raise HistoryExpired(str(rep_id))
        if response.status_code == 404 and none_on_404:
            return None
        return checked_json(response, "Gmail")


# --- message parsing ---------------------------------------------------------------------------------


def _b64(data: str) -> str:
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return raw.decode("utf-8", errors="replace")


def _find_part(part: dict[str, Any], mime: str) -> str | None:
    if part.get("mimeType") == mime and (part.get("body") or {}).get("data"):
        return _b64(part["body"]["data"])
    for child in part.get("parts") or []:
        found = _find_part(child, mime)
        if found is not None:
            return found
    return None


def parse_message(body: dict[str, Any]) -> GmailMessage:
    """A ``users.messages.get`` (``format=full``) resource as a ``GmailMessage``."""
    payload = body.get("payload") or {}
    headers = {str(h.get("name", "")).lower(): str(h.get("value", "")) for h in payload.get("headers") or []}
    senders = getaddresses([headers.get("from", "")])
    recipients = tuple(addr.lower() for _, addr in getaddresses([headers.get("to", ""), headers.get("cc", "")])
                       if addr)
    text = _find_part(payload, "text/plain")
    html = False
    if text is None:
        text = _find_part(payload, "text/html")
        html = text is not None
    return GmailMessage(
        id=str(body.get("id") or ""), thread_id=str(body.get("threadId") or ""),
        label_ids=tuple(body.get("labelIds") or ()), history_id=int(body.get("historyId") or 0),
        sender=(senders[0][1].strip().lower() if senders else ""), recipients=recipients,
        subject=headers.get("subject", ""), message_id_header=headers.get("message-id", "").strip().strip("<>"),
        in_reply_to=headers.get("in-reply-to", "").strip(), date=headers.get("date", ""),
        text=(text or "")[:MAX_BODY_CHARS], html=html)


def build_google_account_api(settings: Any, secrets: SecretStore) -> GoogleAccountApi:
    """The adapter for ``settings`` (the container's wiring calls this)."""
    return GoogleAccountApi(secrets, client_id=settings.oauth_client_id, client_secret=settings.oauth_client_secret,
                            token_uri=settings.google_token_uri, api_base_url=settings.google_api_base_url,
                            timeout=float(getattr(settings, "gmail_timeout_seconds", 30.0)))
