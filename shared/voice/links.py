"""Pasted links → source material: what a link points at, and the bytes or text behind it.

``classify`` reads a link without fetching anything: a YouTube video, a Google Drive file, a HubSpot
record, a Dropbox / OneDrive / Box share link, or any other web page. ``fetch_source`` then gets the
material through the matching port (``deps.transcripts``, ``deps.drive``, ``deps.crm``) or, for share
links and web pages, through ``deps.fetcher`` -- the SSRF-safe fetcher, which is where private and
internal addresses are refused. Share links are rewritten to their direct-download form first, so the
fetch returns the file rather than the service's preview page.

Direct-download forms used:

* Dropbox: the same link with ``dl=1`` (https://help.dropbox.com/share/force-download); other
  parameters, such as the ``rlkey`` of ``/scl/fi/`` links, are kept because the link needs them.
* OneDrive (personal, ``1drv.ms`` and ``onedrive.live.com``): the shares API's encoded sharing URL,
  ``https://api.onedrive.com/v1.0/shares/u!<base64url of the link, unpadded>/root/content`` -- the
  encoding is Microsoft's "Encoding sharing URLs" in the ``shares/get`` reference; ``/root/content``
  answers with a redirect to the file. SharePoint / OneDrive for Business links
  (``*.sharepoint.com/:x:/...``) take ``download=1`` instead.
* Box: ``https://<host>/shared/static/<shared name>`` -- Box's direct-link form of a shared link;
  ``/s/<shared name>`` links are otherwise a preview page.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

from shared.errors import BadRequest, PermanentError, Refused
from shared.voice.sources import (
    GOOGLE_NOT_CONNECTED,
    OBJECT_TYPES,
    check_include,
    check_object_type,
)

log = logging.getLogger(__name__)

KINDS = ("youtube", "drive", "dropbox", "onedrive", "box", "hubspot", "web")

_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_DRIVE_ID = re.compile(r"[A-Za-z0-9_-]{10,200}")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# "example.com/path", "www.example.com", "localhost:8080/x": a host (optionally with a port) and no
# scheme. People paste links like that from the address bar.
_BARE_HOST = re.compile(r"^(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*\.?(?::\d{1,5})?(?:[/?#]|$)"
                        r"|^[A-Za-z0-9.-]+:\d{1,5}(?:[/?#]|$)")
_YOUTUBE_HOSTS = {"youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com",
                  "gaming.youtube.com"}
_YOUTUBE_PATHS = ("shorts", "embed", "live", "v", "e")
_HUBSPOT_HOST = re.compile(r"^app(?:-[a-z0-9]+)?\.hubspot(?:qa)?\.com$")
# HubSpot's object type ids (https://developers.hubspot.com/docs/api/crm/understanding-the-crm).
_HUBSPOT_TYPE_IDS = {"0-1": "contacts", "0-2": "companies", "0-3": "deals"}
_HUBSPOT_WORDS = {"contact": "contacts", "company": "companies", "deal": "deals"}
_FORBIDDEN_SCHEMES = "Only http and https links can be imported"
GOOGLE_DOCS_EXPORTS = {
    "document": "https://docs.google.com/document/d/{id}/export?format=txt",
    "spreadsheets": "https://docs.google.com/spreadsheets/d/{id}/export?format=csv",
    "presentation": "https://docs.google.com/presentation/d/{id}/export/txt",
}


@dataclasses.dataclass(frozen=True)
class Link:
    """What a pasted link points at.

    Attributes:
        kind: one of ``KINDS``.
        url: the link, trimmed, with ``https://`` added when it had no scheme.
        ref: the YouTube video id, the Drive file (or folder) id, ``"<object type>/<id>"`` for a HubSpot
            record (``contacts/123``), or None.
        download_url: for share links, the direct-download form that is fetched; else None.
        folder: True for a Drive folder link (``ref`` is then the folder id).
        doc_type: for Google Docs editor links, ``document`` / ``spreadsheets`` / ``presentation``.
    """

    kind: str
    url: str
    ref: str | None = None
    download_url: str | None = None
    folder: bool = False
    doc_type: str | None = None

    @property
    def hubspot(self) -> tuple[str, str]:
        """``(object type, object id)`` of a HubSpot link."""
        if self.kind != "hubspot" or not self.ref:
            raise ValueError("not a HubSpot record link")
        object_type, object_id = self.ref.split("/", 1)
        return object_type, object_id


@dataclasses.dataclass(frozen=True)
class Fetched:
    """Material behind a sample: bytes for the file extractors, or text that is already clean."""

    data: bytes | None
    text: str | None
    filename: str
    content_type: str
    title: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


# --- classification --------------------------------------------------------------------------------


def classify(url: str) -> Link:
    """Say what a pasted link points at, without fetching it.

    Args:
        url: the link as the person pasted it; surrounding whitespace is ignored and a missing
            ``https://`` is added to something that starts with a host name.

    Returns:
        The ``Link``.

    Raises:
        BadRequest: not a link at all, or a link to YouTube / Drive / HubSpot that names no video, file
            or record.
        Refused: a scheme other than http(s) (``javascript:``, ``file:``, ``ftp:`` ...).
    """
    if not isinstance(url, str):
        raise BadRequest("Paste a link (a web address starting with https://).")
    text = url.strip()
    if not text:
        raise BadRequest("Paste a link (a web address starting with https://).")
    if len(text) > 8192:
        raise BadRequest("The link is too long.")
    if any(ch.isspace() for ch in text):
        raise BadRequest("That does not look like a link: it contains spaces.")
    scheme = _SCHEME.match(text)
    if _BARE_HOST.match(text):
        text = "https://" + text
    elif scheme:
        if scheme.group(1).lower() not in ("http", "https"):
            shown = scheme.group(1).lower()[:20]
            raise Refused(f"{_FORBIDDEN_SCHEMES}, not {shown}: links.")
    elif text.startswith("//"):
        text = "https:" + text
    else:
        raise BadRequest("That does not look like a link. Paste a web address such as https://example.com/page.")
    try:
        parts = urllib.parse.urlsplit(text)
        host = (parts.hostname or "").lower().rstrip(".")
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        raise BadRequest("That link is malformed.") from None
    if not host:
        raise BadRequest("That link has no web address in it.")
    bare = host[4:] if host.startswith("www.") else host
    query = urllib.parse.parse_qs(parts.query)
    segments = [urllib.parse.unquote(s) for s in parts.path.split("/") if s]

    if bare in _YOUTUBE_HOSTS or bare == "youtu.be":
        return Link("youtube", text, _youtube_id(bare, segments, query))
    if bare in ("docs.google.com", "drive.google.com"):
        return _drive(text, segments, query)
    if bare in ("dropbox.com", "dl.dropboxusercontent.com", "dl.dropbox.com"):
        return Link("dropbox", text, None, _dropbox_download(parts, bare))
    if bare in ("1drv.ms", "onedrive.live.com"):
        return Link("onedrive", text, None, onedrive_download_url(text))
    if bare.endswith(".sharepoint.com") and segments and re.fullmatch(r":[a-z]:", segments[0]):
        return Link("onedrive", text, None, _with_query(parts, download="1"))
    if bare == "box.com" or bare.endswith(".box.com"):
        return Link("box", text, None, _box_download(parts, host, segments))
    if _HUBSPOT_HOST.match(host):
        return Link("hubspot", text, _hubspot_ref(segments))
    return Link("web", text)


def _youtube_id(host: str, segments: list[str], query: dict[str, list[str]]) -> str:
    candidate = ""
    if host == "youtu.be":
        candidate = segments[0] if segments else ""
    elif segments[:1] == ["watch"] or (not segments and "v" in query):
        candidate = (query.get("v") or [""])[0]
    elif len(segments) >= 2 and segments[0] in _YOUTUBE_PATHS:
        candidate = segments[1]
    if _VIDEO_ID.fullmatch(candidate):
        return candidate
    raise BadRequest("This YouTube link does not point at one video. Paste the link of the video itself "
                     "(youtube.com/watch?v=… or youtu.be/…).")


def _drive(url: str, segments: list[str], query: dict[str, list[str]]) -> Link:
    # /document/d/<id>, /document/u/1/d/<id>, /file/d/<id>, /drive/folders/<id>, /drive/u/0/folders/<id>
    # /open?id=<id>, /uc?id=<id>&export=download
    segments = [s for i, s in enumerate(segments)
                if not (s == "u" or (i > 0 and segments[i - 1] == "u" and s.isdigit()))]
    if "folders" in segments:
        index = segments.index("folders")
        if index + 1 < len(segments) and _DRIVE_ID.fullmatch(segments[index + 1]):
            return Link("drive", url, segments[index + 1], folder=True)
    if "d" in segments:
        index = segments.index("d")
        if index + 1 < len(segments) and _DRIVE_ID.fullmatch(segments[index + 1]):
            doc_type = segments[0] if index > 0 and segments[0] in GOOGLE_DOCS_EXPORTS else None
            return Link("drive", url, segments[index + 1], doc_type=doc_type)
    file_id = (query.get("id") or [""])[0]
    if segments[-1:] in (["open"], ["uc"], ["view"], ["edit"]) or file_id:
        if _DRIVE_ID.fullmatch(file_id):
            return Link("drive", url, file_id)
    raise BadRequest("This Google Drive link does not point at a file. Open the file and copy its link "
                     "(Share → Copy link).")


def _dropbox_download(parts: urllib.parse.SplitResult, host: str) -> str:
    if host != "dropbox.com":  # dl.dropboxusercontent.com links are already direct
        return urllib.parse.urlunsplit(("https", parts.netloc, parts.path, parts.query, ""))
    return _with_query(parts, dl="1", raw=None)


def _with_query(parts: urllib.parse.SplitResult, **changes: str | None) -> str:
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in changes]
    pairs += [(k, v) for k, v in changes.items() if v is not None]
    return urllib.parse.urlunsplit(("https", parts.netloc, parts.path, urllib.parse.urlencode(pairs), ""))


def onedrive_download_url(share_url: str) -> str:
    """The shares API's direct-download URL for a personal OneDrive sharing link.

    The link is base64-encoded, made unpadded base64url, and prefixed with ``u!`` -- the encoding in
    Microsoft's ``shares/get`` reference ("Encoding sharing URLs").
    """
    token = base64.urlsafe_b64encode(share_url.encode("utf-8")).decode("ascii").rstrip("=")
    return f"https://api.onedrive.com/v1.0/shares/u!{token}/root/content"


def _box_download(parts: urllib.parse.SplitResult, host: str, segments: list[str]) -> str | None:
    if len(segments) >= 2 and segments[0] == "s":
        return f"https://{host}/shared/static/{urllib.parse.quote(segments[1], safe='')}"
    if len(segments) >= 3 and segments[:2] == ["shared", "static"]:
        return urllib.parse.urlunsplit(("https", parts.netloc, parts.path, parts.query, ""))
    raise BadRequest("This Box link is not a shared link. In Box, use Share → Copy shared link.")


def _hubspot_ref(segments: list[str]) -> str:
    # /contacts/<portal>/record/0-1/<id>[/...], /contacts/<portal>/contact/<id>, .../company/<id>, .../deal/<id>
    for index, segment in enumerate(segments):
        following = segments[index + 1:]
        if segment == "record" and len(following) >= 2 and following[0] in _HUBSPOT_TYPE_IDS:
            if following[1].isdigit():
                return f"{_HUBSPOT_TYPE_IDS[following[0]]}/{following[1]}"
        if segment in _HUBSPOT_WORDS and following and following[0].isdigit() and index >= 1:
            return f"{_HUBSPOT_WORDS[segment]}/{following[0]}"
    raise BadRequest("This HubSpot link does not point at a contact, company or deal. Open the record and copy "
                     "the address from the browser.")


# --- fetching --------------------------------------------------------------------------------------


def fetch_source(sample: dict[str, Any], deps: Any) -> Fetched:
    """The material behind one training sample.

    Args:
        sample: ``source_type`` (``url`` | ``youtube`` | ``drive`` | ``hubspot``), ``source_url``,
            ``source_id``, ``metadata`` (for HubSpot: ``object_type``, ``object_id``, ``include``),
            ``rep_id``, ``rep_email``.
        deps: has ``fetcher``, ``transcripts``, ``drive`` and ``crm``.

    Returns:
        ``Fetched``: ``data`` for the file extractors, or ``text`` that is already clean.

    Raises:
        BadRequest / Refused: an unusable link or sample.
        PermanentError (and subclasses): the source cannot give material, with a sentence for the rep.
        RetryableError: a dependency failed in a way that may pass.
    """
    source_type = str(sample.get("source_type") or "url")
    url = str(sample.get("source_url") or "").strip()
    source_id = str(sample.get("source_id") or "").strip()
    metadata = dict(sample.get("metadata") or {})
    if source_type == "youtube":
        video_id = source_id if _VIDEO_ID.fullmatch(source_id) else _expect(classify(url), "youtube").ref
        return _youtube(deps, str(video_id), metadata)
    if source_type == "drive":
        if source_id:
            return _drive_file(deps, sample, source_id, None)
        link = _expect(classify(url), "drive")
        return _drive_link(deps, sample, link)
    if source_type == "hubspot":
        object_type = metadata.get("object_type") or ""
        object_id = str(metadata.get("object_id") or source_id or "")
        if not object_type and url:
            object_type, object_id = _expect(classify(url), "hubspot").hubspot
        return _hubspot(deps, object_type, object_id, metadata.get("include") or ("notes", "emails", "calls"))
    if source_type != "url":
        raise BadRequest(f"Unknown source type {source_type[:20]!r}.")
    link = classify(url)
    if link.kind == "youtube":
        return _youtube(deps, str(link.ref), metadata)
    if link.kind == "drive":
        return _drive_link(deps, sample, link)
    if link.kind == "hubspot":
        object_type, object_id = link.hubspot
        return _hubspot(deps, object_type, object_id, metadata.get("include") or ("notes", "emails", "calls"))
    return _web(deps, link)


def _expect(link: Link, kind: str) -> Link:
    if link.kind != kind:
        names = {"youtube": "a YouTube video", "drive": "a Google Drive file", "hubspot": "a HubSpot record"}
        raise BadRequest(f"That link is not {names.get(kind, kind)}.")
    return link


def _youtube(deps: Any, video_id: str, metadata: dict[str, Any]) -> Fetched:
    languages = tuple(metadata.get("languages") or ("en",))
    transcript = deps.transcripts.transcript(video_id, languages=languages)
    title = transcript.title or f"YouTube video {video_id}"
    return Fetched(data=None, text=transcript.text, filename=f"youtube-{video_id}.txt", content_type="text/plain",
                   title=title, metadata={"source": "youtube", "video_id": video_id, "language": transcript.language,
                                          "captions": "automatic" if transcript.is_generated else "uploaded"})


def _drive_link(deps: Any, sample: dict[str, Any], link: Link) -> Fetched:
    if link.folder:
        raise BadRequest("This is a Google Drive folder. Choose the files in it one by one.")
    return _drive_file(deps, sample, str(link.ref), link)


def _drive_file(deps: Any, sample: dict[str, Any], file_id: str, link: Link | None) -> Fetched:
    try:
        found = deps.drive.get_file(sample.get("rep_id"), file_id)
    except Refused as exc:
        if exc.code != GOOGLE_NOT_CONNECTED or link is None:
            raise
        # Without a Google connection, a file shared as "anyone with the link" can still be read the
        # way a browser reads it; if it is not public, the rep is told to connect.
        return _public_drive(deps, link, file_id, exc)
    metadata = {"source": "drive", "file_id": found.id, "mime_type": found.source_mime_type or found.mime_type}
    if found.modified_time:
        metadata["modified_time"] = found.modified_time
    filename = found.name
    if found.text is not None and "." not in filename[-6:]:
        filename += ".csv" if found.mime_type == "text/csv" else ".txt"
    return Fetched(data=found.data, text=found.text, filename=filename, content_type=found.mime_type,
                   title=found.name, metadata=metadata)


def _public_drive(deps: Any, link: Link, file_id: str, not_connected: Refused) -> Fetched:
    if link.doc_type:
        url = GOOGLE_DOCS_EXPORTS[link.doc_type].format(id=file_id)
    else:
        url = f"https://drive.google.com/uc?export=download&id={file_id}"
    try:
        page = deps.fetcher.fetch(url)
    except PermanentError:
        raise not_connected from None
    content_type = page.content_type.split(";")[0].strip().lower()
    if content_type == "text/html" and link.doc_type is None:
        # Drive answers a sign-in page or a virus-scan interstitial rather than the file.
        raise not_connected
    title = _filename(page.url, page.headers) or file_id
    return Fetched(data=page.body, text=None, filename=title, content_type=page.content_type, title=title,
                   metadata={"source": "drive", "file_id": file_id, "public_link": True})


def _hubspot(deps: Any, object_type: str, object_id: str, include: Sequence[str]) -> Fetched:
    check_object_type(object_type)
    kinds = check_include(list(include))
    record = deps.crm.get(object_type, object_id)
    engagements = deps.crm.engagements(object_type, record.id, kinds)
    # Replies received are the other person's words, not the rep's: they would teach the wrong voice.
    own = [e for e in engagements if e.outgoing is not False]
    if not own:
        wanted = ", ".join(kinds)
        raise PermanentError(f"“{record.label}” has no {wanted} written by you to learn from.", code="crm_empty")
    blocks = []
    for engagement in own:
        blocks.append(f"{engagement.title}\n\n{engagement.text}" if engagement.title else engagement.text)
    counts = {kind: sum(1 for e in own if e.kind == kind) for kind in ("note", "email", "call")}
    return Fetched(data=None, text="\n\n\n".join(blocks), filename=f"hubspot-{object_type}-{record.id}.txt",
                   content_type="text/plain", title=f"HubSpot: {record.label}",
                   metadata={"source": "hubspot", "object_type": object_type, "object_id": record.id,
                             "include": list(kinds), "counts": counts,
                             "skipped_incoming": len(engagements) - len(own)})


def _web(deps: Any, link: Link) -> Fetched:
    page = deps.fetcher.fetch(link.download_url or link.url)
    name = _filename(page.url, page.headers)
    host = urllib.parse.urlsplit(link.url).hostname or ""
    return Fetched(data=page.body, text=None, filename=name or "page.html", content_type=page.content_type,
                   title=name or host, metadata={"source": link.kind, "url": link.url, "final_url": page.url})


def _filename(url: str, headers: dict[str, str]) -> str:
    disposition = (headers or {}).get("content-disposition", "")
    match = re.search(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", disposition) or \
        re.search(r'filename\s*=\s*"?([^";]+)"?', disposition)
    if match:
        name = urllib.parse.unquote(match.group(1)).strip()
    else:
        path = urllib.parse.urlsplit(url).path
        name = urllib.parse.unquote(path.rsplit("/", 1)[-1]) if path else ""
    name = re.sub(r"[\x00-\x1f/\\]", "_", name).strip(" .")
    return name[:200]


# --- the record selector -----------------------------------------------------------------------------


def search_hubspot(deps: Any, q: str, object_types: Sequence[str] = OBJECT_TYPES) -> list[dict[str, Any]]:
    """Records whose name, email or domain matches ``q``, for the voice-training page's selector.

    Returns:
        ``[{"id", "object_type", "label", "subtitle"}, ...]``, contacts then companies then deals.

    Raises:
        BadRequest: an unknown object type.
    """
    for object_type in object_types:
        check_object_type(object_type)
    q = " ".join(str(q or "").split())
    if len(q) < 2:
        return []
    out: list[dict[str, Any]] = []
    for object_type in object_types:
        out.extend(record.as_dict() for record in deps.crm.search(object_type, q, limit=10))
    return out


def hubspot_engagement_counts(deps: Any, object_type: str, object_id: str) -> dict[str, int]:
    """``{"notes": n, "emails": n, "calls": n}`` for a record (associations only, no bodies)."""
    return deps.crm.engagement_counts(object_type, str(object_id))


__all__ = ["KINDS", "Link", "Fetched", "classify", "fetch_source", "search_hubspot", "hubspot_engagement_counts",
           "onedrive_download_url"]
