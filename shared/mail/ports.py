"""The ``Mailer`` port: a rep's mailbox, where an email is sent or left as a draft.

Two adapters implement it: ``shared.adapters.gmail.GmailMailer`` (Gmail REST v1 with the rep's own
grant) and ``shared.adapters.outbox.OutboxMailer`` (``.eml`` files under the data dir).

Exactly once rests on ``find_by_message_id``: every message carries a Message-ID derived from its
workflow (``shared.mail.message.message_id_for``), and a retry looks it up before sending again.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

from shared.errors import PermanentError, Refused


@dataclasses.dataclass(frozen=True)
class Sender:
    """The rep a message is sent as.

    Attributes:
        id: The rep's id (names the refresh token ``google-refresh-<id>``).
        email: The rep's address (the From of the message).
        display_name: The rep's name as the recipient should see it.
    """

    id: str
    email: str
    display_name: str = ""


@dataclasses.dataclass(frozen=True)
class SentRef:
    """A message in the rep's mailbox that was sent.

    Attributes:
        message_id: The mailbox's own message id (Gmail's ``id``), not the RFC 5322 Message-ID.
        thread_id: The mailbox's thread id.
    """

    message_id: str
    thread_id: str


@dataclasses.dataclass(frozen=True)
class DraftRef:
    """A draft in the rep's mailbox.

    Attributes:
        draft_id: The draft's id (Gmail's ``drafts`` resource id).
        message_id: The mailbox's id of the draft's message.
        thread_id: The mailbox's thread id.
    """

    draft_id: str
    message_id: str
    thread_id: str


class GoogleAccessRevoked(PermanentError):
    """The rep's Google grant no longer works (``invalid_grant``): only the rep reconnecting fixes it."""

    status, code = 403, "google_revoked"


class GoogleNotConnected(Refused):
    """The rep never connected a Google account (no refresh token is stored)."""

    code = "google_not_connected"


@runtime_checkable
class Mailer(Protocol):
    """A rep's mailbox."""

    def find_by_message_id(self, rep: Sender, message_id: str) -> SentRef | DraftRef | None:
        """The sent message or the draft carrying this RFC 5322 Message-ID, or None.

        Spam and trash are searched too: a message the rep deleted was still sent.
        """
        ...

    def send(self, rep: Sender, raw: str) -> SentRef:
        """Send a message (``raw``: the RFC 5322 bytes, base64url) from the rep's mailbox."""
        ...

    def create_draft(self, rep: Sender, raw: str) -> DraftRef:
        """Leave a message as a draft in the rep's mailbox."""
        ...

    def health(self) -> None: ...
