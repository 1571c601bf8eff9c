"""HubSpot deliveries → stored submissions, one workflow each, one named draft task each.

HubSpot delivers a form submission in one of two ways:

* an app webhook: a JSON array of up to 100 events (``eventId``, ``subscriptionType``, ``objectId``,
  ``portalId``, ``occurredAt``, ...), possibly duplicated and in any order;
* a workflow "Send a webhook" action: one JSON object carrying the enrolled contact's properties.

``accept`` stores a whole batch in one transaction (three multi-row statements, whatever the batch
size) and only then enqueues the draft tasks, concurrently. The answer therefore does not grow with the
batch, and a task never points at a row that was rolled back. A duplicate of a lead that is still
RECEIVED re-enqueues its (named, so deduplicated) task: that heals a crash between commit and enqueue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from shared.errors import BadRequest, TooLarge
from shared.leads import workflow
from shared.ports import Database, Task, TaskQueue

log = logging.getLogger(__name__)

MAX_EVENTS = 1000  # HubSpot batches at most 100; anything far larger is not HubSpot
# Events that mean "this contact converted": creation, or a change of a conversion property.
CREATION_TYPES = frozenset({"contact.creation", "object.creation"})
CHANGE_TYPES = frozenset({"contact.propertyChange", "object.propertyChange"})
CONVERSION_PROPERTIES = frozenset({"recent_conversion_date", "recent_conversion_event_name",
                                   "num_conversion_events", "first_conversion_date"})
CONTACT_OBJECT_TYPE = "0-1"


@dataclasses.dataclass(frozen=True)
class Submission:
    idempotency_key: str
    source: str  # app_webhook | workflow_webhook
    payload: dict[str, Any]
    portal_id: str | None = None
    contact_id: str | None = None
    form_id: str | None = None
    email: str | None = None
    occurred_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Parsed:
    submissions: list[Submission]
    ignored: int


def parse(body: bytes) -> Parsed:
    """Read a webhook body into submissions; events that are not conversions are counted as ignored.

    Raises:
        BadRequest: not JSON, or neither an event array nor a workflow-webhook object.
        TooLarge: far more events than HubSpot ever batches.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The webhook body is not valid JSON: {exc}.") from exc
    if isinstance(data, list):
        if len(data) > MAX_EVENTS:
            raise TooLarge(f"{len(data)} events in one delivery; at most {MAX_EVENTS} are accepted.")
        subs, ignored = [], 0
        for index, event in enumerate(data):
            sub = _from_event(event, index)
            if sub is None:
                ignored += 1
            else:
                subs.append(sub)
        return Parsed(_unique(subs), ignored)
    if isinstance(data, dict):
        return Parsed([_from_workflow_object(data)], 0)
    raise BadRequest("The webhook body must be an array of HubSpot events or one workflow-webhook object.")


def _unique(subs: list[Submission]) -> list[Submission]:
    """The same event twice in one batch counts once (the second is a duplicate)."""
    seen: dict[str, Submission] = {}
    for sub in subs:
        seen.setdefault(sub.idempotency_key, sub)
    return list(seen.values())


def _from_event(event: Any, index: int) -> Submission | None:
    if not isinstance(event, dict):
        raise BadRequest(f"Event {index} is not a JSON object.")
    kind = event.get("subscriptionType")
    event_id = event.get("eventId")
    if not isinstance(kind, str) or event_id is None or isinstance(event_id, (dict, list, bool)):
        raise BadRequest(f"Event {index} has no subscriptionType or eventId.")
    object_type = str(event.get("objectTypeId", CONTACT_OBJECT_TYPE))
    if kind.startswith("object.") and object_type != CONTACT_OBJECT_TYPE:
        return None
    if kind in CHANGE_TYPES:
        prop = event.get("propertyName")
        if not isinstance(prop, str) or prop not in CONVERSION_PROPERTIES:
            return None
    elif kind not in CREATION_TYPES:
        return None
    object_id = event.get("objectId")
    if object_id is None or isinstance(object_id, (dict, list, bool)):
        raise BadRequest(f"Event {index} ({kind}) has no objectId.")
    return Submission(
        idempotency_key=f"hubspot-event:{event.get('portalId', '')}:{event_id}",
        source="app_webhook", payload=event, portal_id=_text(event.get("portalId")),
        contact_id=_text(object_id), occurred_at=_millis(event.get("occurredAt")))


def _from_workflow_object(data: dict[str, Any]) -> Submission:
    props = _flatten_properties(data.get("properties"))
    email = (props.get("email") or data.get("email") or "")
    email = str(email).strip().lower() or None
    contact_id = _text(data.get("objectId") or data.get("vid") or data.get("hs_object_id")
                       or props.get("hs_object_id"))
    if not email and not contact_id:
        raise BadRequest("The workflow webhook names no contact: it needs the contact's objectId or email.")
    form_submissions = data.get("form-submissions") or []
    latest = form_submissions[0] if isinstance(form_submissions, list) and form_submissions else {}
    latest = latest if isinstance(latest, dict) else {}
    conversion = (data.get("submissionId") or data.get("conversionId") or latest.get("conversion-id"))
    if conversion:
        key = f"hubspot-submission:{conversion}"
    else:
        # No id from HubSpot: a stable hash of what identifies this conversion, so a retried delivery
        # of the same payload dedupes while a later form fill by the same contact does not.
        basis = {"contact": contact_id, "email": email, "properties": props,
                 "occurred": data.get("occurredAt") or props.get("recent_conversion_date")}
        key = "hubspot-payload:" + hashlib.sha256(
            json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()
    return Submission(
        idempotency_key=key, source="workflow_webhook", payload=data,
        portal_id=_text(data.get("portalId") or data.get("portal-id")), contact_id=contact_id,
        form_id=_text(latest.get("form-id") or data.get("formId") or props.get("recent_conversion_event_name")),
        email=email, occurred_at=_millis(data.get("occurredAt") or latest.get("timestamp")))


def _flatten_properties(props: Any) -> dict[str, Any]:
    """Workflow webhooks send ``{"name": "value"}`` or the v1 shape ``{"name": {"value": ...}}``."""
    if not isinstance(props, dict):
        return {}
    flat = {}
    for name, value in props.items():
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
        if isinstance(value, (str, int, float, bool)) or value is None:
            flat[str(name)] = value
    return flat


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _millis(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


@dataclasses.dataclass(frozen=True)
class Accepted:
    accepted: int
    duplicates: int
    ignored: int
    workflow_ids: list[str]

    def to_json(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "ignored": self.ignored}


def accept(db: Database, tasks: TaskQueue, parsed: Parsed) -> Accepted:
    """Store the submissions and their workflows in one transaction, then enqueue their draft tasks."""
    subs = parsed.submissions
    new_ids: list[str] = []
    retry_ids: list[str] = []
    if subs:
        with db.transaction() as cur:
            inserted = dict(_insert_submissions(cur, subs))
            rows = [(inserted[s.idempotency_key], s.contact_id, s.email)
                    for s in subs if s.idempotency_key in inserted]
            new_ids = list(workflow.create_many(cur, rows, actor="webhook").values())
            duplicate_keys = [s.idempotency_key for s in subs if s.idempotency_key not in inserted]
            if duplicate_keys:
                cur.execute("""SELECT w.id FROM workflows w JOIN form_submissions f ON f.id = w.submission_id
                               WHERE f.idempotency_key = ANY(%s) AND w.state = %s""",
                            (duplicate_keys, workflow.RECEIVED))
                retry_ids = [str(r[0]) for r in cur.fetchall()]
    ids = new_ids + retry_ids
    if ids:
        tasks.enqueue_many([draft_task(i) for i in ids])
    result = Accepted(len(new_ids), len(subs) - len(new_ids), parsed.ignored, new_ids)
    log.info("webhook batch stored", extra={"fields": result.to_json()})
    return result


def draft_task(workflow_id: str) -> Task:
    return Task(target="draft", payload={"workflow_id": workflow_id}, name=f"draft-{workflow_id}")


def _insert_submissions(cur, subs: Sequence[Submission]) -> list[tuple[str, str]]:
    """One multi-row INSERT; returns (idempotency_key, id) of the rows that were new."""
    rows, params = [], []
    for s in subs:
        rows.append("(%s, %s, %s, %s, %s, %s, %s, %s::jsonb)")
        params += [s.idempotency_key, s.source, s.portal_id, s.contact_id, s.form_id, s.email, s.occurred_at,
                   json.dumps(s.payload, default=str)]
    cur.execute(
        "INSERT INTO form_submissions (idempotency_key, source, portal_id, contact_id, form_id, email, "
        "occurred_at, payload) VALUES " + ", ".join(rows)
        + " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key, id", params)
    return [(key, str(sub_id)) for key, sub_id in cur.fetchall()]
