"""The `token-refresh` function through functions-framework: the OAuth connect flow end to end against the
Google stand-in (authorize → callback → secret version, rep connected, Gmail watch), and the scheduled run."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest

from shared.accounts_google import oauth
from shared.voice.sources import google_refresh_secret
from tests.fixtures.functions import function_app

pytestmark = pytest.mark.emulator

ALEX = "alex@example.com"


@pytest.fixture
def client(lifecycle):
    return function_app("token-refresh").test_client()


def _rep(db, email=ALEX, **columns):
    rows = db.query("INSERT INTO reps (email, display_name) VALUES (%s, 'Alex') RETURNING id", (email,))
    rep_id = str(rows[0]["id"])
    for column, value in columns.items():
        db.query(f"UPDATE reps SET {column} = %s WHERE id = %s RETURNING id", (value, rep_id))
    return rep_id


def _authorize(world, location: str) -> str:
    """The browser at Google: the same query sent to the stand-in's authorization endpoint; returns the
    callback URL Google redirects back to."""
    parts = urllib.parse.urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == oauth.GOOGLE_AUTH_URI
    import requests

    answer = requests.get(world.oauth.auth_uri + "?" + parts.query, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def _callback(client, url: str):
    parts = urllib.parse.urlsplit(url)
    assert parts.path == "/token-refresh/callback"
    return client.get("/callback?" + parts.query)


def _connect(client, world, headers={"X-Dev-User": ALEX}):  # noqa: B006
    world.oauth.signed_in = ALEX
    started = client.get("/connect", headers=headers)
    assert started.status_code == 302
    return _callback(client, _authorize(world, started.headers["Location"]))


def _state(db, rep_id):
    return db.query("SELECT google_status, google_scopes, google_connected_at, gmail_history_id, "
                    "gmail_watch_expires_at FROM reps WHERE id = %s", (rep_id,))[0]


def test_connect_asks_google_for_offline_access_with_pkce(client, lifecycle, google_world):
    started = client.get("/connect", headers={"X-Dev-User": ALEX})
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(started.headers["Location"]).query))
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    assert query["include_granted_scopes"] == "true" and query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert set(query["scope"].split()) == set(oauth.SCOPES)
    assert query["redirect_uri"] == "http://127.0.0.1:8080/token-refresh/callback"
    assert "code_verifier" not in started.headers["Location"]


def test_connect_stores_the_token_marks_the_rep_connected_and_starts_the_watch(client, lifecycle, google_world, db):
    answer = _connect(client, google_world)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert "connected" in answer.get_data(as_text=True)
    rep_id = str(db.query("SELECT id FROM reps WHERE email = %s", (ALEX,))[0]["id"])
    token = lifecycle.secrets.access(google_refresh_secret(rep_id)).decode()
    assert google_world.google.refresh_tokens[token] == ALEX
    row = _state(db, rep_id)
    assert row["google_status"] == "connected"
    assert "https://www.googleapis.com/auth/gmail.send" in row["google_scopes"]
    assert int(row["gmail_history_id"]) == google_world.gmail.mailbox(ALEX).history_id
    assert row["gmail_watch_expires_at"] > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=6)
    assert google_world.gmail.watches[0]["topicName"] == "projects/local-project/topics/gmail-push"
    # The token is a credential: it is in the secret store and nowhere in the database.
    assert not db.query("SELECT 1 FROM reps WHERE row_to_json(reps)::text LIKE %s", (f"%{token}%",))


def test_reconnecting_adds_a_version_and_destroys_the_old_one(client, lifecycle, google_world, db):
    assert _connect(client, google_world).status_code == 200
    rep_id = str(db.query("SELECT id FROM reps WHERE email = %s", (ALEX,))[0]["id"])
    first = lifecycle.secrets.access(google_refresh_secret(rep_id))
    assert _connect(client, google_world).status_code == 200
    second = lifecycle.secrets.access(google_refresh_secret(rep_id))
    assert first != second
    with pytest.raises(Exception):
        lifecycle.secrets.access(google_refresh_secret(rep_id), "1")


def test_a_replayed_state_is_refused(client, lifecycle, google_world, db):
    google_world.oauth.signed_in = ALEX
    started = client.get("/connect", headers={"X-Dev-User": ALEX})
    callback = _authorize(google_world, started.headers["Location"])
    assert _callback(client, callback).status_code == 200
    # The same state with a fresh code from Google: the state was used once already.
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["state"]
    again = _authorize(google_world, started.headers["Location"])
    fresh = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(again).query))
    replay = client.get("/callback?" + urllib.parse.urlencode({"code": fresh["code"], "state": state}))
    assert replay.status_code == 400
    assert "already used" in replay.get_data(as_text=True)


def test_a_tampered_state_is_refused_and_nothing_is_stored(client, lifecycle, google_world, db):
    other = _rep(db, "sam@example.com")
    google_world.oauth.signed_in = ALEX
    started = client.get("/connect", headers={"X-Dev-User": ALEX})
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(_authorize(google_world, started.headers["Location"])).query))
    body, mac = query["state"].split(".")
    forged = oauth._b64(oauth._unb64(body).replace(b'"rep":"', f'"rep":"{other}","x":"'.encode()))
    answer = client.get("/callback?" + urllib.parse.urlencode({"code": query["code"], "state": f"{forged}.{mac}"}))
    assert answer.status_code == 400 and "altered" in answer.get_data(as_text=True)
    assert _state(db, other)["google_status"] == "disconnected"
    assert not google_world.google.refresh_tokens


def test_a_wrong_pkce_verifier_is_refused_by_google(client, lifecycle, google_world, db):
    google_world.oauth.signed_in = ALEX
    started = client.get("/connect", headers={"X-Dev-User": ALEX})
    callback = _authorize(google_world, started.headers["Location"])
    nonce = oauth.read_state(oauth.state_key(lifecycle.secrets),
                             dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["state"],
                             dt.datetime.now(dt.timezone.utc))["nonce"]
    record = lifecycle.store.get(oauth.STATES, nonce)
    lifecycle.store.set(oauth.STATES, nonce, {**record, "code_verifier": "x" * 86})
    answer = _callback(client, callback)
    assert answer.status_code == 400 and "invalid_grant" in answer.get_data(as_text=True)
    assert not db.query("SELECT 1 FROM reps WHERE google_status = 'connected'")


def test_consent_with_another_google_account_is_refused(client, lifecycle, google_world, db):
    google_world.oauth.signed_in = "someone.else@gmail.com"
    started = client.get("/connect", headers={"X-Dev-User": ALEX})
    answer = _callback(client, _authorize(google_world, started.headers["Location"]))
    assert answer.status_code == 403 and ALEX in answer.get_data(as_text=True)
    assert not db.query("SELECT 1 FROM reps WHERE google_status = 'connected'")


def test_declining_consent_connects_nothing(client, lifecycle, google_world, db):
    google_world.oauth.decline = True
    answer = _connect(client, google_world)
    assert answer.status_code == 403 and "not granted" in answer.get_data(as_text=True)


def test_an_ops_reconnect_link_needs_no_sign_in(client, lifecycle, google_world, db):
    rep_id = _rep(db, google_status="revoked")
    google_world.oauth.signed_in = ALEX
    started = client.get(f"/connect?rep={rep_id}")
    assert started.status_code == 302
    assert _callback(client, _authorize(google_world, started.headers["Location"])).status_code == 200
    assert _state(db, rep_id)["google_status"] == "connected"


def test_connect_without_a_person_is_refused(client, lifecycle):
    assert client.get("/connect").status_code == 401


# --- the scheduled run -----------------------------------------------------------------------------


def _scheduler(lifecycle, account=None):
    s = lifecycle.settings
    token = lifecycle.signer.service_token(s.audience_for("token-refresh"), account or s.scheduler_service_account)
    return {"Authorization": f"Bearer {token}"}


def _connected(lifecycle, google_world, db, email=ALEX, *, watch_expires=None):
    rep_id = _rep(db, email, google_status="connected", gmail_history_id=1000,
                  google_connected_at=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    if watch_expires is not None:
        db.query("UPDATE reps SET gmail_watch_expires_at = %s WHERE id = %s RETURNING id", (watch_expires, rep_id))
    token = google_world.google.grant(email)
    lifecycle.secrets.add_version(google_refresh_secret(rep_id), token.encode())
    return rep_id, token


def test_the_run_needs_the_scheduler_account(client, lifecycle):
    assert client.post("/").status_code == 401
    assert client.post("/", headers=_scheduler(lifecycle, "someone@local-project.iam.gserviceaccount.com")
                       ).status_code == 403


def test_the_run_refreshes_and_renews_only_watches_near_expiry(client, lifecycle, google_world, db):
    now = dt.datetime.now(dt.timezone.utc)
    near, _ = _connected(lifecycle, google_world, db, watch_expires=now + dt.timedelta(hours=20))
    far, _ = _connected(lifecycle, google_world, db, "sam@example.com", watch_expires=now + dt.timedelta(days=6))
    answer = client.post("/", headers=_scheduler(lifecycle))
    assert answer.status_code == 200
    assert answer.get_json() == {"refreshed": 2, "renewed": 1, "revoked": 0, "errors": []}
    assert [w["account"] for w in google_world.gmail.watches] == [ALEX]
    assert _state(db, near)["gmail_watch_expires_at"] > now + dt.timedelta(days=6)
    assert db.query("SELECT google_last_refresh_at FROM reps WHERE id = %s", (far,))[0]["google_last_refresh_at"]


def test_a_rotated_refresh_token_replaces_the_stored_one(client, lifecycle, google_world, db):
    rep_id, old = _connected(lifecycle, google_world, db, watch_expires=dt.datetime.now(dt.timezone.utc)
                             + dt.timedelta(days=6))
    google_world.oauth.rotate_refresh_tokens = True
    assert client.post("/", headers=_scheduler(lifecycle)).get_json()["refreshed"] == 1
    new = lifecycle.secrets.access(google_refresh_secret(rep_id)).decode()
    assert new != old and google_world.google.refresh_tokens[new] == ALEX


def test_a_revoked_grant_marks_the_rep_and_creates_one_task_even_when_run_twice(client, lifecycle, google_world, db):
    rep_id, token = _connected(lifecycle, google_world, db)
    google_world.google.revoke(token)
    first = client.post("/", headers=_scheduler(lifecycle)).get_json()
    assert first == {"refreshed": 0, "renewed": 0, "revoked": 1, "errors": []}
    assert _state(db, rep_id)["google_status"] == "revoked"
    token_calls = len(google_world.google.requests_to(r"^/token$"))
    second = client.post("/", headers=_scheduler(lifecycle)).get_json()
    assert second == {"refreshed": 0, "renewed": 0, "revoked": 0, "errors": []}
    # A revoked rep is skipped: no retry storm against Google's token endpoint.
    assert len(google_world.google.requests_to(r"^/token$")) == token_calls
    assert len(lifecycle.crm.tasks) == 1
    task = lifecycle.crm.tasks[0]
    assert task["subject"] == "Reconnect your Google account" and f"/connect?rep={rep_id}" in task["body"]
    rows = db.query("SELECT purpose, hubspot_id FROM hubspot_tasks WHERE rep_id = %s", (rep_id,))
    assert rows == [{"purpose": "reconnect_google", "hubspot_id": "task-1"}]


def test_no_token_reaches_a_log_line(client, lifecycle, google_world, db, caplog):
    caplog.set_level("DEBUG")
    assert _connect(client, google_world).status_code == 200
    rep_id, token = _connected(lifecycle, google_world, db, "sam@example.com")
    google_world.google.revoke(token)
    client.post("/", headers=_scheduler(lifecycle))
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    secrets = list(google_world.google.refresh_tokens) + list(google_world.google.access_tokens) + [token]
    assert "google account connected" in logged and "google access revoked" in logged
    assert not [s for s in secrets if s in logged]


# --- the page's view of the connection, and disconnecting ----------------------------------------------

OPS = {"X-Dev-User": "ops@example.com"}


def test_status_shows_the_reps_connection_and_the_link_that_connects_it(client, lifecycle, google_world, db):
    rep_id = _rep(db)
    answer = client.get("/status", headers={"X-Dev-User": ALEX})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["rep_id"] == rep_id and body["google_status"] == "disconnected" and body["scopes"] == []
    assert body["connect_url"] == f"http://127.0.0.1:8080/token-refresh/connect?rep={rep_id}"
    _connect(client, google_world)
    body = client.get("/status", headers={"X-Dev-User": ALEX}).get_json()
    assert body["google_status"] == "connected" and "https://www.googleapis.com/auth/gmail.send" in body["scopes"]
    assert body["connected_at"] and body["gmail_watch_expires_at"]
    assert not any("standin" in str(value) for value in body.values())  # never a token


def test_disconnect_stops_the_watch_revokes_the_grant_and_forgets_the_token(client, lifecycle, google_world, db):
    _connect(client, google_world)
    rep_id = str(db.query("SELECT id FROM reps WHERE email = %s", (ALEX,))[0]["id"])
    token = lifecycle.secrets.access(google_refresh_secret(rep_id)).decode()
    answer = client.post("/disconnect", headers={"X-Dev-User": ALEX})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["google_status"] == "disconnected" and body["revoked"] is True and body["watch_stopped"] is True
    assert google_world.gmail.stops == [ALEX] and google_world.google.revocations == [ALEX]
    assert token not in google_world.google.refresh_tokens  # Google no longer honours it
    from shared.ports import SecretNotFound

    with pytest.raises(SecretNotFound):
        lifecycle.secrets.access(google_refresh_secret(rep_id))
    state = _state(db, rep_id)
    assert state["google_status"] == "disconnected" and state["google_scopes"] == []
    assert state["gmail_history_id"] is None and state["gmail_watch_expires_at"] is None
    # Asked again (a double click, a retried request): nothing left to undo, the same answer.
    again = client.post("/disconnect", headers={"X-Dev-User": ALEX}).get_json()
    assert again["google_status"] == "disconnected" and again["revoked"] is False
    assert google_world.google.revocations == [ALEX]
    # The scheduled run leaves a disconnected rep alone; connecting again works as the first time.
    assert client.post("/", headers=_scheduler(lifecycle)).get_json()["refreshed"] == 0
    assert _connect(client, google_world).status_code == 200
    assert _state(db, rep_id)["google_status"] == "connected"


def test_a_rep_cannot_disconnect_another_rep_but_ops_can(client, lifecycle, google_world, db):
    rep_id, _ = _connected(lifecycle, google_world, db)
    sam = _rep(db, "sam@example.com")
    assert client.post(f"/disconnect?rep_id={rep_id}", headers={"X-Dev-User": "sam@example.com"}).status_code == 403
    assert client.get(f"/status?rep_id={rep_id}", headers={"X-Dev-User": "sam@example.com"}).status_code == 403
    assert client.post("/disconnect").status_code == 401
    assert _state(db, rep_id)["google_status"] == "connected"
    answer = client.post(f"/disconnect?rep_id={rep_id}", headers=OPS)
    assert answer.status_code == 200 and answer.get_json()["rep_id"] == rep_id
    assert _state(db, rep_id)["google_status"] == "disconnected" and sam != rep_id


def test_disconnect_keeps_the_connection_when_google_cannot_revoke_it(client, lifecycle, google_world, db):
    rep_id, token = _connected(lifecycle, google_world, db)
    google_world.google.fail_next(503, {"error": "backendError"}, path=r"/revoke$")
    answer = client.post("/disconnect", headers={"X-Dev-User": ALEX})
    assert answer.status_code == 503
    # Nothing forgotten while Google still honours the grant: the rep can simply try again.
    assert _state(db, rep_id)["google_status"] == "connected"
    assert lifecycle.secrets.access(google_refresh_secret(rep_id)).decode() == token
    assert client.post("/disconnect", headers={"X-Dev-User": ALEX}).get_json()["revoked"] is True
