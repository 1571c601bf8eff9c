"""Gmail push through the `webhook` function (`POST /gmail`) with Pub/Sub OIDC tokens from the local signer,
against the Gmail stand-in and embedded Postgres."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from shared.gate.step import send_task
from shared.voice.sources import google_refresh_secret
from tests.fixtures.functions import function_app

pytestmark = pytest.mark.emulator

ALEX = "alex@example.com"
LEAD = "jordan@acme.io"


@pytest.fixture
def client(lifecycle):
    return function_app("webhook").test_client()


@pytest.fixture
def rep(lifecycle, google_world, db):
    rows = db.query("INSERT INTO reps (email, display_name, google_status, gmail_history_id, google_connected_at) "
                    "VALUES (%s, 'Alex', 'connected', %s, now()) RETURNING id",
                    (ALEX, google_world.gmail.mailbox(ALEX).history_id))
    rep_id = str(rows[0]["id"])
    lifecycle.secrets.add_version(google_refresh_secret(rep_id), google_world.google.grant(ALEX).encode())
    return rep_id


def _push(client, lifecycle, history_id, email=ALEX, token=True):
    data = base64.b64encode(json.dumps({"emailAddress": email, "historyId": history_id}).encode()).decode()
    body = {"message": {"data": data, "messageId": "1", "publishTime": "2025-01-13T10:00:00Z"},
            "subscription": "projects/local-project/subscriptions/gmail-push-webhook"}
    headers = {}
    if token:
        s = lifecycle.settings
        headers["Authorization"] = "Bearer " + lifecycle.signer.service_token(s.audience_for("webhook"),
                                                                              s.pubsub_service_account)
    return client.post("/gmail", json=body, headers=headers)


def _workflow(db, rep_id, state, thread_id=None, lead=LEAD):
    sub = db.query("INSERT INTO form_submissions (idempotency_key, source, payload) VALUES (gen_random_uuid()::text, "
                   "'test', '{}') RETURNING id")[0]["id"]
    wf = str(db.query("INSERT INTO workflows (submission_id, rep_id, state, lead_email, contact_id) "
                      "VALUES (%s, %s, %s, %s, '501') RETURNING id", (sub, rep_id, state, lead))[0]["id"])
    if thread_id:
        db.query("INSERT INTO draft_emails (workflow_id, subject, body, model, prompt_hash, gmail_thread_id, "
                 "gmail_message_id, message_id) VALUES (%s, 'Hello', 'Hi', 'm', 'h', %s, %s, %s) RETURNING id",
                 (wf, thread_id, f"sent-{wf}", f"<wf-{wf}@example.com>"))
    return wf


def _state(db, wf):
    return db.query("SELECT state FROM workflows WHERE id = %s", (wf,))[0]["state"]


def _history_id(db, rep_id):
    return int(db.query("SELECT gmail_history_id FROM reps WHERE id = %s", (rep_id,))[0]["gmail_history_id"])


def test_a_push_without_a_pubsub_token_is_refused(client, lifecycle, rep):
    assert _push(client, lifecycle, 5000, token=False).status_code == 401


def test_a_reply_from_the_lead_marks_the_workflow_replied_and_cancels_scheduled_sends(
        client, lifecycle, google_world, db, rep):
    sent = _workflow(db, rep, "SENT", thread_id="thread-1")
    scheduled = _workflow(db, rep, "GATED")
    lifecycle.tasks.enqueue(send_task(scheduled, None))
    reply = google_world.gmail.add_message(ALEX, sender=f"Jordan <{LEAD}>", to=ALEX, subject="Re: Hello",
                                           body="Sounds good, let's talk.", thread_id="thread-1")
    answer = _push(client, lifecycle, reply.history_id)
    assert answer.status_code == 200
    assert answer.get_json()["replies"] == 2
    assert _state(db, sent) == "REPLIED" and _state(db, scheduled) == "REPLIED"
    assert not [t for t in lifecycle.tasks.tasks if t.name == f"send-{scheduled}"]
    assert _history_id(db, rep) == reply.history_id
    events = db.query("SELECT actor, to_state FROM workflow_events WHERE workflow_id = %s ORDER BY id", (sent,))
    assert events[-1] == {"actor": "gmail", "to_state": "REPLIED"}


def test_a_message_from_someone_else_in_the_thread_is_not_a_reply(client, lifecycle, google_world, db, rep):
    sent = _workflow(db, rep, "SENT", thread_id="thread-1")
    note = google_world.gmail.add_message(ALEX, sender="colleague@acme.io", to=ALEX, subject="Re: Hello",
                                          body="FYI", thread_id="thread-1")
    assert _push(client, lifecycle, note.history_id).get_json()["replies"] == 0
    assert _state(db, sent) == "SENT"


def test_duplicate_and_out_of_order_notifications_are_harmless(client, lifecycle, google_world, db, rep):
    sent = _workflow(db, rep, "SENT", thread_id="thread-1")
    first = google_world.gmail.add_message(ALEX, sender=LEAD, to=ALEX, subject="Re", body="Yes", thread_id="thread-1")
    later = google_world.gmail.add_message(ALEX, sender="x@y.io", to=ALEX, subject="Other", body="Hi")
    assert _push(client, lifecycle, later.history_id).get_json()["status"] == "synced"
    assert _history_id(db, rep) == later.history_id
    history_calls = len(google_world.google.requests_to(r"/history$"))
    # The older notification arrives late, then the newer one again.
    stale = _push(client, lifecycle, first.history_id).get_json()
    again = _push(client, lifecycle, later.history_id).get_json()
    assert stale["reason"] == again["reason"] == "already_synced"
    assert _history_id(db, rep) == later.history_id
    assert len(google_world.google.requests_to(r"/history$")) == history_calls
    assert _state(db, sent) == "REPLIED"
    assert db.query("SELECT count(*) AS n FROM workflow_events WHERE workflow_id = %s AND to_state = 'REPLIED'",
                    (sent,))[0]["n"] == 1


def test_an_expired_history_id_falls_back_to_a_bounded_full_sync(client, lifecycle, google_world, db, rep):
    sent = _workflow(db, rep, "SENT", thread_id="thread-9")
    google_world.gmail.add_message(ALEX, sender=LEAD, to=ALEX, subject="Re", body="Call me", thread_id="thread-9")
    google_world.gmail.add_message(ALEX, sender=LEAD, to=ALEX, subject="Old", body="Old", age=dt.timedelta(days=30))
    google_world.gmail.expire_history(ALEX)
    newest = google_world.gmail.add_message(ALEX, sender="a@b.io", to=ALEX, subject="x", body="y")
    google_world.gmail.expire_history(ALEX)
    answer = _push(client, lifecycle, newest.history_id).get_json()
    assert answer["mode"] == "full" and answer["messages"] == 2  # the 30-day-old message is outside the window
    assert _state(db, sent) == "REPLIED"
    assert _history_id(db, rep) == newest.history_id
    listing = google_world.google.requests_to(r"/messages$")[-1]
    assert listing.query["q"] == "newer_than:7d" and int(listing.query["maxResults"]) <= 500


def test_sent_mail_becomes_a_voice_sample_only_when_the_rep_opted_in(client, lifecycle, google_world, db, rep):
    text = "Hi Sam,\n\nThanks for the time today. I'll send the proposal by Friday.\n\nBest,\nAlex"
    first = google_world.gmail.add_message(ALEX, sender=ALEX, to="sam@client.io", subject="Proposal", body=text,
                                           labels=("SENT",))
    assert _push(client, lifecycle, first.history_id).get_json()["samples"] == 0
    db.query("UPDATE reps SET sync_sent_mail = true WHERE id = %s RETURNING id", (rep,))
    second = google_world.gmail.add_message(ALEX, sender=ALEX, to="sam@client.io", subject="Proposal v2",
                                            body=text + "\nP.S. see you soon", labels=("SENT",))
    # The system's own sent follow-up is not learned from.
    wf = _workflow(db, rep, "SENT", thread_id="t-own")
    own = google_world.gmail.add_message(ALEX, sender=ALEX, to=LEAD, subject="Hello", body="Our own draft",
                                         labels=("SENT",), message_id=f"<wf-{wf}@example.com>")
    duplicate = google_world.gmail.add_message(ALEX, sender=ALEX, to="sam@client.io", subject="Fwd",
                                               body=text + "\nP.S.   see you soon", labels=("SENT",))
    answer = _push(client, lifecycle, duplicate.history_id).get_json()
    assert answer["samples"] == 1
    rows = db.query("SELECT id, source_type, source_id, status, blob_key FROM training_samples WHERE rep_id = %s",
                    (rep,))
    assert [(r["source_type"], r["source_id"], r["status"]) for r in rows] == [("gmail", second.id, "queued")]
    assert b"proposal by Friday" in lifecycle.blobs.get(rows[0]["blob_key"])
    assert [t.name for t in lifecycle.tasks.tasks] == [f"extract-{rows[0]['id']}"]
    assert own.id not in {r["source_id"] for r in rows}


def test_an_unknown_mailbox_is_acknowledged_and_ignored(client, lifecycle, rep):
    answer = _push(client, lifecycle, 5000, email="stranger@example.com")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ignored", "reason": "unknown_rep"}


def test_a_gmail_outage_is_answered_503_so_pubsub_redelivers(client, lifecycle, google_world, db, rep):
    message = google_world.gmail.add_message(ALEX, sender=LEAD, to=ALEX, subject="Re", body="x")
    google_world.google.fail_next(503, {"error": {"code": 503, "message": "backend"}}, path=r"/history$")
    assert _push(client, lifecycle, message.history_id).status_code == 503
    assert _history_id(db, rep) < message.history_id
