"""The two delivery steps of voice training: ``extract`` (bytes or a link → clean, scrubbed text) and
``embed`` (text → chunks → vectors in pgvector → a new voice profile).

Both are run by Cloud Tasks, at least once. Each starts with a compare-and-set on the sample's status
(``samples.begin``), so a redelivery after the step is done changes nothing, and each hands over to
the next hop with a named task, so a retried step never queues the next one twice.

Failures: a permanent one (a damaged file, a refused link, a video without captions) ends the sample
``failed`` with its message and is answered 2xx, so the platform stops. A retryable one
(``RetryableError``) propagates, and the router answers 503 so Cloud Tasks retries with backoff, until
the attempt numbered ``MAX_ATTEMPTS`` (from ``X-CloudTasks-TaskRetryCount``): that one records the
failure instead, so no sample is left ``extracting`` or ``embedding`` after its queue gives up.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.errors import PermanentError, RetryableError
from shared.ports import Task, iter_batches
from shared.voice import samples
from shared.voice.chunking import DEFAULT_MAX_TOKENS, chunk_text

log = logging.getLogger(__name__)

# Attempts per step, the first included. The extract and embed queues must allow at least this many
# (their max_attempts); the last one we see records the failure on the sample.
MAX_ATTEMPTS = 5
EMBED_BATCH = 64  # texts per embeddings call: bounded memory, and well under Vertex's 250 per request
VOICE_UPDATED = "voice-updated"

# Metadata keys whose values are other people's words or names: dropped, with a count kept instead.
_OTHERS_TEXT = {"quoted": "quoted_parts", "forwarded": "forwarded_parts", "speakers": "speaker_count"}


def extract_task(sample_id: str) -> Task:
    """The named task that runs ``extract_step`` for a sample (the name dedupes redelivered ingests)."""
    # path "/": the function's root. An empty path would reach the local stack's mount as "" and be
    # answered with a redirect, which Cloud Tasks (and its stand-in) count as a failed attempt.
    return Task(target="extract", payload={"sample_id": sample_id}, name=f"extract-{sample_id}", path="/")


def embed_task(sample_id: str, generation: str = "") -> Task:
    """The named task that runs ``embed_step``; ``generation`` distinguishes a later re-embed (retrain)
    from the first one, whose name Cloud Tasks keeps reserved for about an hour."""
    name = f"embed-{sample_id}" + (f"-{generation}" if generation else "")
    return Task(target="embed", payload={"sample_id": sample_id}, name=name, path="/")


def is_last_attempt(retry_count: int) -> bool:
    """Whether a delivery with this ``X-CloudTasks-TaskRetryCount`` is the last one we allow."""
    return retry_count + 1 >= MAX_ATTEMPTS


# --- extract ---------------------------------------------------------------------------------------


def extract_step(deps: Any, sample_id: str, *, retry_count: int = 0) -> dict[str, Any]:
    """Turn a queued sample's bytes or link into clean text, scrub it, and queue the embed step.

    Args:
        deps: The container (``db``, ``blobs``, ``tasks``, ``fetcher``, ``settings`` ...).
        sample_id: The sample.
        retry_count: ``X-CloudTasks-TaskRetryCount`` of this delivery.

    Returns:
        ``{"sample_id", "status"}``: ``embedding`` when handed on, ``failed``, or ``skipped`` when
        there was nothing to do.

    Raises:
        RetryableError: A dependency is down and attempts remain.
    """
    sample = samples.begin(deps.db, sample_id, samples.EXTRACTING)
    if sample is None:
        current = samples.get(deps.db, sample_id)
        if current is not None and current["status"] == samples.EMBEDDING:
            # The text was stored but this delivery may have died before the hand-over; the task name
            # makes queueing it again harmless when it did not.
            deps.tasks.enqueue(embed_task(current["id"]))
        log.info("extract skipped: already done or gone", extra={"fields": {"sample_id": sample_id}})
        return {"sample_id": sample_id, "status": "skipped"}
    return _guarded(deps, sample, retry_count, "extract", lambda: _extract(deps, sample))


def _extract(deps: Any, sample: dict[str, Any]) -> dict[str, Any]:
    from shared.accounts import get_rep
    from shared.voice import pii
    from shared.voice.extract import Limits, extract_limited

    rep = get_rep(deps.db, sample["rep_id"]) or {}
    rep_name, rep_email = rep.get("display_name", ""), rep.get("email", "")
    limits = Limits(max_bytes=deps.settings.max_upload_bytes)
    metadata: dict[str, Any] = dict(sample.get("metadata") or {})
    title = sample.get("title") or ""
    if sample["source_type"] in ("upload", "gmail"):  # Gmail samples are stored .eml blobs
        from shared.ports import BlobNotFound

        try:
            data = deps.blobs.get(sample["blob_key"])
        except BlobNotFound:
            raise PermanentError("The uploaded file is no longer stored; upload it again.", code="missing_blob")
        extracted = extract_limited(data, filename=metadata.get("filename", ""),
                                    declared_type=metadata.get("content_type", ""),
                                    rep_name=rep_name, rep_email=rep_email, limits=limits)
        text, kind, found = extracted.text, extracted.kind, extracted.metadata
    else:
        from shared.voice import links

        fetched = links.fetch_source({**sample, "rep_email": rep_email}, deps)
        if fetched.data is not None:
            extracted = extract_limited(fetched.data, filename=fetched.filename or "",
                                        declared_type=fetched.content_type or "", rep_name=rep_name,
                                        rep_email=rep_email, limits=limits)
            text, kind, found = extracted.text, extracted.kind, {**(fetched.metadata or {}), **extracted.metadata}
        else:
            text, kind, found = (fetched.text or "").strip(), "text", dict(fetched.metadata or {})
            if not text:
                raise PermanentError("The link has no text to learn from.", code="no_text")
        title = title or (fetched.title or "")
    keep_names = [rep_name] if rep_name else []
    keep_emails = [rep_email] if rep_email else []
    scrubbed = pii.scrub(text, keep_names=keep_names, keep_emails=keep_emails)
    clean_metadata = scrub_metadata(found, keep_names=keep_names, keep_emails=keep_emails)
    metadata.update(clean_metadata)
    metadata.update({"kind": kind, "pii_scrubbed": {k: v for k, v in scrubbed.counts.items() if v}})
    if not title:
        title = str(metadata.get("subject") or metadata.get("title") or metadata.get("filename") or "")
    moved = samples.move(deps.db, sample["id"], samples.EMBEDDING, expect=[samples.EXTRACTING],
                         content=scrubbed.text, word_count=len(scrubbed.text.split()), metadata=metadata,
                         title=title[:500])
    deps.tasks.enqueue(embed_task(sample["id"]))
    log.info("sample extracted", extra={"fields": {"sample_id": sample["id"], "kind": kind,
                                                   "words": moved["word_count"]}})
    return {"sample_id": sample["id"], "status": samples.EMBEDDING}


def scrub_metadata(metadata: dict[str, Any], *, keep_names: list[str], keep_emails: list[str]) -> dict[str, Any]:
    """Metadata safe to store: other people's quoted, forwarded or spoken words and their names are
    dropped (a count stays), and every remaining string is scrubbed of personal data.

    Args:
        metadata: What the extractor or the link resolver reported.
        keep_names: The rep's names (their own address built from them stays).
        keep_emails: The rep's own addresses.

    Returns:
        A new dict.
    """
    from shared.voice import pii

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return pii.scrub(value, keep_names=keep_names, keep_emails=keep_emails).text
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items() if k not in _OTHERS_TEXT}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in _OTHERS_TEXT:
            out[_OTHERS_TEXT[key]] = len(value) if isinstance(value, (list, tuple)) else int(bool(value))
            continue
        out[key] = clean(value)
    return out


# --- embed -----------------------------------------------------------------------------------------


def embed_step(deps: Any, sample_id: str, *, retry_count: int = 0) -> dict[str, Any]:
    """Chunk a sample's text, embed the chunks, store them, mark it ready and rebuild the rep's profile.

    Args:
        deps: The container (``db``, ``embedder``, ``events``, ``settings``).
        sample_id: The sample.
        retry_count: ``X-CloudTasks-TaskRetryCount`` of this delivery.

    Returns:
        ``{"sample_id", "status", "chunks", "profile_version"}``, or ``skipped``.

    Raises:
        RetryableError: A dependency is down and attempts remain.
    """
    sample = samples.begin(deps.db, sample_id, samples.EMBEDDING)
    if sample is None:
        log.info("embed skipped: already done or gone", extra={"fields": {"sample_id": sample_id}})
        return {"sample_id": sample_id, "status": "skipped"}
    return _guarded(deps, sample, retry_count, "embed", lambda: _embed(deps, sample))


def token_limit(embedder: Any) -> int:
    """The most tokens one chunk may have for this embedder (an adapter may declare ``max_input_tokens``)."""
    return int(getattr(embedder, "max_input_tokens", DEFAULT_MAX_TOKENS) or DEFAULT_MAX_TOKENS)


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(format(float(x), ".7g") for x in vector) + "]"


def _embed(deps: Any, sample: dict[str, Any]) -> dict[str, Any]:
    content = sample.get("content") or ""
    embedder = deps.embedder
    # The embedder's own model name, which the profile and retrieval filter on too.
    model = embedder.model
    chunks = chunk_text(content, max_tokens=token_limit(embedder))
    if not chunks:
        raise PermanentError("The sample has no text to learn from.", code="no_text")
    vectors: list[list[float]] = []
    for batch in iter_batches(chunks, EMBED_BATCH):
        vectors.extend(embedder.embed([chunk.text for chunk in batch]))
    if any(len(v) != embedder.dimension for v in vectors):
        raise PermanentError(f"The embedding model returned vectors of the wrong size (expected "
                             f"{embedder.dimension}).", code="model_mismatch")
    with deps.db.transaction() as cur:
        # Two deliveries of one task may embed at once: the row lock makes the second wait for the first
        # and then find the sample ready (skipped), instead of colliding with its chunks on the index.
        cur.execute("SELECT status FROM training_samples WHERE id = %s FOR UPDATE", (sample["id"],))
        found = cur.fetchone()
        if found is None or found[0] != "embedding":
            raise samples.IllegalTransition("The sample was finished, deleted or changed by another delivery.",
                                            code="illegal_transition")
        # Replacing, not appending, is what makes a repeated embed (a retrain) idempotent.
        cur.execute("DELETE FROM sample_chunks WHERE sample_id = %s AND model = %s", (sample["id"], model))
        cur.executemany(
            "INSERT INTO sample_chunks (sample_id, rep_id, ordinal, content, model, embedding) "
            "VALUES (%s, %s, %s, %s, %s, %s::vector)",
            [(sample["id"], sample["rep_id"], chunk.ordinal, chunk.text, model, _vector_literal(vector))
             for chunk, vector in zip(chunks, vectors)])
        cur.execute("UPDATE training_samples SET status = 'ready', error = NULL, updated_at = now() "
                    "WHERE id = %s AND status = 'embedding'", (sample["id"],))
        if cur.rowcount != 1:  # deleted meanwhile: the chunks just written go with the rollback
            raise samples.IllegalTransition("The sample was deleted or changed while it was embedded.",
                                            code="illegal_transition")
    version = refresh_profile(deps, sample["rep_id"], sample_id=sample["id"])
    log.info("sample embedded", extra={"fields": {"sample_id": sample["id"], "chunks": len(chunks),
                                                  "model": model, "profile_version": version}})
    return {"sample_id": sample["id"], "status": samples.READY, "chunks": len(chunks), "profile_version": version}


def refresh_profile(deps: Any, rep_id: str, *, sample_id: str | None = None) -> int | None:
    """Rebuild a rep's voice profile and announce it on ``voice-updated``.

    Args:
        deps: The container.
        rep_id: The rep.
        sample_id: The sample whose change caused it, if any.

    Returns:
        The new profile version (None when the profile module reports none).
    """
    from shared.voice import profile

    built = profile.rebuild_profile(deps.db, deps.embedder, rep_id) or {}
    version = built.get("version")
    deps.events.publish(VOICE_UPDATED, {"rep_id": rep_id, "sample_id": sample_id, "profile_version": version})
    return version


# --- failure handling --------------------------------------------------------------------------------


def _guarded(deps: Any, sample: dict[str, Any], retry_count: int, step: str, run) -> dict[str, Any]:
    sample_id = sample["id"]
    try:
        return run()
    except samples.IllegalTransition:
        # Someone else moved or deleted the sample meanwhile (a delete during extraction): nothing to do.
        log.info(f"{step} abandoned: sample changed meanwhile", extra={"fields": {"sample_id": sample_id}})
        return {"sample_id": sample_id, "status": "skipped"}
    except PermanentError as exc:
        samples.fail(deps.db, sample_id, exc.message)
        log.info(f"{step} failed permanently", extra={"fields": {"sample_id": sample_id, "error": exc.code}})
        return {"sample_id": sample_id, "status": samples.FAILED, "error": exc.code}
    except RetryableError as exc:
        if not is_last_attempt(retry_count):
            raise
        samples.fail(deps.db, sample_id, f"{exc.message} (gave up after {MAX_ATTEMPTS} attempts; "
                                         "add the sample again later).")
        log.warning(f"{step} gave up", extra={"fields": {"sample_id": sample_id, "error": exc.code}})
        return {"sample_id": sample_id, "status": samples.FAILED, "error": exc.code}
    except Exception:
        if not is_last_attempt(retry_count):
            raise  # a bug: the 500 makes the platform retry, and the traceback is logged by the router
        log.exception(f"{step} failed on its last attempt", extra={"fields": {"sample_id": sample_id}})
        samples.fail(deps.db, sample_id, "An unexpected error stopped this sample from being processed.")
        return {"sample_id": sample_id, "status": samples.FAILED, "error": "internal"}


# --- delivery routes -----------------------------------------------------------------------------------


def _delivery_router(function: str, step):
    from shared.web import Router, caller, error_response, json_body

    router = Router(function)

    @router.route("POST", "", delivery=True)
    def deliver(request):
        from shared.bootstrap import container
        from shared.errors import BadRequest, Forbidden, Unauthenticated

        try:
            caller(request, function, via="tasks")
        except (Unauthenticated, Forbidden) as exc:
            # A delivery route answers permanent errors 200 to stop redelivery; a caller we do not
            # accept must still see its 401/403.
            return error_response(exc)
        body = json_body(request)
        sample_id = body.get("sample_id")
        if not isinstance(sample_id, str) or not sample_id:
            raise BadRequest("sample_id is required.")
        try:
            retry_count = int(request.headers.get("X-CloudTasks-TaskRetryCount", "0"))
        except ValueError:
            retry_count = 0
        return step(container(), sample_id, retry_count=retry_count)

    return router


extract_router = _delivery_router("extract", extract_step)
embed_router = _delivery_router("embed", embed_step)
