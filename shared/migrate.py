"""Apply the numbered SQL files in shared/migrations, once each, safely from several processes.

Each file runs in its own transaction under a transaction-scoped advisory lock, and the check for
"already applied" happens after the lock is taken, so two instances starting together apply every
migration exactly once. A file changed after it was applied is refused rather than drifting silently.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from shared.ports import Database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x6C65_6164  # any constant shared by every process that migrates
_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must look like 001_name.sql: {path.name}")
        found.append(Migration(match.group(1), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


def migrate(db: Database, directory: Path = MIGRATIONS_DIR, *,
            vector_index: tuple[str, int] | None = None) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call.

    Args:
        db: the database.
        directory: where the numbered .sql files are.
        vector_index: (model, dimension) of the configured embedding model, whose HNSW index is ensured.
    """
    with db.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                           version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                           applied_at timestamptz NOT NULL DEFAULT now())""")
    applied_now = []
    for migration in discover(directory):
        with db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur.execute("SELECT checksum FROM schema_migrations WHERE version = %s", (migration.version,))
            row = cur.fetchone()
            if row is not None:
                if row[0] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version}_{migration.name} changed after it was applied; "
                        "add a new migration instead")
                continue
            cur.execute(migration.sql)
            cur.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum))
            applied_now.append(migration.version)
            log.info("migration applied", extra={"fields": {"version": migration.version, "name": migration.name}})
    if vector_index is not None:
        ensure_vector_index(db, *vector_index)
    return applied_now


def vector_index_name(model: str) -> str:
    return "sample_chunks_hnsw_" + hashlib.sha256(model.encode()).hexdigest()[:12]


def ensure_vector_index(db: Database, model: str, dimension: int) -> str:
    """The partial HNSW index (cosine) for one embedding model's chunks."""
    if not (0 < int(dimension) <= 4000):
        raise MigrationError(f"embedding dimension out of range: {dimension}")
    name = vector_index_name(model)
    literal = model.replace("'", "''")
    with db.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON sample_chunks "
            f"USING hnsw ((embedding::vector({int(dimension)})) vector_cosine_ops) "
            f"WHERE model = '{literal}'")
    return name
