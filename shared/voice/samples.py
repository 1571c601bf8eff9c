"""Training samples: the ``training_samples`` repository and the state machine every sample follows.

``queued → extracting → embedding → ready``, or ``failed`` with a sentence a rep can act on. A
re-embed (retrain, or a change of embedding model) takes a ``ready`` sample back to ``embedding``.
Transitions are compare-and-set updates (``UPDATE ... WHERE status IN (...)``), so two deliveries of
the same task cannot both move a sample, and a task that arrives after its step is done finds nothing
to do (``begin`` returns None) instead of doing the work twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

from shared.errors import BadRequest, Conflict, NotFound
from shared.ports import Database

QUEUED, EXTRACTING, EMBEDDING, READY, FAILED = "queued", "extracting", "embedding", "ready", "failed"
STATUSES = (QUEUED, EXTRACTING, EMBEDDING, READY, FAILED)
PURPOSES = ("voice", "asset")
SOURCE_TYPES = ("upload", "url", "youtube", "drive", "hubspot", "gmail")

# from-status -> statuses it may move to. A step may re-enter its own status (a retried delivery).
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({EXTRACTING, FAILED}),
    EXTRACTING: frozenset({EXTRACTING, EMBEDDING, FAILED}),
    EMBEDDING: frozenset({EMBEDDING, READY, FAILED}),
    READY: frozenset({EMBEDDING}),
    FAILED: frozenset(),
}

# The status each step starts from; a sample in any later status has had that step done.
STEP_ENTRY = {EXTRACTING: (QUEUED, EXTRACTING), EMBEDDING: (EMBEDDING,)}

_SUMMARY = ("id, rep_id, source_type, source_id, source_url, title, purpose, content_hash, blob_key, status, "
            "error, word_count, metadata, created_at, updated_at")
MAX_ERROR_CHARS = 1000


class IllegalTransition(Conflict):
    """A sample was asked to move to a status its current status does not lead to."""


def can_move(current: str, new: str) -> bool:
    """Whether the state machine allows ``current → new``.

    Args:
        current: The sample's status.
        new: The status asked for.
    """
    return new in TRANSITIONS.get(current, frozenset())


def check_transition(current: str, new: str) -> None:
    """Raise unless ``current → new`` is allowed.

    Raises:
        IllegalTransition: it is not (409), or either status is unknown.
    """
    if current not in TRANSITIONS or new not in TRANSITIONS:
        raise IllegalTransition(f"Unknown sample status {current!r} or {new!r}.", code="illegal_transition")
    if not can_move(current, new):
        raise IllegalTransition(f"A sample cannot go from {current} to {new}.", code="illegal_transition")


# --- hashing ---------------------------------------------------------------------------------------


def hash_bytes(data: bytes) -> str:
    """Content hash of an upload: the SHA-256 of its raw bytes.

    Args:
        data: The uploaded bytes.
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hash_link(kind: str, ref: str) -> str:
    """Content hash of a link: the SHA-256 of its normalised form (``kind`` and the reference the
    link classifier derived, e.g. a YouTube video id), so two spellings of one link are one sample.

    Args:
        kind: The link's kind (``youtube``, ``drive``, ``hubspot``, ``web`` ...).
        ref: Its normalised reference.
    """
    return "link:" + hashlib.sha256(f"{kind}\n{ref}".encode()).hexdigest()


# --- repository ------------------------------------------------------------------------------------


def _uuid(value: str, what: str = "sample") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound(f"There is no {what} with id {value}.") from None


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("id", "rep_id"):
        if out.get(key) is not None:
            out[key] = str(out[key])
    if isinstance(out.get("metadata"), str):
        out["metadata"] = json.loads(out["metadata"])
    return out


def create(db: Database, *, rep_id: str, source_type: str, content_hash: str, title: str = "",
           purpose: str = "voice", source_id: str | None = None, source_url: str | None = None,
           blob_key: str | None = None, metadata: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """Insert a queued sample, or find the rep's sample with the same content hash.

    Args:
        db: The database.
        rep_id: Whose voice it trains.
        source_type: ``upload``, ``url``, ``youtube``, ``drive`` or ``hubspot``.
        content_hash: ``hash_bytes`` or ``hash_link``; unique per rep.
        title: A title for lists.
        purpose: ``voice`` (how the rep writes) or ``asset`` (material drafts may cite).
        source_id: The source's own id (a Drive file id, a HubSpot record).
        source_url: The link, for link sources.
        blob_key: Where the raw upload is stored.
        metadata: Anything else worth keeping about the source.

    Returns:
        (the sample, True) when created; (the existing sample, False) for a duplicate.

    Raises:
        BadRequest: An unknown purpose or source type.
    """
    if purpose not in PURPOSES:
        raise BadRequest(f"purpose must be one of {', '.join(PURPOSES)}.")
    if source_type not in SOURCE_TYPES:
        raise BadRequest(f"source must be one of {', '.join(SOURCE_TYPES)}.")
    rows = db.query(
        f"""INSERT INTO training_samples (rep_id, source_type, source_id, source_url, title, purpose,
                                          content_hash, blob_key, metadata)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
            ON CONFLICT (rep_id, content_hash) DO NOTHING
            RETURNING {_SUMMARY}""",
        (rep_id, source_type, source_id, source_url, title[:500], purpose, content_hash, blob_key,
         json.dumps(metadata or {})))
    if rows:
        return _clean(rows[0]), True
    existing = db.query(f"SELECT {_SUMMARY} FROM training_samples WHERE rep_id = %s AND content_hash = %s",
                        (rep_id, content_hash))
    if not existing:  # deleted between the two statements: extremely unlikely, and safe to retry
        raise Conflict("The sample changed while it was being created; try again.")
    return _clean(existing[0]), False


def get(db: Database, sample_id: str, *, with_content: bool = False) -> dict[str, Any] | None:
    """A sample by id, or None.

    Args:
        db: The database.
        sample_id: The sample's id (a malformed id finds nothing).
        with_content: Include the extracted ``content``.
    """
    try:
        key = str(uuid.UUID(str(sample_id)))
    except ValueError:
        return None
    columns = _SUMMARY + (", content" if with_content else "")
    rows = db.query(f"SELECT {columns} FROM training_samples WHERE id = %s", (key,))
    return _clean(rows[0]) if rows else None


def list_samples(db: Database, rep_id: str, *, status: str | None = None, source_type: str | None = None,
                 limit: int = 200) -> list[dict[str, Any]]:
    """A rep's samples, newest first.

    Args:
        db: The database.
        rep_id: The rep.
        status: Only samples in this status.
        source_type: Only samples of this source type.
        limit: At most this many.

    Raises:
        BadRequest: An unknown status or source type.
    """
    where, params = ["rep_id = %s"], [rep_id]
    if status:
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}.")
        where.append("status = %s")
        params.append(status)
    if source_type:
        if source_type not in SOURCE_TYPES:
            raise BadRequest(f"source must be one of {', '.join(SOURCE_TYPES)}.")
        where.append("source_type = %s")
        params.append(source_type)
    params.append(max(1, min(int(limit), 1000)))
    rows = db.query(f"SELECT {_SUMMARY} FROM training_samples WHERE {' AND '.join(where)} "
                    "ORDER BY created_at DESC, id LIMIT %s", params)
    return [_clean(row) for row in rows]


def ready_ids(db: Database, rep_id: str) -> list[str]:
    """Ids of a rep's ready samples."""
    rows = db.query("SELECT id FROM training_samples WHERE rep_id = %s AND status = 'ready' ORDER BY created_at",
                    (rep_id,))
    return [str(row["id"]) for row in rows]


def delete(db: Database, sample_id: str) -> dict[str, Any] | None:
    """Delete a sample (its chunks go with it, by cascade).

    Returns:
        The deleted sample's summary, or None when there was none.
    """
    key = _uuid(sample_id)
    rows = db.query(f"DELETE FROM training_samples WHERE id = %s RETURNING {_SUMMARY}", (key,))
    return _clean(rows[0]) if rows else None


def begin(db: Database, sample_id: str, status: str) -> dict[str, Any] | None:
    """Enter a step: move the sample to ``status`` if it is where that step starts.

    Args:
        db: The database.
        sample_id: The sample.
        status: ``extracting`` or ``embedding``.

    Returns:
        The sample (with its content) when the step should run; None when the sample is gone or its
        step is already done, so a redelivered task does nothing.
    """
    key = _uuid(sample_id)
    entry = STEP_ENTRY[status]
    rows = db.query(
        f"""UPDATE training_samples SET status = %s, error = NULL, updated_at = now()
            WHERE id = %s AND status = ANY(%s) RETURNING {_SUMMARY}, content""",
        (status, key, list(entry)))
    return _clean(rows[0]) if rows else None


def move(db: Database, sample_id: str, new: str, *, expect: Sequence[str] | None = None,
         **fields: Any) -> dict[str, Any]:
    """Move a sample to ``new`` along the state machine, setting other columns in the same update.

    Args:
        db: The database.
        sample_id: The sample.
        new: The new status.
        expect: The statuses it may be in (default: every status that leads to ``new``).
        **fields: Columns to set too: ``content``, ``word_count``, ``metadata``, ``error``, ``title``.

    Returns:
        The updated sample.

    Raises:
        NotFound: There is no such sample.
        IllegalTransition: Its status does not lead to ``new``.
    """
    key = _uuid(sample_id)
    allowed = list(expect) if expect is not None else [s for s in STATUSES if can_move(s, new)]
    for status in allowed:
        check_transition(status, new)
    sets, params = ["status = %s", "updated_at = now()"], [new]
    for column, value in fields.items():
        if column not in ("content", "word_count", "metadata", "error", "title"):
            raise TypeError(f"cannot set {column}")
        if column == "metadata":
            sets.append("metadata = %s::jsonb")
            params.append(json.dumps(value))
        else:
            sets.append(f"{column} = %s")
            params.append(value[:MAX_ERROR_CHARS] if column == "error" and value else value)
    rows = db.query(f"UPDATE training_samples SET {', '.join(sets)} WHERE id = %s AND status = ANY(%s) "
                    f"RETURNING {_SUMMARY}", [*params, key, allowed])
    if rows:
        return _clean(rows[0])
    current = get(db, key)
    if current is None:
        raise NotFound(f"There is no sample with id {key}.")
    check_transition(current["status"], new)
    raise IllegalTransition(f"A sample cannot go from {current['status']} to {new}.", code="illegal_transition")


def fail(db: Database, sample_id: str, message: str) -> dict[str, Any] | None:
    """End a sample ``failed`` with a human-readable message, from any status still in progress.

    Returns:
        The failed sample, or None when it is gone or already finished (ready or failed).
    """
    key = _uuid(sample_id)
    rows = db.query(
        f"""UPDATE training_samples SET status = 'failed', error = %s, updated_at = now()
            WHERE id = %s AND status IN ('queued', 'extracting', 'embedding') RETURNING {_SUMMARY}""",
        ((message or "The sample could not be processed.")[:MAX_ERROR_CHARS], key))
    return _clean(rows[0]) if rows else None


def public(sample: dict[str, Any]) -> dict[str, Any]:
    """A sample as the API shows it (no internal blob key or hash)."""
    hidden = {"blob_key", "content_hash"}
    return {key: value for key, value in sample.items() if key not in hidden}
