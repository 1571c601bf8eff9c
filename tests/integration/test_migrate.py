"""Migrations on embedded PostgreSQL: ordered, once, concurrent-safe, drift refused."""

from __future__ import annotations

import threading

import pytest

from shared.adapters.postgres import PgDatabase
from shared.migrate import MIGRATIONS_DIR, Migration, MigrationError, discover, migrate, vector_index_name

pytestmark = pytest.mark.emulator

DESIGN_TABLES = {"reps", "form_submissions", "workflows", "workflow_events", "workflow_errors", "draft_emails",
                 "hubspot_tasks", "training_samples", "sample_chunks", "voice_profiles"}


def _fresh(pg_server, name: str) -> PgDatabase:
    return PgDatabase(pg_server.connector(name), pool_size=2)


def test_applies_every_migration_once_and_creates_the_design_tables(pg_server):
    db = _fresh(pg_server, "mig_once")
    first = migrate(db, vector_index=("model-a", 384))
    assert first == [m.version for m in discover()]
    assert migrate(db, vector_index=("model-a", 384)) == []
    tables = {r["table_name"] for r in db.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert DESIGN_TABLES | {"schema_migrations", "step_runs"} <= tables
    assert db.query("SELECT extversion FROM pg_extension WHERE extname = 'vector'")[0]["extversion"].startswith("0.8")
    db.close()


def test_two_processes_migrating_at_once_apply_each_file_exactly_once(pg_server):
    pools = [_fresh(pg_server, "mig_race") for _ in range(4)]
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(pools))

    def run(db):
        barrier.wait()
        try:
            results.append(migrate(db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in pools]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = sorted(v for r in results for v in r)
    assert applied == [m.version for m in discover()]
    count = pools[0].query("SELECT count(*) AS n FROM schema_migrations")[0]["n"]
    assert count == len(discover())
    for p in pools:
        p.close()


def test_a_changed_migration_is_refused(pg_server, tmp_path):
    db = _fresh(pg_server, "mig_drift")
    (tmp_path / "001_first.sql").write_text("CREATE TABLE drift_a (id int);")
    migrate(db, tmp_path)
    (tmp_path / "001_first.sql").write_text("CREATE TABLE drift_a (id bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db, tmp_path)
    db.close()


def test_a_failing_migration_leaves_nothing_half_applied(pg_server, tmp_path):
    db = _fresh(pg_server, "mig_fail")
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE fine (id int);")
    (tmp_path / "002_broken.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(Exception):
        migrate(db, tmp_path)
    tables = {r["t"] for r in db.query("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")}
    assert "fine" in tables and "half" not in tables
    assert [r["version"] for r in db.query("SELECT version FROM schema_migrations")] == ["001"]
    db.close()


def test_bad_file_names_are_refused(tmp_path):
    (tmp_path / "first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="001_name.sql"):
        discover(tmp_path)


def test_each_model_gets_its_own_partial_hnsw_index(pg_server):
    db = _fresh(pg_server, "mig_index")
    migrate(db, vector_index=("model-a", 3))
    migrate(db, vector_index=("model-b", 5))
    defs = {r["indexname"]: r["indexdef"] for r in db.query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sample_chunks'")}
    a, b = defs[vector_index_name("model-a")], defs[vector_index_name("model-b")]
    assert "hnsw" in a and "vector(3)" in a and "'model-a'" in a
    assert "vector(5)" in b and "'model-b'" in b
    db.close()


def test_the_shipped_migrations_are_well_formed():
    found = discover(MIGRATIONS_DIR)
    assert found and all(isinstance(m, Migration) for m in found)
    assert [m.version for m in found] == sorted(m.version for m in found)
