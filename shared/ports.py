"""Ports: the small interfaces capabilities depend on.

Each port has exactly two implementations in ``shared/adapters``: a production adapter on the real
client library and an embedded one for the laptop stack. ``tests/contract`` runs one suite per port
against both. Capabilities import this module, never an adapter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable


# --- SQL + vectors -------------------------------------------------------------------------------


class Cursor(Protocol):
    """DB-API cursor (pg8000, ``%s`` placeholders)."""

    rowcount: int
    description: Any

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> tuple | None: ...
    def fetchall(self) -> list[tuple]: ...


@runtime_checkable
class Database(Protocol):
    """A pool of Postgres connections with pgvector types registered."""

    def transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction: committed on exit, rolled back on an exception."""
        ...

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run one statement in its own transaction and return the rows as dicts."""
        ...

    def health(self) -> None:
        """Raise if the database cannot answer."""
        ...

    def close(self) -> None: ...


# --- Documents: flags, quotas, breakers, guardrails ----------------------------------------------


class TransactionConflict(Exception):
    """A transactional update lost a race too many times."""


@runtime_checkable
class DocumentStore(Protocol):
    """Firestore-shaped documents: ``collection/doc_id`` → a JSON-like dict.

    Values are JSON types plus ``datetime`` (timezone-aware, UTC).
    """

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...

    def set(self, collection: str, doc_id: str, data: dict[str, Any], *, merge: bool = False) -> None: ...

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> bool:
        """Create the document only if it does not exist. Returns False when it already exists."""
        ...

    def delete(self, collection: str, doc_id: str) -> bool:
        """Delete; returns whether it existed."""
        ...

    def list(self, collection: str, *, prefix: str = "", limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Documents of a collection whose id starts with ``prefix``, ordered by id."""
        ...

    def update(self, collection: str, doc_id: str,
               fn: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Read-modify-write in one transaction. ``fn`` gets the current document (or None) and returns the
        new one (None deletes). It may run more than once. Raises TransactionConflict after retries."""
        ...

    def health(self) -> None: ...


# --- Tasks ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Task:
    """A point-to-point HTTP delivery to a function, as Cloud Tasks makes it.

    ``target`` is the deployed function name (``draft``); ``path`` is appended to its URL. ``name``
    dedupes: a second task with the same name is refused while the first is known.
    """

    target: str
    payload: dict[str, Any]
    name: str | None = None
    path: str = ""
    schedule_at: dt.datetime | None = None
    queue: str | None = None  # default: the target's own queue


@runtime_checkable
class TaskQueue(Protocol):
    def enqueue(self, task: Task) -> bool:
        """Queue one task. Returns False when a task of that name already exists (a duplicate)."""
        ...

    def enqueue_many(self, tasks: Sequence[Task]) -> list[bool]:
        """Queue several tasks concurrently (never one serial RPC after another)."""
        ...

    def cancel(self, target: str, name: str, queue: str | None = None) -> bool:
        """Delete a task that has not run yet. Returns whether one was deleted."""
        ...

    def health(self) -> None: ...


# --- Events --------------------------------------------------------------------------------------


@runtime_checkable
class EventBus(Protocol):
    def publish(self, topic: str, data: dict[str, Any], *, attributes: dict[str, str] | None = None) -> str:
        """Publish a JSON event; returns the message id."""
        ...

    def health(self) -> None: ...


# --- Blobs ---------------------------------------------------------------------------------------


class BlobNotFound(KeyError):
    pass


@runtime_checkable
class BlobStore(Protocol):
    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Store bytes under ``key``; returns a URI (``gs://bucket/key`` or ``file://...``)."""
        ...

    def get(self, key: str) -> bytes:
        """Raises BlobNotFound."""
        ...

    def delete(self, key: str) -> bool: ...

    def exists(self, key: str) -> bool: ...

    def health(self) -> None: ...


# --- Secrets -------------------------------------------------------------------------------------


class SecretNotFound(KeyError):
    pass


@runtime_checkable
class SecretStore(Protocol):
    def add_version(self, name: str, data: bytes) -> str:
        """Add a new version (creating the secret if needed); returns the version id."""
        ...

    def access(self, name: str, version: str = "latest") -> bytes:
        """Raises SecretNotFound."""
        ...

    def destroy_old_versions(self, name: str, keep: int = 1) -> int:
        """Destroy every enabled version but the newest ``keep``; returns how many were destroyed."""
        ...

    def delete(self, name: str) -> bool: ...

    def health(self) -> None: ...


# --- Embeddings ----------------------------------------------------------------------------------


@runtime_checkable
class Embedder(Protocol):
    model: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order. Batches internally."""
        ...

    def health(self) -> None: ...


def iter_batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- Outbound URL fetch (share links) ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FetchedPage:
    url: str  # final URL after redirects
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Fetcher(Protocol):
    """Fetches a URL that a person supplied, refusing anything that is not a public http(s) address."""

    def fetch(self, url: str, *, max_bytes: int | None = None, timeout: float | None = None,
              headers: dict[str, str] | None = None) -> FetchedPage:
        """Raises shared.errors.Refused for a forbidden target, TooLarge past the cap,
        DependencyDown / PermanentError for network and HTTP failures."""
        ...

    def check(self, url: str, *, timeout: float | None = None) -> None:
        """Raise Refused now if the link's own target is forbidden (no connection is made)."""
        ...
