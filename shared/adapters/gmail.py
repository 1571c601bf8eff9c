"""Gmail REST v1 with the rep's own OAuth grant: the production ``Mailer``.

No discovery client (``googleapiclient`` loads a discovery document and a large import tree on a cold
start): four plain calls through google-auth's ``AuthorizedSession`` (``shared.adapters.google_session``):

* ``users.messages.send`` -- ``POST /gmail/v1/users/me/messages/send`` with ``{"raw"}``
  (https://developers.google.com/gmail/api/reference/rest/v1/users.messages/send);
* ``users.drafts.create`` -- ``POST /gmail/v1/users/me/drafts`` with ``{"message": {"raw"}}``;
* ``users.messages.list`` with ``q=rfc822msgid:<id>`` and ``includeSpamTrash=true`` -- the lookup
  that makes a retried send exactly once; ``users.messages.get`` (``format=minimal``) tells a draft
  (label ``DRAFT``) from a sent message, and ``users.drafts.list`` with the same ``q`` finds the draft's id.

Errors (https://developers.google.com/gmail/api/guides/handle-errors): 429 and 403
``rateLimitExceeded``/``userRateLimitExceeded`` are "slow down" (``RateLimited``); 5xx, timeouts and
dropped connections are ``DependencyDown``; both are retried by the task queue with backoff. An
``invalid_grant`` on the token refresh is ``GoogleAccessRevoked``; any other 4xx is permanent.

Quotas (https://developers.google.com/gmail/api/reference/quota): 250 quota units per user per second;
``messages.send`` costs 100 units, ``drafts.create`` 10, ``messages.list`` and ``drafts.list`` 5,
``messages.get`` 5. The lookup before each send therefore adds at most 15 units to a 100-unit send. The
per-user sending limit of Google Workspace (2,000 messages a day, https://support.google.com/a/answer/166852)
is enforced upstream by the gate's quotas.

A send that times out may still have been delivered: the caller must look the Message-ID up before
trying again, which ``shared.mail.send_step`` does.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import requests

from shared.adapters.google_session import (
    GOOGLE_API_BASE_URL,
    GOOGLE_TOKEN_URI,
    NoRefreshToken,
    RepSessions,
    checked_json,
    request_json,
)
from shared.mail.ports import DraftRef, GoogleNotConnected, Sender, SentRef
from shared.ports import SecretStore

log = logging.getLogger(__name__)

# A Message-ID we look up is one we minted (``<wf-{uuid}@{domain}>``); anything else could change the
# meaning of the search query, so it is refused rather than quoted.
_MESSAGE_ID = re.compile(r"^<?([A-Za-z0-9._+-]+@[A-Za-z0-9.-]+)>?$")

NOT_CONNECTED_MESSAGE = "The rep has not connected a Google account, so no email can be sent from their Gmail."


class GmailMailer:
    """A rep's Gmail mailbox; implements ``shared.mail.ports.Mailer``.

    Args:
        secrets: where each rep's refresh token lives (``google-refresh-<rep id>``).
        client_id: the OAuth client the refresh tokens were issued to.
        client_secret: that client's secret.
        token_uri: Google's token endpoint (a stand-in's in tests).
        api_base_url: ``https://www.googleapis.com`` (a stand-in's in tests).
        timeout: seconds per HTTP request.
        http: the ``requests.Session`` used for token refreshes (default: a new one).
    """

    def __init__(self, secrets: SecretStore, *, client_id: str, client_secret: str,
                 token_uri: str = GOOGLE_TOKEN_URI, api_base_url: str = GOOGLE_API_BASE_URL,
                 timeout: float = 30.0, http: requests.Session | None = None):
        self._sessions = RepSessions(secrets, client_id=client_id, client_secret=client_secret,
                                     token_uri=token_uri, http=http)
        self._base = api_base_url.rstrip("/") + "/gmail/v1/users/me"
        self._timeout = timeout

    # -- the port -------------------------------------------------------------------------------

    def find_by_message_id(self, rep: Sender, message_id: str) -> SentRef | DraftRef | None:
        """See ``Mailer.find_by_message_id``."""
        match = _MESSAGE_ID.match(message_id.strip())
        if not match:
            raise ValueError("not a Message-ID this system minted")
        query = {"q": f"rfc822msgid:{match.group(1)}", "includeSpamTrash": "true"}
        session = self._session(rep)
        found = self._json(session, "GET", "/messages", params={**query, "maxResults": "10"})
        messages = found.get("messages") or []
        if not messages:
            return None
        first = messages[0]
        meta = self._json(session, "GET", f"/messages/{first['id']}", params={"format": "minimal"})
        if "DRAFT" not in (meta.get("labelIds") or []):
            return SentRef(message_id=str(first["id"]), thread_id=str(meta.get("threadId") or first.get("threadId")))
        drafts = self._json(session, "GET", "/drafts", params={**query, "maxResults": "10"}).get("drafts") or []
        for draft in drafts:
            message = draft.get("message") or {}
            if message.get("id") == first["id"] or len(drafts) == 1:
                return DraftRef(draft_id=str(draft["id"]), message_id=str(message.get("id") or first["id"]),
                                thread_id=str(message.get("threadId") or meta.get("threadId") or ""))
        # Labelled DRAFT but no longer listed as a draft: it was sent or deleted between the two calls.
        return SentRef(message_id=str(first["id"]), thread_id=str(meta.get("threadId") or ""))

    def send(self, rep: Sender, raw: str) -> SentRef:
        """See ``Mailer.send``."""
        body = self._json(self._session(rep), "POST", "/messages/send", payload={"raw": raw})
        return SentRef(message_id=str(body["id"]), thread_id=str(body.get("threadId") or ""))

    def create_draft(self, rep: Sender, raw: str) -> DraftRef:
        """See ``Mailer.create_draft``."""
        body = self._json(self._session(rep), "POST", "/drafts", payload={"message": {"raw": raw}})
        message = body.get("message") or {}
        return DraftRef(draft_id=str(body["id"]), message_id=str(message.get("id") or ""),
                        thread_id=str(message.get("threadId") or ""))

    def health(self) -> None:
        """Nothing to check without a rep: each call acts for one rep with that rep's grant."""

    # -- HTTP -----------------------------------------------------------------------------------

    def _session(self, rep: Sender) -> Any:
        try:
            return self._sessions.get(rep.id)
        except NoRefreshToken:
            raise GoogleNotConnected(NOT_CONNECTED_MESSAGE) from None

    def _json(self, session: Any, method: str, path: str, *, params: dict[str, str] | None = None,
              payload: dict[str, Any] | None = None) -> dict[str, Any]:
        response = request_json(self._sessions, session, method, self._base + path, params=params,
                                payload=payload, what="Gmail", timeout=self._timeout)
        return checked_json(response, "Gmail", code="gmail_refused")


def build_mailer(settings: Any, secrets: SecretStore) -> Any:
    """The mailer for a ``Settings``: Gmail when Google is configured, else the embedded outbox.

    Meant for ``shared.bootstrap`` (the one place adapters are wired).
    """
    if settings.adapters == "embedded" or not settings.oauth_client_secret:
        from shared.adapters.outbox import OutboxMailer

        return OutboxMailer(settings.data_dir)
    return GmailMailer(secrets, client_id=settings.oauth_client_id, client_secret=settings.oauth_client_secret,
                       token_uri=settings.google_token_uri, api_base_url=settings.google_api_base_url,
                       timeout=float(getattr(settings, "gmail_timeout_seconds", 30.0)))
