"""The voice-training API (DESIGN §4), mounted at ``/ingest``: add samples, list and delete them,
retrain, read the voice profile, and score how much a text sounds like each rep.

Handlers are plain functions of (request data, deps); ``router`` binds them to paths. Adding a sample
stores what is needed to process it later (the raw upload in blob storage, or the link), inserts the
sample ``queued`` and queues ONE named ``extract`` task. The rep's content hash (``samples.hash_bytes`` /
``samples.hash_link``) makes adding the same thing twice return the first sample (200) instead of a
duplicate.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

from shared import accounts
from shared.errors import BadRequest, NotFound, TooLarge
from shared.voice import pipeline, samples
from shared.web import BrowserRouter, json_body, person

log = logging.getLogger(__name__)

# Room for the multipart envelope around the file (boundaries, part headers, title, purpose).
MULTIPART_SLACK = 64 * 1024
MAX_JSON_BYTES = 64 * 1024
MAX_MATCH_CHARS = 20_000
_DRIVE_FILE_ID = re.compile(r"[A-Za-z0-9_-]{10,200}")
_HUBSPOT_ID = re.compile(r"\d{1,30}")
_LINK_SOURCES = {"youtube": "youtube", "drive": "drive", "hubspot": "hubspot"}  # link kind -> source_type


def _rep_for(deps: Any, principal: Any, rep_id: str | None) -> dict[str, Any]:
    return accounts.resolve_target_rep(deps.db, principal, rep_id, deps.settings.allowed_domains)


def _purpose(value: Any) -> str:
    if value is None or value == "":
        return "voice"
    purpose = value.strip().lower() if isinstance(value, str) else value
    if purpose not in samples.PURPOSES:
        raise BadRequest("purpose must be voice or asset.")
    return purpose


def _title(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("title must be a string.")
    return " ".join(value.split())[:500]


# --- adding samples --------------------------------------------------------------------------------


def add_upload(deps: Any, rep: dict[str, Any], data: bytes, *, filename: str = "", content_type: str = "",
               title: str = "", purpose: str = "voice") -> tuple[dict[str, Any], int]:
    """Add an uploaded file as a sample of ``rep``.

    Args:
        deps: The container.
        rep: The rep whose voice it trains.
        data: The raw bytes (already within the size cap).
        filename: The uploader's file name.
        content_type: The uploader's content type.
        title: A title (default: the file name).
        purpose: ``voice`` or ``asset``.

    Returns:
        (body, status): 202 with the new sample, 200 with an existing identical one.

    Raises:
        TooLarge: Over ``max_upload_bytes``.
        UnsupportedType: Not an accepted kind of file, by its content.
        PermanentError: Empty or unreadable in a way detection already sees.
    """
    from shared.voice import filetypes

    if len(data) > deps.settings.max_upload_bytes:
        raise _too_large(deps.settings.max_upload_bytes)
    kind = filetypes.detect(data, filename=filename, declared_type=content_type)
    content_hash = samples.hash_bytes(data)
    blob_key = f"uploads/{rep['id']}/{content_hash.split(':', 1)[1]}"
    # Stored before the row exists: a retry after a crash here rewrites the same key with the same bytes.
    deps.blobs.put(blob_key, data, content_type=content_type or "application/octet-stream")
    safe_name = Path(filename.replace("\\", "/")).name[:200] if filename else ""
    metadata = {"filename": safe_name, "content_type": content_type[:100], "bytes": len(data), "kind": kind.value}
    sample, created = samples.create(deps.db, rep_id=rep["id"], source_type="upload", content_hash=content_hash,
                                     title=title or safe_name, purpose=purpose, blob_key=blob_key,
                                     metadata=metadata)
    return _queued(deps, sample, created)


def add_link(deps: Any, rep: dict[str, Any], body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Add a link, a Drive file or a HubSpot record as a sample of ``rep``.

    Args:
        deps: The container.
        rep: The rep whose voice it trains.
        body: The JSON request: ``source`` with ``url``, ``file_id`` or ``object_type``/``object_id``/
            ``include``; optional ``title`` and ``purpose``.

    Returns:
        (body, status): 202 with the new sample, 200 with an existing identical one.

    Raises:
        BadRequest: A malformed request.
        Refused: A link the system will not fetch (a private address, an unsupported scheme).
    """
    source = body.get("source")
    title, purpose = _title(body.get("title")), _purpose(body.get("purpose"))
    from shared.accounts_google import drive_folder

    if (folder_id := drive_folder.folder_of(body)) is not None:
        return drive_folder.add_folder(deps, rep, folder_id, purpose=purpose)
    metadata: dict[str, Any] = {}
    source_url = None
    if source == "hubspot":
        from shared.voice.sources import check_include, check_object_type

        object_type = check_object_type(str(body.get("object_type", "")))
        object_id = str(body.get("object_id", "")).strip()
        if not _HUBSPOT_ID.fullmatch(object_id):
            raise BadRequest("object_id must be the HubSpot record's numeric id.")
        include = body.get("include") or ["notes", "emails", "calls"]
        if not isinstance(include, list):
            raise BadRequest("include must be a list of notes, emails and/or calls.")
        include = sorted(check_include([str(item) for item in include]))
        source_type, source_id = "hubspot", f"{object_type}/{object_id}"
        content_hash = samples.hash_link("hubspot", f"{source_id}?{','.join(include)}")
        metadata = {"object_type": object_type, "object_id": object_id, "include": include}
    elif source == "drive" and body.get("file_id") and not body.get("url"):
        file_id = str(body["file_id"]).strip()
        if not _DRIVE_FILE_ID.fullmatch(file_id):
            raise BadRequest("file_id is not a Google Drive file id.")
        source_type, source_id = "drive", file_id
        content_hash = samples.hash_link("drive", file_id)
    elif source in ("url", "youtube", "drive"):
        from shared.voice import links

        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise BadRequest(f"A {source} source needs a url.")
        link = links.classify(url.strip())
        if source in ("youtube", "drive") and link.kind != source:
            raise BadRequest(f"That is not a {'YouTube' if source == 'youtube' else 'Google Drive'} link.")
        if link.kind in _FETCHED_KINDS:
            # Refuse a link to a private or internal address at once (422), not later as a failed sample.
            deps.fetcher.check(link.download_url or link.url)
        source_type = _LINK_SOURCES.get(link.kind, "url")
        # A Drive link is resolved from its URL (folder or Docs export); a source_id would mean a bare file.
        source_id = link.ref if link.kind in ("youtube", "hubspot") else None
        source_url = link.url
        content_hash = samples.hash_link(link.kind, link.ref or link.url)
        metadata = {"link_kind": link.kind}
    else:
        raise BadRequest("source must be url, youtube, drive or hubspot (or upload a file as multipart).")
    sample, created = samples.create(deps.db, rep_id=rep["id"], source_type=source_type, content_hash=content_hash,
                                     title=title, purpose=purpose, source_id=source_id, source_url=source_url,
                                     metadata=metadata)
    return _queued(deps, sample, created)


# Kinds whose content is fetched from the link itself through the SSRF-safe fetcher.
_FETCHED_KINDS = frozenset({"web", "dropbox", "onedrive", "box"})


def _queued(deps: Any, sample: dict[str, Any], created: bool) -> tuple[dict[str, Any], int]:
    if created or sample["status"] == samples.QUEUED:
        # For a duplicate still queued this repairs a hand-over lost to a crash; the task name makes it
        # a no-op otherwise.
        deps.tasks.enqueue(pipeline.extract_task(sample["id"]))
    if created:
        log.info("sample queued", extra={"fields": {"sample_id": sample["id"], "source": sample["source_type"]}})
        return {"id": sample["id"], "status": samples.QUEUED}, 202
    return {**samples.public(sample), "duplicate": True}, 200


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"The upload is larger than the {limit // (1024 * 1024)} MB allowed.",
                    details={"limit_bytes": limit})


def read_upload(request: Any, limit: int) -> tuple[dict[str, str], Any]:
    """The form fields and the ``file`` part of a multipart request, never reading more than ``limit``.

    A declared ``Content-Length`` over the cap is refused before the body is read; a body without one
    is parsed under ``max_content_length``, which stops reading past the cap.

    Raises:
        TooLarge: The request or the file is over the cap.
        BadRequest: No ``file`` part.
    """
    from werkzeug.exceptions import RequestEntityTooLarge

    if request.content_length is not None and request.content_length > limit + MULTIPART_SLACK:
        raise _too_large(limit)
    request.max_content_length = limit + MULTIPART_SLACK
    try:
        form, files = request.form, request.files
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    upload = files.get("file")
    if upload is None:
        raise BadRequest("Attach the file as the multipart field 'file'.")
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    return {key: form.get(key) for key in ("title", "purpose", "rep_id")}, (upload, data)


# --- routes ------------------------------------------------------------------------------------------

router = BrowserRouter("ingest")


def _deps():
    from shared.bootstrap import container

    return container()


def _sample_of(deps: Any, principal: Any, sample_id: str, *, with_content: bool = False) -> dict[str, Any]:
    """A sample the caller may see: their own, or any for ops. Others' samples are 404, not 403,
    so ids of other reps' samples cannot be probed."""
    sample = samples.get(deps.db, sample_id, with_content=with_content)
    if sample is None:
        raise NotFound("There is no such sample.")
    if principal.is_ops:
        return sample
    own = accounts.rep_by_email(deps.db, principal.email)
    if own is None or own["id"] != sample["rep_id"]:
        raise NotFound("There is no such sample.")
    return sample


@router.route("POST", "")
def post_ingest(request):
    principal = person(request)
    deps = _deps()
    if request.mimetype == "multipart/form-data":
        fields, (upload, data) = read_upload(request, deps.settings.max_upload_bytes)
        rep = _rep_for(deps, principal, fields.get("rep_id"))
        return add_upload(deps, rep, data, filename=upload.filename or "", content_type=upload.mimetype or "",
                          title=_title(fields.get("title")), purpose=_purpose(fields.get("purpose")))
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise TooLarge("The JSON body is too large.")
    body = json_body(request)
    rep = _rep_for(deps, principal, body.get("rep_id"))
    return add_link(deps, rep, body)


@router.route("GET", "/samples")
def list_samples(request):
    principal = person(request)
    deps = _deps()
    rep = _rep_for(deps, principal, request.args.get("rep_id"))
    found = samples.list_samples(deps.db, rep["id"], status=request.args.get("status") or None,
                                 source_type=request.args.get("source") or None)
    return {"rep_id": rep["id"], "samples": [samples.public(s) for s in found]}


@router.route("GET", "/samples/<sample_id>")
def get_sample(request, sample_id):
    principal = person(request)
    return samples.public(_sample_of(_deps(), principal, sample_id, with_content=True))


@router.route("DELETE", "/samples/<sample_id>")
def delete_sample(request, sample_id):
    principal = person(request)
    deps = _deps()
    sample = _sample_of(deps, principal, sample_id)
    deleted = samples.delete(deps.db, sample["id"])
    if deleted is None:
        raise NotFound("There is no such sample.")
    if deleted.get("blob_key"):
        deps.blobs.delete(deleted["blob_key"])
    version = pipeline.refresh_profile(deps, deleted["rep_id"])
    log.info("sample deleted", extra={"fields": {"sample_id": deleted["id"]}})
    return {"deleted": deleted["id"], "profile_version": version}


@router.route("POST", "/retrain")
def retrain(request):
    principal = person(request)
    deps = _deps()
    body = json_body(request, required=False)
    rep = _rep_for(deps, principal, body.get("rep_id") or request.args.get("rep_id"))
    return retrain_rep(deps, rep["id"])


def retrain_rep(deps: Any, rep_id: str) -> tuple[dict[str, Any], int]:
    """Re-embed every ready sample of a rep with the configured model; each re-embed ends with a new
    profile (and with no ready samples the profile is rebuilt at once).

    Returns:
        (``{"queued": n, "model": ...}``, 202).
    """
    generation = uuid.uuid4().hex[:12]  # the first embed's task name stays reserved for about an hour
    queued = []
    for sample_id in samples.ready_ids(deps.db, rep_id):
        try:
            samples.move(deps.db, sample_id, samples.EMBEDDING, expect=[samples.READY])
        except (samples.IllegalTransition, NotFound):
            continue  # deleted or moved meanwhile
        queued.append(pipeline.embed_task(sample_id, generation))
    if queued:
        deps.tasks.enqueue_many(queued)
    else:
        pipeline.refresh_profile(deps, rep_id)
    return {"queued": len(queued), "model": deps.embedder.model}, 202


@router.route("GET", "/profile")
def get_profile(request):
    from shared.voice import profile

    principal = person(request)
    deps = _deps()
    rep = _rep_for(deps, principal, request.args.get("rep_id"))
    found = profile.get_profile(deps.db, rep["id"])
    if found is None:
        return {"rep_id": rep["id"], "version": 0, "sample_count": 0, "word_count": 0, "features": {},
                "sources": {}}
    return {"rep_id": rep["id"], **found}


@router.route("POST", "/profile/match")
def match_profile(request):
    from shared.voice import profile

    person(request)
    deps = _deps()
    text = json_body(request).get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("text is required.")
    if len(text) > MAX_MATCH_CHARS:
        raise TooLarge(f"text may be at most {MAX_MATCH_CHARS} characters.")
    return {"scores": profile.match(deps.db, deps.embedder, text)}


@router.route("GET", "/hubspot/search")
def hubspot_search(request):
    from shared.voice import links

    person(request)
    q = (request.args.get("q") or "").strip()
    if not q:
        raise BadRequest("q is required.")
    if len(q) > 200:
        raise BadRequest("q may be at most 200 characters.")
    return {"results": links.search_hubspot(_deps(), q)}
