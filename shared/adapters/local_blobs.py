"""Blobs in a local directory: the embedded ``BlobStore``, and the object-key rules both blob adapters share.

Layout under ``root``: a key ``a/b/c`` is stored as ``a.d/b.d/c.obj`` with its content type in
``c.meta``. The suffixes keep a directory and a file from ever having the same name, so ``a`` and
``a/b`` can both exist, as they can in Cloud Storage. Writes go to a temporary file in the same
directory and are renamed into place, so a reader sees either the old object or the new one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from shared.ports import BlobNotFound

log = logging.getLogger(__name__)

# Cloud Storage allows object names of 1-1024 bytes of UTF-8 without CR/LF
# (https://cloud.google.com/storage/docs/objects#naming). We are stricter so that a key means the same
# thing in a bucket and in a directory: no empty, "." or ".." segment, no backslash, no control
# character, and segments short enough to be file names (most filesystems cap a name at 255 bytes).
MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 200

_DATA_SUFFIX = ".obj"
_META_SUFFIX = ".meta"
_DIR_SUFFIX = ".d"
_TMP_PREFIX = ".tmp-"
_TMP_SUFFIX = ".part"


def validate_key(key: str) -> str:
    """Check an object key against the rules every blob adapter enforces.

    Args:
        key: a relative, ``/``-separated object name such as ``uploads/rep-1/sample.pdf``.

    Returns:
        The key, unchanged.

    Raises:
        ValueError: the key is empty, too long, absolute, has an empty, ``.`` or ``..`` segment, or
            contains a backslash or a control character.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("blob key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"blob key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise ValueError("blob key must not start with '/'")
    if "\\" in key or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise ValueError("blob key must not contain a backslash or a control character")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"blob key has an empty, '.' or '..' segment: {key!r}")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ValueError(f"blob key segment longer than {MAX_SEGMENT_BYTES} bytes")
    return key


class LocalBlobStore:
    """Objects as files under ``root``; implements ``shared.ports.BlobStore``.

    Files are created with mode 0600: uploads are people's documents.
    """

    def __init__(self, root: Path):
        self._root = Path(root)

    def _paths(self, key: str) -> tuple[Path, Path]:
        segments = validate_key(key).split("/")
        folder = self._root.joinpath(*(s + _DIR_SUFFIX for s in segments[:-1]))
        return folder / (segments[-1] + _DATA_SUFFIX), folder / (segments[-1] + _META_SUFFIX)

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Store ``data`` under ``key``, replacing any previous object atomically.

        Returns:
            The ``file://`` URI of the stored file.

        Raises:
            ValueError: the key is invalid.
        """
        data_path, meta_path = self._paths(key)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        # Metadata first: a crash between the two renames leaves the old bytes with the new type,
        # never new bytes without a type.
        _atomic_write(meta_path, json.dumps({"content_type": content_type}).encode())
        _atomic_write(data_path, bytes(data))
        return data_path.resolve().as_uri()

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``.

        Raises:
            BlobNotFound: no object has that key.
            ValueError: the key is invalid.
        """
        data_path, _ = self._paths(key)
        try:
            return data_path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None

    def content_type(self, key: str) -> str:
        """The content type given when the object was stored.

        Raises:
            BlobNotFound: no object has that key.
        """
        data_path, meta_path = self._paths(key)
        if not data_path.is_file():
            raise BlobNotFound(key)
        try:
            return json.loads(meta_path.read_text())["content_type"]
        except (FileNotFoundError, ValueError, KeyError):
            return "application/octet-stream"

    def delete(self, key: str) -> bool:
        """Delete the object; returns whether it existed."""
        data_path, meta_path = self._paths(key)
        try:
            data_path.unlink()
        except FileNotFoundError:
            return False
        meta_path.unlink(missing_ok=True)
        # Empty folders are left in place: removing them would race with a concurrent put that has
        # just created the same folder and is about to write into it.
        return True

    def exists(self, key: str) -> bool:
        data_path, _ = self._paths(key)
        return data_path.is_file()

    def health(self) -> None:
        """Raise if the root directory cannot be created or written."""
        self._root.mkdir(parents=True, exist_ok=True)
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise PermissionError(f"blob directory {self._root} is not writable")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (mode 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
