"""Per-rep vector retrieval on embedded PostgreSQL + pgvector 0.8: the partial HNSW index under the rep filter.

One database per module holds 20 reps x 500 chunks plus one rep holding 1% of the rows, written the
way reps write: shared topics, a per-rep style, noise. Chunks of two other models (one of another
dimension) sit beside them for the same reps.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pytest
from pgvector import Vector

from shared.migrate import ensure_vector_index, vector_index_name
from shared.voice import retrieval
from shared.voice.retrieval import apply_scan_settings, exact_nearest, index_query_sql, nearest_chunks
from tests.fixtures.postgres import fresh_database

pytestmark = pytest.mark.emulator

MODEL = "retrieval-test-32"
DIM = 32
OTHER_MODEL = "retrieval-other-32"  # same dimension, no index of its own
NARROW_MODEL = "retrieval-narrow-8"  # another dimension: its vectors cannot even be cast to vector(32)
REPS = 20
PER_REP = 500
SMALL_REP_CHUNKS = 100  # 1% of 10,100
TOPICS = 12
CHUNKS_PER_SAMPLE = 25


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def corpus(pg_server):
    db = fresh_database(pg_server)
    ensure_vector_index(db, MODEL, DIM)  # before the rows, as in production: the index grows with them
    rng = np.random.default_rng(7)
    topics = _unit(rng.standard_normal((TOPICS, DIM)))
    reps = [uuid.uuid4() for _ in range(REPS + 1)]
    sizes = [PER_REP] * REPS + [SMALL_REP_CHUNKS]
    purpose_of: dict[uuid.UUID, str] = {}
    with db.transaction() as cur:
        for index, (rep, size) in enumerate(zip(reps, sizes)):
            cur.execute("INSERT INTO reps (id, email) VALUES (%s, %s)", (rep, f"rep{index}@example.com"))
            style = _unit(rng.standard_normal(DIM))
            vectors = _unit(topics[rng.integers(0, TOPICS, size)] + 0.5 * style
                            + 0.9 * rng.standard_normal((size, DIM)) / np.sqrt(DIM))
            samples = [uuid.uuid4() for _ in range(-(-size // CHUNKS_PER_SAMPLE))]
            for number, sample in enumerate(samples):
                purpose_of[sample] = "asset" if number % 4 == 0 else "voice"
            cur.execute("INSERT INTO training_samples (id, rep_id, source_type, content_hash, purpose, status) "
                        "SELECT id, %s, 'text', md5(id::text), p, 'ready' "
                        "FROM unnest(%s::uuid[], %s::text[]) AS t(id, p)",
                        (rep, [str(s) for s in samples], [purpose_of[s] for s in samples]))
            _insert_chunks(cur, rep, [samples[i // CHUNKS_PER_SAMPLE] for i in range(size)], MODEL, vectors)
        # The other models' chunks for every rep: the 1% rep and rep 0 also get exact copies of the query
        # vectors below, so a leak across models would come first.
        for rep in reps:
            sample = uuid.uuid4()
            purpose_of[sample] = "voice"
            cur.execute("INSERT INTO training_samples (id, rep_id, source_type, content_hash) "
                        "VALUES (%s, %s, 'text', %s)", (sample, rep, sample.hex))
            _insert_chunks(cur, rep, [sample] * 30, OTHER_MODEL, _unit(rng.standard_normal((30, DIM))))
            _insert_chunks(cur, rep, [sample] * 30, NARROW_MODEL, _unit(rng.standard_normal((30, 8))))
        cur.execute("ANALYZE sample_chunks")
    queries = _unit(topics[rng.integers(0, TOPICS, 40)] + 0.9 * rng.standard_normal((40, DIM)) / np.sqrt(DIM))
    yield {"db": db, "reps": reps[:REPS], "small_rep": reps[REPS], "queries": queries, "purpose_of": purpose_of,
           "rng": rng}
    db.close()


def _insert_chunks(cur, rep, samples, model, vectors, first_ordinal=0):
    ordinals, seen = [], {}
    for sample in samples:
        seen[sample] = seen.get(sample, first_ordinal - 1) + 1
        ordinals.append(seen[sample])
    cur.execute("INSERT INTO sample_chunks (sample_id, rep_id, ordinal, content, model, embedding) "
                "SELECT s, %s, o, %s || ' chunk ' || n, %s, e::vector "
                "FROM unnest(%s::uuid[], %s::int[], %s::text[]) WITH ORDINALITY AS t(s, o, e, n) RETURNING id",
                (rep, model, model, [str(s) for s in samples], ordinals, [Vector(v).to_text() for v in vectors]))
    return [row[0] for row in cur.fetchall()]


def _ids(rows):
    return [row["chunk_id"] for row in rows]


def _recall(found, truth):
    return len(set(_ids(found)) & set(_ids(truth))) / len(truth)


def _plan(db, sql, params, *, force_index=False, iterative=True):
    """EXPLAIN ANALYZE text and the rows, run as nearest_chunks runs the query (optionally steering the planner)."""
    with db.transaction() as cur:
        if force_index:
            # Make every plan but the HNSW one look expensive, to watch the index alone under the filter.
            for switch in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                cur.execute(f"SET LOCAL {switch} = off")
        if iterative:
            apply_scan_settings(cur)
        cur.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        plan = "\n".join(row[0] for row in cur.fetchall())
        cur.execute(sql, params)
        rows = cur.fetchall()
    return plan, rows


def test_the_rep_filtered_query_scans_the_models_partial_hnsw_index(corpus):
    db, rep, query = corpus["db"], corpus["reps"][3], corpus["queries"][0]
    plan, rows = _plan(db, index_query_sql(DIM, False), (Vector(query), MODEL, rep, 10))
    assert f"Index Scan using {vector_index_name(MODEL)}" in plan, plan
    assert "Filter: (rep_id = " in plan, plan
    assert len(rows) == 10
    exact_plan, _ = _plan(db, retrieval.exact_query_sql(DIM, False), (Vector(query), MODEL, rep, 10))
    assert vector_index_name(MODEL) not in exact_plan, exact_plan


def test_a_reps_top_10_matches_exact_search(corpus):
    db, reps = corpus["db"], corpus["reps"]
    recalls = []
    for number, query in enumerate(corpus["queries"][:20]):
        rep = reps[number % len(reps)]
        found = nearest_chunks(db, rep, MODEL, DIM, query, 10, exact_fallback=False)
        truth = exact_nearest(db, rep, MODEL, DIM, query, 10)
        assert len(found) == 10 and len(truth) == 10
        distances = [row["distance"] for row in found]
        assert distances == sorted(distances)  # relaxed order, re-sorted by exact distance
        owners = db.query("SELECT DISTINCT rep_id, model FROM sample_chunks WHERE id = ANY(%s)", (_ids(found),))
        assert owners == [{"rep_id": rep, "model": MODEL}]
        by_id = {row["chunk_id"]: row["distance"] for row in truth}
        for row in found:  # the same rows carry the same distances on both paths
            if row["chunk_id"] in by_id:
                assert row["distance"] == pytest.approx(by_id[row["chunk_id"]], abs=1e-6)
        recalls.append(_recall(found, truth))
    assert np.mean(recalls) >= 0.9, recalls


def test_a_rep_holding_one_percent_of_rows_always_gets_10(corpus):
    db, rep = corpus["db"], corpus["small_rep"]
    recalls = []
    for query in corpus["queries"]:
        found = nearest_chunks(db, rep, MODEL, DIM, query, 10, exact_fallback=False)
        assert len(found) == 10
        recalls.append(_recall(found, exact_nearest(db, rep, MODEL, DIM, query, 10)))
    assert np.mean(recalls) >= 0.9, recalls


def test_the_iterative_scan_is_what_fills_k_for_a_small_rep_on_the_index(corpus):
    """With the planner held to the HNSW index, a plain scan comes back short; the iterative one does not."""
    db, rep = corpus["db"], corpus["small_rep"]
    short, full = [], []
    for query in corpus["queries"][:10]:
        params = (Vector(query), MODEL, rep, 10)
        plan_off, rows_off = _plan(db, index_query_sql(DIM, False), params, force_index=True, iterative=False)
        plan_on, rows_on = _plan(db, index_query_sql(DIM, False), params, force_index=True)
        assert f"Index Scan using {vector_index_name(MODEL)}" in plan_off
        assert f"Index Scan using {vector_index_name(MODEL)}" in plan_on
        short.append(len(rows_off))
        full.append(len(rows_on))
        truth = exact_nearest(db, rep, MODEL, DIM, query, 10)
        assert len({row[0] for row in rows_on} & set(_ids(truth))) >= 8
    assert max(short) < 10, short  # pgvector's default (iterative scans off) post-filters ef_search rows
    assert full == [10] * 10


def test_a_scan_that_ends_early_is_answered_exactly(corpus, caplog):
    db, rep, query = corpus["db"], corpus["reps"][5], corpus["queries"][1]
    # ef_search 1 and max_scan_tuples 1: one candidate, then at most one resumption (the limit is
    # checked between batches of a few dozen tuples), far fewer than 50 of this rep's rows.
    starved = nearest_chunks(db, rep, MODEL, DIM, query, 50, ef_search=1, max_scan_tuples=1, exact_fallback=False)
    assert len(starved) < 50  # the premise: the index alone came back short
    with caplog.at_level(logging.WARNING, logger="shared.voice.retrieval"):
        answered = nearest_chunks(db, rep, MODEL, DIM, query, 50, ef_search=1, max_scan_tuples=1)
    assert _ids(answered) == _ids(exact_nearest(db, rep, MODEL, DIM, query, 50))
    assert any("exact search" in record.getMessage() for record in caplog.records)


def test_chunks_of_another_model_are_never_returned(corpus):
    db, rep = corpus["db"], corpus["reps"][0]
    with db.transaction() as cur:
        cur.execute("SELECT id FROM training_samples WHERE rep_id = %s LIMIT 1", (rep,))
        sample = cur.fetchone()[0]
        # Exact copies of the query under the other models: distance 0, they would come first.
        query = corpus["queries"][2]
        planted = _insert_chunks(cur, rep, [sample], OTHER_MODEL, [query], first_ordinal=1000)
        planted += _insert_chunks(cur, rep, [sample], NARROW_MODEL, [query[:8] / np.linalg.norm(query[:8])],
                                  first_ordinal=1000)
    try:
        found = nearest_chunks(db, rep, MODEL, DIM, query, 50)
        assert len(found) == 50
        assert not set(planted) & set(_ids(found))
        assert not set(planted) & set(_ids(exact_nearest(db, rep, MODEL, DIM, query, 50)))
        model_of = {r["id"]: r["model"] for r in db.query("SELECT id, model FROM sample_chunks WHERE id = ANY(%s)",
                                                           (_ids(found),))}
        assert set(model_of.values()) == {MODEL}
        # The planted row is really there and really nearest under its own model.
        assert nearest_chunks(db, rep, OTHER_MODEL, DIM, query, 1)[0]["chunk_id"] == planted[0]
    finally:
        with db.transaction() as cur:
            cur.execute("DELETE FROM sample_chunks WHERE id = ANY(%s)", (planted,))


@pytest.mark.parametrize("purpose", ["voice", "asset"])
def test_the_purpose_filter_keeps_only_that_purposes_samples(corpus, purpose):
    db, purpose_of = corpus["db"], corpus["purpose_of"]
    for number, query in enumerate(corpus["queries"][:5]):
        rep = corpus["reps"][number]
        found = nearest_chunks(db, rep, MODEL, DIM, query, 10, purpose=purpose, exact_fallback=False)
        assert len(found) == 10
        assert {purpose_of[row["sample_id"]] for row in found} == {purpose}
        assert _recall(found, exact_nearest(db, rep, MODEL, DIM, query, 10, purpose=purpose)) >= 0.8
    # Unfiltered, the nearest chunks mix both purposes, so the filter is doing the work.
    mixed = nearest_chunks(db, corpus["reps"][0], MODEL, DIM, corpus["queries"][0], 40)
    assert {purpose_of[row["sample_id"]] for row in mixed} == {"voice", "asset"}


def test_an_unknown_rep_gets_nothing(corpus, caplog):
    db = corpus["db"]
    with caplog.at_level(logging.WARNING, logger="shared.voice.retrieval"):
        assert nearest_chunks(db, uuid.uuid4(), MODEL, DIM, corpus["queries"][0], 10) == []
        assert nearest_chunks(db, str(uuid.uuid4()), MODEL, DIM, corpus["queries"][0], 10, purpose="voice") == []
    assert exact_nearest(db, uuid.uuid4(), MODEL, DIM, corpus["queries"][0], 10) == []
    assert not caplog.records  # nothing to fall back to, so nothing to report
    # A known rep, an unknown model: also nothing.
    assert nearest_chunks(db, corpus["reps"][0], "no-such-model", DIM, corpus["queries"][0], 10) == []


@pytest.mark.parametrize("dimension", ["32", 32.0, True, 0, 16_001, "32) OR (1=1"])
def test_the_dimension_must_be_a_sane_int(corpus, dimension):
    with pytest.raises(ValueError):
        nearest_chunks(corpus["db"], corpus["reps"][0], MODEL, dimension, corpus["queries"][0])
    with pytest.raises(ValueError):
        exact_nearest(corpus["db"], corpus["reps"][0], MODEL, dimension, corpus["queries"][0])


@pytest.mark.parametrize("change", [
    {"vector": [0.1] * 31}, {"k": 0}, {"k": 1001}, {"purpose": "sales"}, {"rep_id": "not-a-uuid"},
    {"ef_search": 0}, {"ef_search": 1001}, {"dimension": np.int64(DIM), "ok": True},
])
def test_arguments_are_checked_before_the_query(corpus, change):
    args = {"rep_id": corpus["reps"][0], "model": MODEL, "dimension": DIM, "vector": corpus["queries"][0], "k": 10}
    change = dict(change)
    ok = change.pop("ok", False)
    args.update(change)
    if ok:
        assert len(nearest_chunks(corpus["db"], **args)) == 10
    else:
        with pytest.raises(ValueError):
            nearest_chunks(corpus["db"], **args)
