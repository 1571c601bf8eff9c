"""Ports for the outside systems that voice training imports from: YouTube, Google Drive, the CRM.

Each port has a production adapter in ``shared/adapters`` (``youtube``, ``google_drive``,
``hubspot_crm``) and an embedded one, and ``tests/contract/test_sources.py`` holds them to the same
behaviour. Every adapter turns its service's failures into ``shared.errors``: a ``PermanentError`` (or a
subclass) with a sentence a rep can act on when retrying cannot help, ``RateLimited`` /
``DependencyDown`` when it may.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

# CRM object types a rep may import from, by their HubSpot v3 names.
OBJECT_TYPES: tuple[str, ...] = ("contacts", "companies", "deals")
# Engagement object types (HubSpot's names) → the ``Engagement.kind`` they produce.
ENGAGEMENT_KINDS: dict[str, str] = {"notes": "note", "emails": "email", "calls": "call"}

# Error codes the pipeline and the page may branch on.
GOOGLE_NOT_CONNECTED = "google_not_connected"
GOOGLE_RECONNECT = "google_reconnect"


def google_refresh_secret(rep_id: Any) -> str:
    """The secret that holds a rep's Google refresh token (written by ``token-refresh``)."""
    return f"google-refresh-{rep_id}"


# --- YouTube transcripts -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Transcript:
    """The captions of one video as plain text.

    Attributes:
        text: The caption text, paragraphs split where the speech pauses.
        language: The language code of the captions (``en``, ``en-GB`` ...).
        is_generated: True for YouTube's automatic captions, False for uploaded ones.
        title: The video's title, when the source knows it.
    """

    text: str
    language: str
    is_generated: bool
    title: str | None = None


@runtime_checkable
class TranscriptSource(Protocol):
    def transcript(self, video_id: str, *, languages: Sequence[str] = ("en",)) -> Transcript:
        """The captions of ``video_id`` in the first of ``languages`` it has (uploaded before automatic).

        Raises:
            NotFound: the video is private, removed or does not exist.
            PermanentError: no captions, or none in those languages; age-restricted or unplayable.
            RateLimited: YouTube is refusing requests for now.
            DependencyDown: YouTube could not be reached or failed.
        """
        ...


# --- Google Drive --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DriveFile:
    """One Drive file, as text (Google Docs, Sheets, Slides) or as bytes (PDF, DOCX ...).

    Exactly one of ``data`` and ``text`` is set.
    """

    id: str
    name: str
    mime_type: str  # of ``data`` or ``text``: text/plain, text/csv, application/pdf ...
    data: bytes | None = None
    text: str | None = None
    source_mime_type: str = ""  # Drive's own type (application/vnd.google-apps.document ...)
    modified_time: str = ""
    web_link: str = ""


@dataclasses.dataclass(frozen=True)
class DriveEntry:
    """One item of a folder listing."""

    id: str
    name: str
    mime_type: str
    size: int | None = None
    modified_time: str = ""

    @property
    def is_folder(self) -> bool:
        return self.mime_type == "application/vnd.google-apps.folder"


@runtime_checkable
class DriveSource(Protocol):
    def get_file(self, rep_id: Any, file_id: str) -> DriveFile:
        """A file the rep can read: Google Docs and Slides as text/plain, Sheets as text/csv, anything
        else downloaded as bytes, all under a size cap.

        Raises:
            Refused: the rep has not connected a Google account, or the connection was revoked
                (``code`` is ``google_not_connected`` / ``google_reconnect``).
            NotFound: no such file, or the rep's account cannot see it.
            Forbidden: the rep can see the file but may not download it.
            TooLarge: the file is over the cap.
            UnsupportedType: a Google type with no text form (Forms, Drawings, folders).
            RateLimited / DependencyDown: Drive's limits, outages, timeouts.
        """
        ...

    def list_folder(self, rep_id: Any, folder_id: str, limit: int = 50) -> list[DriveEntry]:
        """At most ``limit`` items of a folder (not trashed), folders first then by name."""
        ...


# --- CRM -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CrmRecord:
    """A contact, company or deal as the record selector shows it."""

    id: str
    object_type: str
    label: str
    subtitle: str = ""
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object_type": self.object_type, "label": self.label, "subtitle": self.subtitle}


@dataclasses.dataclass(frozen=True)
class Engagement:
    """A note, email or call logged on a record, with its text already converted from HTML.

    Attributes:
        kind: ``note``, ``email`` or ``call``.
        id: The engagement's id in the CRM.
        text: The body as plain text.
        created_at: When it happened (HubSpot's ``hs_timestamp``), timezone-aware; None if unknown.
        title: Email subject or call title; empty for notes.
        outgoing: For emails, True when the rep sent it, False for a reply received; None otherwise.
    """

    kind: str
    id: str
    text: str
    created_at: dt.datetime | None = None
    title: str = ""
    outgoing: bool | None = None


@runtime_checkable
class CrmReader(Protocol):
    def search(self, object_type: str, q: str, limit: int = 10) -> list[CrmRecord]:
        """Records of ``object_type`` matching the text ``q`` (name, email, domain ...)."""
        ...

    def get(self, object_type: str, object_id: str) -> CrmRecord:
        """One record. Raises NotFound."""
        ...

    def engagements(self, object_type: str, object_id: str,
                    include: Sequence[str] = ("notes", "emails", "calls"), limit: int = 200) -> list[Engagement]:
        """The record's notes, emails and calls (those in ``include``), newest first, at most ``limit``.

        Raises:
            NotFound: no such record.
            BadRequest: an unknown object type or engagement type.
        """
        ...

    def engagement_counts(self, object_type: str, object_id: str) -> dict[str, int]:
        """How many notes, emails and calls the record has (associations only: no bodies read)."""
        ...


def check_object_type(object_type: str) -> str:
    """Raise ``BadRequest`` unless ``object_type`` is one of ``OBJECT_TYPES``."""
    from shared.errors import BadRequest

    if object_type not in OBJECT_TYPES:
        raise BadRequest(f"HubSpot imports work with contacts, companies and deals, not {str(object_type)[:40]!r}.")
    return object_type


def check_include(include: Sequence[str]) -> tuple[str, ...]:
    """Raise ``BadRequest`` unless every entry is an engagement type; returns them without repeats."""
    from shared.errors import BadRequest

    chosen = tuple(dict.fromkeys(include))
    unknown = [kind for kind in chosen if kind not in ENGAGEMENT_KINDS]
    if unknown or not chosen:
        raise BadRequest("Choose what to import from the record: notes, emails and/or calls.")
    return chosen
