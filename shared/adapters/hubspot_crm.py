"""The CRM port: HubSpot through ``hubspot-api-client`` (production) and a sandbox CRM (embedded).

Both classes share ``_CrmBase``, which turns a few primitives (search, read one, read many, list
associations, find by property, read an owner, create) into the ports' operations; a backend implements
only the primitives. Two ports are served: ``shared.voice.sources.CrmReader`` (voice imports) and
``shared.drafting.LeadDirectory`` + ``shared.drafting.CrmWriter`` (the draft step's lead, company and
owner reads; the send step's task and note).

HubSpot calls (CRM v3 objects, v4 associations):

* ``POST /crm/v3/objects/{type}/search`` with ``query`` -- the record selector. The search API is
  limited to 5 requests per second per account and 200 records per page
  (https://developers.hubspot.com/docs/api/crm/search#limitations), so the page asks once per type.
* ``GET /crm/v3/objects/{type}/{id}`` -- one record.
* ``GET /crm/v4/objects/{type}/{id}/associations/{toType}`` -- up to 500 associated ids per page.
* ``POST /crm/v3/objects/{notes|emails|calls}/batch/read`` -- at most 100 ids per request.
* ``POST /crm/v3/objects/{contacts|companies}/search`` with ``filterGroups`` (``email EQ``, ``domain EQ``)
  -- a contact by email, a company by its domain.
* ``GET /crm/v3/owners/{ownerId}?idProperty=id`` -- the owner named by a contact's ``hubspot_owner_id``
  (``crm.objects.owners.read`` scope); 404 when the owner was removed.
* ``POST /crm/v3/objects/{tasks|notes}`` with ``associations`` -- answered 201. HubSpot's default
  ("HUBSPOT_DEFINED") association type ids, from "Associations v4 > Association type ID values"
  (https://developers.hubspot.com/docs/api/crm/associations#association-type-id-values): note → contact
  ``202``, task → contact ``204``. Tasks need ``hs_timestamp`` (the due date) and take
  ``hs_task_subject``, ``hs_task_body``, ``hs_task_status``, ``hs_task_type`` and ``hubspot_owner_id``;
  notes need ``hs_timestamp`` and take ``hs_note_body`` (HTML).

HubSpot's create endpoints take no idempotency key and offer no lookup by one, so a retried create makes
a second record. ``HubSpotCrm.find_by_idempotency_key`` therefore always answers None ("unknown"), and
the send step keeps its own ``hubspot_tasks`` table (unique ``idempotency_key``) as the exactly-once
record. The sandbox remembers keys and answers the first record again, which is what a caller that
checks its own table first would see anyway.

Contact opt-out: ``hs_email_optout`` is "Unsubscribed from all email" (``true`` once the contact opted
out of every subscription type). Opting out of one subscription type sets that type's
``hs_email_optout_<subscription id>`` property to ``true``; the ids differ per account, so the ones that
matter (the account's one-to-one sales type) are named by the caller in ``extra_properties``.

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
# What the draft step reads of a lead, its company and (above) its owner.
CONTACT_PROPERTIES: tuple[str, ...] = ("email", "firstname", "lastname", "company", "website", "hs_timezone",
                                       "hs_email_optout", "hubspot_owner_id", "message", "jobtitle")
COMPANY_PROPERTIES: tuple[str, ...] = ("name", "domain", "lifecyclestage", "industry", "numberofemployees")
# HubSpot-defined association type ids (module docstring).
NOTE_TO_CONTACT = 202
TASK_TO_CONTACT = 204
WRITE_TYPES = {"tasks": TASK_TO_CONTACT, "notes": NOTE_TO_CONTACT}
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

    def _read(self, object_type: str, object_id: str, properties: Sequence[str]) -> dict[str, Any]:
        """The record's ``properties`` (missing ones absent or None); raises NotFound."""
        raise NotImplementedError

    def _find(self, object_type: str, prop: str, value: str, properties: Sequence[str],
              limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Records whose ``prop`` equals ``value`` (case-insensitively), lowest id first."""
        raise NotImplementedError

    def _owner(self, owner_id: str) -> dict[str, Any] | None:
        """``{"id", "email", "first_name", "last_name"}`` of an owner, or None when there is none."""
        raise NotImplementedError

    def _create(self, object_type: str, properties: dict[str, str], contact_id: str, type_id: int,
                idempotency_key: str) -> str:
        """Create a task or note associated with the contact; returns its id."""
        raise NotImplementedError

    # -- the draft step's reads (shared.drafting.LeadDirectory) ----------------------------------

    def contact(self, contact_id: str, extra_properties: Sequence[str] = ()) -> dict[str, Any]:
        """A contact as ``{"id", "properties"}`` with ``CONTACT_PROPERTIES`` and ``extra_properties``.

        Raises:
            NotFound: no such contact (deleted or merged).
            BadRequest: the id is not a HubSpot id.
            RateLimited / DependencyDown: HubSpot's limits and outages.
        """
        object_id = _check_id(contact_id)
        props = self._read("contacts", object_id, _properties(CONTACT_PROPERTIES, extra_properties))
        return {"id": object_id, "properties": _clean(props)}

    def find_contact_by_email(self, email: str, extra_properties: Sequence[str] = ()) -> dict[str, Any] | None:
        """The contact whose primary email is ``email`` (the oldest record when there are several), or None."""
        email = str(email or "").strip().lower()
        if "@" not in email or len(email) > 320:
            return None
        found = self._find("contacts", "email", email, _properties(CONTACT_PROPERTIES, extra_properties), 5)
        return {"id": found[0][0], "properties": _clean(found[0][1])} if found else None

    def company_of_contact(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's associated company (the lowest id when several: HubSpot's own order) or None."""
        object_id = _check_id(contact_id)
        ids = self._associated("contacts", object_id, "companies")
        for company_id in sorted(ids, key=int):
            try:
                props = self._read("companies", company_id, COMPANY_PROPERTIES)
            except NotFound:  # associated but deleted since: try the next one
                continue
            return {"id": company_id, "properties": _clean(props)}
        return None

    def find_company_by_domain(self, domain: str) -> dict[str, Any] | None:
        """The company whose ``domain`` property is ``domain``, or None."""
        domain = str(domain or "").strip().lower()
        if not domain or "." not in domain or len(domain) > 253:
            return None
        found = self._find("companies", "domain", domain, COMPANY_PROPERTIES, 5)
        return {"id": found[0][0], "properties": _clean(found[0][1])} if found else None

    def owner(self, owner_id: str) -> dict[str, Any] | None:
        """The owner ``{"id", "email", "first_name", "last_name"}`` named by ``hubspot_owner_id``, or None."""
        text = str(owner_id or "").strip()
        if not text.isdigit() or len(text) > 20:
            return None
        return self._owner(text)

    # -- the send step's writes (shared.drafting.CrmWriter) --------------------------------------

    def create_task(self, contact_id: str, owner_id: str | None, subject: str, body: str, due_at: dt.datetime,
                    idempotency_key: str) -> str:
        """Create a follow-up task for the owner, associated with the contact (type 204).

        Args:
            contact_id: the contact the task is about.
            owner_id: the HubSpot owner to assign it to (None leaves it unassigned).
            subject: the task's title (``hs_task_subject``).
            body: the task's notes (``hs_task_body``), plain text or HTML.
            due_at: when it is due (``hs_timestamp``), timezone-aware.
            idempotency_key: the caller's key for this write (see the module docstring).

        Returns:
            The task's HubSpot id.

        Raises:
            BadRequest: a malformed id or a naive ``due_at``.
            NotFound: HubSpot has no such contact.
            RateLimited / DependencyDown: retry later.
        """
        props = {"hs_timestamp": _iso(due_at), "hs_task_subject": str(subject)[:255], "hs_task_body": str(body),
                 "hs_task_status": "NOT_STARTED", "hs_task_type": "EMAIL"}
        if owner_id:
            props["hubspot_owner_id"] = _check_id(owner_id)
        return self._create("tasks", props, _check_id(contact_id), TASK_TO_CONTACT, _check_key(idempotency_key))

    def create_note(self, contact_id: str, body_html: str, timestamp: dt.datetime, idempotency_key: str) -> str:
        """Log a note on the contact's timeline (association type 202).

        Args:
            contact_id: the contact.
            body_html: the note (``hs_note_body``, HTML, at most 65,536 characters).
            timestamp: when it happened (``hs_timestamp``), timezone-aware.
            idempotency_key: the caller's key for this write.

        Returns:
            The note's HubSpot id.

        Raises:
            as ``create_task``.
        """
        props = {"hs_timestamp": _iso(timestamp), "hs_note_body": str(body_html)[:65_536]}
        return self._create("notes", props, _check_id(contact_id), NOTE_TO_CONTACT, _check_key(idempotency_key))

    def find_by_idempotency_key(self, idempotency_key: str) -> str | None:
        """The id of the record a write with this key created, when the backend can tell; None otherwise."""
        return None


def _properties(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    extra = [p for p in extra if isinstance(p, str) and p.replace("_", "").isalnum()]
    return list(dict.fromkeys([*base, *extra]))


def _clean(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (props or {}).items() if v not in (None, "")}


def _iso(when: dt.datetime) -> str:
    if not isinstance(when, dt.datetime) or when.tzinfo is None:
        raise BadRequest("A HubSpot timestamp must be a timezone-aware datetime.")
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_key(key: Any) -> str:
    text = str(key or "").strip()
    if not text or len(text) > 200:
        raise BadRequest("A write needs an idempotency key of at most 200 characters.")
    return text


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
        from hubspot.crm.owners.exceptions import ApiException as OwnersError

        try:
            yield
        except (ObjectsError, AssociationsError, OwnersError) as exc:
            raise _api_failure(exc, what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("hubspot request failed: %s", type(exc).__name__)
            raise DependencyDown("Could not reach HubSpot; the request will be tried again.") from None

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

    def _read(self, object_type: str, object_id: str, properties: Sequence[str]) -> dict[str, Any]:
        with self._calls(_singular(object_type)):
            # One comma-separated value (the API's documented form) rather than a repeated parameter.
            record = self.client.crm.objects.basic_api.get_by_id(
                object_type, object_id, properties=[",".join(properties)], _request_timeout=self._timeout)
        wanted = set(properties)
        return {k: v for k, v in (record.properties or {}).items() if k in wanted}

    def _find(self, object_type: str, prop: str, value: str, properties: Sequence[str],
              limit: int) -> list[tuple[str, dict[str, Any]]]:
        from hubspot.crm.objects import Filter, FilterGroup, PublicObjectSearchRequest

        request = PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=[Filter(property_name=prop, operator="EQ", value=value)])],
            properties=list(properties), limit=limit,
            sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}])
        with self._calls("records"):
            page = self.client.crm.objects.search_api.do_search(object_type, request,
                                                                _request_timeout=self._timeout)
        wanted = set(properties)
        return [(str(r.id), {k: v for k, v in (r.properties or {}).items() if k in wanted})
                for r in (page.results or [])]

    def _owner(self, owner_id: str) -> dict[str, Any] | None:
        try:
            with self._calls("owner"):
                owner = self.client.crm.owners.owners_api.get_by_id(int(owner_id), id_property="id",
                                                                    archived=False, _request_timeout=self._timeout)
        except NotFound:  # the owner was deactivated or removed: the caller falls back to the owner id
            return None
        return {"id": str(owner.id), "email": (owner.email or "").strip().lower() or None,
                "first_name": owner.first_name or "", "last_name": owner.last_name or ""}

    def _create(self, object_type: str, properties: dict[str, str], contact_id: str, type_id: int,
                idempotency_key: str) -> str:
        from hubspot.crm.objects import (
            AssociationSpec,
            PublicAssociationsForObject,
            PublicObjectId,
            SimplePublicObjectInputForCreate,
        )

        # HubSpot has no idempotency keys (module docstring): the key stays with the caller's own record.
        body = SimplePublicObjectInputForCreate(properties=properties, associations=[PublicAssociationsForObject(
            to=PublicObjectId(id=contact_id),
            types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=type_id)])])
        with self._calls("contact"):
            created = self.client.crm.objects.basic_api.create(object_type, body, _request_timeout=self._timeout)
        log.info("hubspot record created", extra={"fields": {"object_type": object_type, "id": str(created.id)}})
        return str(created.id)


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
        return RateLimited("HubSpot is limiting requests right now; the request will be tried again shortly.")
    if status >= 500 or status == 0:
        return DependencyDown(f"HubSpot answered HTTP {status}; the request will be tried again.")
    if status == 401:
        # Our token, not the rep's doing: surfaced as unavailable so an operator notices and fixes it.
        log.error("hubspot refused the access token (HTTP 401)")
        return DependencyDown("HubSpot refused our access token; the request will be tried again once it is "
                              "fixed.")
    if status == 403:
        return Forbidden("The HubSpot connection is not allowed to read this record.", code="crm_forbidden")
    return PermanentError(f"HubSpot refused the request (HTTP {status}{': ' + message[:160] if message else ''}).",
                          code="crm_refused")


# --- the sandbox CRM -------------------------------------------------------------------------------


class SandboxCrm(_CrmBase):
    """The embedded CRM: demo records in ``<data_dir>/crm/``, created on first use.

    ``sandbox.json`` holds the seeded records in HubSpot's shapes (``properties`` with HubSpot's names,
    associations by type), so the same conversions apply as for the real CRM. Everything created later
    (tasks, notes, the demo's contacts) is appended to ``writes.jsonl``, one record per line: a write
    costs one appended line whatever the sandbox's size, where rewriting one file made every lead dearer
    than the one before. Writers take an exclusive ``flock``, so several processes of the local stack may
    share a data dir; readers catch up on lines they have not seen. ``snapshot()`` is the merged view.

    Args:
        data_dir: the local stack's data directory.
    """

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.path = Path(data_dir) / "crm" / "sandbox.json"
        self.journal = self.path.with_name("writes.jsonl")
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._view: _SandboxView | None = None

    def snapshot(self) -> dict[str, Any]:
        """Every record, seeded and written, as one ``sandbox.json``-shaped dict (read-only)."""
        return self._load()

    # -- storage --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        """The merged records for reading (callers never mutate them), catching up on new writes only.

        The seed file is replaced as a whole (a new inode), so (inode, size, mtime) names its version; the
        journal only grows, so the offset read so far says what is new.
        """
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._ensure_seed()
            stat = self.path.stat()
        base_key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._cache_lock:
            view = self._view
            if view is not None and view.base_key == base_key:
                view = view.caught_up(self.journal)
            if view is None:  # first read, a new seed file, or a journal that was replaced or removed
                view = _SandboxView(base_key, json.loads(self.path.read_text("utf-8"))).caught_up(self.journal)
            self._view = view
            return view.data

    def _ensure_seed(self) -> None:
        """Write the demo records on first use (before a writer takes the lock: it is not reentrant)."""
        if not self.path.exists():
            with self._write_lock():
                if not self.path.exists():
                    self._save(demo_records())

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
        """Replace the seed file (first use, and tests that edit seeded records)."""
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, sort_keys=True, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _append(self, record: dict[str, Any]) -> None:
        """Add one created record to the journal, durably; the caller holds ``_write_lock``."""
        line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one write of one line: a reader never sees half a record as whole
            os.fsync(fd)
        finally:
            os.close(fd)

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
        with self._cache_lock:
            links = self._view.links if self._view is not None else {}
        return [to_id for kind, to_id in links.get((object_type, object_id), ()) if kind == to_type]

    def _read(self, object_type: str, object_id: str, properties: Sequence[str]) -> dict[str, Any]:
        obj = self._object(self._load(), object_type, object_id)
        return {k: copy.deepcopy(v) for k, v in obj.get("properties", {}).items() if k in properties}

    def _find(self, object_type: str, prop: str, value: str, properties: Sequence[str],
              limit: int) -> list[tuple[str, dict[str, Any]]]:
        table = self._load().get("objects", {}).get(object_type, {})
        hits = [(object_id, {k: v for k, v in obj.get("properties", {}).items() if k in properties})
                for object_id, obj in table.items()
                if str(obj.get("properties", {}).get(prop, "")).strip().lower() == value.lower()]
        return sorted(hits, key=lambda hit: int(hit[0]) if hit[0].isdigit() else 0)[:limit]

    def _owner(self, owner_id: str) -> dict[str, Any] | None:
        owner = self._load().get("owners", {}).get(owner_id)
        if owner is None:
            return None
        return {"id": owner_id, "email": str(owner.get("email") or "").lower() or None,
                "first_name": owner.get("firstName") or "", "last_name": owner.get("lastName") or ""}

    def _create(self, object_type: str, properties: dict[str, str], contact_id: str, type_id: int,
                idempotency_key: str) -> str:
        self._ensure_seed()
        with self._write_lock():
            data = self._load()  # under the lock: every earlier write is in the journal by now
            self._object(data, "contacts", contact_id)
            known = data["idempotency"].get(idempotency_key)
            if known is not None:
                return known[1]
            object_id = str(data["next_id"])
            self._append({"type": object_type, "id": object_id, "createdAt": _now_iso(),
                          "properties": dict(properties), "key": idempotency_key,
                          "associations": [
                              {"from": [object_type, object_id], "to": ["contacts", contact_id], "typeId": type_id},
                              {"from": ["contacts", contact_id], "to": [object_type, object_id]}]})
        return object_id

    def add_contact(self, properties: dict[str, str], company_id: str | None = None) -> str:
        """A new sandbox contact (the local demo's fresh lead), associated with a company; returns its id."""
        self._ensure_seed()
        with self._write_lock():
            data = self._load()
            if company_id is not None:
                self._object(data, "companies", company_id)
            contact_id = str(data["next_id"])
            links = [] if company_id is None else [
                {"from": ["contacts", contact_id], "to": ["companies", company_id]},
                {"from": ["companies", company_id], "to": ["contacts", contact_id]}]
            self._append({"type": "contacts", "id": contact_id, "createdAt": _now_iso(),
                          "properties": dict(properties), "associations": links})
        return contact_id

    def find_by_idempotency_key(self, idempotency_key: str) -> str | None:
        """The id of the task or note a write with this key created, or None."""
        known = self._load().get("idempotency", {}).get(str(idempotency_key))
        return known[1] if known else None


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class _SandboxView:
    """One immutable version of the sandbox: the seed plus the journal up to ``offset``.

    Catching up builds a new view that shares every untouched table with the old one, so a reader
    iterating an older view is never disturbed, and a catch-up costs the new lines, not the whole file.
    """

    def __init__(self, base_key: tuple[int, int, int], base: dict[str, Any]):
        self.base_key = base_key
        self.journal_key: tuple[int, int] | None = None  # (device, inode) of the journal read so far
        self.offset = 0
        self.data = base
        base.setdefault("objects", {})
        base.setdefault("associations", [])
        base.setdefault("idempotency", {})
        base["next_id"] = int(base.get("next_id") or 90000)
        self.links: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for link in base["associations"]:
            self.links.setdefault(tuple(link["from"]), []).append(tuple(link["to"]))

    def caught_up(self, journal: Path) -> _SandboxView | None:
        """This view plus the journal's new lines; None when the journal is not the one read so far."""
        try:
            handle = journal.open("rb")
        except FileNotFoundError:
            return self if self.journal_key is None else None
        with handle:
            stat = os.fstat(handle.fileno())
            key = (stat.st_dev, stat.st_ino)
            if self.journal_key is not None and (key != self.journal_key or stat.st_size < self.offset):
                return None
            if self.journal_key == key and stat.st_size == self.offset:
                return self
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits for the next read
        records = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return self._with(records, key, self.offset + len(complete))

    def _with(self, records: list[dict[str, Any]], journal_key: tuple[int, int], offset: int) -> _SandboxView:
        new = object.__new__(_SandboxView)
        new.base_key, new.journal_key, new.offset = self.base_key, journal_key, offset
        if not records:
            new.data, new.links = self.data, self.links
            return new
        data = dict(self.data)
        objects = data["objects"] = dict(data["objects"])
        idempotency = data["idempotency"] = dict(data["idempotency"])
        links = dict(self.links)
        new_links = []
        copied: set[str] = set()
        for record in records:
            kind, object_id = record["type"], record["id"]
            if kind not in copied:
                objects[kind] = dict(objects.get(kind, {}))
                copied.add(kind)
            objects[kind][object_id] = {"createdAt": record["createdAt"], "properties": record["properties"]}
            if record.get("key"):
                idempotency[record["key"]] = [kind, object_id]
            for link in record.get("associations", []):
                new_links.append(link)
                source = tuple(link["from"])
                links[source] = [*links.get(source, ()), tuple(link["to"])]
            data["next_id"] = max(data["next_id"], int(object_id) + 1)
        data["associations"] = [*data["associations"], *new_links]
        new.data, new.links = data, links
        return new


def demo_records() -> dict[str, Any]:
    """The sandbox's first contents: three contacts, two companies, two deals, their activity and owners.

    The notes, emails and calls read as a rep (Alex) wrote them, so importing one trains a voice.
    """

    def obj(created: str, **properties: str) -> dict[str, Any]:
        return {"createdAt": created, "properties": properties}

    objects = {
        "contacts": {
            "101": obj("2025-01-06T09:00:00Z", firstname="Jordan", lastname="Lee", email="jordan.lee@northwind.example",
                       company="Northwind Traders", jobtitle="Head of Operations", hubspot_owner_id="7001",
                       hs_timezone="america_slash_los_angeles", hs_email_optout="false",
                       message="Could we see the reorder flow next week? Our team spends Mondays on it."),
            "102": obj("2025-01-08T10:00:00Z", firstname="Priya", lastname="Shah", email="priya@contoso.example",
                       company="Contoso", jobtitle="VP Sales", hubspot_owner_id="7001",
                       hs_timezone="america_slash_chicago", hs_email_optout="false",
                       message="What would a pilot for a sales team of our size involve?"),
            "103": obj("2025-02-02T14:00:00Z", firstname="Sam", lastname="Ortiz", email="sam.ortiz@fabrikam.example",
                       company="Fabrikam", jobtitle="IT Manager", hubspot_owner_id="7002", hs_email_optout="false",
                       message="Please send your security overview before we book a call."),
        },
        "companies": {
            "201": obj("2025-01-06T09:00:00Z", name="Northwind Traders", domain="northwind.example",
                       industry="Wholesale", city="Portland", lifecyclestage="opportunity", numberofemployees="180"),
            "202": obj("2025-01-08T10:00:00Z", name="Contoso", domain="contoso.example", industry="Software",
                       city="Austin", lifecyclestage="lead", numberofemployees="950"),
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
    # The HubSpot users who own contacts; their emails are the demo seed's reps.
    owners = {"7001": {"email": "alex@example.com", "firstName": "Alex", "lastName": "Rivera"},
              "7002": {"email": "sam@example.com", "firstName": "Sam", "lastName": "Carter"}}
    return {"version": 1, "objects": objects, "associations": associations, "owners": owners}
