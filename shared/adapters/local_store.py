"""DocumentStore embedded in the process: the laptop stack's stand-in for Firestore.

Documents live in memory behind one lock and are persisted as one JSON file per collection under
``<data_dir>/documents/``. Each write replaces the collection's file atomically (a temporary file, fsync,
``os.replace``), so a crash leaves either the old file or the new one, never half of one.

One process owns a data directory: the local stack runs every function in a single server, so there is
no cross-process locking.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_DATETIME = "$datetime"
_MAP = "$map"  # wraps a user map whose keys could be mistaken for one of these tags


class LocalStore:
    """``shared.ports.DocumentStore`` persisted as JSON files.

    Args:
        data_dir: The stack's data directory; documents go under ``<data_dir>/documents``.
    """

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.root = Path(data_dir) / "documents"
        self.root.mkdir(parents=True, exist_ok=True)
        # RLock: an update's fn may read the store itself without deadlocking.
        self._lock = threading.RLock()
        # collection -> doc id -> the document in its JSON form (so every read decodes a fresh copy).
        self._collections: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        collections = {}
        for path in sorted(self.root.glob("*.json")):
            name = urllib.parse.unquote(path.stem)
            with open(path, encoding="utf-8") as fh:
                collections[name] = json.load(fh)
        return collections

    def _persist(self, collection: str) -> None:
        docs = self._collections.get(collection, {})
        target = self.root / f"{urllib.parse.quote(collection, safe='')}.json"
        if not docs:
            target.unlink(missing_ok=True)
            return
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(docs, fh, separators=(",", ":"), sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # --- port ----------------------------------------------------------------------------------------

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        _check_names(collection, doc_id)
        with self._lock:
            raw = self._collections.get(collection, {}).get(doc_id)
            return None if raw is None else _decode(raw)

    def set(self, collection: str, doc_id: str, data: dict[str, Any], *, merge: bool = False) -> None:
        _check_names(collection, doc_id)
        encoded = _encode_doc(data)
        with self._lock:
            docs = self._collections.setdefault(collection, {})
            if merge and doc_id in docs:
                current = _decode(docs[doc_id])
                encoded = _encode_doc(_merge(current, data))
            docs[doc_id] = encoded
            self._persist(collection)

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> bool:
        """Create the document only if absent; False when it already exists."""
        _check_names(collection, doc_id)
        encoded = _encode_doc(data)
        with self._lock:
            docs = self._collections.setdefault(collection, {})
            if doc_id in docs:
                return False
            docs[doc_id] = encoded
            self._persist(collection)
            return True

    def delete(self, collection: str, doc_id: str) -> bool:
        _check_names(collection, doc_id)
        with self._lock:
            docs = self._collections.get(collection, {})
            if doc_id not in docs:
                return False
            del docs[doc_id]
            self._persist(collection)
            return True

    def list(self, collection: str, *, prefix: str = "", limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        _check_names(collection)
        if limit is not None and limit <= 0:
            return []
        with self._lock:
            docs = self._collections.get(collection, {})
            # Python orders str by code point, which is the UTF-8 byte order Firestore uses for ids.
            ids = sorted(doc_id for doc_id in docs if doc_id.startswith(prefix))
            if limit is not None:
                ids = ids[:limit]
            return [(doc_id, _decode(docs[doc_id])) for doc_id in ids]

    def update(self, collection: str, doc_id: str,
               fn: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Read-modify-write under the store's lock: ``fn`` runs once and nothing interleaves."""
        _check_names(collection, doc_id)
        with self._lock:
            docs = self._collections.setdefault(collection, {})
            raw = docs.get(doc_id)
            new = fn(None if raw is None else _decode(raw))
            if new is None:
                if raw is not None:
                    del docs[doc_id]
                    self._persist(collection)
                return None
            docs[doc_id] = _encode_doc(new)
            self._persist(collection)
            return _decode(docs[doc_id])

    def health(self) -> None:
        """Raise if the data directory cannot be written."""
        if not os.access(self.root, os.W_OK):
            raise OSError(f"the document store directory is not writable: {self.root}")


def _check_names(collection: str, doc_id: str | None = None) -> None:
    # Firestore's own rules for a top-level collection and a document id, so code that runs here also
    # runs there.
    if not collection or "/" in collection:
        raise ValueError(f"invalid collection name {collection!r}")
    if doc_id is not None and (not doc_id or "/" in doc_id or doc_id in {".", ".."}):
        raise ValueError(f"invalid document id {doc_id!r}")


def _merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Firestore's ``set(..., merge=True)``: maps merge field by field, every other value replaces."""
    out = copy.deepcopy(current)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _encode_doc(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"a document is a dict, not {type(data).__name__}")
    return _encode(data)


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dt.datetime):
        # Stored as an instant in UTC; naive values are taken as UTC, as the Firestore library does.
        aware = value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return {_DATETIME: aware.isoformat()}
    if isinstance(value, dict):
        encoded = {str(k): _encode(v) for k, v in value.items()}
        return {_MAP: encoded} if any(k.startswith("$") for k in encoded) else encoded
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (list, tuple)) for v in value):
            raise ValueError("an array may not directly contain an array (a Firestore rule)")
        return [_encode(v) for v in value]
    raise TypeError(f"unsupported value type for a document: {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _DATETIME in value:
            return dt.datetime.fromisoformat(value[_DATETIME])
        if len(value) == 1 and _MAP in value:
            return {k: _decode(v) for k, v in value[_MAP].items()}
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
