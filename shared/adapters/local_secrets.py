"""Secrets as files: the embedded ``SecretStore``, and the secret-name rule both secret adapters share.

Layout under ``root`` (mode 0700)::

    <name>/            mode 0700, one directory per secret
      1                mode 0600, the bytes of version 1
      2.destroyed      version 2 was destroyed: its bytes are gone, its number stays taken

Versions are numbered like Secret Manager's: from 1, increasing, never reused while the secret
exists. Writers take an exclusive ``flock`` on ``root/.lock`` (several processes of the local stack may
share a data dir); readers need no lock because every file appears by an atomic rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.ports import SecretNotFound

log = logging.getLogger(__name__)

# Secret Manager's secret_id: letters, digits, hyphens and underscores, at most 255 characters
# (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/create).
_SECRET_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_VERSION = re.compile(r"[1-9][0-9]*")
_DESTROYED = ".destroyed"
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def validate_secret_name(name: str) -> str:
    """Check a secret name against Secret Manager's rule for secret ids.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: the name is empty, longer than 255 characters, or has a character other than a
            letter, a digit, ``-`` or ``_``.
    """
    if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
        raise ValueError("secret name must be 1-255 letters, digits, hyphens or underscores")
    return name


def validate_version(version: str) -> str:
    """Check a version reference: ``latest`` or a positive version number.

    Raises:
        ValueError: anything else.
    """
    if version != "latest" and not (isinstance(version, str) and _VERSION.fullmatch(version)):
        raise ValueError(f"secret version must be 'latest' or a positive number, got {version!r}")
    return version


class LocalSecretStore:
    """Secret versions as 0600 files in 0700 directories; implements ``shared.ports.SecretStore``."""

    def __init__(self, root: Path):
        self._root = Path(root)

    def _secret_dir(self, name: str) -> Path:
        return self._root / validate_secret_name(name)

    def _ensure_root(self) -> None:
        self._root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        os.chmod(self._root, _DIR_MODE)

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        self._ensure_root()
        fd = os.open(self._root / ".lock", os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _versions(self, folder: Path) -> dict[int, bool]:
        """Version number → whether it is enabled (False: destroyed)."""
        try:
            entries = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            raise SecretNotFound(folder.name) from None
        versions: dict[int, bool] = {}
        for entry in entries:
            if entry.endswith(_DESTROYED) and _VERSION.fullmatch(entry[:-len(_DESTROYED)]):
                versions[int(entry[:-len(_DESTROYED)])] = False
            elif _VERSION.fullmatch(entry):
                versions.setdefault(int(entry), True)
        return versions

    def add_version(self, name: str, data: bytes) -> str:
        """Store ``data`` as the secret's next version, creating the secret if needed.

        Returns:
            The new version id (``"1"``, ``"2"`` ...).

        Raises:
            ValueError: the name is invalid.
        """
        folder = self._secret_dir(name)
        with self._write_lock():
            folder.mkdir(mode=_DIR_MODE, exist_ok=True)
            os.chmod(folder, _DIR_MODE)
            number = max(self._versions(folder), default=0) + 1
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)  # mkstemp creates mode 0600
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(bytes(data))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, folder / str(number))
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return str(number)

    def access(self, name: str, version: str = "latest") -> bytes:
        """The bytes of one version; ``latest`` is the most recently created one.

        Raises:
            SecretNotFound: no such secret or version, or the version was destroyed.
            ValueError: the name or the version reference is invalid.
        """
        folder = self._secret_dir(name)
        validate_version(version)
        versions = self._versions(folder)
        number = max(versions, default=0) if version == "latest" else int(version)
        # Like Secret Manager, "latest" does not skip a destroyed newest version: it fails.
        if not versions.get(number, False):
            raise SecretNotFound(f"{name}/{version}")
        try:
            return (folder / str(number)).read_bytes()
        except FileNotFoundError:  # destroyed or deleted since the listing
            raise SecretNotFound(f"{name}/{version}") from None

    def destroy_old_versions(self, name: str, keep: int = 1) -> int:
        """Destroy every enabled version but the newest ``keep``.

        Returns:
            How many versions were destroyed.

        Raises:
            SecretNotFound: no such secret.
            ValueError: ``keep`` is below 1 (use ``delete`` to remove everything).
        """
        if keep < 1:
            raise ValueError("keep must be at least 1")
        folder = self._secret_dir(name)
        with self._write_lock():
            enabled = sorted((n for n, ok in self._versions(folder).items() if ok), reverse=True)
            doomed = enabled[keep:]
            for number in doomed:
                # The marker first: should we stop between the two steps, the version reads as
                # destroyed and its number is never handed out again.
                marker = os.open(folder / f"{number}{_DESTROYED}", os.O_WRONLY | os.O_CREAT, _FILE_MODE)
                os.close(marker)
                (folder / str(number)).unlink(missing_ok=True)
        if doomed:
            log.info("destroyed %d old version(s) of secret %s", len(doomed), name)
        return len(doomed)

    def delete(self, name: str) -> bool:
        """Delete the secret and every version; returns whether it existed."""
        folder = self._secret_dir(name)
        with self._write_lock():
            if not folder.is_dir():
                return False
            # Rename first so the secret disappears at once, then remove the files at leisure.
            tombstone = self._root / f".deleted-{name}-{secrets.token_hex(4)}"
            os.rename(folder, tombstone)
        shutil.rmtree(tombstone, ignore_errors=True)
        return True

    def health(self) -> None:
        """Raise if the secrets directory cannot be created, written, or is open to other users."""
        self._ensure_root()
        mode = stat.S_IMODE(os.stat(self._root).st_mode)
        if mode & 0o077:
            raise PermissionError(f"secrets directory {self._root} has mode {mode:o}, expected 700")
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise PermissionError(f"secrets directory {self._root} is not writable")
