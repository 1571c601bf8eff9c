"""The CRM port: HubSpot through ``hubspot-api-client`` (production) and a sandbox CRM (embedded).

Both classes share ``_CrmBase``, which turns four primitives (search, read one, read many, list
associations) into the port's operations; a backend implements only the primitives. Writes (tasks and
notes after a send) will be added the same way: a primitive per backend, the logic in the base.

HubSpot calls (CRM v3 objects, v4 associations):

* ``POST /crm/v3/objects/{type}/search`` with ``query`` -- the record selector. The search API is
  limited to 5 requests per second per account and 200 records per page
  (https://developers.hubspot.com/docs/api/crm/search#limitations), so the page asks once per type.
* ``GET /crm/v3/objects/{type}/{id}`` -- one record.
* ``GET /crm/v4/objects/{type}/{id}/associations/{toType}`` -- up to 500 associated ids per page.
* ``POST /crm/v3/objects/{notes|emails|calls}/batch/read`` -- at most 100 ids per request.

Engagement text lives in these properties (HubSpot's notes, emails and calls guides):
``hs_note_body`` (HTML, up to 65,536 characters); ``hs_email_html`` / ``hs_email_text``, with
``hs_email_subject`` and ``hs_email_direction`` (``EMAIL`` is one the rep sent, ``INCOMING_EMAIL`` a
reply received, ``FORWARDED_EMAIL``); ``hs_call_body`` (HTML) and ``hs_call_title``; ``hs_timestamp``
for when each happened. Call transcripts are not a property: they sit behind the separate calling
transcripts API (``crm/extensions/calling/.../transcripts``) and are not imported.

Rate limits (https://developers.hubspot.com/docs/api/usage-details): private apps get 100 requests
per 10 seconds on Free and Starter accounts and 190 on Professional and Enterprise, plus a daily cap; a
429 is answered with ``RateLimited`` so the task queue retries with backoff.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shared.errors import BadRequest, DependencyDown, Forbidden, NotFound, PermanentError, RateLimited
from shared.voice.extract import html_to_text
from shared.voice.sources import (
    ENGAGEMENT_KINDS,
    CrmRecord,
    Engagement,
    check_include,
    check_object_type,
)

log = logging.getLogger(__name__)

# Properties read for each record type, and what the selector shows.
RECORD_PROPERTIES: dict[str, list[str]] = {
    "contacts": ["firstname", "lastname", "email", "company", "jobtitle"],
    "companies": ["name", "domain", "industry", "city"],
    "deals": ["dealname", "dealstage", "amount", "closedate"],
}
ENGAGEMENT_PROPERTIES: dict[str, list[str]] = {
    "notes": ["hs_note_body", "hs_timestamp"],
    "emails": ["hs_email_subject", "hs_email_text", "hs_email_html", "hs_email_direction", "hs_timestamp"],
    "calls": ["hs_call_title", "hs_call_body", "hs_call_direction", "hs_timestamp"],
}
BATCH_READ_LIMIT = 100  # documented maximum inputs of a batch read
ASSOCIATIONS_PAGE = 500  # documented maximum of the v4 associations list
MAX_SEARCH_LIMIT = 100


def record_from(object_type: str, object_id: str, properties: dict[str, Any]) -> CrmRecord:
    """A ``CrmRecord`` with the label and subtitle the selector shows."""
    p = {k: v for k, v in (properties or {}).items() if v not in (None, "")}
    if object_type == "contacts":
        name = " ".join(x for x in (p.get("firstname"), p.get("lastname")) if x)
        label = name or p.get("email") or f"Contact {object_id}"
        subtitle = " · ".join(x for x in (p.get("email") if name else None, p.get("jobtitle"), p.get("company")) if x)
    elif object_type == "companies":
        label = p.get("name") or p.get("domain") or f"Company {object_id}"
        subtitle = " · ".join(x for x in (p.get("domain") if p.get("name") else None, p.get("industry")) if x)
    else:
        label = p.get("dealname") or f"Deal {object_id}"
        subtitle = " · ".join(str(x) for x in (p.get("dealstage"), p.get("amount")) if x)
    return CrmRecord(id=str(object_id), object_type=object_type, label=str(label), subtitle=subtitle, properties=p)


def parse_timestamp(value: Any) -> dt.datetime | None:
    """``hs_timestamp`` as HubSpot returns it (ISO 8601, or milliseconds since the epoch)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if value in (None, ""):
        return None
    text = str(value).strip()
    if text.isdigit():
        return dt.datetime.fromtimestamp(int(text) / 1000, tz=dt.timezone.utc)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def engagement_from(object_type: str, object_id: str, properties: dict[str, Any],
                    created_at: dt.datetime | None = None) -> Engagement | None:
    """An ``Engagement`` from a note, email or call's properties; None when it has no text."""
    p = properties or {}
    when = parse_timestamp(p.get("hs_timestamp")) or parse_timestamp(created_at)
    if object_type == "notes":
        text, title, outgoing = html_to_text(str(p.get("hs_note_body") or "")).text, "", None
    elif object_type == "emails":
        html = str(p.get("hs_email_html") or "")
        # The HTML body lets quoted replies and signatures be set aside; the text body is the fallback.
        text = html_to_text(html, email_body=True).text if html.strip() else str(p.get("hs_email_text") or "")
        title = str(p.get("hs_email_subject") or "")
        direction = str(p.get("hs_email_direction") or "")
        outgoing = None if not direction else direction == "EMAIL"
    else:
        text = html_to_text(str(p.get("hs_call_body") or "")).text
        title, outgoing = str(p.get("hs_call_title") or ""), None
    text = text.strip()
    if not text:
        return None
    return Engagement(kind=ENGAGEMENT_KINDS[object_type], id=str(object_id), text=text, created_at=when, title=title,
                      outgoing=outgoing)


class _CrmBase:
    """The port's operations over a backend's primitives (``_search``, ``_get``, ``_read_many``,
    ``_associated``)."""

    def search(self, object_type: str, q: str, limit: int = 10) -> list[CrmRecord]:
        """See ``CrmReader.search``."""
        check_object_type(object_type)
        q = " ".join(str(q or "").split())[:200]
        if not q:
            return []
        return self._search(object_type, q, max(1, min(int(limit), MAX_SEARCH_LIMIT)))

    def get(self, object_type: str, object_id: str) -> CrmRecord:
        """See ``CrmReader.get``."""
        check_object_type(object_type)
        return self._get(object_type, _check_id(object_id))

    def engagements(self, object_type: str, object_id: str,
                    include: Sequence[str] = ("notes", "emails", "calls"), limit: int = 200) -> list[Engagement]:
        """See ``CrmReader.engagements``."""
        check_object_type(object_type)
        object_id = _check_id(object_id)
        kinds = check_include(include)
        # Associations of a record that does not exist come back empty, not 404: read it first.
        self._get(object_type, object_id)
        found: list[Engagement] = []
        for kind in kinds:
            ids = self._associated(object_type, object_id, kind)
            for start in range(0, len(ids), BATCH_READ_LIMIT):
                for eid, props, created in self._read_many(kind, ids[start:start + BATCH_READ_LIMIT],
                                                           ENGAGEMENT_PROPERTIES[kind]):
                    engagement = engagement_from(kind, eid, props, created)
                    if engagement is not None:
                        found.append(engagement)
        oldest = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        found.sort(key=lambda e: (e.created_at or oldest, e.id), reverse=True)
        return found[:max(1, int(limit))]

    def engagement_counts(self, object_type: str, object_id: str) -> dict[str, int]:
        """See ``CrmReader.engagement_counts``."""
        check_object_type(object_type)
        object_id = _check_id(object_id)
        return {kind: len(self._associated(object_type, object_id, kind)) for kind in ENGAGEMENT_KINDS}

    # -- primitives -----------------------------------------------------------------------------

    def _search(self, object_type: str, q: str, limit: int) -> list[CrmRecord]:
        raise NotImplementedError

    def _get(self, object_type: str, object_id: str) -> CrmRecord:
        raise NotImplementedError

    def _read_many(self, object_type: str, ids: Sequence[str],
                   properties: Sequence[str]) -> list[tuple[str, dict[str, Any], dt.datetime | None]]:
        raise NotImplementedError

    def _associated(self, object_type: str, object_id: str, to_type: str) -> list[str]:
        """Ids of ``to_type`` objects associated with the record; raises NotFound for no record."""
        raise NotImplementedError


def _check_id(object_id: Any) -> str:
    text = str(object_id or "").strip()
    if not text.isdigit() or len(text) > 20:
        raise BadRequest("A HubSpot record id is a number.")
    return text


# --- HubSpot ---------------------------------------------------------------------------------------


class HubSpotCrm(_CrmBase):
    """HubSpot's CRM through ``hubspot-api-client``; implements ``shared.voice.sources.CrmReader``.

    Args:
        access_token: a private app's (or OAuth) access token with the ``crm.objects.*.read`` scopes.
        host: the API base URL; default ``https://api.hubapi.com`` (a stand-in's in tests). The client
            copies every keyword into its generated ``Configuration``, whose ``host`` is the base URL.
        timeout: seconds per request.
        client: an existing ``hubspot.HubSpot`` to use instead of building one.
    """

    def __init__(self, access_token: str = "", *, host: str | None = None, timeout: float = 20.0, client: Any = None):
        if client is None and not access_token:
            raise ValueError("access_token is required")
        self._token = access_token
        self._host = host.rstrip("/") if host else None
        self._timeout = timeout
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from hubspot import HubSpot  # a large package: loaded by the functions that use it

                    options: dict[str, Any] = {"access_token": self._token}
                    if self._host:
                        options["host"] = self._host
                    self._client = HubSpot(**options)
        return self._client

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Translate the client's exceptions (each sub-package has its own ApiException) and urllib3's."""
        import urllib3.exceptions

        from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsError
        from hubspot.crm.objects.exceptions import ApiException as ObjectsError

        try:
            yield
        except (ObjectsError, AssociationsError) as exc:
            raise _api_failure(exc, what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("hubspot request failed: %s", type(exc).__name__)
            raise DependencyDown("Could not reach HubSpot; the import will be tried again.") from None

    def _search(self, object_type: str, q: str, limit: int) -> list[CrmRecord]:
        from hubspot.crm.objects import PublicObjectSearchRequest

        request = PublicObjectSearchRequest(query=q, limit=limit, properties=RECORD_PROPERTIES[object_type])
        with self._calls("records"):
            page = self.client.crm.objects.search_api.do_search(object_type, request,
                                                                _request_timeout=self._timeout)
        return [record_from(object_type, r.id, r.properties or {}) for r in (page.results or [])]

    def _get(self, object_type: str, object_id: str) -> CrmRecord:
        with self._calls(_singular(object_type)):
            record = self.client.crm.objects.basic_api.get_by_id(
                object_type, object_id, properties=RECORD_PROPERTIES[object_type], _request_timeout=self._timeout)
        return record_from(object_type, record.id, record.properties or {})

    def _read_many(self, object_type: str, ids: Sequence[str],
                   properties: Sequence[str]) -> list[tuple[str, dict[str, Any], dt.datetime | None]]:
        from hubspot.crm.objects import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

        body = BatchReadInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=i) for i in ids],
                                                  properties=list(properties), properties_with_history=[])
        with self._calls(object_type):
            result = self.client.crm.objects.batch_api.read(object_type, body, archived=False,
                                                            _request_timeout=self._timeout)
        return [(str(r.id), r.properties or {}, r.created_at) for r in (result.results or [])]

    def _associated(self, object_type: str, object_id: str, to_type: str) -> list[str]:
        ids: list[str] = []
        after = None
        api = self.client.crm.associations.v4.basic_api
        while True:
            kwargs: dict[str, Any] = {"limit": ASSOCIATIONS_PAGE, "_request_timeout": self._timeout}
            if after:
                kwargs["after"] = after
            with self._calls(_singular(object_type)):
                page = api.get_page(object_type, object_id, to_type, **kwargs)
            ids.extend(str(r.to_object_id) for r in (page.results or []))
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return list(dict.fromkeys(ids))


def _singular(object_type: str) -> str:
    return {"contacts": "contact", "companies": "company", "deals": "deal"}.get(object_type, "record")


def _api_failure(exc: Any, what: str) -> Exception:
    status = int(getattr(exc, "status", 0) or 0)
    message = ""
    try:
        message = str(json.loads(exc.body or b"{}").get("message") or "")
    except (ValueError, AttributeError, TypeError):
        pass
    if status == 404:
        return NotFound(f"HubSpot has no such {what}: it may have been deleted or merged.", code="crm_not_found")
    if status == 429:
        return RateLimited("HubSpot is limiting requests right now; the import will be tried again shortly.")
    if status >= 500 or status == 0:
        return DependencyDown(f"HubSpot answered HTTP {status}; the import will be tried again.")
    if status == 401:
        # Our token, not the rep's doing: surfaced as unavailable so an operator notices and fixes it.
        log.error("hubspot refused the access token (HTTP 401)")
        return DependencyDown("HubSpot refused our access token; the import will be tried again once it is fixed.")
    if status == 403:
        return Forbidden("The HubSpot connection is not allowed to read this record.", code="crm_forbidden")
    return PermanentError(f"HubSpot refused the request (HTTP {status}{': ' + message[:160] if message else ''}).",
                          code="crm_refused")


# --- the sandbox CRM -------------------------------------------------------------------------------


class SandboxCrm(_CrmBase):
    """The embedded CRM: demo records in ``<data_dir>/crm/sandbox.json``, created on first use.

    The file keeps HubSpot's shapes (``properties`` with HubSpot's names, associations by type), so the
    same conversions apply as for the real CRM. Writes take an exclusive ``flock`` on the file's lock
    and replace it atomically, so several processes of the local stack may share a data dir.

    Args:
        data_dir: the local stack's data directory.
    """

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.path = Path(data_dir) / "crm" / "sandbox.json"
        self._lock = threading.Lock()

    # -- storage --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            pass
        with self._write_lock():
            if not self.path.exists():
                self._save(demo_records())
        return json.loads(self.path.read_text("utf-8"))

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _save(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _object(self, data: dict[str, Any], object_type: str, object_id: str) -> dict[str, Any]:
        found = data.get("objects", {}).get(object_type, {}).get(object_id)
        if found is None:
            raise NotFound(f"The sandbox CRM has no such {_singular(object_type)}.", code="crm_not_found")
        return found

    # -- primitives -----------------------------------------------------------------------------

    def _search(self, object_type: str, q: str, limit: int) -> list[CrmRecord]:
        words = q.lower().split()
        out = []
        for object_id, obj in sorted(self._load().get("objects", {}).get(object_type, {}).items()):
            haystack = " ".join(str(v) for v in obj.get("properties", {}).values()).lower()
            if all(word in haystack for word in words):
                out.append(record_from(object_type, object_id, obj.get("properties", {})))
        return out[:limit]

    def _get(self, object_type: str, object_id: str) -> CrmRecord:
        obj = self._object(self._load(), object_type, object_id)
        return record_from(object_type, object_id, obj.get("properties", {}))

    def _read_many(self, object_type: str, ids: Sequence[str],
                   properties: Sequence[str]) -> list[tuple[str, dict[str, Any], dt.datetime | None]]:
        table = self._load().get("objects", {}).get(object_type, {})
        out = []
        for object_id in ids:
            obj = table.get(object_id)
            if obj is not None:  # like a batch read, ids that are gone are left out
                props = {k: v for k, v in obj.get("properties", {}).items() if k in properties}
                out.append((object_id, copy.deepcopy(props), parse_timestamp(obj.get("createdAt"))))
        return out

    def _associated(self, object_type: str, object_id: str, to_type: str) -> list[str]:
        data = self._load()
        self._object(data, object_type, object_id)
        return [a["to"][1] for a in data.get("associations", [])
                if a["from"] == [object_type, object_id] and a["to"][0] == to_type]


def demo_records() -> dict[str, Any]:
    """The sandbox's first contents: three contacts, two companies, two deals and their activity.

    The notes, emails and calls read as a rep (Alex) wrote them, so importing one trains a voice.
    """

    def obj(created: str, **properties: str) -> dict[str, Any]:
        return {"createdAt": created, "properties": properties}

    objects = {
        "contacts": {
            "101": obj("2025-01-06T09:00:00Z", firstname="Jordan", lastname="Lee", email="jordan.lee@northwind.example",
                       company="Northwind Traders", jobtitle="Head of Operations"),
            "102": obj("2025-01-08T10:00:00Z", firstname="Priya", lastname="Shah", email="priya@contoso.example",
                       company="Contoso", jobtitle="VP Sales"),
            "103": obj("2025-02-02T14:00:00Z", firstname="Sam", lastname="Ortiz", email="sam.ortiz@fabrikam.example",
                       company="Fabrikam", jobtitle="IT Manager"),
        },
        "companies": {
            "201": obj("2025-01-06T09:00:00Z", name="Northwind Traders", domain="northwind.example",
                       industry="Wholesale", city="Portland"),
            "202": obj("2025-01-08T10:00:00Z", name="Contoso", domain="contoso.example", industry="Software",
                       city="Austin"),
        },
        "deals": {
            "301": obj("2025-01-10T09:00:00Z", dealname="Northwind – annual plan", dealstage="presentationscheduled",
                       amount="24000", closedate="2025-03-31T00:00:00Z"),
            "302": obj("2025-01-12T09:00:00Z", dealname="Contoso pilot", dealstage="qualifiedtobuy", amount="6000",
                       closedate="2025-02-28T00:00:00Z"),
        },
        "notes": {
            "401": obj("2025-01-07T16:00:00Z", hs_timestamp="2025-01-07T16:00:00Z",
                       hs_note_body="<p>Jordan's team is drowning in manual reorders. Promised a short walkthrough "
                                    "focused on the reorder flow, nothing else. Keep it tight: they hate long decks.</p>"),
            "402": obj("2025-01-13T11:30:00Z", hs_timestamp="2025-01-13T11:30:00Z",
                       hs_note_body="<p>Priya wants numbers before anything else. Send the two-line ROI summary, "
                                    "then offer the pilot.</p>"),
            "403": obj("2025-01-20T10:00:00Z", hs_timestamp="2025-01-20T10:00:00Z",
                       hs_note_body="<p>Deal review: pricing approved, waiting on their legal team.</p>"),
        },
        "emails": {
            "501": obj("2025-01-08T08:45:00Z", hs_timestamp="2025-01-08T08:45:00Z", hs_email_direction="EMAIL",
                       hs_email_subject="Quick follow-up on reorders",
                       hs_email_html="<p>Hi Jordan,</p><p>Thanks for the time yesterday. You mentioned reorders eat "
                                     "most of Monday for your team, so I'll keep this simple: fifteen minutes, one "
                                     "screen, the reorder flow.</p><p>Does Thursday at 10 work?</p><p>Cheers,<br>"
                                     "Alex</p>"),
            "502": obj("2025-01-08T12:10:00Z", hs_timestamp="2025-01-08T12:10:00Z", hs_email_direction="INCOMING_EMAIL",
                       hs_email_subject="Re: Quick follow-up on reorders",
                       hs_email_text="Thursday works. Send an invite. - Jordan"),
            "503": obj("2025-01-14T09:05:00Z", hs_timestamp="2025-01-14T09:05:00Z", hs_email_direction="EMAIL",
                       hs_email_subject="The numbers you asked for",
                       hs_email_text="Hi Priya,\n\nShort version: teams your size cut reorder time by about a third "
                                     "in the first month. Happy to run a two-week pilot so you can check that "
                                     "against your own data.\n\nWorth a call on Friday?\n\nAlex"),
        },
        "calls": {
            "601": obj("2025-01-09T15:00:00Z", hs_timestamp="2025-01-09T15:00:00Z", hs_call_title="Discovery call",
                       hs_call_direction="OUTBOUND",
                       hs_call_body="<p>Walked Jordan through the reorder flow. Big win: the low-stock alerts. "
                                    "Next step is a call with their finance lead.</p>"),
            "602": obj("2025-02-03T13:00:00Z", hs_timestamp="2025-02-03T13:00:00Z", hs_call_title="Intro call",
                       hs_call_direction="OUTBOUND",
                       hs_call_body="<p>Sam is evaluating three vendors. Asked for our security overview.</p>"),
        },
    }

    def link(a: tuple[str, str], b: tuple[str, str]) -> list[dict[str, list[str]]]:
        # HubSpot associations go both ways; so do these.
        return [{"from": list(a), "to": list(b)}, {"from": list(b), "to": list(a)}]

    pairs = [
        (("contacts", "101"), ("notes", "401")), (("contacts", "101"), ("emails", "501")),
        (("contacts", "101"), ("emails", "502")), (("contacts", "101"), ("calls", "601")),
        (("companies", "201"), ("notes", "401")), (("companies", "201"), ("emails", "501")),
        (("companies", "201"), ("calls", "601")), (("deals", "301"), ("notes", "403")),
        (("deals", "301"), ("calls", "601")), (("contacts", "102"), ("notes", "402")),
        (("contacts", "102"), ("emails", "503")), (("companies", "202"), ("emails", "503")),
        (("deals", "302"), ("notes", "402")), (("contacts", "103"), ("calls", "602")),
        (("contacts", "101"), ("companies", "201")), (("contacts", "102"), ("companies", "202")),
        (("deals", "301"), ("companies", "201")), (("deals", "302"), ("companies", "202")),
    ]
    associations = [entry for a, b in pairs for entry in link(a, b)]
    return {"version": 1, "objects": objects, "associations": associations}
