"""Gmail REST v1 routes on the Google stand-in (``tests.standins.google``): one mailbox per account.

The bearer token names the account (``GoogleStandIn.grant(account)`` → refresh token → access token).
Routes:

* ``POST /gmail/v1/users/me/messages/send`` ``{"raw"}`` → ``{"id", "threadId", "labelIds": ["SENT"]}``;
* ``POST /gmail/v1/users/me/drafts`` ``{"message": {"raw"}}`` → ``{"id", "message": {...}}``;
* ``GET /gmail/v1/users/me/messages?q=rfc822msgid:<id>[&includeSpamTrash=true]`` → ``{"messages",
  "resultSizeEstimate"}`` (only the ``rfc822msgid:`` operator is understood; anything else is 400);
* ``GET /gmail/v1/users/me/messages/<id>`` (``format=minimal`` or ``raw``);
* ``GET /gmail/v1/users/me/drafts?q=rfc822msgid:<id>``.

Failures: ``GoogleStandIn.fail_next`` answers before anything is stored; ``delay`` holds a request
before serving it. ``fail_after_store`` stores the
message and then answers 500, or holds the answer back past the client's timeout (the connection is
lost from the client's side): the case exactly-once must survive.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import re
import secrets
import threading
import time

from tests.standins.google import GoogleStandIn, google_error
from tests.standins.loopback import Reply, Request

_QUERY = re.compile(r"^rfc822msgid:<?([^<>\s]+)>?$")
PREFIX = r"/gmail/v1/users/me"


@dataclasses.dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    message_id: str  # the RFC 5322 Message-ID, without angle brackets
    draft_id: str | None = None

    def parsed(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


@dataclasses.dataclass
class _AfterStore:
    path: re.Pattern[str]
    mode: str  # "500" or "timeout"
    hold_seconds: float
    times: int


class GmailStandIn:
    """Gmail's routes and mailboxes, attached to a running ``GoogleStandIn``."""

    def __init__(self, google: GoogleStandIn):
        self.google = google
        self.mailboxes: dict[str, dict[str, StoredMessage]] = {}  # account → Gmail id → message
        self._after_store: list[_AfterStore] = []
        self._delays: list[list] = []  # [path regex, seconds, times left]
        self._lock = threading.Lock()
        google.route("POST", PREFIX + r"/messages/send", self._send)
        google.route("POST", PREFIX + r"/drafts", self._create_draft)
        google.route("GET", PREFIX + r"/messages", self._list_messages)
        google.route("GET", PREFIX + r"/messages/(?P<message_id>[^/]+)", self._get_message)
        google.route("GET", PREFIX + r"/drafts", self._list_drafts)

    @classmethod
    def on(cls, google: GoogleStandIn) -> GmailStandIn:
        """The Gmail routes of this Google stand-in (registered once per server), emptied."""
        existing = getattr(google, "gmail", None)
        if existing is None:
            existing = cls(google)
            google.gmail = existing  # type: ignore[attr-defined]
        existing.reset()
        return existing

    def reset(self) -> None:
        with self._lock:
            self.mailboxes.clear()
            self._after_store.clear()
            self._delays.clear()

    # -- test controls --------------------------------------------------------------------------

    def fail_after_store(self, path: str = r"/messages/send$", *, mode: str = "500", hold_seconds: float = 3.0,
                         times: int = 1) -> None:
        """Store the next message on ``path``, then answer 500 (``mode="500"``) or hold the answer for
        ``hold_seconds`` (``mode="timeout"``: longer than the client's timeout)."""
        with self._lock:
            self._after_store.append(_AfterStore(re.compile(path), mode, hold_seconds, times))

    def delay(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` Gmail requests whose path matches ``path`` for ``seconds`` before serving them."""
        with self._lock:
            self._delays.append([re.compile(path), seconds, times])

    def messages(self, account: str, label: str | None = None) -> list[StoredMessage]:
        with self._lock:
            found = list(self.mailboxes.get(account, {}).values())
        return [m for m in found if label is None or label in m.label_ids]

    def trash(self, account: str, gmail_id: str) -> None:
        with self._lock:
            message = self.mailboxes[account][gmail_id]
            message.label_ids = [label for label in message.label_ids if label not in ("INBOX", "SENT")] + ["TRASH"]

    # -- routes ---------------------------------------------------------------------------------

    def _account(self, request: Request) -> str | Reply:
        with self._lock:
            hit = next((d for d in self._delays if d[0].search(request.path)), None)
            if hit is not None:
                hit[2] -= 1
                if hit[2] <= 0:
                    self._delays.remove(hit)
        if hit is not None:
            time.sleep(hit[1])
        account = self.google.authorized(request)
        if account is None:
            return google_error(401, "authError", "Request had invalid authentication credentials.")
        return account

    def _store(self, account: str, raw_b64: object, labels: list[str]) -> StoredMessage | Reply:
        if not isinstance(raw_b64, str) or not raw_b64:
            return google_error(400, "invalidArgument", "'raw' RFC822 payload message string or uploading message "
                                                        "via /upload/* URL required")
        try:
            raw = base64.urlsafe_b64decode(raw_b64 + "=" * (-len(raw_b64) % 4))
        except ValueError:
            return google_error(400, "invalidArgument", "Invalid value for ByteString")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        if labels == ["SENT"] and not parsed.get("To"):
            return google_error(400, "invalidArgument", "Invalid To header")
        gmail_id = secrets.token_hex(8)
        message = StoredMessage(id=gmail_id, thread_id=gmail_id, raw=raw, label_ids=labels,
                                message_id=str(parsed.get("Message-ID") or "").strip().strip("<>"))
        with self._lock:
            self.mailboxes.setdefault(account, {})[gmail_id] = message
        return message

    def _after(self, request: Request, reply: Reply) -> Reply:
        with self._lock:
            hit = next((f for f in self._after_store if f.path.search(request.path)), None)
            if hit is not None:
                hit.times -= 1
                if hit.times <= 0:
                    self._after_store.remove(hit)
        if hit is None:
            return reply
        if hit.mode == "timeout":
            time.sleep(hit.hold_seconds)
            return reply
        return google_error(500, "backendError", "Backend Error")

    def _send(self, request: Request) -> Reply:
        account = self._account(request)
        if isinstance(account, Reply):
            return account
        stored = self._store(account, (request.json() or {}).get("raw"), ["SENT"])
        if isinstance(stored, Reply):
            return stored
        return self._after(request, Reply(200, {"id": stored.id, "threadId": stored.thread_id,
                                                "labelIds": stored.label_ids}))

    def _create_draft(self, request: Request) -> Reply:
        account = self._account(request)
        if isinstance(account, Reply):
            return account
        stored = self._store(account, ((request.json() or {}).get("message") or {}).get("raw"), ["DRAFT"])
        if isinstance(stored, Reply):
            return stored
        stored.draft_id = "r" + secrets.token_hex(8)
        return self._after(request, Reply(200, {"id": stored.draft_id, "message": {
            "id": stored.id, "threadId": stored.thread_id, "labelIds": stored.label_ids}}))

    def _matching(self, request: Request, account: str) -> list[StoredMessage] | Reply:
        match = _QUERY.match(request.query.get("q", ""))
        if not match:
            return google_error(400, "invalidArgument", "Only rfc822msgid: queries are supported by the stand-in")
        with_spam_trash = request.query.get("includeSpamTrash") == "true"
        return [m for m in self.messages(account) if m.message_id == match.group(1)
                and (with_spam_trash or not {"SPAM", "TRASH"} & set(m.label_ids))]

    def _list_messages(self, request: Request) -> Reply:
        account = self._account(request)
        if isinstance(account, Reply):
            return account
        found = self._matching(request, account)
        if isinstance(found, Reply):
            return found
        if not found:
            return Reply(200, {"resultSizeEstimate": 0})
        return Reply(200, {"messages": [{"id": m.id, "threadId": m.thread_id} for m in found],
                           "resultSizeEstimate": len(found)})

    def _list_drafts(self, request: Request) -> Reply:
        account = self._account(request)
        if isinstance(account, Reply):
            return account
        found = self._matching(request, account)
        if isinstance(found, Reply):
            return found
        drafts = [{"id": m.draft_id, "message": {"id": m.id, "threadId": m.thread_id}} for m in found if m.draft_id]
        return Reply(200, {"drafts": drafts, "resultSizeEstimate": len(drafts)} if drafts else
                     {"resultSizeEstimate": 0})

    def _get_message(self, request: Request) -> Reply:
        account = self._account(request)
        if isinstance(account, Reply):
            return account
        message = self.mailboxes.get(account, {}).get(request.params["message_id"])
        if message is None:
            return google_error(404, "notFound", "Requested entity was not found.")
        body = {"id": message.id, "threadId": message.thread_id, "labelIds": message.label_ids}
        if request.query.get("format") == "raw":
            body["raw"] = base64.urlsafe_b64encode(message.raw).decode("ascii")
        return Reply(200, body)
