"""POST /webhook/hubspot through functions-framework on embedded Postgres: signatures, batches, duplicates."""

from __future__ import annotations

import json
import time

import pytest

from shared.auth import hubspot_v3_headers, sign_hubspot_legacy
from shared.bootstrap import Container
from tests.fixtures.functions import RecordingTasks, function_app

pytestmark = pytest.mark.emulator

SECRET = "local-hubspot-secret"


@pytest.fixture
def tasks():
    return RecordingTasks()


@pytest.fixture
def client(db, tasks, local_settings, install_container):
    install_container(Container(local_settings, db=db, tasks=tasks))
    return function_app("webhook").test_client()


def _post(client, body, *, query="", secret=SECRET, now=None, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    uri = "http://127.0.0.1:8080/webhook/hubspot" + (f"?{query}" if query else "")
    signed = hubspot_v3_headers(secret, "POST", uri, raw, now=now)
    return client.post("/hubspot" + (f"?{query}" if query else ""), data=raw,
                       headers={**signed, **(headers or {}), "Content-Type": "application/json"})


def event(event_id, contact_id, kind="contact.creation", **extra):
    return {"eventId": event_id, "subscriptionId": 7, "portalId": 4242, "appId": 1, "occurredAt": 1764000000000,
            "subscriptionType": kind, "attemptNumber": 0, "objectId": contact_id, **extra}


def workflow_count(db):
    return db.query("SELECT count(*) AS n FROM workflows")[0]["n"]


def test_one_event_becomes_one_workflow_and_one_named_draft_task(client, db, tasks):
    r = _post(client, [event(1, 501)])
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
    wf = db.query("SELECT id, state, contact_id FROM workflows")
    assert len(wf) == 1 and wf[0]["state"] == "RECEIVED" and wf[0]["contact_id"] == "501"
    assert [t.name for t in tasks.tasks] == [f"draft-{wf[0]['id']}"]
    assert tasks.tasks[0].target == "draft" and tasks.tasks[0].payload == {"workflow_id": str(wf[0]["id"])}
    events = db.query("SELECT to_state, actor FROM workflow_events")
    assert events == [{"to_state": "RECEIVED", "actor": "webhook"}]


def test_a_replayed_delivery_changes_nothing(client, db, tasks):
    body = [event(1, 501), event(2, 502)]
    assert _post(client, body).get_json()["accepted"] == 2
    again = _post(client, list(reversed(body)))
    assert again.get_json() == {"accepted": 0, "duplicates": 2, "ignored": 0}
    assert workflow_count(db) == 2
    assert len(tasks.tasks) == 2  # re-enqueued under the same names: deduplicated


def test_a_batch_of_100_with_duplicates_and_noise_in_any_order(client, db, tasks):
    batch = [event(i, 1000 + i) for i in range(100)]
    batch += [event(5, 1005), event(7, 1007)]  # duplicates inside the batch
    batch += [event(900, 77, kind="contact.propertyChange", propertyName="lastname", propertyValue="X"),
              event(901, 78, kind="deal.creation")]
    batch.reverse()
    r = _post(client, batch)
    assert r.get_json() == {"accepted": 100, "duplicates": 0, "ignored": 2}
    assert workflow_count(db) == 100 and len(tasks.tasks) == 100


def test_conversion_property_changes_count_as_submissions(client, db):
    r = _post(client, [event(3, 600, kind="contact.propertyChange", propertyName="recent_conversion_date",
                             propertyValue="1764000000000")])
    assert r.get_json()["accepted"] == 1


def test_workflow_webhook_object_in_both_property_shapes(client, db):
    flat = {"objectId": 901, "properties": {"email": "Lena@Acme.test", "firstname": "Lena",
                                            "message": "Can we see a demo?"}}
    r = _post(client, flat)
    assert r.get_json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
    assert _post(client, flat).get_json()["duplicates"] == 1
    v1 = {"vid": 902, "properties": {"email": {"value": "joe@acme.test"}},
          "form-submissions": [{"conversion-id": "c-123", "timestamp": 1764000000000, "form-id": "f-1"}]}
    assert _post(client, v1).get_json()["accepted"] == 1
    row = db.query("SELECT email, form_id, idempotency_key FROM form_submissions WHERE contact_id = '902'")[0]
    assert row == {"email": "joe@acme.test", "form_id": "f-1", "idempotency_key": "hubspot-submission:c-123"}
    lead = db.query("SELECT lead_email FROM workflows w JOIN form_submissions f ON f.id = w.submission_id "
                    "WHERE f.contact_id = '901'")[0]
    assert lead["lead_email"] == "lena@acme.test"


@pytest.mark.parametrize("case", ["forged", "wrong-secret", "stale", "missing", "tampered-query"])
def test_bad_signatures_are_401_and_store_nothing(client, db, tasks, case):
    body = [event(1, 501)]
    if case == "forged":
        r = _post(client, body, headers={"X-HubSpot-Signature-v3": "bm9wZQ=="})
    elif case == "wrong-secret":
        r = _post(client, body, secret="someone-else")
    elif case == "stale":
        r = _post(client, body, now=time.time() - 301)
    elif case == "missing":
        r = client.post("/hubspot", data=json.dumps(body), content_type="application/json")
    else:
        raw = json.dumps(body).encode()
        signed = hubspot_v3_headers(SECRET, "POST", "http://127.0.0.1:8080/webhook/hubspot?a=1", raw)
        r = client.post("/hubspot?a=2", data=raw, headers=signed, content_type="application/json")
    assert r.status_code == 401 and r.get_json()["error"] == "unauthenticated"
    assert workflow_count(db) == 0 and tasks.tasks == []


def test_legacy_v2_signature_is_accepted(client, db):
    raw = json.dumps([event(11, 511)]).encode()
    uri = "http://127.0.0.1:8080/webhook/hubspot"
    sig = sign_hubspot_legacy(SECRET, "v2", "POST", uri, raw)
    r = client.post("/hubspot", data=raw, content_type="application/json",
                    headers={"X-HubSpot-Signature": sig, "X-HubSpot-Signature-Version": "v2"})
    assert r.status_code == 200 and r.get_json()["accepted"] == 1


def test_malformed_bodies_are_400_after_a_valid_signature(client, db):
    assert _post(client, b"{not json").status_code == 400
    assert _post(client, [{"no": "event id"}]).status_code == 400
    assert _post(client, {"properties": {}}).status_code == 400
    assert _post(client, "just a string").status_code == 400
    assert workflow_count(db) == 0


def test_queue_down_answers_503_and_the_retry_enqueues(client, db, tasks):
    tasks.fail_next = 1
    body = [event(1, 501)]
    r = _post(client, body)
    assert r.status_code == 503
    assert workflow_count(db) == 1 and tasks.tasks == []  # stored, nothing lost
    r = _post(client, body)  # HubSpot retries the delivery
    assert r.get_json() == {"accepted": 0, "duplicates": 1, "ignored": 0}
    assert len(tasks.tasks) == 1


def test_oversized_bodies_are_413(client):
    r = client.post("/hubspot", data=b"[" + b" " * (1024 * 1024 + 10) + b"]", content_type="application/json")
    assert r.status_code == 413


def test_a_property_change_with_a_non_text_property_name_is_ignored_not_a_crash(client, db):
    # Found by the parser fuzz: a list where HubSpot sends a property name.
    r = _post(client, [event(21, 521, kind="contact.propertyChange", propertyName=["recent_conversion_date"])])
    assert r.status_code == 200 and r.get_json() == {"accepted": 0, "duplicates": 0, "ignored": 1}
