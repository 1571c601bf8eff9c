"""The `gate` function through functions-framework, on embedded Postgres, with Pub/Sub push bodies."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import flags, quotas
from shared.bootstrap import Container
from shared.gate import breakers
from shared.gate.schedule import in_business_hours
from shared.gate.step import gate_step, release_for
from tests.fixtures.functions import RecordingTasks, function_app

pytestmark = pytest.mark.emulator

UTC = dt.timezone.utc
OPS = "ops@example.com"
LEAD_ZONE = "America/Los_Angeles"
CARD = "4111 1111 1111 1111"


@pytest.fixture
def tasks():
    return RecordingTasks()


@pytest.fixture
def stack(db, tasks, local_settings, install_container):
    return install_container(Container(local_settings, db=db, tasks=tasks))


@pytest.fixture
def client(stack):
    return function_app("gate").test_client()


def now():
    return dt.datetime.now(UTC)


def make_rep(db, email="alex@example.com", connected_days_ago=60):
    connected = now() - dt.timedelta(days=connected_days_ago)
    return str(db.query("INSERT INTO reps (email, display_name, time_zone, google_status, google_connected_at) "
                        "VALUES (%s, 'Alex', 'America/New_York', 'connected', %s) RETURNING id",
                        (email, connected))[0]["id"])


def make_workflow(db, rep_id, *, body="Hi Lena,\n\nHappy to show you around. Does Tuesday work?\n\nAlex",
                  voice_score=0.8, context_changes=None, state="DRAFTED"):
    """A workflow in ``state`` with its draft, as the draft step leaves it."""
    sub = db.query("INSERT INTO form_submissions (idempotency_key, source, contact_id, email, payload) "
                   "VALUES (%s, 'workflow_webhook', '901', 'lena@acme.test', '{}'::jsonb) RETURNING id",
                   (f"test:{uuid.uuid4()}",))[0]["id"]
    wf = str(db.query("INSERT INTO workflows (submission_id, rep_id, state, contact_id, lead_email) "
                      "VALUES (%s, %s, %s, '901', 'lena@acme.test') RETURNING id", (sub, rep_id, state))[0]["id"])
    context = {
        "lead": {"email": "lena@acme.test", "first_name": "Lena", "last_name": "Park",
                 "message": "Could we see a demo next week?", "time_zone": LEAD_ZONE, "opted_out": False,
                 "contact_id": "901"},
        "company": {"name": "Acme", "domain": "acme.test", "lifecycle_stage": "lead", "industry": "Software",
                    "employees": 120},
        "rep": {"id": rep_id, "email": "alex@example.com", "name": "Alex", "time_zone": "America/New_York"},
        "allowed_links": ["https://example.com/case-study"],
        "supported_text": "We helped 40 customers cut onboarding time by 30%.",
        "recent_contact_days": None,
    }
    for key, value in (context_changes or {}).items():
        context[key] = {**context[key], **value} if isinstance(value, dict) else value
    db.query("INSERT INTO draft_emails (workflow_id, subject, body, model, prompt_hash, voice_score, context) "
             "VALUES (%s, 'A demo next week', %s, 'offline-drafter', 'h', %s, %s::jsonb) RETURNING id",
             (wf, body, voice_score, json.dumps(context)))
    return wf


def push_body(workflow_id, message_id="1"):
    data = base64.b64encode(json.dumps({"workflow_id": workflow_id}).encode()).decode()
    return {"message": {"data": data, "messageId": message_id, "publishTime": "2025-01-29T15:00:00Z",
                        "attributes": {}},
            "subscription": "projects/local-project/subscriptions/draft-created-gate"}


def token(stack, account=None):
    s = stack.settings
    return stack.signer.service_token(s.audience_for("gate"), account or s.pubsub_service_account)


def deliver(client, stack, workflow_id, *, headers=None, message_id="1"):
    headers = {"Authorization": f"Bearer {token(stack)}"} if headers is None else headers
    return client.post("/", json=push_body(workflow_id, message_id), headers=headers)


def draft_row(db, wf):
    return db.query("SELECT d.decision, d.reasons, d.risk_score, d.decided_at, d.quota_reserved, w.state, "
                    "w.scheduled_send_at FROM draft_emails d JOIN workflows w ON w.id = d.workflow_id "
                    "WHERE d.workflow_id = %s", (wf,))[0]


def allow_sending(stack):
    flags.set_flags(stack.store, {"send_mode": "SEND_ALLOWED"}, OPS, now())


# --- decisions ---------------------------------------------------------------------------------------


def test_send_allowed_sends_in_the_leads_business_hours(client, stack, db, tasks):
    allow_sending(stack)
    wf = make_workflow(db, make_rep(db))
    r = deliver(client, stack, wf)
    assert r.status_code == 200, r.get_data()
    row = draft_row(db, wf)
    assert (row["decision"], row["state"], row["quota_reserved"]) == ("SEND", "GATED", True)
    assert row["reasons"] and "All checks passed" in row["reasons"][0]
    assert row["risk_score"] == 0 and row["decided_at"] is not None
    [task] = tasks.tasks
    assert (task.target, task.name, task.payload) == ("send", f"send-{wf}", {"workflow_id": wf})
    assert task.schedule_at == row["scheduled_send_at"]
    assert in_business_hours(task.schedule_at, [LEAD_ZONE])
    assert quotas.usage(stack.store, make_rep_id(db), now()).rep_day == 1


def make_rep_id(db):
    return str(db.query("SELECT id FROM reps LIMIT 1")[0]["id"])


def test_draft_only_leaves_a_draft_and_reserves_no_quota(client, stack, db, tasks):
    wf = make_workflow(db, make_rep(db))  # a fresh project is DRAFT_ONLY
    assert deliver(client, stack, wf).status_code == 200
    row = draft_row(db, wf)
    assert (row["decision"], row["state"], row["quota_reserved"]) == ("DRAFT", "GATED", False)
    assert any("DRAFT_ONLY" in reason for reason in row["reasons"])
    [task] = tasks.tasks
    assert task.name == f"send-{wf}" and in_business_hours(task.schedule_at, [LEAD_ZONE])
    assert quotas.usage(stack.store, make_rep_id(db), now()).rep_day == 0


def blocked(db, wf):
    row = draft_row(db, wf)
    event = db.query("SELECT to_state, actor, reason FROM workflow_events WHERE workflow_id = %s "
                     "ORDER BY id DESC LIMIT 1", (wf,))[0]
    return row, event


def test_kill_switch_blocks(client, stack, db, tasks):
    allow_sending(stack)
    flags.set_flags(stack.store, {"kill_switch": True}, OPS, now())
    wf = make_workflow(db, make_rep(db))
    assert deliver(client, stack, wf).status_code == 200
    row, event = blocked(db, wf)
    assert (row["decision"], row["state"], row["quota_reserved"]) == ("BLOCK", "BLOCKED", False)
    assert (event["to_state"], event["actor"]) == ("BLOCKED", "gate") and "kill switch is on" in event["reason"]
    assert tasks.tasks == [] and row["scheduled_send_at"] is None


def test_guardrail_blocks(client, stack, db, tasks):
    allow_sending(stack)
    flags.set_guardrails(stack.store, {"allowed_industries": ["Healthcare"]}, OPS, now())
    wf = make_workflow(db, make_rep(db))
    assert deliver(client, stack, wf).status_code == 200
    row, event = blocked(db, wf)
    assert row["decision"] == "BLOCK" and "industry Software is not one of Healthcare" in event["reason"]
    assert tasks.tasks == []


def test_pii_blocks(client, stack, db, tasks):
    allow_sending(stack)
    wf = make_workflow(db, make_rep(db), body=f"Hi Lena, the card on file is {CARD}.")
    assert deliver(client, stack, wf).status_code == 200
    row, event = blocked(db, wf)
    assert row["decision"] == "BLOCK" and "payment card number" in event["reason"]
    assert tasks.tasks == []


def test_quota_race_fifty_workflows_against_twenty(stack, db, tasks):
    allow_sending(stack)
    rep = make_rep(db)
    flags.set_quota_limits(stack.store, rep, {"per_day": 20, "per_week": 100}, OPS, now())
    workflows = [make_workflow(db, rep) for _ in range(50)]
    app = function_app("gate")

    def run(wf):
        return deliver(app.test_client(), stack, wf).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(run, workflows)) == {200}
    decisions = db.query("SELECT decision, quota_reserved, count(*) AS n FROM draft_emails "
                         "GROUP BY decision, quota_reserved ORDER BY decision")
    assert decisions == [{"decision": "DRAFT", "quota_reserved": False, "n": 30},
                         {"decision": "SEND", "quota_reserved": True, "n": 20}]
    refused = db.query("SELECT reasons FROM draft_emails WHERE decision = 'DRAFT' LIMIT 1")[0]["reasons"]
    assert "daily limit of 20" in refused[0] and "can still send" in refused[0]
    assert len(tasks.tasks) == 50 and quotas.usage(stack.store, rep, now()).rep_day == 20


def test_warm_up_limits_a_newly_connected_mailbox(stack, db, tasks):
    allow_sending(stack)
    rep = make_rep(db, connected_days_ago=0)
    flags.set_quota_limits(stack.store, rep, {"per_day": 50, "per_week": 200}, OPS, now())
    results = [gate_step(stack, make_workflow(db, rep), now=now())["action"] for _ in range(12)]
    assert results.count("SEND") == 10 and results.count("DRAFT") == 2
    refused = db.query("SELECT reasons FROM draft_emails WHERE decision = 'DRAFT' LIMIT 1")[0]["reasons"]
    assert "warm-up daily limit of 10" in refused[0]


# --- idempotency -------------------------------------------------------------------------------------


def test_a_duplicate_event_changes_nothing(client, stack, db, tasks):
    allow_sending(stack)
    rep = make_rep(db)
    wf = make_workflow(db, rep)
    assert deliver(client, stack, wf).status_code == 200
    before = (draft_row(db, wf), db.query("SELECT count(*) AS n FROM workflow_events")[0]["n"])
    for message_id in ("1", "2"):
        assert deliver(client, stack, wf, message_id=message_id).status_code == 200
    assert (draft_row(db, wf), db.query("SELECT count(*) AS n FROM workflow_events")[0]["n"]) == before
    assert len(tasks.tasks) == 1 and quotas.usage(stack.store, rep, now()).rep_day == 1


def test_a_lost_enqueue_is_healed_by_the_redelivery(client, stack, db, tasks):
    wf = make_workflow(db, make_rep(db))
    tasks.fail_next = 1
    assert deliver(client, stack, wf).status_code == 503  # Pub/Sub will redeliver
    assert draft_row(db, wf)["state"] == "GATED" and tasks.tasks == []
    assert deliver(client, stack, wf).status_code == 200
    [task] = tasks.tasks
    assert task.name == f"send-{wf}" and task.schedule_at == draft_row(db, wf)["scheduled_send_at"]


def test_concurrent_deliveries_of_one_event_decide_once(stack, db, tasks):
    allow_sending(stack)
    rep = make_rep(db)
    wf = make_workflow(db, rep)
    app = function_app("gate")
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda _: deliver(app.test_client(), stack, wf).status_code, range(6)))
    assert codes == [200] * 6
    assert db.query("SELECT count(*) AS n FROM workflow_events WHERE workflow_id = %s AND to_state = 'GATED'",
                    (wf,))[0]["n"] == 1
    assert len(tasks.tasks) == 1 and quotas.usage(stack.store, rep, now()).rep_day == 1


def test_release_for_gives_the_quota_back(stack, db):
    allow_sending(stack)
    rep = make_rep(db)
    wf = make_workflow(db, rep)
    assert gate_step(stack, wf, now=now())["action"] == "SEND"
    assert release_for(stack, wf) is True
    assert quotas.usage(stack.store, rep, now()).rep_day == 0 and draft_row(db, wf)["quota_reserved"] is False
    assert release_for(stack, wf) is False


# --- Gmail down --------------------------------------------------------------------------------------


def test_gmail_open_holds_the_event_for_redelivery(client, stack, db, tasks):
    allow_sending(stack)
    wf = make_workflow(db, make_rep(db))
    for _ in range(20):
        breakers.record(stack.store, "gmail", False, now())
    r = deliver(client, stack, wf)
    assert r.status_code == 503 and r.get_json()["error"] == "unavailable"
    assert draft_row(db, wf)["state"] == "DRAFTED" and tasks.tasks == []


def test_gmail_open_for_too_long_fails_the_workflow_visibly(stack, db, tasks):
    wf = make_workflow(db, make_rep(db))
    later = now() + dt.timedelta(days=2)
    stack.store.set(breakers.STATES, "gmail", {"state": "open", "opened_at": later})
    result = gate_step(stack, wf, now=later)
    assert result["status"] == "failed" and result["error"] == "gmail_unavailable"
    assert draft_row(db, wf)["state"] == "FAILED"
    error = db.query("SELECT step, code, retryable FROM workflow_errors WHERE workflow_id = %s", (wf,))
    assert error == [{"step": "gate", "code": "gmail_unavailable", "retryable": True}]


# --- callers and bad events --------------------------------------------------------------------------


@pytest.mark.parametrize("case, status", [("missing", 401), ("garbage", 401), ("tasks-account", 403)])
def test_callers_without_the_push_token_are_refused(client, stack, db, tasks, case, status):
    wf = make_workflow(db, make_rep(db))
    headers = {"missing": {}, "garbage": {"Authorization": "Bearer not-a-token"},
               "tasks-account": {"Authorization": f"Bearer {token(stack, stack.settings.tasks_service_account)}"}}
    r = deliver(client, stack, wf, headers=headers[case])
    assert r.status_code == status
    assert draft_row(db, wf)["state"] == "DRAFTED" and tasks.tasks == []


def test_a_malformed_event_is_acknowledged_not_retried(client, stack, caplog):
    bad = push_body("x")
    bad["message"]["data"] = base64.b64encode(b"not json").decode()
    with caplog.at_level(logging.WARNING):
        r = client.post("/", json=bad, headers={"Authorization": f"Bearer {token(stack)}"})
    assert r.status_code == 200
    assert any(rec.getMessage() == "gate event dropped" for rec in caplog.records)


def test_an_unknown_workflow_is_acknowledged(client, stack, tasks):
    assert deliver(client, stack, str(uuid.uuid4())).status_code == 200 and tasks.tasks == []


def test_a_workflow_without_a_draft_fails_permanently(client, stack, db, tasks):
    wf = make_workflow(db, make_rep(db))
    db.query("DELETE FROM draft_emails WHERE workflow_id = %s RETURNING id", (wf,))
    assert deliver(client, stack, wf).status_code == 200
    assert db.query("SELECT state FROM workflows WHERE id = %s", (wf,))[0]["state"] == "FAILED"
    assert db.query("SELECT code FROM workflow_errors WHERE workflow_id = %s", (wf,)) == [{"code": "missing_draft"}]


def test_a_workflow_not_yet_drafted_is_skipped(client, stack, db, tasks):
    wf = make_workflow(db, make_rep(db), state="DRAFTING")
    assert deliver(client, stack, wf).status_code == 200
    assert draft_row(db, wf)["state"] == "DRAFTING" and tasks.tasks == []


def test_no_lead_address_in_the_logs(client, stack, db, caplog):
    allow_sending(stack)
    wf = make_workflow(db, make_rep(db), body=f"Card {CARD}")
    with caplog.at_level(logging.DEBUG):
        assert deliver(client, stack, wf).status_code == 200
    text = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "gate decided" in text
    assert "lena@acme.test" not in text and "4111" not in text
