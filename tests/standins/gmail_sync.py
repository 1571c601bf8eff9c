"""Gmail's watch and sync calls on the Google stand-in, one mailbox per account:

* ``POST /gmail/v1/users/me/watch`` ``{"topicName", "labelIds"}`` → ``{"historyId", "expiration"}``
  (expiration in epoch milliseconds, as a string, 7 days ahead);
* ``POST /gmail/v1/users/me/stop`` → 204;
* ``GET /gmail/v1/users/me/history?startHistoryId=`` → ``{"history": [{"id", "messages",
  "messagesAdded": [{"message": {"id", "threadId", "labelIds"}}]}], "historyId", "nextPageToken"}``;
  a start id older than the mailbox keeps (``expire_history``) answers 404, as Gmail does;
* ``GET /gmail/v1/users/me/messages?q=newer_than:<n>d`` → ``{"messages": [{"id", "threadId"}],
  "resultSizeEstimate", "nextPageToken"}`` (newest first; ``maxResults`` and ``pageToken`` honoured);
* ``GET /gmail/v1/users/me/messages/<id>?format=full`` → ``{"id", "threadId", "labelIds", "historyId",
  "internalDate", "payload": {"mimeType", "headers": [{"name", "value"}], "body": {"data"}}}``.

History ids grow in uneven steps, as Gmail's do, so nothing may assume they are contiguous.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
import secrets
import time

from tests.standins.google import GoogleStandIn, google_error
from tests.standins.loopback import Reply, Request

PREFIX = r"/gmail/v1/users/me"


@dataclasses.dataclass
class Message:
    id: str
    thread_id: str
    label_ids: list[str]
    headers: dict[str, str]
    body: str
    history_id: int
    internal_date: int  # epoch ms


@dataclasses.dataclass
class Mailbox:
    history_id: int = 1000
    oldest_history_id: int = 0  # starts below this are "expired" (404)
    messages: dict[str, Message] = dataclasses.field(default_factory=dict)
    history: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (history id, message id)


class GmailSyncStandIn:
    def __init__(self, google: GoogleStandIn):
        self.google = google
        self.mailboxes: dict[str, Mailbox] = {}
        self.watches: list[dict] = []
        self.stops: list[str] = []  # accounts whose watch was stopped
        google.route("POST", PREFIX + r"/watch", self._watch)
        google.route("POST", PREFIX + r"/stop", self._stop)
        google.route("GET", PREFIX + r"/history", self._history)
        google.route("GET", PREFIX + r"/messages", self._list)
        google.route("GET", PREFIX + r"/messages/(?P<message_id>[^/]+)", self._get)

    def mailbox(self, account: str) -> Mailbox:
        return self.mailboxes.setdefault(account, Mailbox())

    def add_message(self, account: str, *, sender: str, to: str, subject: str, body: str,
                    thread_id: str | None = None, labels: tuple[str, ...] = ("INBOX", "UNREAD"),
                    message_id: str | None = None, age: dt.timedelta = dt.timedelta(0)) -> Message:
        box = self.mailbox(account)
        box.history_id += secrets.choice((1, 3, 7))
        gmail_id = format(secrets.randbits(60), "x")
        headers = {"From": sender, "To": to, "Subject": subject, "Date": "Mon, 13 Jan 2025 10:00:00 +0000",
                   "Message-ID": message_id or f"<{gmail_id}@mail.example.com>"}
        message = Message(gmail_id, thread_id or gmail_id, list(labels), headers, body, box.history_id,
                          int((time.time() - age.total_seconds()) * 1000))
        box.messages[gmail_id] = message
        box.history.append((box.history_id, gmail_id))
        return message

    def expire_history(self, account: str) -> None:
        """Gmail no longer has history before the mailbox's current id."""
        box = self.mailbox(account)
        box.oldest_history_id = box.history_id + 1

    def _account(self, request: Request):
        account = self.google.authorized(request)
        if account is None:
            return None, google_error(401, "authError", "Request had invalid authentication credentials.")
        return account, None

    def _watch(self, request: Request) -> Reply:
        account, error = self._account(request)
        if error:
            return error
        body = request.json() or {}
        if not re.fullmatch(r"projects/[^/]+/topics/[^/]+", str(body.get("topicName", ""))):
            return google_error(400, "invalidArgument", "Invalid topicName")
        self.watches.append({"account": account, **body})
        expiration = int((time.time() + 7 * 86400) * 1000)
        return Reply(200, {"historyId": str(self.mailbox(account).history_id), "expiration": str(expiration)})

    def _stop(self, request: Request) -> Reply:
        account, error = self._account(request)
        if error:
            return error
        self.stops.append(account)
        return Reply(204, b"")

    def _history(self, request: Request) -> Reply:
        account, error = self._account(request)
        if error:
            return error
        box = self.mailbox(account)
        try:
            start = int(request.query["startHistoryId"])
        except (KeyError, ValueError):
            return google_error(400, "invalidArgument", "Invalid startHistoryId")
        if start < box.oldest_history_id:
            return google_error(404, "notFound", "Requested entity was not found.")
        records = [(hid, mid) for hid, mid in box.history if hid > start]
        size = min(int(request.query.get("maxResults") or 100), 500)
        offset = int(request.query.get("pageToken") or 0)
        page = records[offset:offset + size]
        body: dict = {"historyId": str(box.history_id), "history": [
            {"id": str(hid), "messages": [{"id": mid, "threadId": box.messages[mid].thread_id}],
             "messagesAdded": [{"message": {"id": mid, "threadId": box.messages[mid].thread_id,
                                            "labelIds": box.messages[mid].label_ids}}]} for hid, mid in page]}
        if offset + size < len(records):
            body["nextPageToken"] = str(offset + size)
        if not body["history"]:
            del body["history"]
        return Reply(200, body)

    def _list(self, request: Request) -> Reply:
        account, error = self._account(request)
        if error:
            return error
        match = re.fullmatch(r"newer_than:(\d+)d", request.query.get("q", ""))
        if not match:
            return google_error(400, "invalidArgument", "Only newer_than:<n>d is understood by this stand-in")
        since = (time.time() - int(match.group(1)) * 86400) * 1000
        found = sorted((m for m in self.mailbox(account).messages.values() if m.internal_date >= since),
                       key=lambda m: -m.internal_date)
        size = min(int(request.query.get("maxResults") or 100), 500)
        offset = int(request.query.get("pageToken") or 0)
        page = found[offset:offset + size]
        body: dict = {"messages": [{"id": m.id, "threadId": m.thread_id} for m in page],
                      "resultSizeEstimate": len(page)}
        if offset + size < len(found):
            body["nextPageToken"] = str(offset + size)
        return Reply(200, body)

    def _get(self, request: Request) -> Reply:
        account, error = self._account(request)
        if error:
            return error
        message = self.mailbox(account).messages.get(request.params["message_id"])
        if message is None:
            return google_error(404, "notFound", "Requested entity was not found.")
        data = base64.urlsafe_b64encode(message.body.encode("utf-8")).decode("ascii")
        return Reply(200, {"id": message.id, "threadId": message.thread_id, "labelIds": message.label_ids,
                           "historyId": str(message.history_id), "internalDate": str(message.internal_date),
                           "snippet": message.body[:100],
                           "payload": {"mimeType": "text/plain",
                                       "headers": [{"name": k, "value": v} for k, v in message.headers.items()],
                                       "body": {"size": len(message.body), "data": data}}})
