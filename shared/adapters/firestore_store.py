"""DocumentStore on Cloud Firestore (``google-cloud-firestore``), or on its emulator in tests.

No client exists until the first call, so importing this module costs a cold start nothing beyond the
library import itself; the client is built once per instance under a lock.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.transaction import transactional

from shared import errors
from shared.ports import TransactionConflict

log = logging.getLogger(__name__)

# Failures that say Firestore (or the path to it) is down right now; callers answer 503 and the platform
# redelivers. Anything else (a malformed document, a permission problem) is a bug and propagates as is.
_UNAVAILABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.RetryError)

_STRIPES = 64


class FirestoreStore:
    """``shared.ports.DocumentStore`` on Firestore.

    Args:
        project: Google Cloud project id.
        database: Firestore database id.
        client: A ready ``google.cloud.firestore.Client``; when given, ``project``, ``database`` and
            ``emulator_host`` only label logs.
        emulator_host: ``host:port`` of a Firestore emulator: the client then speaks plaintext gRPC with
            anonymous credentials.
        max_attempts: Transaction attempts in ``update`` before ``TransactionConflict``.
        base_delay: First backoff delay between transaction attempts, in seconds.
        max_delay: Largest backoff delay, in seconds.
    """

    def __init__(self, project: str, database: str = "(default)", *, client: firestore.Client | None = None,
                 emulator_host: str | None = None, max_attempts: int = 10, base_delay: float = 0.02,
                 max_delay: float = 1.0):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.project = project
        self.database = database
        self.emulator_host = emulator_host or None
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._client_instance = client
        self._lock = threading.Lock()
        self._random = random.Random()
        # Striped locks: transactions on one document from this instance run one at a time (below).
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))

    # --- client ------------------------------------------------------------------------------------

    def _client(self) -> firestore.Client:
        client = self._client_instance
        if client is not None:
            return client
        with self._lock:
            if self._client_instance is None:
                self._client_instance = self._build_client()
            return self._client_instance

    def _build_client(self) -> firestore.Client:
        if self.emulator_host is None:
            return firestore.Client(project=self.project, database=self.database)
        client = firestore.Client(project=self.project, database=self.database, credentials=AnonymousCredentials())
        # The library's only switch to a plaintext channel (and the emulator's "Bearer owner" metadata) is
        # the FIRESTORE_EMULATOR_HOST variable, read once in the constructor into this attribute. Setting
        # the attribute keeps os.environ out of it: shared.config is the one reader of the environment.
        # Nothing is connected yet: the channel is built on the first RPC.
        if not hasattr(client, "_emulator_host"):
            raise RuntimeError("this google-cloud-firestore version has no emulator hook; pin 2.x")
        client._emulator_host = self.emulator_host
        return client

    def _ref(self, collection: str, doc_id: str) -> firestore.DocumentReference:
        _check_names(collection, doc_id)
        return self._client().collection(collection).document(doc_id)

    # --- port ----------------------------------------------------------------------------------------

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        ref = self._ref(collection, doc_id)
        with _translated("get"):
            snap = ref.get()
        return _decode(snap.to_dict()) if snap.exists else None

    def set(self, collection: str, doc_id: str, data: dict[str, Any], *, merge: bool = False) -> None:
        ref = self._ref(collection, doc_id)
        with _translated("set"):
            ref.set(_encode(data), merge=merge)

    def create(self, collection: str, doc_id: str, data: dict[str, Any]) -> bool:
        """Create the document only if absent (Firestore ``create``, a server-side precondition)."""
        ref = self._ref(collection, doc_id)
        with _translated("create"):
            try:
                ref.create(_encode(data))
            except gexc.AlreadyExists:
                return False
        return True

    def delete(self, collection: str, doc_id: str) -> bool:
        ref = self._ref(collection, doc_id)
        # A plain delete succeeds on a missing document; the exists precondition makes the server tell us
        # whether there was one, in the same single RPC.
        with _translated("delete"):
            try:
                ref.delete(option=self._client().write_option(exists=True))
            except gexc.NotFound:
                return False
        return True

    def list(self, collection: str, *, prefix: str = "", limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        _check_names(collection)
        col = self._client().collection(collection)
        query = col.order_by("__name__")
        if prefix:
            # Document ids order by their UTF-8 bytes, which is code-point order, so [prefix, successor)
            # is exactly the ids starting with prefix.
            query = query.where(filter=FieldFilter("__name__", ">=", col.document(prefix)))
            upper = _successor(prefix)
            if upper is not None:
                query = query.where(filter=FieldFilter("__name__", "<", col.document(upper)))
        if limit is not None:
            if limit <= 0:
                return []
            query = query.limit(limit)
        with _translated("list"):
            return [(snap.id, _decode(snap.to_dict())) for snap in query.stream()]

    def update(self, collection: str, doc_id: str,
               fn: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Read-modify-write in a Firestore transaction, retried with jittered exponential backoff.

        The client library retries an aborted commit at once, with no pause; under contention (and the
        emulator aborts a transaction that waited about two seconds for a lock) that turns into a burst of
        doomed retries. One library attempt per transaction and our own backoff spread them out.

        Transactions on the same document from this instance are also serialised locally first: Firestore
        resolves contention between them with lock waits and aborts (measured on the emulator: 10 threads
        incrementing one counter take about 11 s without the local lock, 20 ms each with it), while
        waiting on a local lock costs nothing. Contention between instances is left to the backoff.

        Raises:
            TransactionConflict: every attempt was aborted by contention.
        """
        ref = self._ref(collection, doc_id)

        def body(txn: firestore.Transaction) -> dict[str, Any] | None:
            snap = ref.get(transaction=txn)
            current = _decode(snap.to_dict()) if snap.exists else None
            new = fn(copy.deepcopy(current))
            if new is None:
                if snap.exists:
                    txn.delete(ref)
            else:
                txn.set(ref, _encode(new))
            return copy.deepcopy(new)

        client = self._client()
        stripe = self._stripes[hash((collection, doc_id)) % _STRIPES]
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                self._backoff(attempt)
            try:
                with stripe, _translated("update"):
                    return transactional(body)(client.transaction(max_attempts=1))
            except gexc.Aborted as exc:  # a transactional read lost its lock wait
                last = exc
            except ValueError as exc:  # the library's wrapper around an aborted commit
                if not isinstance(exc.__cause__, gexc.Aborted):
                    raise
                last = exc.__cause__
            log.debug("transaction aborted", extra={"collection": collection, "attempt": attempt + 1})
        log.warning("transaction gave up after contention",
                    extra={"collection": collection, "attempts": self.max_attempts})
        raise TransactionConflict(
            f"update of {collection}/{doc_id} lost to concurrent writers {self.max_attempts} times") from last

    def health(self) -> None:
        """Read one (absent) document: proves the endpoint, the credentials and the database answer.

        Raises:
            DependencyDown: Firestore did not answer.
        """
        ref = self._client().collection("_health").document("ping")
        with _translated("health"):
            ref.get(timeout=5)

    def _backoff(self, attempt: int) -> None:
        # "Equal jitter": half the exponential delay is fixed, half random, so retries neither stampede
        # nor collapse to zero.
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        time.sleep(ceiling / 2 + self._random.uniform(0, ceiling / 2))

    def close(self) -> None:
        """Close the gRPC channel, if a client was built."""
        with self._lock:
            client, self._client_instance = self._client_instance, None
        if client is not None:
            client.close()


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise errors.DependencyDown(f"Firestore did not answer ({operation}): {type(exc).__name__}") from exc


def _check_names(collection: str, doc_id: str | None = None) -> None:
    if not collection or "/" in collection:
        raise ValueError(f"invalid collection name {collection!r}")
    if doc_id is not None and (not doc_id or "/" in doc_id or doc_id in {".", ".."}):
        raise ValueError(f"invalid document id {doc_id!r}")


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates are not valid in UTF-8 ids
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # Firestore stores an instant; a naive value is taken as UTC, as the library itself does.
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # Checked here so the caller gets a ValueError, as from the embedded store, not an RPC error.
        if any(isinstance(v, (list, tuple)) for v in value):
            raise ValueError("an array may not directly contain an array (a Firestore rule)")
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # DatetimeWithNanoseconds → a plain aware datetime, so callers compare and serialise it as usual.
        utc = value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return dt.datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond,
                           tzinfo=dt.timezone.utc)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
