"""A rep's own chunks nearest to a query vector, from pgvector, correct under the rep filter.

Every embedding model has its own partial HNSW index, ``USING hnsw ((embedding::vector(<dim>))
vector_cosine_ops) WHERE model = '<model>'`` (``shared.migrate.ensure_vector_index``). The planner
only uses it when the query orders by that exact expression and repeats the ``model = ...`` predicate,
so both are spelled here the way the index spells them.

The rep (and, optionally, the sample's purpose) is a filter on top of the index. An HNSW scan hands
up ``hnsw.ef_search`` candidates and the filter is applied afterwards, so a rep holding 1% of the
rows would get a handful of rows out of an ordinary index scan. pgvector 0.8's iterative index scans
resume the graph search until enough rows pass the filter (pgvector README, "Iterative Index Scans",
added in 0.8.0; mirrored at https://docs.pgedge.com/pgvector/v0-8-0/iterative-index-scans/). They stop
at ``hnsw.max_scan_tuples`` visited tuples or at ``hnsw.scan_mem_multiplier`` x ``work_mem``; when that
leaves fewer than ``k`` rows although the rep has more, the query is answered by ``exact_nearest``,
which for one rep reads only that rep's rows through the ``(rep_id, model)`` b-tree.

``exact_nearest`` is also the ground truth the tests and the benchmark measure recall against.
"""

from __future__ import annotations

import logging
import numbers
import uuid
from collections.abc import Sequence
from typing import Any

from shared.ports import Database

log = logging.getLogger(__name__)

PURPOSES = ("voice", "asset")
MAX_DIMENSION = 16_000  # pgvector's limit for the vector type
MAX_K = 1_000
# pgvector's own default; enough for k <= 10 on the data this system holds (bench/bench_retrieval.py
# measures recall@10 with it). Larger k raises it to k, since an HNSW scan returns at most ef_search
# rows per pass and each resumption costs another pass.
DEFAULT_EF_SEARCH = 40
MAX_EF_SEARCH = 1_000  # pgvector accepts 1..1000
# pgvector's default is 20,000 ("Iterative Scan Options"). A rep holding 1% of 100k chunks needs about
# 1,000 visited tuples per 10 of its rows when its chunks are far from the query, so the default leaves
# room; past it the exact fallback answers, which for such a rep is cheap.
DEFAULT_MAX_SCAN_TUPLES = 20_000


def nearest_chunks(db: Database, rep_id: uuid.UUID | str, model: str, dimension: int, vector: Sequence[float],
                   k: int = 10, *, purpose: str | None = None, ef_search: int | None = None,
                   max_scan_tuples: int | None = None, exact_fallback: bool = True) -> list[dict[str, Any]]:
    """The rep's ``k`` chunks closest to ``vector`` by cosine distance, through the model's HNSW index.

    The scan is an iterative one in relaxed order (pgvector 0.8), so a rep holding a small share of the
    index still gets ``k`` rows; the ``k`` rows are then re-sorted by their exact distance.

    Args:
        db: The database.
        rep_id: The rep whose chunks are searched; no other rep's chunk is ever returned.
        model: The embedding model that embedded ``vector``; only that model's chunks are compared.
        dimension: The model's dimension, as in the index expression ``embedding::vector(<dimension>)``.
        vector: The query embedding (a sequence of floats or a numpy array) of ``dimension`` values.
        k: How many chunks to return at most (1 to 1,000).
        purpose: ``"voice"`` or ``"asset"`` to search only chunks of samples with that purpose.
        ef_search: ``hnsw.ef_search`` for this query (1 to 1,000); default ``max(40, k)``.
        max_scan_tuples: ``hnsw.max_scan_tuples`` for this query; default 20,000.
        exact_fallback: Answer with ``exact_nearest`` when the index scan ends with fewer than ``k`` rows
            although the rep has more. Only benchmarks and tests turn it off, to see the index alone.

    Returns:
        Up to ``k`` dicts with ``chunk_id``, ``sample_id``, ``content``, ``distance`` (cosine distance,
        0 to 2) and ``ordinal``, nearest first; empty when the rep has no chunks of ``model``.

    Raises:
        ValueError: An argument is out of range or of the wrong type (the dimension is spliced into SQL).
    """
    dim, query, rep, k = _validated(rep_id, dimension, vector, k, purpose)
    ef = _bounded_int("ef_search", ef_search if ef_search is not None else max(DEFAULT_EF_SEARCH, k),
                      1, MAX_EF_SEARCH)
    tuples = _bounded_int("max_scan_tuples", max_scan_tuples if max_scan_tuples is not None
                          else DEFAULT_MAX_SCAN_TUPLES, 1, 2**31 - 1)
    params: list[Any] = [query, model, rep]
    if purpose is not None:
        params.append(purpose)
    params.append(k)
    with db.transaction() as cur:
        apply_scan_settings(cur, ef_search=ef, max_scan_tuples=tuples)
        cur.execute(index_query_sql(dim, purpose is not None), params)
        rows = _rows(cur)
    if len(rows) < k and exact_fallback:
        available = _count(db, rep, model, purpose)
        if available > len(rows):
            log.warning("vector index scan ended early; answered by exact search",
                        extra={"fields": {"returned": len(rows), "available": available, "k": k,
                                          "ef_search": ef, "max_scan_tuples": tuples}})
            return exact_nearest(db, rep, model, dim, query, k, purpose=purpose)
    return rows


def exact_nearest(db: Database, rep_id: uuid.UUID | str, model: str, dimension: int, vector: Sequence[float],
                  k: int = 10, *, purpose: str | None = None) -> list[dict[str, Any]]:
    """The rep's ``k`` chunks closest to ``vector``, computed exactly (no approximate index).

    The distance is taken on ``embedding`` itself rather than on the indexed expression
    ``embedding::vector(<dimension>)``, so no HNSW index can serve the ordering: every row of the rep
    (found through the ``(rep_id, model)`` b-tree or a sequential scan, as the planner prefers) is
    compared. The values are the same as ``nearest_chunks``'s: the cast only checks the dimension.

    Args:
        db: The database.
        rep_id: See ``nearest_chunks``.
        model: See ``nearest_chunks``.
        dimension: See ``nearest_chunks``.
        vector: See ``nearest_chunks``.
        k: See ``nearest_chunks``.
        purpose: See ``nearest_chunks``.

    Returns:
        What ``nearest_chunks`` returns, exactly ordered (ties broken by chunk id).

    Raises:
        ValueError: An argument is out of range or of the wrong type.
    """
    dim, query, rep, k = _validated(rep_id, dimension, vector, k, purpose)
    params: list[Any] = [query, model, rep]
    if purpose is not None:
        params.append(purpose)
    params.append(k)
    with db.transaction() as cur:
        cur.execute(exact_query_sql(dim, purpose is not None), params)
        return _rows(cur)


def apply_scan_settings(cur: Any, *, ef_search: int = DEFAULT_EF_SEARCH,
                        max_scan_tuples: int = DEFAULT_MAX_SCAN_TUPLES) -> None:
    """Set the HNSW scan settings ``nearest_chunks`` uses, for the rest of the cursor's transaction.

    Exposed so tests and benchmarks can run ``index_query_sql`` (or EXPLAIN it) exactly as it runs.

    Args:
        cur: A cursor inside a transaction.
        ef_search: ``hnsw.ef_search`` (1 to 1,000).
        max_scan_tuples: ``hnsw.max_scan_tuples``.
    """
    ef = _bounded_int("ef_search", ef_search, 1, MAX_EF_SEARCH)
    tuples = _bounded_int("max_scan_tuples", max_scan_tuples, 1, 2**31 - 1)
    # set_config(..., is_local => true) is SET LOCAL with parameters: the settings end with the
    # transaction, so a pooled connection never carries them into another query. Relaxed order: the
    # README says it "provides better recall" than strict order, and the CTE below restores the order.
    cur.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('hnsw.ef_search', %s, true), set_config('hnsw.max_scan_tuples', %s, true)",
                (str(ef), str(tuples)))


def index_query_sql(dimension: int, with_purpose: bool) -> str:
    """The SQL of ``nearest_chunks``'s index scan (parameters: vector, model, rep, [purpose], k).

    Exposed so tests and benchmarks can EXPLAIN exactly what runs.
    """
    dim = _dimension(dimension)
    # With relaxed order the scan may emit rows slightly out of distance order; the README's remedy is
    # a materialized CTE around the LIMIT and a final ORDER BY outside it. Filters stay inside the CTE.
    return (f"WITH nearest AS MATERIALIZED ("
            f" SELECT c.id AS chunk_id, c.sample_id, c.content, c.ordinal,"
            f" c.embedding::vector({dim}) <=> %s::vector({dim}) AS distance"
            f" FROM sample_chunks c"
            f" WHERE c.model = %s AND c.rep_id = %s{_PURPOSE_FILTER if with_purpose else ''}"
            f" ORDER BY distance LIMIT %s)"
            f" SELECT chunk_id, sample_id, content, distance, ordinal FROM nearest"
            f" ORDER BY distance, chunk_id")


def exact_query_sql(dimension: int, with_purpose: bool) -> str:
    """The SQL of ``exact_nearest`` (same parameters as ``index_query_sql``)."""
    dim = _dimension(dimension)
    return (f"SELECT c.id AS chunk_id, c.sample_id, c.content, c.embedding <=> %s::vector({dim}) AS distance,"
            f" c.ordinal"
            f" FROM sample_chunks c"
            f" WHERE c.model = %s AND c.rep_id = %s{_PURPOSE_FILTER if with_purpose else ''}"
            f" ORDER BY distance, c.id LIMIT %s")


# A scalar subquery, not a join: Postgres does not flatten it, so it stays a per-row filter on the
# index scan and the iterative scan keeps resuming until k rows pass it. As a join the planner may pick
# a hash join and a sort, which throws the index order (and the point of the index) away.
_PURPOSE_FILTER = " AND (SELECT s.purpose FROM training_samples s WHERE s.id = c.sample_id) = %s"


def _count(db: Database, rep: uuid.UUID, model: str, purpose: str | None) -> int:
    sql = "SELECT count(*) AS n FROM sample_chunks c WHERE c.model = %s AND c.rep_id = %s"
    params: list[Any] = [model, rep]
    if purpose is not None:
        sql += _PURPOSE_FILTER
        params.append(purpose)
    return int(db.query(sql, params)[0]["n"])


def _rows(cur: Any) -> list[dict[str, Any]]:
    return [{"chunk_id": chunk_id, "sample_id": sample_id, "content": content, "distance": float(distance),
             "ordinal": ordinal}
            for chunk_id, sample_id, content, distance, ordinal in cur.fetchall()]


def _validated(rep_id: uuid.UUID | str, dimension: int, vector: Sequence[float], k: int,
               purpose: str | None) -> tuple[int, Any, uuid.UUID, int]:
    from pgvector import Vector

    dim = _dimension(dimension)
    k = _bounded_int("k", k, 1, MAX_K)
    if purpose is not None and purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, not {purpose!r}")
    rep = rep_id if isinstance(rep_id, uuid.UUID) else uuid.UUID(str(rep_id))
    if isinstance(vector, Vector):
        query = vector
    else:
        query = Vector(vector if hasattr(vector, "ndim") else list(vector))
    if query.dimensions() != dim:
        raise ValueError(f"the query vector has {query.dimensions()} values; the model's dimension is {dim}")
    return dim, query, rep, k


def _dimension(dimension: int) -> int:
    # Spliced into the SQL text (a type modifier cannot be a parameter), so only a real int will do:
    # not a bool, not a numeric string.
    return _bounded_int("dimension", dimension, 1, MAX_DIMENSION)


def _bounded_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return int(value)
