"""A Google Drive folder imported as voice material: one sample per readable file in it.

The folder is listed with the rep's own grant (``deps.drive.list_folder``), and each file becomes an
ordinary ``drive`` sample with its file id, so it is fetched and extracted exactly like a single Drive
file (``shared.voice.links``). Subfolders are not entered and at most ``MAX_FILES`` files are taken, so
one click cannot queue a whole shared drive.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.voice import pipeline, samples

log = logging.getLogger(__name__)

MAX_FILES = 50
LIST_FACTOR = 4  # entries listed per file wanted
# Google-native files Drive can export as text; other files are judged by their bytes at extraction.
_NATIVE_TEXT = frozenset({"application/vnd.google-apps.document", "application/vnd.google-apps.spreadsheet",
                          "application/vnd.google-apps.presentation"})
_SKIPPED_PREFIXES = ("image/", "video/", "audio/")


def _skip_reason(entry: Any) -> str | None:
    mime = entry.mime_type or ""
    if entry.is_folder:
        return "a folder (folders inside the folder are not imported)"
    if mime.startswith("application/vnd.google-apps.") and mime not in _NATIVE_TEXT:
        return "a Google file with no text to import"
    if mime.startswith(_SKIPPED_PREFIXES):
        return "not a document"
    return None


def add_folder(deps: Any, rep: dict[str, Any], folder_id: str, *, purpose: str = "voice",
               limit: int = MAX_FILES) -> tuple[dict[str, Any], int]:
    """Queue every readable file of a Drive folder as a sample of ``rep``.

    Args:
        deps: Has ``drive``, ``db``, ``tasks``.
        rep: The rep whose voice it trains.
        folder_id: The Drive folder's id.
        purpose: ``voice`` or ``asset``.
        limit: At most this many files (capped at ``MAX_FILES``).

    Returns:
        ``({"folder_id", "queued": [{"id", "title"}], "duplicates": [...], "skipped": [{"name", "reason"}]}, 202)``.

    Raises:
        Refused: The rep has no Google connection (or it was revoked).
        NotFound / Forbidden: The folder cannot be read with the rep's grant.
        RetryableError: Drive is unavailable.
    """
    limit = max(1, min(int(limit), MAX_FILES))
    # Subfolders and images are listed too (folders first), so more entries than files wanted are read;
    # the listing itself stays bounded.
    entries = deps.drive.list_folder(rep["id"], folder_id, limit=min(limit * LIST_FACTOR, 1000))
    queued: list[dict[str, str]] = []
    duplicates: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    tasks = []
    taken = 0
    for entry in entries:
        reason = _skip_reason(entry)
        if reason:
            skipped.append({"name": entry.name, "reason": reason})
            continue
        if taken == limit:
            skipped.append({"name": entry.name, "reason": f"over the {limit} files imported from one folder"})
            continue
        taken += 1
        sample, created = samples.create(deps.db, rep_id=rep["id"], source_type="drive", source_id=entry.id,
                                         content_hash=samples.hash_link("drive", entry.id), title=entry.name,
                                         purpose=purpose, metadata={"folder_id": folder_id})
        if created or sample["status"] == samples.QUEUED:
            tasks.append(pipeline.extract_task(sample["id"]))
        (queued if created else duplicates).append({"id": sample["id"], "title": sample["title"]})
    if tasks:
        deps.tasks.enqueue_many(tasks)
    log.info("drive folder queued", extra={"fields": {"rep_id": rep["id"], "queued": len(queued),
                                                      "duplicates": len(duplicates), "skipped": len(skipped)}})
    return {"folder_id": folder_id, "queued": queued, "duplicates": duplicates, "skipped": skipped}, 202


def folder_of(body: dict[str, Any]) -> str | None:
    """The Drive folder a POST /ingest body names (``folder_id``, or a Drive folder link), or None.

    Raises:
        BadRequest: ``folder_id`` is not a Drive id.
    """
    import re

    from shared.errors import BadRequest

    if body.get("source") not in ("drive", "url"):
        return None
    folder_id = body.get("folder_id")
    if folder_id is not None and body.get("source") == "drive":
        folder_id = str(folder_id).strip()
        if not re.fullmatch(r"[A-Za-z0-9_-]{10,200}", folder_id):
            raise BadRequest("folder_id is not a Google Drive folder id.")
        return folder_id
    url = body.get("url")
    if isinstance(url, str) and url.strip():
        from shared.voice import links

        try:
            link = links.classify(url.strip())
        except BadRequest:
            return None  # the link path reports what is wrong with it
        if link.kind == "drive" and link.folder and link.ref:
            return str(link.ref)
    return None
