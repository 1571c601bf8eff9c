"""The `send` function through functions-framework on embedded Postgres: a GATED workflow and its draft,
the outbox or the Gmail stand-in, a CRM recording writes, RecordingTasks and a recording event bus."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from shared import flags as flags_mod
from shared import quotas
from shared.adapters.gmail import GmailMailer, build_mailer
from shared.adapters.hubspot_crm import SandboxCrm
from shared.adapters.local_secrets import LocalSecretStore
from shared.adapters.local_store import LocalStore
from shared.adapters.outbox import OutboxMailer
from shared.bootstrap import Container
from shared.errors import RateLimited
from shared.mail.send_step import DRAFT_ONLY_REASON, KILL_SWITCH_REASON
from shared.voice.sources import google_refresh_secret
from tests.fixtures.functions import RecordingTasks, function_app
from tests.standins.gmail import GmailStandIn
from tests.standins.google import CLIENT_ID, CLIENT_SECRET

pytestmark = pytest.mark.emulator

NOW = dt.datetime.now(dt.timezone.utc)


class MailContainer(Container):
    """The container with the ``mailer`` port (``shared.bootstrap`` gains the same property)."""

    _PORTS = Container._PORTS + ("mailer",)

    @property
    def mailer(self):
        return self._get("mailer", lambda: build_mailer(self.settings, self.secrets))


class RecordingEvents:
    def __init__(self):
        self.published: list[tuple[str, dict]] = []

    def publish(self, topic, data, *, attributes=None):
        self.published.append((topic, data))
        return str(len(self.published))

    def health(self):
        return None


class RecordingCrm:
    """The CRM writes the send step uses, recorded; ``failures[kind]`` raises before creating."""

    def __init__(self):
        self.tasks: list[dict] = []
        self.notes: list[dict] = []
        self.failures: dict[str, list[Exception]] = {"task": [], "note": []}

    def create_task(self, contact_id, owner_id, subject, body, due_at, idempotency_key):
        if self.failures["task"]:
            raise self.failures["task"].pop(0)
        self.tasks.append(dict(contact_id=contact_id, owner_id=owner_id, subject=subject, body=body, due_at=due_at,
                               key=idempotency_key))
        return f"task-{len(self.tasks)}"

    def create_note(self, contact_id, body_html, timestamp, idempotency_key):
        if self.failures["note"]:
            raise self.failures["note"].pop(0)
        self.notes.append(dict(contact_id=contact_id, body=body_html, timestamp=timestamp, key=idempotency_key))
        return f"note-{len(self.notes)}"


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


@pytest.fixture
def crm():
    return RecordingCrm()


@pytest.fixture
def events():
    return RecordingEvents()


@pytest.fixture
def deps(db, store, crm, events, local_settings, install_container):
    """The container with the outbox; a test may install another mailer with ``use_mailer``."""
    container = MailContainer(local_settings, db=db, store=store, tasks=RecordingTasks(), events=events, crm=crm,
                              mailer=OutboxMailer(local_settings.data_dir))
    return install_container(container)


@pytest.fixture
def client(deps):
    return function_app("send").test_client()


@pytest.fixture
def gmail_mailer(deps, google_standin, tmp_path):
    """The Gmail adapter against the stand-in, installed as the container's mailer; yields the mailbox."""
    gmail = GmailStandIn.on(google_standin)
    secrets = LocalSecretStore(tmp_path / "gmail-secrets")
    deps._built["mailer"] = GmailMailer(secrets, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                        token_uri=google_standin.base_url + "/token",
                                        api_base_url=google_standin.base_url, timeout=5)
    gmail.secrets = secrets
    return gmail


def connect(gmail: GmailStandIn, rep_id: str) -> str:
    token = gmail.google.grant("alex")
    gmail.secrets.add_version(google_refresh_secret(rep_id), token.encode())
    return token


def gated(db, *, decision="SEND", contact_id="101", quota=False, store=None) -> tuple[str, str]:
    """A GATED workflow with its draft and rep; returns (workflow id, rep id)."""
    with db.transaction() as cur:
        cur.execute("INSERT INTO reps (email, display_name, hubspot_owner_id, google_status, google_connected_at) "
                    "VALUES ('alex@example.com', 'Alex Rivera', '42', 'connected', %s) "
                    "ON CONFLICT (email) DO UPDATE SET display_name = EXCLUDED.display_name RETURNING id",
                    (NOW - dt.timedelta(days=30),))
        rep_id = str(cur.fetchone()[0])
        cur.execute("INSERT INTO form_submissions (idempotency_key, source, payload) "
                    "VALUES (gen_random_uuid()::text, 'test', '{}') RETURNING id")
        submission = cur.fetchone()[0]
        cur.execute("INSERT INTO workflows (submission_id, rep_id, state, contact_id, lead_email) "
                    "VALUES (%s, %s, 'GATED', %s, 'lena@acme.test') RETURNING id", (submission, rep_id, contact_id))
        workflow_id = str(cur.fetchone()[0])
        context = {"lead": {"firstname": "Léna", "lastname": "Park", "time_zone": "Europe/Paris"},
                   "rep": {"id": rep_id}}
        cur.execute("INSERT INTO draft_emails (workflow_id, subject, body, model, prompt_hash, decision, reasons, "
                    "context, quota_reserved, decided_at) VALUES (%s, %s, %s, 'offline-drafter', 'h', %s, %s::jsonb, "
                    "%s::jsonb, %s, now())",
                    (workflow_id, "Your demo next week", "Hi Léna,\n\nThanks for asking about a demo.\n\nAlex",
                     decision, json.dumps(["risk 0.10 below review threshold"]), json.dumps(context), quota))
    if quota:
        granted = quotas.reserve(store, rep_id, workflow_id, quotas.Limits(per_day=5, per_week=20), NOW)
        assert granted.granted
    return workflow_id, rep_id


def allow_sending(store, *, kill_switch=False, mode=flags_mod.SEND_ALLOWED):
    flags_mod.set_flags(store, {"send_mode": mode, "kill_switch": kill_switch}, "ops@example.com", NOW)


def deliver(client, deps, workflow_id, *, retry_count=0, token=True):
    headers = {"X-CloudTasks-TaskRetryCount": str(retry_count), "X-CloudTasks-TaskName": f"send-{workflow_id}"}
    if token:
        s = deps.settings
        headers["Authorization"] = "Bearer " + deps.signer.service_token(s.audience_for("send"),
                                                                         s.tasks_service_account)
    return client.post("/", data=json.dumps({"workflow_id": workflow_id}), headers=headers,
                       content_type="application/json")


def state_of(db, workflow_id):
    return db.query("SELECT state FROM workflows WHERE id = %s", (workflow_id,))[0]["state"]


def draft_row(db, workflow_id):
    return db.query("SELECT * FROM draft_emails WHERE workflow_id = %s", (workflow_id,))[0]


def rep_day_usage(store, rep_id):
    return quotas.usage(store, rep_id, NOW).rep_day


# --- the outbox (the embedded mailer) ------------------------------------------------------------------


def test_send_decision_sends_one_email_and_logs_one_task_and_one_note(client, deps, db, store, crm, events):
    allow_sending(store)
    workflow_id, rep_id = gated(db, quota=True, store=store)
    r = deliver(client, deps, workflow_id)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["state"] == "SENT"
    assert state_of(db, workflow_id) == "SENT"
    outbox = deps.mailer
    assert [p.name for p in outbox.files("sent")] == [f"wf-{workflow_id}@example.com.eml"]
    assert outbox.files("drafts") == []
    row = draft_row(db, workflow_id)
    assert row["message_id"] == f"<wf-{workflow_id}@example.com>"
    assert row["gmail_message_id"] and row["gmail_thread_id"] and row["gmail_draft_id"] is None
    assert row["sent_at"] is not None
    assert [t["subject"] for t in crm.tasks] == ["Follow up with Léna Park"]
    task = crm.tasks[0]
    assert (task["contact_id"], task["owner_id"], task["key"]) == ("101", "42", f"task-{workflow_id}")
    assert dt.timedelta(days=2, hours=23) < task["due_at"] - NOW < dt.timedelta(days=3, hours=1)
    assert len(crm.notes) == 1 and crm.notes[0]["key"] == f"note-{workflow_id}"
    assert "Your demo next week" in crm.notes[0]["body"] and "risk 0.10 below review threshold" in crm.notes[0]["body"]
    assert {(r["kind"], r["hubspot_id"]) for r in db.query("SELECT kind, hubspot_id FROM hubspot_tasks")} == {
        ("task", "task-1"), ("note", "note-1")}
    assert events.published == [("workflow-finished", {"workflow_id": workflow_id, "state": "SENT"})]
    assert rep_day_usage(store, rep_id) == 1  # a sent email keeps its quota slot
    moves = db.query("SELECT from_state, to_state, actor FROM workflow_events WHERE workflow_id = %s ORDER BY id",
                     (workflow_id,))
    assert [(m["from_state"], m["to_state"], m["actor"]) for m in moves] == [
        ("GATED", "SENDING", "send"), ("SENDING", "SENT", "send")]


def test_a_redelivery_after_sent_changes_nothing(client, deps, db, store, crm, events):
    allow_sending(store)
    workflow_id, _ = gated(db)
    assert deliver(client, deps, workflow_id).status_code == 200
    again = deliver(client, deps, workflow_id)
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert len(deps.mailer.files("sent")) == 1 and len(crm.tasks) == 1 and len(crm.notes) == 1
    assert len(events.published) == 1


def test_draft_decision_leaves_a_draft(client, deps, db, store, crm, events):
    allow_sending(store)
    workflow_id, _ = gated(db, decision="DRAFT")
    r = deliver(client, deps, workflow_id)
    assert r.status_code == 200 and r.get_json()["state"] == "DRAFT_SAVED"
    assert deps.mailer.files("sent") == [] and len(deps.mailer.files("drafts")) == 1
    row = draft_row(db, workflow_id)
    assert row["gmail_draft_id"] and row["sent_at"] is None
    assert "waiting as a draft" in crm.tasks[0]["body"] and len(crm.notes) == 1
    assert events.published == [("workflow-finished", {"workflow_id": workflow_id, "state": "DRAFT_SAVED"})]


def test_send_decision_meeting_draft_only_is_downgraded_and_gives_its_quota_back(client, deps, db, store, crm):
    allow_sending(store, mode=flags_mod.DRAFT_ONLY)
    workflow_id, rep_id = gated(db, quota=True, store=store)
    assert rep_day_usage(store, rep_id) == 1
    r = deliver(client, deps, workflow_id)
    assert r.get_json()["state"] == "DRAFT_SAVED"
    assert deps.mailer.files("sent") == [] and len(deps.mailer.files("drafts")) == 1
    reason = db.query("SELECT reason FROM workflow_events WHERE workflow_id = %s AND to_state = 'DRAFT_SAVED'",
                      (workflow_id,))[0]["reason"]
    assert reason == DRAFT_ONLY_REASON
    assert DRAFT_ONLY_REASON in draft_row(db, workflow_id)["reasons"]
    assert rep_day_usage(store, rep_id) == 0 and draft_row(db, workflow_id)["quota_reserved"] is False


def test_kill_switch_flipped_before_delivery_blocks_and_sends_nothing(client, deps, db, store, crm, events):
    allow_sending(store)
    workflow_id, rep_id = gated(db, quota=True, store=store)
    # The flags cache is warm with "off" (as the gate left it): the send path must not use it.
    assert flags_mod.read_flags(store, max_age_seconds=600).kill_switch is False
    store.set("flags", "global", {"send_mode": "SEND_ALLOWED", "kill_switch": True}, merge=True)
    r = deliver(client, deps, workflow_id)
    assert r.status_code == 200 and r.get_json()["state"] == "BLOCKED"
    assert deps.mailer.files("sent") == [] and deps.mailer.files("drafts") == []
    assert crm.tasks == [] and crm.notes == []
    reason = db.query("SELECT reason FROM workflow_events WHERE workflow_id = %s AND to_state = 'BLOCKED'",
                      (workflow_id,))[0]["reason"]
    assert reason == KILL_SWITCH_REASON
    assert rep_day_usage(store, rep_id) == 0
    assert events.published == [("workflow-finished", {"workflow_id": workflow_id, "state": "BLOCKED"})]


def test_hubspot_429_on_the_note_is_retried_and_makes_exactly_one_note(client, deps, db, store, crm):
    allow_sending(store)
    workflow_id, _ = gated(db)
    crm.failures["note"].append(RateLimited("HubSpot is limiting requests right now."))
    first = deliver(client, deps, workflow_id)
    assert first.status_code == 429 and first.get_json()["error"] == "rate_limited"  # Cloud Tasks retries any non-2xx
    assert state_of(db, workflow_id) == "SENDING"
    errors = db.query("SELECT code, retryable, attempt FROM workflow_errors WHERE workflow_id = %s", (workflow_id,))
    assert errors == [{"code": "rate_limited", "retryable": True, "attempt": 1}]
    second = deliver(client, deps, workflow_id, retry_count=1)
    assert second.status_code == 200 and second.get_json()["state"] == "SENT"
    assert len(crm.tasks) == 1 and len(crm.notes) == 1
    assert len(deps.mailer.files("sent")) == 1


def test_the_last_attempt_gives_up_but_an_email_that_went_out_stays_sent(client, deps, db, store, crm):
    allow_sending(store)
    workflow_id, rep_id = gated(db, quota=True, store=store)
    crm.failures["task"].extend(RateLimited("HubSpot is limiting requests right now.") for _ in range(3))
    assert deliver(client, deps, workflow_id).status_code == 429
    r = deliver(client, deps, workflow_id, retry_count=7)  # attempt 8 of SEND_MAX_ATTEMPTS=8
    assert r.status_code == 200 and r.get_json()["state"] == "SENT"
    assert "HubSpot logging failed" in db.query(
        "SELECT reason FROM workflow_events WHERE workflow_id = %s AND to_state = 'SENT'", (workflow_id,))[0]["reason"]
    assert rep_day_usage(store, rep_id) == 1


def test_the_caller_must_be_the_tasks_service_account(client, deps, db, store):
    workflow_id, _ = gated(db)
    r = deliver(client, deps, workflow_id, token=False)
    assert r.status_code == 401
    assert state_of(db, workflow_id) == "GATED"


def test_a_body_without_a_workflow_id_is_answered_and_dropped(client, deps):
    s = deps.settings
    token = deps.signer.service_token(s.audience_for("send"), s.tasks_service_account)
    r = client.post("/", data="{}", headers={"Authorization": f"Bearer {token}"}, content_type="application/json")
    assert r.status_code == 200 and r.get_json()["error"] == "bad_request"


def test_the_sandbox_crm_records_the_task_and_the_note(client, deps, db, store, tmp_path):
    if not hasattr(SandboxCrm, "create_task"):
        pytest.skip("SandboxCrm.create_task/create_note are being added in shared/adapters/hubspot_crm.py")
    deps._built["crm"] = SandboxCrm(tmp_path / "sandbox")
    allow_sending(store)
    workflow_id, _ = gated(db)
    assert deliver(client, deps, workflow_id).get_json()["state"] == "SENT"
    ids = db.query("SELECT kind, hubspot_id FROM hubspot_tasks ORDER BY kind")
    assert [r["kind"] for r in ids] == ["note", "task"] and all(r["hubspot_id"] for r in ids)


# --- Gmail (the production adapter against the stand-in) -----------------------------------------------


def test_gmail_failing_after_the_send_does_not_send_twice(client, deps, db, store, gmail_mailer, events):
    allow_sending(store)
    workflow_id, rep_id = gated(db)
    connect(gmail_mailer, rep_id)
    gmail_mailer.fail_after_store(mode="500")
    first = deliver(client, deps, workflow_id)
    assert first.status_code == 503
    assert state_of(db, workflow_id) == "SENDING" and draft_row(db, workflow_id)["gmail_message_id"] is None
    assert len(gmail_mailer.messages("alex", "SENT")) == 1  # it did go out
    second = deliver(client, deps, workflow_id, retry_count=1)
    assert second.status_code == 200 and second.get_json()["state"] == "SENT"
    sent = gmail_mailer.messages("alex", "SENT")
    assert len(sent) == 1
    assert draft_row(db, workflow_id)["gmail_message_id"] == sent[0].id
    assert len(gmail_mailer.google.requests_to(r"/messages/send$")) == 1
    assert events.published == [("workflow-finished", {"workflow_id": workflow_id, "state": "SENT"})]


def test_a_gmail_429_is_retried_and_recorded(client, deps, db, store, gmail_mailer):
    allow_sending(store)
    workflow_id, rep_id = gated(db)
    connect(gmail_mailer, rep_id)
    gmail_mailer.google.fail_next(429, {"error": {"code": 429, "message": "Too many requests",
                                                  "errors": [{"reason": "rateLimitExceeded"}]}},
                                  path=r"/messages/send$")
    assert deliver(client, deps, workflow_id).status_code == 429
    assert deliver(client, deps, workflow_id, retry_count=1).get_json()["state"] == "SENT"
    assert len(gmail_mailer.messages("alex", "SENT")) == 1
    assert [e["code"] for e in db.query("SELECT code FROM workflow_errors")] == ["rate_limited"]


def test_gmail_down_on_the_last_attempt_fails_the_workflow_and_gives_the_quota_back(client, deps, db, store,
                                                                                  gmail_mailer, events):
    allow_sending(store)
    workflow_id, rep_id = gated(db, quota=True, store=store)
    connect(gmail_mailer, rep_id)
    gmail_mailer.google.fail_next(503, {"error": {"code": 503, "message": "unavailable"}}, path="/gmail/", times=5)
    r = deliver(client, deps, workflow_id, retry_count=7)
    assert r.status_code == 200 and r.get_json()["state"] == "FAILED"
    assert "gave up after 8 attempts" in db.query(
        "SELECT reason FROM workflow_events WHERE to_state = 'FAILED'")[0]["reason"]
    assert rep_day_usage(store, rep_id) == 0 and gmail_mailer.messages("alex") == []
    assert events.published == [("workflow-finished", {"workflow_id": workflow_id, "state": "FAILED"})]


def test_a_revoked_grant_blocks_marks_the_rep_and_asks_for_a_reconnect(client, deps, db, store, crm, gmail_mailer):
    allow_sending(store)
    workflow_id, rep_id = gated(db, quota=True, store=store)
    gmail_mailer.google.revoke(connect(gmail_mailer, rep_id))
    r = deliver(client, deps, workflow_id)
    assert r.status_code == 200 and r.get_json()["state"] == "BLOCKED"
    assert db.query("SELECT google_status FROM reps WHERE id = %s", (rep_id,))[0]["google_status"] == "revoked"
    assert [t["subject"] for t in crm.tasks] == ["Reconnect your Google account"]
    assert crm.tasks[0]["owner_id"] == "42" and crm.notes == []
    assert rep_day_usage(store, rep_id) == 0
    assert gmail_mailer.messages("alex") == []
    # A second blocked workflow of the same rep does not ask again.
    other, _ = gated(db)
    assert deliver(client, deps, other).get_json()["state"] == "BLOCKED"
    assert len(crm.tasks) == 1
    assert db.query("SELECT count(*) AS n FROM hubspot_tasks WHERE purpose = 'reconnect_google'")[0]["n"] == 1


def test_a_task_delivered_twice_at_once_sends_one_email(deps, db, store, gmail_mailer):
    allow_sending(store)
    workflow_id, rep_id = gated(db)
    connect(gmail_mailer, rep_id)
    # The send is slow (stored, then answered a second later), so the two deliveries overlap.
    gmail_mailer.fail_after_store(mode="timeout", hold_seconds=1.0)
    app = function_app("send")
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def run():
        with app.test_client() as own:
            barrier.wait()
            statuses.append(deliver(own, deps, workflow_id).status_code)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) in ([200, 200], [200, 503])
    assert len(gmail_mailer.messages("alex", "SENT")) == 1
    if 503 in statuses:  # the loser's retry finds the workflow finished
        again = deliver(app.test_client(), deps, workflow_id, retry_count=1)
        assert again.get_json()["status"] == "duplicate"
    assert state_of(db, workflow_id) == "SENT"
    assert len(gmail_mailer.messages("alex", "SENT")) == 1
    assert len(gmail_mailer.google.requests_to(r"/messages/send$")) == 1


def test_a_redelivery_arriving_mid_send_waits_for_the_first(deps, db, store, gmail_mailer):
    allow_sending(store)
    workflow_id, rep_id = gated(db)
    connect(gmail_mailer, rep_id)
    # The first delivery's mailbox lookup is slow: the second arrives while the workflow is SENDING and
    # nothing is in the mailbox yet, the one moment the lookup alone cannot protect.
    gmail_mailer.delay(r"/messages$", 1.5)
    app = function_app("send")
    first_status: list[int] = []
    first = threading.Thread(target=lambda: first_status.append(deliver(app.test_client(), deps, workflow_id)
                                                                .status_code))
    first.start()
    for _ in range(200):
        if state_of(db, workflow_id) == "SENDING":
            break
        threading.Event().wait(0.01)
    second = deliver(app.test_client(), deps, workflow_id, retry_count=1)
    first.join(30)
    assert second.status_code == 503 and second.get_json()["error"] == "send_in_progress"
    assert first_status == [200] and state_of(db, workflow_id) == "SENT"
    assert len(gmail_mailer.messages("alex", "SENT")) == 1


def test_no_address_or_token_reaches_the_logs(client, deps, db, store, gmail_mailer, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    allow_sending(store)
    workflow_id, rep_id = gated(db)
    refresh = connect(gmail_mailer, rep_id)
    gmail_mailer.fail_after_store(mode="500")
    assert deliver(client, deps, workflow_id).status_code == 503
    assert deliver(client, deps, workflow_id, retry_count=1).get_json()["state"] == "SENT"
    issued = list(gmail_mailer.google.access_tokens)
    assert issued and "workflow moved" in caplog.text
    for secret in ["lena@acme.test", "alex@example.com", refresh, *issued]:
        assert secret not in caplog.text
