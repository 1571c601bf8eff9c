"""The embedded ``Mailer``: ``.eml`` files under ``<data_dir>/outbox/``.

``sent/`` holds what would have been sent, ``drafts/`` what would have been left as a Gmail draft. A
file is named after the message's Message-ID and created with an atomic create-if-absent (a hard link
from a temporary file), so a second write of the same message is detected and returns the first one:
the same exactly-once behaviour the Gmail lookup gives in production. Open a file in any mail client
to read the email as the lead would.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

from shared.errors import PermanentError
from shared.mail.message import from_raw
from shared.mail.ports import DraftRef, Sender, SentRef

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


class OutboxMailer:
    """Messages as files; implements ``shared.mail.ports.Mailer``.

    Args:
        data_dir: the local stack's data directory.
    """

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.root = Path(data_dir) / "outbox"
        self.sent_dir = self.root / "sent"
        self.drafts_dir = self.root / "drafts"

    def find_by_message_id(self, rep: Sender, message_id: str) -> SentRef | DraftRef | None:
        """See ``Mailer.find_by_message_id``."""
        name = _file_name(message_id)
        if (self.sent_dir / name).exists():
            return _sent_ref(message_id)
        if (self.drafts_dir / name).exists():
            return _draft_ref(message_id)
        return None

    def send(self, rep: Sender, raw: str) -> SentRef:
        """See ``Mailer.send``."""
        message_id = self._write(self.sent_dir, raw)
        return _sent_ref(message_id)

    def create_draft(self, rep: Sender, raw: str) -> DraftRef:
        """See ``Mailer.create_draft``."""
        message_id = self._write(self.drafts_dir, raw)
        return _draft_ref(message_id)

    def files(self, kind: str = "sent") -> list[Path]:
        """The ``.eml`` files of ``sent`` or ``drafts``, by name."""
        folder = self.sent_dir if kind == "sent" else self.drafts_dir
        return sorted(folder.glob("*.eml")) if folder.exists() else []

    def health(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _write(self, folder: Path, raw: str) -> str:
        try:
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            message_id = str(from_raw(raw).get("Message-ID") or "").strip()
        except (ValueError, TypeError) as exc:
            raise PermanentError("The message is not valid base64url RFC 5322.", code="mail_invalid") from exc
        if not message_id:
            raise PermanentError("The message has no Message-ID.", code="mail_invalid")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / _file_name(message_id)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, target)  # fails if the file exists: the second write of one message
            except FileExistsError:
                log.info("outbox: message already written; not writing it again")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return message_id


def _file_name(message_id: str) -> str:
    return _UNSAFE.sub("_", message_id.strip().strip("<>"))[:200] + ".eml"


def _local_id(message_id: str) -> str:
    return hashlib.sha256(message_id.strip().strip("<>").encode("utf-8")).hexdigest()[:16]


def _sent_ref(message_id: str) -> SentRef:
    local = _local_id(message_id)
    return SentRef(message_id=local, thread_id=local)


def _draft_ref(message_id: str) -> DraftRef:
    local = _local_id(message_id)
    return DraftRef(draft_id="r" + local, message_id=local, thread_id=local)
