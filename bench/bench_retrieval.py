"""pgvector top-10 retrieval for one rep among 100,000 chunks: recall@10 and speed-up over exact search.

The data imitates what reps upload: every rep writes about the same topics (shared topic centroids) in
their own way (a per-rep offset), plus noise, so neighbourhoods are mixed across reps and the rep
filter is not a shortcut. Rep sizes are unequal; one rep holds 1% of the chunks, the case where a
post-filtered index scan without pgvector 0.8's iterative scans comes back short. Queries are leads:
a topic centroid plus noise, with no rep in them.

Both paths run through ``shared.voice.retrieval`` on a pooled ``PgDatabase``, so each latency includes
what production pays (a transaction, the scan settings, the round trips). The index path runs with
``exact_fallback=False`` so recall and latency are the index's own; a query it answers with fewer
than 10 rows is counted in ``short_results``.

The server is a private embedded PostgreSQL in a temporary directory, stopped at the end.
"""

from __future__ import annotations

import io
import logging
import statistics
import struct
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DIMENSION = 384  # all-MiniLM-L6-v2, the local model
CHUNKS = 100_000
REPS = 20
SMALL_REP_SHARE = 0.01
TOPICS = 64
CHUNKS_PER_SAMPLE = 50
QUERIES = 100
SMALL_REP_QUERIES = 20  # of QUERIES, aimed at the rep holding 1% of the chunks
K = 10
WARMUP = 5
FULL_SCAN_EVERY = 5  # the no-index baseline is slow; a fifth of the queries is enough for its median
# Measured on 2 cores: m=16/ef_construction=64 (pgvector's defaults) build 100k x 384 in about a
# minute with one parallel worker; the bench's total stays under ~4 minutes with it.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
MODEL = "bench-minilm-384"
SEED = 20_240_611


def run() -> dict:
    from shared.adapters.postgres import PgDatabase
    from shared.migrate import migrate

    started = time.perf_counter()
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        server = _server(Path(tmp) / "data")
        db = PgDatabase(server.connector(), pool_size=2)
        try:
            migrate(db)  # no vector_index: the HNSW index is built after loading, which is much faster
            data = _dataset(rng)
            load_s = _load(db, data)
            build_s, index_mib = _build_index(server)
            figures = _measure(db, data, rng)
        finally:
            db.close()
            server.stop()
    figures.update({
        "chunks": CHUNKS, "small_rep_share": SMALL_REP_SHARE, "reps": REPS, "dimension": DIMENSION, "k": K,
        "queries": QUERIES,
        "hnsw": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "build_s": round(build_s, 1),
                 "index_mib": round(index_mib, 1)},
        "load_s": round(load_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    })
    return figures


def _server(pgdata: Path):
    """A private server whose buffer cache holds the table and both indexes (~450 MB), as a warm
    production instance would; the default 128 MB would make both paths measure cache churn."""
    from shared.adapters.embedded_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(pgdata, "bench").start()
    conn = _direct(server, "postgres")
    try:
        conn.autocommit = True
        conn.cursor().execute("ALTER SYSTEM SET shared_buffers = '1GB'")
    finally:
        conn.close()
    server.stop()  # shared_buffers takes a restart
    return EmbeddedPostgres(pgdata, "bench").start()


def _direct(server, database: str | None = None):
    """A connection of its own: the pool's connections give up on a statement after 10 s."""
    import pg8000.dbapi

    return pg8000.dbapi.connect(user="postgres", database=database or server.database,
                                unix_sock=server.socket_path)


# --- data -----------------------------------------------------------------------------------------


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def _dataset(rng: np.random.Generator) -> dict:
    topics = _unit(rng.standard_normal((TOPICS, DIMENSION)))
    styles = _unit(rng.standard_normal((REPS, DIMENSION)))
    small = int(CHUNKS * SMALL_REP_SHARE)
    weights = rng.uniform(0.5, 1.5, REPS - 1)
    sizes = [small] + list(np.floor(weights / weights.sum() * (CHUNKS - small)).astype(int))
    sizes[-1] += CHUNKS - sum(sizes)
    rep_of = np.repeat(np.arange(REPS), sizes)
    topic_of = rng.integers(0, TOPICS, CHUNKS)
    noise = rng.standard_normal((CHUNKS, DIMENSION)) / np.sqrt(DIMENSION)
    vectors = _unit(topics[topic_of] + 0.5 * styles[rep_of] + 0.9 * noise)
    reps = [uuid.UUID(int=int(rng.integers(1, 2**62)) << 64 | i) for i in range(REPS)]
    return {"topics": topics, "sizes": sizes, "rep_of": rep_of, "vectors": vectors, "reps": reps}


def _load(db, data: dict) -> float:
    started = time.perf_counter()
    reps, rep_of = data["reps"], data["rep_of"]
    # Chunks are grouped by rep (rep_of is sorted), so consecutive runs of CHUNKS_PER_SAMPLE belong to
    # one sample of one rep, except where a run crosses a rep boundary: those start a new sample.
    boundary = np.r_[True, rep_of[1:] != rep_of[:-1]]
    run_start = boundary | (np.arange(CHUNKS) % CHUNKS_PER_SAMPLE == 0)
    sample_index = np.cumsum(run_start) - 1
    samples = int(sample_index[-1]) + 1
    sample_ids = [uuid.UUID(int=(7 << 96) | i) for i in range(samples)]
    sample_rep = rep_of[np.flatnonzero(run_start)]
    purposes = ["asset" if i % 5 == 0 else "voice" for i in range(samples)]
    ordinals = np.arange(CHUNKS) - np.flatnonzero(run_start)[sample_index]
    with db.transaction() as cur:
        cur.execute("INSERT INTO reps (id, email) SELECT id, 'rep' || n || '@bench.example' "
                    "FROM unnest(%s::uuid[]) WITH ORDINALITY AS t(id, n)", ([str(r) for r in reps],))
        cur.execute("INSERT INTO training_samples (id, rep_id, source_type, content_hash, purpose, status) "
                    "SELECT id, rep, 'text', md5(id::text), purpose, 'ready' "
                    "FROM unnest(%s::uuid[], %s::uuid[], %s::text[]) AS t(id, rep, purpose)",
                    ([str(s) for s in sample_ids], [str(reps[r]) for r in sample_rep], purposes))
        cur.execute("COPY sample_chunks (sample_id, rep_id, ordinal, content, model, embedding) "
                    "FROM STDIN (FORMAT binary)",
                    stream=io.BytesIO(_copy_binary(data["vectors"], sample_index, sample_ids, rep_of, reps,
                                                   ordinals)))
    with db.transaction() as cur:
        cur.execute("ANALYZE reps, training_samples, sample_chunks")
    data["sample_purpose"] = {sample_ids[i]: purposes[i] for i in range(samples)}
    return time.perf_counter() - started


def _copy_binary(vectors: np.ndarray, sample_index: np.ndarray, sample_ids: list[uuid.UUID],
                 rep_of: np.ndarray, reps: list[uuid.UUID], ordinals: np.ndarray) -> bytes:
    """Rows in COPY's binary format, built as one numpy record array (no per-row Python).

    Each tuple is a field count, then (length, bytes) per field, all big-endian; pgvector's binary
    form of a vector is int16 dimension, int16 unused, then float4 values.
    """
    model = MODEL.encode()
    content_width = 14
    row = np.dtype([
        ("fields", ">i2"),
        ("sample_len", ">i4"), ("sample", "V16"),
        ("rep_len", ">i4"), ("rep", "V16"),
        ("ordinal_len", ">i4"), ("ordinal", ">i4"),
        ("content_len", ">i4"), ("content", f"S{content_width}"),
        ("model_len", ">i4"), ("model", f"S{len(model)}"),
        ("vector_len", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vector", ">f4", (DIMENSION,)),
    ])
    rows = np.zeros(len(vectors), dtype=row)
    rows["fields"] = 6
    rows["sample_len"] = rows["rep_len"] = 16
    rows["sample"] = np.array([s.bytes for s in sample_ids], dtype="V16")[sample_index]
    rows["rep"] = np.array([r.bytes for r in reps], dtype="V16")[rep_of]
    rows["ordinal_len"] = 4
    rows["ordinal"] = ordinals
    rows["content_len"] = content_width
    rows["content"] = np.char.add(b"chunk ", np.char.zfill(np.arange(len(vectors)).astype("S8"), 8))
    rows["model_len"] = len(model)
    rows["model"] = model
    rows["vector_len"] = 4 + 4 * DIMENSION
    rows["dim"] = DIMENSION
    rows["vector"] = vectors
    return b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + rows.tobytes() + struct.pack(">h", -1)


def _build_index(server) -> tuple[float, float]:
    from shared.migrate import vector_index_name

    name = vector_index_name(MODEL)
    conn = _direct(server)
    try:
        conn.autocommit = True
        cur = conn.cursor()
        # A bulk load leaves every tuple without hint bits: without this the first queries would write
        # pages back while reading them, and each path would be timed on that instead.
        cur.execute("VACUUM (FREEZE, ANALYZE) sample_chunks")
        conn.autocommit = False
        started = time.perf_counter()
        # The same name and expression as shared.migrate.ensure_vector_index, with explicit build
        # parameters. pgvector's README: a build is much faster when the graph fits in
        # maintenance_work_mem, and it can use parallel workers.
        cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cur.execute("SET LOCAL max_parallel_maintenance_workers = 1")  # 2 cores: leader + 1 worker
        cur.execute(f"CREATE INDEX {name} ON sample_chunks "
                    f"USING hnsw ((embedding::vector({DIMENSION})) vector_cosine_ops) "
                    f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
                    f"WHERE model = '{MODEL}'")
        conn.commit()
        build_s = time.perf_counter() - started
        cur.execute("SELECT pg_relation_size(%s::regclass)", (name,))
        size = cur.fetchone()[0]
        # Both paths measured warm: the heap, the rep b-tree and the HNSW index in shared buffers.
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        cur.execute("SELECT pg_prewarm('sample_chunks'), pg_prewarm('sample_chunks_rep_idx'), "
                    "pg_prewarm(%s::regclass)", (name,))
        conn.commit()
    finally:
        conn.close()
    log.info("bench index built", extra={"fields": {"seconds": round(build_s, 1)}})
    return build_s, size / 2**20


# --- queries --------------------------------------------------------------------------------------


def _queries(data: dict, rng: np.random.Generator) -> list[tuple[str, uuid.UUID, np.ndarray]]:
    topics = data["topics"]
    picked = rng.integers(0, TOPICS, QUERIES)
    vectors = _unit(topics[picked] + 0.9 * rng.standard_normal((QUERIES, DIMENSION)) / np.sqrt(DIMENSION))
    large = rng.integers(1, REPS, QUERIES - SMALL_REP_QUERIES)
    out = [("small_rep", data["reps"][0], vectors[i]) for i in range(SMALL_REP_QUERIES)]
    out += [("other_reps", data["reps"][int(r)], vectors[SMALL_REP_QUERIES + i]) for i, r in enumerate(large)]
    return out


def _plan_uses_hnsw(db, rep: uuid.UUID, vector: np.ndarray) -> bool:
    from pgvector import Vector

    from shared.migrate import vector_index_name
    from shared.voice.retrieval import apply_scan_settings, index_query_sql

    with db.transaction() as cur:
        apply_scan_settings(cur)
        cur.execute("EXPLAIN " + index_query_sql(DIMENSION, False), (Vector(vector), MODEL, rep, K))
        plan = "\n".join(row[0] for row in cur.fetchall())
    return vector_index_name(MODEL) in plan


def _exact_full_scan(db, rep: uuid.UUID, vector: np.ndarray) -> list:
    """exact_nearest's query with every index disabled: the cost of exact search with no index at all."""
    from pgvector import Vector

    from shared.voice.retrieval import exact_query_sql

    with db.transaction() as cur:
        cur.execute("SET LOCAL enable_indexscan = off")
        cur.execute("SET LOCAL enable_bitmapscan = off")
        cur.execute(exact_query_sql(DIMENSION, False), (Vector(vector), MODEL, rep, K))
        return cur.fetchall()


def _measure(db, data: dict, rng: np.random.Generator) -> dict:
    from shared.voice.retrieval import exact_nearest, nearest_chunks

    queries = _queries(data, rng)
    for _, rep, vector in queries[:WARMUP]:  # page in the index and the table once
        nearest_chunks(db, rep, MODEL, DIMENSION, vector, K, exact_fallback=False)
        exact_nearest(db, rep, MODEL, DIMENSION, vector, K)
    groups: dict[str, dict[str, list]] = {}
    for group, rep, vector in queries:
        t0 = time.perf_counter()
        found = nearest_chunks(db, rep, MODEL, DIMENSION, vector, K, exact_fallback=False)
        t1 = time.perf_counter()
        truth = exact_nearest(db, rep, MODEL, DIMENSION, vector, K)
        t2 = time.perf_counter()
        g = groups.setdefault(group, {"recall": [], "index_s": [], "exact_s": [], "short": []})
        truth_ids = {row["chunk_id"] for row in truth}
        g["recall"].append(len(truth_ids & {row["chunk_id"] for row in found}) / len(truth_ids))
        g["index_s"].append(t1 - t0)
        g["exact_s"].append(t2 - t1)
        g["short"].append(len(found) < K)
    figures: dict = {}
    all_index = [s for g in groups.values() for s in g["index_s"]]
    all_exact = [s for g in groups.values() for s in g["exact_s"]]
    figures["recall_at_10"] = round(statistics.mean(r for g in groups.values() for r in g["recall"]), 4)
    figures["index_median_ms"] = round(statistics.median(all_index) * 1000, 2)
    figures["exact_median_ms"] = round(statistics.median(all_exact) * 1000, 2)
    figures["speedup"] = round(statistics.median(all_exact) / statistics.median(all_index), 2)
    figures["short_results"] = sum(sum(g["short"]) for g in groups.values())
    full_scan = []
    for _, rep, vector in queries[::FULL_SCAN_EVERY]:
        t0 = time.perf_counter()
        _exact_full_scan(db, rep, vector)
        full_scan.append(time.perf_counter() - t0)
    figures["full_scan_median_ms"] = round(statistics.median(full_scan) * 1000, 2)
    figures["speedup_vs_full_scan"] = round(statistics.median(full_scan) / statistics.median(all_index), 2)
    for group, g in groups.items():
        rep, vector = next((r, v) for name, r, v in queries if name == group)
        figures[group] = {
            "queries": len(g["recall"]),
            "recall_at_10": round(statistics.mean(g["recall"]), 4),
            "min_recall": round(min(g["recall"]), 2),
            "index_median_ms": round(statistics.median(g["index_s"]) * 1000, 2),
            "exact_median_ms": round(statistics.median(g["exact_s"]) * 1000, 2),
            "speedup": round(statistics.median(g["exact_s"]) / statistics.median(g["index_s"]), 2),
            "short_results": sum(g["short"]),
            "planner_uses_hnsw": _plan_uses_hnsw(db, rep, vector),
        }
    return figures
