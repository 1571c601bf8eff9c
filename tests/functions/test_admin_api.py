"""The `admin` function as Cloud Functions runs it (functions-framework), on a real embedded Postgres and
the embedded document store: the ops-only auth matrix, dashboard figures against inserted rows, keyset
pagination under inserts, filters, a workflow's detail and links, audited flag/quota/guardrail changes,
validation errors and CORS."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from shared import quotas
from shared.admin import api
from shared.bootstrap import Container
from shared.config import Settings
from tests.fixtures.functions import function_app

pytestmark = pytest.mark.emulator

OPS = {"X-Dev-User": "ops@example.com"}
ALEX = {"X-Dev-User": "alex@example.com"}
# Wednesday afternoon, UTC: the stats window runs from Thursday 2031-03-06 to today, 2031-03-12.
NOW = dt.datetime(2031, 3, 12, 15, 30, tzinfo=dt.timezone.utc)
TODAY = dt.datetime(2031, 3, 12, tzinfo=dt.timezone.utc)


@pytest.fixture
def client(db, local_settings, install_container, monkeypatch):
    monkeypatch.setattr(api, "utcnow", lambda: NOW)
    install_container(Container(local_settings, db=db))
    return function_app("admin").test_client()


@pytest.fixture
def store(client):
    from shared.bootstrap import container

    return container().store


# --- rows ----------------------------------------------------------------------------------------


def add_rep(db, email, **fields):
    columns = ["email", *fields]
    rows = db.query(f"INSERT INTO reps ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
                    "RETURNING id", [email, *fields.values()])
    return str(rows[0]["id"])


def add_workflow(db, state, *, created_at=None, rep_id=None, lead_email=None, contact_id=None, portal_id=None):
    """A submission and its workflow; created_at None lets Postgres stamp both (now())."""
    sub = db.query(
        "INSERT INTO form_submissions (idempotency_key, source, portal_id, contact_id, email, payload) "
        "VALUES (%s, 'test', %s, %s, %s, '{}') RETURNING id", (uuid.uuid4().hex, portal_id, contact_id, lead_email))
    if created_at is None:
        row = db.query("INSERT INTO workflows (submission_id, rep_id, state, contact_id, lead_email) "
                       "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                       (sub[0]["id"], rep_id, state, contact_id, lead_email))
    else:
        row = db.query("INSERT INTO workflows (submission_id, rep_id, state, contact_id, lead_email, created_at, "
                       "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                       (sub[0]["id"], rep_id, state, contact_id, lead_email, created_at, created_at))
    return str(row[0]["id"])


def add_event(db, workflow_id, from_state, to_state, at, reason=""):
    db.query("INSERT INTO workflow_events (workflow_id, from_state, to_state, actor, reason, at) "
             "VALUES (%s, %s, %s, 'test', %s, %s)", (workflow_id, from_state, to_state, reason, at))


def add_draft(db, workflow_id, *, decision=None, reasons=(), created_at, decided_at=None, context=None, **fields):
    columns = ["workflow_id", "subject", "body", "model", "prompt_hash", "decision", "reasons", "context",
               "created_at", "decided_at", *fields]
    values = [workflow_id, "Following up", "Hi there", "offline-drafter", "h", decision, json.dumps(list(reasons)),
              json.dumps(context or {}), created_at, decided_at, *fields.values()]
    placeholders = ", ".join("%s::jsonb" if c in ("reasons", "context") else "%s" for c in columns)
    db.query(f"INSERT INTO draft_emails ({', '.join(columns)}) VALUES ({placeholders})", values)


def at(days: int, hour: int = 12, minute: int = 0, seconds: int = 0) -> dt.datetime:
    """A moment ``days`` UTC days from TODAY (negative: before)."""
    return TODAY + dt.timedelta(days=days, hours=hour, minutes=minute, seconds=seconds)


# --- who may call --------------------------------------------------------------------------------


def _routes(db):
    rep_id = add_rep(db, "alex@example.com")
    wf = add_workflow(db, "RECEIVED", lead_email="lead@acme.test", contact_id="1")
    return [
        ("GET", "/stats", None), ("GET", "/workflows", None), ("GET", f"/workflows/{wf}", None),
        ("GET", "/flags", None), ("PUT", "/flags", {"kill_switch": True}), ("GET", "/flags/audit", None),
        ("GET", f"/quotas/{rep_id}", None), ("PUT", f"/quotas/{rep_id}", {"per_day": 20}),
        ("GET", "/quotas/global", None), ("PUT", "/quotas/global", {"per_day": 300}),
        ("GET", "/guardrails", None), ("PUT", "/guardrails", {"employee_min": 10}), ("GET", "/reps", None),
    ]


def test_every_route_is_ops_only(client, db):
    routes = _routes(db)
    for method, path, body in routes:
        kwargs = {"json": body} if body is not None else {}
        none = client.open(path, method=method, **kwargs)
        assert none.status_code == 401 and none.get_json()["error"] == "unauthenticated", (method, path)
        rep = client.open(path, method=method, headers=ALEX, **kwargs)
        assert rep.status_code == 403 and rep.get_json()["error"] == "forbidden", (method, path)
        stranger = client.open(path, method=method, headers={"X-Dev-User": "eve@elsewhere.test"}, **kwargs)
        assert stranger.status_code == 403, (method, path)
        ok = client.open(path, method=method, headers=OPS, **kwargs)
        assert ok.status_code == 200, (method, path, ok.get_json())
    # A rep's PUTs changed nothing: the only audit entries are the ops' four changes.
    audit = client.get("/flags/audit", headers=OPS).get_json()["audit"]
    assert {entry["actor"] for entry in audit} == {"ops@example.com"}
    assert {entry["key"].split(".")[0] for entry in audit} == {"kill_switch", "quotas", "guardrails"}


def test_every_route_is_documented():
    import yaml

    from tests.fixtures.functions import ROOT

    def admin_paths(name):
        path = ROOT / "functions" / name
        spec = yaml.safe_load(path.read_text()) if path.exists() else {}
        return {p: item for p, item in (spec or {}).get("paths", {}).items() if p.startswith("/admin")}

    # The fragment is merged into openapi.yaml by hand; whichever holds the admin paths is checked.
    paths = admin_paths("openapi.yaml") or admin_paths("openapi-admin.fragment.yaml")
    documented = {(method.upper(), path) for path, item in paths.items() for method in item
                  if method in {"get", "put", "post", "delete", "patch"}}
    served = {(method, "/admin" + path.replace("<", "{").replace(">", "}")) for method, path in api.router.rules()}
    assert served == documented


def test_a_forged_bearer_token_is_401(client):
    r = client.get("/stats", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.get_json()["error"] == "unauthenticated"


# --- stats ---------------------------------------------------------------------------------------

DAILY_LIMIT = "Rep r reached the daily limit of 50 emails for 2031-03-12 (UTC)."


def test_stats_match_the_inserted_rows(client, db, store):
    alex = add_rep(db, "alex@example.com")
    sam = add_rep(db, "sam@example.com")
    # Sent six days ago: inside the window.
    a = add_workflow(db, "SENT", created_at=at(-6, 10), rep_id=alex)
    add_event(db, a, "SENDING", "SENT", at(-6, 10, 5))
    add_draft(db, a, decision="SEND", created_at=at(-6, 10, 1), decided_at=at(-6, 10, 2))
    # Received just before midnight, saved as a draft just after: counts today.
    b = add_workflow(db, "DRAFT_SAVED", created_at=at(-1, 23, 50), rep_id=sam)
    add_event(db, b, "SENDING", "DRAFT_SAVED", at(0, 0, 10))
    add_draft(db, b, decision="DRAFT", created_at=at(-1, 23, 55), decided_at=at(0, 0, 0))
    # Two blocked today, sharing one reason; a third blocked without any reason.
    c = add_workflow(db, "BLOCKED", created_at=at(0, 9), rep_id=alex)
    add_event(db, c, "DRAFTED", "BLOCKED", at(0, 9, 2))
    add_draft(db, c, decision="BLOCK", created_at=at(0, 9, 0, 30), decided_at=at(0, 9, 1, 30),
              reasons=[DAILY_LIMIT, {"code": "pii", "message": "The draft contains a card number."}])
    d = add_workflow(db, "BLOCKED", created_at=at(0, 10), rep_id=alex)
    add_event(db, d, "DRAFTED", "BLOCKED", at(0, 10, 2))
    add_draft(db, d, decision="BLOCK", created_at=at(0, 10, 0, 45), decided_at=at(0, 10, 1, 40),
              reasons=[DAILY_LIMIT, "industry Retail is not one of SaaS"])
    i = add_workflow(db, "BLOCKED", created_at=at(0, 11), rep_id=sam)
    add_event(db, i, "DRAFTED", "BLOCKED", at(0, 11, 1))
    add_draft(db, i, decision="BLOCK", created_at=at(0, 11, 0, 20), decided_at=at(0, 11, 0, 40))
    # Failed two days ago, without a draft.
    e = add_workflow(db, "FAILED", created_at=at(-2, 8))
    add_event(db, e, "DRAFTING", "FAILED", at(-2, 8, 3))
    # Sent eight days ago (outside the window), replied three days ago (inside).
    f = add_workflow(db, "REPLIED", created_at=at(-8, 8), rep_id=sam)
    add_event(db, f, "SENDING", "SENT", at(-8, 9))
    add_event(db, f, "SENT", "REPLIED", at(-3, 14))
    add_draft(db, f, decision="SEND", created_at=at(-8, 8, 1), decided_at=at(-8, 8, 2))
    # Blocked ten days ago: outside the window for reasons and latencies.
    g = add_workflow(db, "BLOCKED", created_at=at(-10, 8), rep_id=alex)
    add_event(db, g, "DRAFTED", "BLOCKED", at(-10, 8, 5))
    add_draft(db, g, decision="BLOCK", created_at=at(-10, 8, 1), decided_at=at(-10, 8, 2),
              reasons=["The kill switch is on."])
    # Still drafting, created today.
    add_workflow(db, "DRAFTING", created_at=at(0, 14), rep_id=alex)
    # One send reserved today for alex.
    assert quotas.reserve(store, alex, "wf-quota", quotas.Limits(50, 200, 1000), NOW).granted
    # Tomorrow's event must not leak into today.
    add_event(db, a, "SENT", "REPLIED", at(1, 0, 0, 1))

    r = client.get("/stats", headers=OPS)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["timezone"] == "UTC" and body["today"] == "2031-03-12"
    assert body["window"] == {"days": 7, "from": "2031-03-06T00:00:00Z", "until": "2031-03-13T00:00:00Z"}
    zero = dict.fromkeys(["RECEIVED", "DRAFTING", "DRAFTED", "GATED", "SENDING", "SENT", "DRAFT_SAVED",
                          "BLOCKED", "FAILED", "REPLIED"], 0)
    assert body["states"]["all_time"] == {**zero, "SENT": 1, "DRAFT_SAVED": 1, "BLOCKED": 4, "FAILED": 1,
                                          "REPLIED": 1, "DRAFTING": 1}
    assert body["states"]["today"] == {**zero, "BLOCKED": 3, "DRAFTING": 1}

    empty = {"sent": 0, "drafted": 0, "blocked": 0, "failed": 0, "replied": 0}
    expected_days = {f"2031-03-{day:02d}": dict(empty) for day in range(6, 13)}
    expected_days["2031-03-06"]["sent"] = 1
    expected_days["2031-03-09"]["replied"] = 1
    expected_days["2031-03-10"]["failed"] = 1
    expected_days["2031-03-12"].update(drafted=1, blocked=3)
    assert body["daily"] == [{"day": day, **counts} for day, counts in expected_days.items()]

    reasons = body["block_reasons"]
    assert reasons["blocked_drafts"] == 3
    assert reasons["categories"] == [
        {"category": "quota", "drafts": 2}, {"category": "guardrails", "drafts": 1},
        {"category": "pii", "drafts": 1}, {"category": "unspecified", "drafts": 1}]
    assert reasons["top_reasons"] == [
        {"reason": DAILY_LIMIT, "category": "quota", "drafts": 2},
        {"reason": "The draft contains a card number.", "category": "pii", "drafts": 1},
        {"reason": "industry Retail is not one of SaaS", "category": "guardrails", "drafts": 1}]

    # Lead to draft: a 60, b 300, c 30, d 45, i 20 seconds; to decision: 120, 600, 90, 100, 40.
    assert body["latency"] == {"lead_to_draft_seconds": 45.0, "drafts": 5,
                               "lead_to_decision_seconds": 100.0, "decisions": 5}

    quota = body["quota"]
    assert quota["day"] == "2031-03-12" and quota["week"] == "2031-W11"
    assert quota["global"] == {"used_today": 1, "per_day": 1000}
    assert quota["reps"] == [
        {"rep_id": alex, "email": "alex@example.com", "used_today": 1, "per_day": 50, "used_this_week": 1,
         "per_week": 200},
        {"rep_id": sam, "email": "sam@example.com", "used_today": 0, "per_day": 50, "used_this_week": 0,
         "per_week": 200}]


def test_stats_of_an_empty_system(client):
    body = client.get("/stats", headers=OPS).get_json()
    assert set(body["states"]["all_time"].values()) == {0}
    assert len(body["daily"]) == 7 and body["daily"][-1]["day"] == "2031-03-12"
    assert body["block_reasons"] == {"blocked_drafts": 0, "categories": [], "top_reasons": []}
    assert body["latency"]["lead_to_draft_seconds"] is None and body["latency"]["drafts"] == 0
    assert body["quota"]["reps"] == [] and body["quota"]["global"]["used_today"] == 0


# --- workflow list -------------------------------------------------------------------------------


def _page_ids(client, query):
    r = client.get("/workflows" + query, headers=OPS)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    return [row["id"] for row in body["workflows"]], body["next_cursor"]


def test_pagination_returns_every_row_once_while_rows_arrive(client, db):
    # One statement stamps all 23 with the same created_at, so the id breaks every tie.
    sub_ids = db.query(
        "INSERT INTO form_submissions (idempotency_key, source, payload) "
        "SELECT 'k' || g, 'test', '{}' FROM generate_series(1, 23) g RETURNING id")
    with db.transaction() as cur:
        for row in sub_ids:
            cur.execute("INSERT INTO workflows (submission_id, lead_email) VALUES (%s, %s)",
                        (row["id"], "lead@acme.test"))
    # Pagination runs on the real clock (Postgres stamps new rows), so these are placed in the past.
    older = [add_workflow(db, "RECEIVED", created_at=dt.datetime(2020, 1, 1, h, tzinfo=dt.timezone.utc))
             for h in range(3)]
    original = {str(r["id"]) for r in db.query("SELECT id FROM workflows")}
    assert len(original) == 26

    seen: list[str] = []
    arrived: list[str] = []
    cursor = None
    pages = 0
    while True:
        ids, cursor = _page_ids(client, "?limit=5" + (f"&cursor={cursor}" if cursor else ""))
        seen.extend(ids)
        pages += 1
        arrived.append(add_workflow(db, "RECEIVED"))  # new leads between page loads
        if cursor is None:
            break
    assert pages == 6
    assert len(seen) == len(set(seen)) == 26 and set(seen) == original
    assert not set(arrived) & set(seen)
    assert seen[-3:] == list(reversed(older))  # newest first
    # The newest page now starts with what arrived, newest first.
    ids, _ = _page_ids(client, "?limit=3")
    assert ids == list(reversed(arrived))[:3]


def test_list_rows_carry_the_dashboard_columns(client, db):
    alex = add_rep(db, "alex@example.com")
    wf = add_workflow(db, "GATED", created_at=at(0, 9), rep_id=alex, lead_email="lena@acme.test", contact_id="501")
    add_draft(db, wf, decision="SEND", created_at=at(0, 9, 1), decided_at=at(0, 9, 2), voice_score=0.75)
    db.query("UPDATE workflows SET scheduled_send_at = %s WHERE id = %s", (at(1, 9), wf))
    r = client.get("/workflows", headers=OPS).get_json()
    assert r["next_cursor"] is None and r["limit"] == 50
    assert r["workflows"] == [{
        "id": wf, "state": "GATED", "lead_email": "lena@acme.test", "contact_id": "501", "rep_id": alex,
        "rep": "alex@example.com", "created_at": "2031-03-12T09:00:00Z", "updated_at": "2031-03-12T09:00:00Z",
        "decision": "SEND", "voice_score": 0.75, "scheduled_send_at": "2031-03-13T09:00:00Z"}]


def test_filters_by_state_rep_and_search(client, db):
    alex = add_rep(db, "alex@example.com")
    sam = add_rep(db, "sam@example.com")
    blocked = add_workflow(db, "BLOCKED", created_at=at(0, 1), rep_id=alex, lead_email="lena@acme.test",
                           contact_id="501")
    failed = add_workflow(db, "FAILED", created_at=at(0, 2), rep_id=sam, lead_email="joe@beta.test",
                          contact_id="502")
    sent = add_workflow(db, "SENT", created_at=at(0, 3), rep_id=alex, lead_email="mia_x@acme.test",
                        contact_id="5015")
    # Would match "mia_x" if "_" were a wildcard.
    add_workflow(db, "RECEIVED", created_at=at(0, 4), lead_email="miabx@gamma.test", contact_id="503")

    def ids(query):
        return set(_page_ids(client, query)[0])

    assert ids("?state=BLOCKED,failed") == {blocked, failed}
    assert ids("?state=SENT") == {sent}
    assert ids(f"?rep_id={alex}") == {blocked, sent}
    assert ids(f"?rep_id={alex}&state=SENT") == {sent}
    assert ids("?q=ACME") == {blocked, sent}
    assert ids("?q=501") == {blocked}  # contact ids match exactly, not by prefix
    assert ids("?q=%25") == set()  # a LIKE wildcard is searched for literally
    assert ids("?q=mia_x") == {sent}  # "_" is searched for literally too
    assert ids(f"?rep_id={uuid.uuid4()}") == set()


def test_bad_list_parameters_are_400_json(client, db):
    add_workflow(db, "RECEIVED")
    for query in ("?limit=0", "?limit=201", "?limit=ten", "?state=SHIPPED", "?rep_id=nope",
                  "?cursor=garbage!", "?cursor=" + "x" * 40, "?q=" + "a" * 201):
        r = client.get("/workflows" + query, headers=OPS)
        assert r.status_code == 400, query
        assert r.get_json()["error"] in {"invalid_parameter", "invalid_cursor"} and r.get_json()["message"]
    assert client.get("/workflows?limit=200", headers=OPS).status_code == 200
    assert client.get("/workflows?limit=1", headers=OPS).status_code == 200


# --- one workflow --------------------------------------------------------------------------------


def test_detail_has_timeline_draft_hubspot_records_and_links(client, db, caplog):
    alex = add_rep(db, "alex@example.com")
    wf = add_workflow(db, "SENT", created_at=at(0, 9), rep_id=alex, lead_email="lena@acme.test",
                      contact_id="501", portal_id="4242")
    add_event(db, wf, None, "RECEIVED", at(0, 9), "lead received")
    add_event(db, wf, "RECEIVED", "DRAFTING", at(0, 9, 1))
    add_event(db, wf, "SENDING", "SENT", at(0, 9, 5))
    db.query("INSERT INTO workflow_errors (workflow_id, step, code, message, retryable, at) "
             "VALUES (%s, 'draft', 'unavailable', 'Vertex AI timed out', true, %s)", (wf, at(0, 9, 2)))
    context = {"lead": {"company": "Acme"}, "supported_text": "x" * 5000,
               "sources": [{"url": "https://acme.test/case", "supported_text": "y" * 5000}]}
    add_draft(db, wf, decision="SEND", reasons=["voice score 0.81 is above 0.6"], created_at=at(0, 9, 3),
              decided_at=at(0, 9, 4), context=context, voice_score=0.81, risk_score=0.1,
              gmail_message_id="18c0ffee", gmail_thread_id="18c0ffee", message_id="<wf@leadvoice>")
    for n, kind in enumerate(["task", "note"]):
        db.query("INSERT INTO hubspot_tasks (workflow_id, rep_id, kind, purpose, idempotency_key, hubspot_id, "
                 "created_at) VALUES (%s, %s, %s, 'follow_up', %s, %s, %s)",
                 (wf, alex, kind, f"k{n}", f"900{n + 1}", at(0, 9, 6 + n)))

    r = client.get(f"/workflows/{wf}", headers=OPS)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["workflow"]["id"] == wf and body["workflow"]["state"] == "SENT"
    assert body["workflow"]["rep"] == "alex@example.com" and body["workflow"]["portal_id"] == "4242"
    assert [e["to_state"] for e in body["timeline"]["events"]] == ["RECEIVED", "DRAFTING", "SENT"]
    assert body["timeline"]["errors"] == [{"step": "draft", "code": "unavailable", "message": "Vertex AI timed out",
                                           "retryable": True, "attempt": 1, "at": "2031-03-12T09:02:00Z"}]
    draft = body["draft"]
    assert draft["decision"] == "SEND" and draft["reasons"] == ["voice score 0.81 is above 0.6"]
    assert draft["voice_score"] == pytest.approx(0.81) and draft["risk_score"] == pytest.approx(0.1)
    assert draft["gmail_message_id"] == "18c0ffee" and draft["subject"] == "Following up"
    assert draft["context"] == {"lead": {"company": "Acme"}, "sources": [{"url": "https://acme.test/case"}]}
    assert [(h["kind"], h["hubspot_id"]) for h in body["hubspot"]] == [("task", "9001"), ("note", "9002")]
    assert body["links"] == {
        "hubspot_contact": "https://app.hubspot.com/contacts/4242/record/0-1/501",
        "gmail": "https://mail.google.com/mail/u/alex@example.com/#all/18c0ffee"}
    assert "lena@acme.test" not in caplog.text


def test_detail_links_for_a_saved_draft_and_an_unknown_portal(client, db):
    alex = add_rep(db, "alex@example.com")
    wf = add_workflow(db, "DRAFT_SAVED", rep_id=alex, contact_id="777")
    add_draft(db, wf, decision="DRAFT", created_at=at(0, 1), gmail_draft_id="r-123")
    links = client.get(f"/workflows/{wf}", headers=OPS).get_json()["links"]
    assert links == {"hubspot_contact": None, "gmail": "https://mail.google.com/mail/u/alex@example.com/#drafts"}
    fresh = add_workflow(db, "RECEIVED", contact_id="778", portal_id="4242")
    body = client.get(f"/workflows/{fresh}", headers=OPS).get_json()
    assert body["draft"] is None and body["hubspot"] == []
    assert body["links"]["gmail"] is None


@pytest.mark.parametrize("workflow_id", [
    "not-a-uuid", "1", "00000000-0000-0000-0000-00000000000g", "' OR '1'='1", "%00", str(uuid.uuid4()),
    "a" * 5000,
])
def test_unknown_or_malformed_workflow_ids_are_404_json(client, db, workflow_id):
    r = client.get(f"/workflows/{workflow_id}", headers=OPS)
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"


# --- flags ---------------------------------------------------------------------------------------


def test_flag_changes_are_audited_and_visible(client):
    before = client.get("/flags", headers=OPS).get_json()
    assert before["flags"]["send_mode"] == "DRAFT_ONLY" and before["flags"]["kill_switch"] is False
    assert before["audit"] == []

    r = client.put("/flags", json={"send_mode": "SEND_ALLOWED"}, headers=OPS)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["flags"]["send_mode"] == "SEND_ALLOWED"
    assert body["flags"]["updated_by"] == "ops@example.com" and body["flags"]["updated_at"] == "2031-03-12T15:30:00Z"
    assert [(e["key"], e["old"], e["new"], e["actor"], e["at"]) for e in body["audit"]] == [
        ("send_mode", "DRAFT_ONLY", "SEND_ALLOWED", "ops@example.com", "2031-03-12T15:30:00Z")]

    client.put("/flags", json={"kill_switch": True, "send_mode": "SEND_ALLOWED"}, headers=OPS)
    seen = client.get("/flags", headers=OPS).get_json()
    assert seen["flags"]["kill_switch"] is True and seen["flags"]["send_mode"] == "SEND_ALLOWED"
    assert [e["key"] for e in seen["audit"]] == ["kill_switch", "send_mode"]  # unchanged fields are not audited
    latest = client.get("/flags/audit?limit=1", headers=OPS).get_json()["audit"]
    assert [(e["key"], e["new"]) for e in latest] == [("kill_switch", True)]


@pytest.mark.parametrize("body", [
    {"kill_switch": "yes"}, {"send_mode": "ALWAYS"}, {"colour": "red"}, {}, [1], "text",
])
def test_bad_flag_changes_are_400_and_change_nothing(client, body):
    r = client.put("/flags", data=json.dumps(body), content_type="application/json", headers=OPS)
    assert r.status_code == 400 and r.get_json()["message"]
    assert client.get("/flags/audit", headers=OPS).get_json()["audit"] == []


def test_audit_limit_is_validated(client):
    for limit in ("0", "201", "x"):
        assert client.get(f"/flags/audit?limit={limit}", headers=OPS).status_code == 400


# --- quotas --------------------------------------------------------------------------------------


def test_quota_limits_and_usage_of_a_rep(client, db, store):
    alex = add_rep(db, "alex@example.com")
    assert quotas.reserve(store, alex, "wf-1", quotas.Limits(50, 200, 1000), NOW).granted
    # Monday of the same ISO week: counts for the week, not for today.
    assert quotas.reserve(store, alex, "wf-2", quotas.Limits(50, 200, 1000), NOW - dt.timedelta(days=2)).granted

    body = client.get(f"/quotas/{alex}", headers=OPS).get_json()
    assert body["rep_id"] == alex and body["email"] == "alex@example.com"
    assert body["limits"]["per_day"] == 50 and body["limits"]["is_default"] is True
    assert body["usage"] == {"day": "2031-03-12", "week": "2031-W11", "today": 1, "this_week": 2}
    assert body["global"] == {"per_day": 1000, "used_today": 1}

    r = client.put(f"/quotas/{alex}", json={"per_day": 10, "per_week": 40}, headers=OPS)
    assert r.status_code == 200, r.get_json()
    limits = r.get_json()["limits"]
    assert (limits["per_day"], limits["per_week"], limits["is_default"], limits["updated_by"]) == (
        10, 40, False, "ops@example.com")
    assert client.get(f"/quotas/{alex}", headers=OPS).get_json()["limits"]["per_day"] == 10
    keys = {e["key"] for e in client.get("/flags/audit", headers=OPS).get_json()["audit"]}
    assert keys == {f"quotas.{alex}.per_day", f"quotas.{alex}.per_week"}


@pytest.mark.parametrize("body", [
    {"per_day": 5000}, {"per_day": -1}, {"per_day": "ten"}, {"per_day": True}, {"per_day": 60, "per_week": 50},
    {"daily": 5}, {},
])
def test_bad_quota_limits_are_400_json(client, db, body):
    alex = add_rep(db, "alex@example.com")
    r = client.put(f"/quotas/{alex}", json=body, headers=OPS)
    assert r.status_code == 400 and r.get_json()["error"] != "internal" and r.get_json()["message"]
    assert client.get(f"/quotas/{alex}", headers=OPS).get_json()["limits"]["is_default"] is True


@pytest.mark.parametrize("rep_id", [str(uuid.uuid4()), "not-a-uuid", "GLOBAL", "'; DROP TABLE reps; --"])
def test_unknown_or_malformed_reps_are_404(client, db, rep_id):
    assert client.get(f"/quotas/{rep_id}", headers=OPS).status_code == 404
    r = client.put(f"/quotas/{rep_id}", json={"per_day": 5}, headers=OPS)
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"


def test_global_cap(client, db, store):
    alex = add_rep(db, "alex@example.com")
    assert quotas.reserve(store, alex, "wf-1", quotas.Limits(50, 200, 1000), NOW).granted
    assert client.get("/quotas/global", headers=OPS).get_json() == {"per_day": 1000, "used_today": 1,
                                                                    "day": "2031-03-12"}
    r = client.put("/quotas/global", json={"per_day": 300}, headers=OPS)
    assert r.status_code == 200 and r.get_json()["per_day"] == 300
    assert client.get("/quotas/global", headers=OPS).get_json()["per_day"] == 300
    for bad in ({"per_day": -1}, {"per_day": "many"}, {"cap": 3}, {}):
        r = client.put("/quotas/global", json=bad, headers=OPS)
        assert r.status_code == 400 and r.get_json()["message"], bad
    assert client.get("/quotas/global", headers=OPS).get_json()["per_day"] == 300


# --- guardrails ----------------------------------------------------------------------------------


def test_guardrails_round_trip_and_validation(client):
    assert client.get("/guardrails", headers=OPS).get_json()["allowed_industries"] == []
    r = client.put("/guardrails", json={"allowed_industries": ["SaaS", "saas", "Fintech"], "employee_min": 10,
                                        "employee_max": 500}, headers=OPS)
    assert r.status_code == 200, r.get_json()
    got = client.get("/guardrails", headers=OPS).get_json()
    assert got["allowed_industries"] == ["SaaS", "Fintech"] and (got["employee_min"], got["employee_max"]) == (
        10, 500)
    assert got["updated_by"] == "ops@example.com"
    for bad in ({"employee_min": 900}, {"allowed_industries": "SaaS"}, {"employee_max": -3}, {"size": 1}):
        r = client.put("/guardrails", json=bad, headers=OPS)
        assert r.status_code == 400 and r.get_json()["message"], bad
    assert client.get("/guardrails", headers=OPS).get_json()["employee_min"] == 10


# --- reps ----------------------------------------------------------------------------------------


def test_reps_with_connection_samples_and_profile(client, db):
    alex = add_rep(db, "alex@example.com", display_name="Alex", time_zone="Europe/Berlin",
                   google_status="connected", google_scopes=["https://www.googleapis.com/auth/gmail.send"],
                   google_last_refresh_at=at(0, 6))
    sam = add_rep(db, "sam@example.com", display_name="Sam")
    for n, status in enumerate(["ready", "ready", "failed"]):
        db.query("INSERT INTO training_samples (rep_id, source_type, content_hash, status) VALUES (%s, 'upload', "
                 "%s, %s)", (alex, f"h{n}", status))
    for version in (1, 2):
        db.query("INSERT INTO voice_profiles (rep_id, version, model, features, sample_count, word_count) "
                 "VALUES (%s, %s, 'm', '{}', %s, %s)", (alex, version, version, 100 * version))

    reps = client.get("/reps", headers=OPS).get_json()["reps"]
    assert [r["email"] for r in reps] == ["alex@example.com", "sam@example.com"]
    first, second = reps
    assert first["id"] == alex and first["name"] == "Alex" and first["time_zone"] == "Europe/Berlin"
    assert first["google"]["status"] == "connected"
    assert first["google"]["scopes"] == ["https://www.googleapis.com/auth/gmail.send"]
    assert first["google"]["last_refresh_at"] == "2031-03-12T06:00:00Z"
    assert first["samples"] == {"failed": 1, "ready": 2}
    assert first["profile"]["version"] == 2 and first["profile"]["word_count"] == 200
    assert first["reconnect_url"] == f"http://127.0.0.1:8080/token-refresh/connect?rep={alex}"
    assert second["id"] == sam and second["google"]["status"] == "disconnected"
    assert second["samples"] == {} and second["profile"] is None


# --- CORS ----------------------------------------------------------------------------------------

DASHBOARD = "https://dash.example.com"


@pytest.fixture
def cors_client(db, tmp_path, install_container):
    settings = Settings.from_env({"ENV": "local", "DATA_DIR": str(tmp_path), "ALLOWED_ORIGINS": DASHBOARD + "/"})
    install_container(Container(settings, db=db))
    return function_app("admin").test_client()


def test_cors_for_a_listed_origin(cors_client):
    pre = cors_client.options("/flags", headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "PUT",
                                                 "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert set(pre.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "PUT", "OPTIONS"}
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    r = cors_client.get("/flags", headers={**OPS, "Origin": DASHBOARD})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Origin" in r.headers["Vary"]
    denied = cors_client.get("/flags", headers={"Origin": DASHBOARD})  # errors carry CORS too, so pages can read them
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == DASHBOARD


def test_cors_refuses_other_origins(cors_client):
    pre = cors_client.options("/flags", headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "PUT"})
    assert pre.status_code == 403 and "Access-Control-Allow-Origin" not in pre.headers
    r = cors_client.get("/flags", headers={**OPS, "Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert cors_client.options("/nowhere", headers={"Origin": DASHBOARD}).status_code == 404


def test_without_the_setting_only_same_origin(client):
    pre = client.options("/flags", headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 403 and "Access-Control-Allow-Origin" not in pre.headers
    r = client.get("/flags", headers={**OPS, "Origin": DASHBOARD})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    plain = client.options("/workflows")
    assert plain.status_code == 204 and set(plain.headers["Allow"].split(", ")) == {"GET", "OPTIONS"}


def test_the_gates_own_sentences_land_in_their_categories(tmp_path):
    from shared import flags
    from shared.adapters.local_store import LocalStore
    from shared.admin import queries

    rails = flags.Guardrails(allowed_company_stages=("customer",), allowed_industries=("SaaS",), employee_min=10)
    for sentence in rails.violations(company_stage="lead", industry="Retail", employees=3):
        assert queries.categorise(sentence) == "guardrails", sentence
    store = LocalStore(tmp_path)
    for limits in (quotas.Limits(0, 5, 5), quotas.Limits(5, 0, 5), quotas.Limits(5, 5, 0)):
        refused = quotas.reserve(store, "rep-1", f"wf-{limits}", limits, NOW)
        assert not refused.granted and queries.categorise(refused.reason) == "quota", refused.reason
    assert queries.categorise("The kill switch is on; nothing is sent.") == "kill_switch"
    assert queries.categorise("anything", "QUOTA") == "quota"
    assert queries.categorise("The draft links to https://x.test, which no source supports.") == "unsupported_content"
    assert queries.categorise("Something new") == "other"
    assert queries.reason_text({"code": "pii_card", "message": "A card  number\nwas found."}) == (
        "A card number was found.", "pii_card")
