"""The `ingest` function as Cloud Functions runs it (functions-framework), on a real embedded Postgres,
the embedded blob store and a recording task queue: status codes, ownership, dedupe, listing, delete."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import functions_framework
import pytest

from shared import bootstrap
from shared.bootstrap import Container
from shared.config import Settings
from shared.ports import Task
from tests import builders
from tests.fixtures.postgres import fresh_database

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
MAX_UPLOAD = 200_000
ALEX, SAM, OPS = ({"X-Dev-User": "alex@example.com"}, {"X-Dev-User": "sam@example.com"},
                  {"X-Dev-User": "ops@example.com"})


class RecordingTasks:
    """The TaskQueue port, recording what would be delivered, with Cloud Tasks' name dedupe."""

    def __init__(self):
        self.tasks: list[Task] = []
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def enqueue(self, task: Task) -> bool:
        return self.enqueue_many([task])[0]

    def enqueue_many(self, tasks):
        out = []
        with self._lock:
            for task in tasks:
                if task.name and task.name in self._names:
                    out.append(False)
                    continue
                self._names.add(task.name or "")
                self.tasks.append(task)
                out.append(True)
        return out

    def cancel(self, target, name, queue=None):
        return False

    def health(self):
        pass


class RecordingEvents:
    def __init__(self):
        self.published: list[tuple[str, dict]] = []

    def publish(self, topic, data, *, attributes=None):
        self.published.append((topic, data))
        return str(len(self.published))

    def health(self):
        pass


@pytest.fixture(scope="module")
def database(pg_server):
    db = fresh_database(pg_server)
    yield db
    db.close()


@pytest.fixture
def env(database, tmp_path):
    with database.transaction() as cur:
        cur.execute("TRUNCATE sample_chunks, voice_profiles, training_samples, reps RESTART IDENTITY CASCADE")
        cur.execute("INSERT INTO reps (email, display_name) VALUES ('alex@example.com', 'Alex Rivera'), "
                    "('sam@example.com', 'Sam Okafor')")
    settings = Settings.from_env({"ENV": "local", "DATA_DIR": str(tmp_path), "MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
                                  "EMBEDDING_MODEL": "test-model", "EMBEDDING_DIM": "8"})
    tasks, events = RecordingTasks(), RecordingEvents()
    container = Container(settings, db=database, tasks=tasks, events=events)
    previous = bootstrap.use(container)
    yield container
    bootstrap.use(previous)


@pytest.fixture(scope="module")
def client():
    app = functions_framework.create_app(target="ingest", source=str(ROOT / "functions/ingest/main.py"))
    return app.test_client()


def upload(client, data: bytes, name: str = "note.txt", headers=ALEX, **fields):
    form = {"file": (io.BytesIO(data), name), **fields}
    return client.post("/", data=form, headers=headers, content_type="multipart/form-data")


def rep_id(db, email):
    return str(db.query("SELECT id FROM reps WHERE email = %s", (email,))[0]["id"])


TEXT = b"Hi Jordan,\n\nThanks for the call today - quick recap below.\n\nCheers,\nAlex\n"


def test_upload_is_accepted_stored_and_handed_to_extract_once(client, env):
    r = upload(client, TEXT, title="Recap", purpose="voice")
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert body["status"] == "queued" and set(body) == {"id", "status"}
    assert [(t.target, t.name, t.path, t.payload) for t in env.tasks.tasks] == [
        ("extract", f"extract-{body['id']}", "/", {"sample_id": body["id"]})]
    row = env.db.query("SELECT blob_key, title, purpose, source_type, rep_id FROM training_samples")[0]
    assert env.blobs.get(row["blob_key"]) == TEXT
    assert row["title"] == "Recap" and row["purpose"] == "voice" and row["source_type"] == "upload"
    assert str(row["rep_id"]) == rep_id(env.db, "alex@example.com")


def test_the_same_bytes_again_return_the_existing_sample(client, env):
    first = upload(client, TEXT).get_json()
    again = upload(client, TEXT, name="other-name.txt")
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["id"] == first["id"] and again.get_json()["duplicate"] is True
    assert env.db.query("SELECT count(*) AS n FROM training_samples")[0]["n"] == 1
    assert len(env.tasks.tasks) == 1
    # Another rep uploading the same bytes gets a sample of their own.
    assert upload(client, TEXT, headers=SAM).status_code == 202


def test_too_large_is_413_and_stores_nothing(client, env):
    r = upload(client, b"a" * (MAX_UPLOAD + 1))
    assert r.status_code == 413 and r.get_json()["error"] == "too_large"
    big = upload(client, b"a" * (MAX_UPLOAD * 2))
    assert big.status_code == 413
    assert env.db.query("SELECT count(*) AS n FROM training_samples")[0]["n"] == 0
    assert env.tasks.tasks == []


def test_type_is_judged_by_content_415(client, env):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    r = upload(client, png, name="looks-like.txt")
    assert r.status_code == 415 and r.get_json()["error"] == "unsupported_type"
    assert "PDF" in r.get_json()["message"]
    assert env.tasks.tasks == []


def test_real_documents_are_accepted(client, env):
    assert upload(client, builders.pdf(["A page of words."]), name="a.pdf").status_code == 202
    assert upload(client, builders.docx(["A paragraph."]), name="b.docx").status_code == 202
    assert len(env.tasks.tasks) == 2


def test_missing_file_and_bad_purpose_are_400(client, env):
    r = client.post("/", data={"title": "x"}, headers=ALEX, content_type="multipart/form-data")
    assert r.status_code == 400 and "file" in r.get_json()["message"]
    assert upload(client, TEXT, purpose="gossip").status_code == 400


def test_links_are_queued_and_deduplicated_by_their_normal_form(client, env):
    r = client.post("/", json={"source": "youtube", "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"},
                    headers=ALEX)
    assert r.status_code == 202, r.get_json()
    same = client.post("/", json={"source": "url", "url": "https://youtu.be/dQw4w9WgXcQ"}, headers=ALEX)
    assert same.status_code == 200 and same.get_json()["id"] == r.get_json()["id"]
    row = env.db.query("SELECT source_type, source_id FROM training_samples")[0]
    assert row == {"source_type": "youtube", "source_id": "dQw4w9WgXcQ"}
    hub = client.post("/", json={"source": "hubspot", "object_type": "contacts", "object_id": "501",
                                 "include": ["notes", "calls"], "purpose": "asset"}, headers=ALEX)
    assert hub.status_code == 202
    drive = client.post("/", json={"source": "drive", "file_id": "1AbCdEfGhIjKlMnOp"}, headers=ALEX)
    assert drive.status_code == 202
    assert len(env.tasks.tasks) == 3


def test_refused_and_malformed_links(client, env):
    refused = client.post("/", json={"source": "url", "url": "ftp://files.example.com/a.txt"}, headers=ALEX)
    assert refused.status_code == 422 and refused.get_json()["error"] == "refused"
    wrong = client.post("/", json={"source": "youtube", "url": "https://example.com/post"}, headers=ALEX)
    assert wrong.status_code == 400
    assert client.post("/", json={"source": "fax"}, headers=ALEX).status_code == 400
    assert client.post("/", json={"source": "hubspot", "object_type": "tickets", "object_id": "1"},
                       headers=ALEX).status_code == 400
    assert client.post("/", data="not json", headers={**ALEX, "Content-Type": "application/json"}).status_code == 400
    assert env.tasks.tasks == []


def test_authentication_and_rep_targeting(client, env):
    assert client.get("/samples").status_code == 401
    assert client.get("/samples", headers={"X-Dev-User": "eve@elsewhere.org"}).status_code == 403
    sam = rep_id(env.db, "sam@example.com")
    r = upload(client, TEXT, rep_id=sam)
    assert r.status_code == 403 and r.get_json()["error"] == "forbidden"
    as_ops = upload(client, TEXT, headers=OPS, rep_id=sam)
    assert as_ops.status_code == 202
    assert str(env.db.query("SELECT rep_id FROM training_samples")[0]["rep_id"]) == sam
    unknown = upload(client, TEXT, headers=OPS, rep_id="00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404
    # ops@example.com is in an allowed domain, so also a rep: without rep_id they see their own samples.
    assert client.get("/samples", headers=OPS).get_json()["samples"] == []
    assert client.get(f"/samples?rep_id={sam}", headers=OPS).status_code == 200


def test_first_sign_in_from_an_allowed_domain_creates_the_rep(client, env):
    r = client.get("/samples", headers={"X-Dev-User": "new.person@example.com"})
    assert r.status_code == 200 and r.get_json()["samples"] == []
    rows = env.db.query("SELECT display_name FROM reps WHERE email = 'new.person@example.com'")
    assert rows == [{"display_name": "New Person"}]


def test_listing_filters_detail_and_ownership(client, env):
    first = upload(client, TEXT).get_json()["id"]
    second = client.post("/", json={"source": "youtube", "url": "https://youtu.be/dQw4w9WgXcQ"},
                         headers=ALEX).get_json()["id"]
    env.db.query("UPDATE training_samples SET status = 'failed', error = 'No captions.' WHERE id = %s", (second,))
    listed = client.get("/samples", headers=ALEX).get_json()["samples"]
    assert {s["id"] for s in listed} == {first, second}
    assert all("blob_key" not in s and "content" not in s for s in listed)
    failed = client.get("/samples?status=failed", headers=ALEX).get_json()["samples"]
    assert [(s["id"], s["error"]) for s in failed] == [(second, "No captions.")]
    uploads = client.get("/samples?source=upload", headers=ALEX).get_json()["samples"]
    assert [s["id"] for s in uploads] == [first]
    assert client.get("/samples?status=done", headers=ALEX).status_code == 400
    detail = client.get(f"/samples/{first}", headers=ALEX)
    assert detail.status_code == 200 and "content" in detail.get_json()
    assert client.get(f"/samples/{first}", headers=SAM).status_code == 404
    assert client.get(f"/samples/{first}", headers=OPS).status_code == 200
    assert client.get("/samples/not-a-uuid", headers=ALEX).status_code == 404
    assert client.get("/samples", headers=SAM).get_json()["samples"] == []


def test_delete_removes_sample_chunks_and_blob_and_rebuilds_the_profile(client, env):
    sample_id = upload(client, TEXT).get_json()["id"]
    row = env.db.query("SELECT blob_key, rep_id FROM training_samples")[0]
    env.db.query("INSERT INTO sample_chunks (sample_id, rep_id, ordinal, content, model, embedding) "
                 "VALUES (%s, %s, 0, 'x', 'test-model', '[1,0,0,0,0,0,0,0]')", (sample_id, row["rep_id"]))
    assert client.delete(f"/samples/{sample_id}", headers=SAM).status_code == 404
    r = client.delete(f"/samples/{sample_id}", headers=ALEX)
    assert r.status_code == 200 and r.get_json()["deleted"] == sample_id
    assert env.db.query("SELECT count(*) AS n FROM sample_chunks")[0]["n"] == 0
    assert not env.blobs.exists(row["blob_key"])
    assert [topic for topic, _ in env.events.published] == ["voice-updated"]
    assert client.delete(f"/samples/{sample_id}", headers=ALEX).status_code == 404


def test_unknown_routes_and_methods(client, env):
    assert client.get("/nowhere", headers=ALEX).status_code == 404
    assert client.put("/samples", headers=ALEX).status_code == 405


def test_match_and_search_need_their_input(client, env):
    assert client.post("/profile/match", json={}, headers=ALEX).status_code == 400
    assert client.post("/profile/match", json={"text": "x" * 20_001}, headers=ALEX).status_code == 413
    assert client.get("/hubspot/search", headers=ALEX).status_code == 400


def test_the_pages_origin_gets_cors_on_ingest_and_others_do_not(tmp_path, install_container, db):
    from shared.bootstrap import Container
    from shared.config import Settings
    from tests.fixtures.functions import RecordingTasks, function_app

    settings = Settings.from_env({"ENV": "local", "DATA_DIR": str(tmp_path),
                                  "ALLOWED_ORIGINS": "https://pages.acme.test"})
    install_container(Container(settings, db=db, tasks=RecordingTasks()))
    client = function_app("ingest").test_client()
    allowed = client.options("/samples", headers={"Origin": "https://pages.acme.test",
                                                  "Access-Control-Request-Method": "GET"})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://pages.acme.test"
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    refused = client.options("/samples", headers={"Origin": "https://evil.test",
                                                  "Access-Control-Request-Method": "GET"})
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    listed = client.get("/samples", headers={"Origin": "https://pages.acme.test", "X-Dev-User": "alex@example.com"})
    assert listed.status_code == 200 and listed.headers["Access-Control-Allow-Origin"] == "https://pages.acme.test"
