"""A loopback stand-in for HubSpot's CRM v3 objects and v4 associations APIs.

Routes, in the JSON shapes ``hubspot-api-client`` 12 parses:

* ``POST /crm/v3/objects/<type>/search`` -- ``{"query", "limit", "properties", "after"}`` →
  ``{"total", "results": [SimplePublicObject], "paging"?}``. ``query`` matches any word of the default
  searchable properties, case-insensitively.
* ``GET /crm/v3/objects/<type>/<id>?properties=a,b`` → ``SimplePublicObject`` (``id``, ``properties``,
  ``createdAt``, ``updatedAt``, ``archived``) or 404 ``OBJECT_NOT_FOUND``.
* ``POST /crm/v3/objects/<type>/batch/read`` -- ``{"inputs": [{"id"}], "properties": [...]}``, at
  most 100 inputs → ``{"status": "COMPLETE", "results", "startedAt", "completedAt"}``.
* ``GET /crm/v4/objects/<type>/<id>/associations/<toType>?limit=&after=`` → ``{"results":
  [{"toObjectId", "associationTypes"}], "paging"?}``, at most 500 per page.
* ``POST /crm/v3/objects/<type>/search`` with ``filterGroups`` -- ``EQ`` filters (ORed groups of ANDed
  filters, values compared case-insensitively as HubSpot does for email and domain), ``sorts`` ignored
  (results come in id order).
* ``GET /crm/v3/owners/<ownerId>?idProperty=id`` → ``PublicOwner`` or 404.
* ``POST /crm/v3/objects/<type>`` -- create → 201 with the new object. Associations must carry
  ``HUBSPOT_DEFINED`` type ids; 202 (note → contact) and 204 (task → contact) are recorded as
  associations to that contact, which must exist (else 400, as HubSpot answers). Tasks and notes
  without ``hs_timestamp`` are refused with 400 ``VALIDATION_ERROR``. ``self.created`` lists every
  created object with its request body.

Every request needs ``Authorization: Bearer <ACCESS_TOKEN>`` (401 ``INVALID_AUTHENTICATION``
otherwise). Errors use HubSpot's shape ``{"status": "error", "message", "correlationId", "category"}``;
``rate_limit_next()`` answers 429 ``RATE_LIMIT`` as HubSpot does when the ten-second window is spent.
The data is the sandbox CRM's demo set unless a test replaces ``self.data``.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import uuid

from shared.adapters.hubspot_crm import demo_records
from tests.standins.loopback import LoopbackStandIn, Reply, Request

ACCESS_TOKEN = "pat-na1-standin-0000"
_SEARCHABLE = {
    "contacts": ("firstname", "lastname", "email", "company", "phone"),
    "companies": ("name", "domain", "website", "phone"),
    "deals": ("dealname", "pipeline", "dealstage", "description"),
}
_TYPE = r"(?P<object_type>[a-z_0-9-]+)"
_ID = r"(?P<object_id>[0-9]+)"


def hubspot_error(status: int, category: str, message: str) -> Reply:
    return Reply(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                          "category": category})


class HubSpotStandIn(LoopbackStandIn):
    name = "hubspot"

    def __init__(self) -> None:
        super().__init__()
        self.data = demo_records()
        self._ids = itertools.count(9000)
        self.route("POST", rf"/crm/v3/objects/{_TYPE}/search", self._search)
        self.route("GET", rf"/crm/v3/objects/{_TYPE}/{_ID}", self._get)
        self.route("POST", rf"/crm/v3/objects/{_TYPE}/batch/read", self._batch_read)
        self.route("GET", rf"/crm/v4/objects/{_TYPE}/{_ID}/associations/(?P<to_type>[a-z_0-9-]+)",
                   self._associations)
        self.route("POST", rf"/crm/v3/objects/{_TYPE}", self._create)
        self.route("GET", r"/crm/v3/owners/(?P<owner_id>[0-9]+)", self._owner)
        self.created: list[tuple[str, str, dict]] = []

    def reset(self) -> None:
        super().reset()
        self.data = demo_records()
        self.created = []

    def rate_limit_next(self, times: int = 1) -> None:
        self.fail_next(429, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                             "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                             "policyName": "TEN_SECONDLY_ROLLING"}, times=times)

    def handle(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            with self._lock:
                self._requests.append(request)
            return hubspot_error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
        return super().handle(request)

    def not_found(self, request: Request) -> Reply:
        return hubspot_error(404, "OBJECT_NOT_FOUND", f"No route for {request.method} {request.path}.")

    # -- helpers --------------------------------------------------------------------------------

    def _table(self, object_type: str) -> dict:
        return self.data["objects"].setdefault(object_type, {})

    @staticmethod
    def _public(object_id: str, obj: dict, properties: list[str] | None) -> dict:
        props = obj.get("properties", {})
        chosen = {k: props.get(k) for k in properties} if properties else dict(props)
        chosen["hs_object_id"] = object_id
        created = obj.get("createdAt", "2025-01-01T00:00:00Z")
        return {"id": object_id, "properties": chosen, "createdAt": created, "updatedAt": created, "archived": False}

    @staticmethod
    def _now() -> str:
        return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")

    # -- routes ---------------------------------------------------------------------------------

    def _search(self, request: Request) -> Reply:
        body = request.json() or {}
        object_type = request.params["object_type"]
        limit = int(body.get("limit") or 10)
        if limit > 200:
            return hubspot_error(400, "VALIDATION_ERROR", "limit must be at most 200.")
        words = str(body.get("query") or "").lower().split()
        fields = _SEARCHABLE.get(object_type, ())
        groups = body.get("filterGroups") or []
        for group in groups:
            for f in group.get("filters") or []:
                if f.get("operator") != "EQ":
                    return hubspot_error(400, "VALIDATION_ERROR", f"operator {f.get('operator')} is not served here.")
        hits = []
        for object_id, obj in sorted(self._table(object_type).items(), key=lambda kv: int(kv[0])):
            values = " ".join(str(obj["properties"].get(f, "")) for f in fields).lower()
            if not all(word in values for word in words):
                continue
            if groups and not any(all(str(obj["properties"].get(f["propertyName"], "")).lower()
                                      == str(f.get("value", "")).lower() for f in g.get("filters") or [])
                                  for g in groups):
                continue
            hits.append(self._public(object_id, obj, body.get("properties")))
        start = int(body.get("after") or 0)
        reply: dict = {"total": len(hits), "results": hits[start:start + limit]}
        if start + limit < len(hits):
            reply["paging"] = {"next": {"after": str(start + limit)}}
        return Reply(200, reply)

    def _get(self, request: Request) -> Reply:
        object_type, object_id = request.params["object_type"], request.params["object_id"]
        obj = self._table(object_type).get(object_id)
        if obj is None:
            return hubspot_error(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
        properties = [p for p in request.query.get("properties", "").split(",") if p]
        return Reply(200, self._public(object_id, obj, properties))

    def _batch_read(self, request: Request) -> Reply:
        body = request.json() or {}
        inputs = body.get("inputs") or []
        if len(inputs) > 100:
            return hubspot_error(400, "VALIDATION_ERROR", "Batch input limit is 100.")
        table = self._table(request.params["object_type"])
        started = self._now()
        results = [self._public(str(i["id"]), table[str(i["id"])], body.get("properties"))
                   for i in inputs if str(i.get("id")) in table]
        return Reply(200, {"status": "COMPLETE", "results": results, "startedAt": started,
                           "completedAt": self._now()})

    def _associations(self, request: Request) -> Reply:
        source = [request.params["object_type"], request.params["object_id"]]
        to_type = request.params["to_type"]
        limit = int(request.query.get("limit") or 500)
        if limit > 500:
            return hubspot_error(400, "VALIDATION_ERROR", "limit must be at most 500.")
        ids = [a["to"][1] for a in self.data["associations"] if a["from"] == source and a["to"][0] == to_type]
        start = int(request.query.get("after") or 0)
        results = [{"toObjectId": int(i), "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": None}]} for i in ids[start:start + limit]]
        reply: dict = {"results": results}
        if start + limit < len(ids):
            reply["paging"] = {"next": {"after": str(start + limit),
                                        "link": f"?after={start + limit}"}}
        return Reply(200, reply)

    def _create(self, request: Request) -> Reply:
        body = request.json() or {}
        object_type = request.params["object_type"]
        properties = body.get("properties") or {}
        if object_type in ("tasks", "notes") and not properties.get("hs_timestamp"):
            return hubspot_error(400, "VALIDATION_ERROR", "Property values were not valid: hs_timestamp is required.")
        links = []
        for association in body.get("associations") or []:
            to = str((association.get("to") or {}).get("id", ""))
            for kind in association.get("types") or []:
                target = _ASSOCIATION_TARGETS.get((object_type, kind.get("associationTypeId")))
                if kind.get("associationCategory") != "HUBSPOT_DEFINED" or target is None:
                    return hubspot_error(400, "VALIDATION_ERROR",
                                         f"association type {kind.get('associationTypeId')} is not valid here.")
                if to not in self._table(target):
                    return hubspot_error(400, "VALIDATION_ERROR", f"One or more associations are invalid: {to}.")
                links.append((target, to, kind["associationTypeId"]))
        object_id = str(next(self._ids))
        obj = {"createdAt": self._now(), "properties": copy.deepcopy(properties)}
        self._table(object_type)[object_id] = obj
        for target, to, type_id in links:
            self.data["associations"].append({"from": [object_type, object_id], "to": [target, to], "typeId": type_id})
            self.data["associations"].append({"from": [target, to], "to": [object_type, object_id]})
        self.created.append((object_type, object_id, body))
        return Reply(201, self._public(object_id, obj, None))

    def _owner(self, request: Request) -> Reply:
        owner_id = request.params["owner_id"]
        owner = self.data.get("owners", {}).get(owner_id)
        if owner is None or request.query.get("idProperty", "id") != "id":
            return hubspot_error(404, "OBJECT_NOT_FOUND", "Owner not found.")
        now = "2025-01-01T00:00:00Z"
        return Reply(200, {"id": owner_id, "email": owner.get("email"), "firstName": owner.get("firstName"),
                           "lastName": owner.get("lastName"), "userId": int(owner_id) + 100000,
                           "userIdIncludingInactive": int(owner_id) + 100000, "type": "PERSON",
                           "createdAt": now, "updatedAt": now, "archived": False, "teams": []})


# (object type created, HubSpot-defined association type id) -> the object type it points to.
_ASSOCIATION_TARGETS = {("tasks", 204): "contacts", ("notes", 202): "contacts"}
