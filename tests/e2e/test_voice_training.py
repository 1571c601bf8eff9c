"""Voice training end to end on the local stack: uploads go through ingest → extract → embed with the
embedded adapters and the real local MiniLM model, and the voice profile follows what is added and removed."""

from __future__ import annotations

import time

import pytest
import requests

from functions.localstack.emulators.base import free_port
from functions.localstack.stack import LocalStack
from tests import builders

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

ALEX = {"X-Dev-User": "alex@example.com"}
SAM = {"X-Dev-User": "sam@example.com"}
FINISHED = ("ready", "failed")

VTT = """WEBVTT

00:00:00.000 --> 00:00:05.000
<v Alex Rivera>Thanks for jumping on - let's keep this quick and useful.

00:00:05.000 --> 00:00:09.000
<v Jordan Lee>Sure. Our main headache is routing leads to the right rep.

00:00:09.000 --> 00:00:15.000
<v Alex Rivera>Got it - that's exactly what the trial covers. I'll send the setup guide tonight.
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = LocalStack(port=free_port(), data_dir=tmp_path_factory.mktemp("voice-stack")).start()
    yield stack
    stack.stop()


def _wait(stack, sample_id: str, headers=ALEX, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(f"{stack.url}/ingest/samples/{sample_id}", headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in FINISHED:
            return body
        assert time.monotonic() < deadline, f"sample still {body['status']} after {timeout}s"
        time.sleep(0.2)


def _upload(stack, data: bytes, name: str, headers=ALEX, **fields) -> requests.Response:
    return requests.post(f"{stack.url}/ingest", files={"file": (name, data)}, data=fields, headers=headers,
                         timeout=60)


def _profile(stack, headers=ALEX) -> dict:
    r = requests.get(f"{stack.url}/ingest/profile", headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_demo_samples_reach_ready_through_the_pipeline(stack):
    from functions.localstack.seed_voice import seed_samples

    # The stack's start seeded them already; the content hash makes a second seeding a no-op.
    assert seed_samples(stack.container) == 0
    for headers in (ALEX, SAM):
        listed = requests.get(f"{stack.url}/ingest/samples", headers=headers, timeout=30).json()["samples"]
        assert len(listed) == 6
        for sample in listed:
            assert _wait(stack, sample["id"], headers)["status"] == "ready"
    assert _profile(stack, SAM)["sample_count"] == 6


def test_pdf_docx_and_vtt_are_learned_and_the_profile_follows(stack):
    before = _profile(stack)
    documents = [
        (builders.pdf(["Hey Chris - quick one. The pilot's live, logins are in your inbox. "
                       "Ping me if anything breaks. Cheers, Alex"]), "pilot.pdf"),
        (builders.docx(["Hi Morgan -", "Loved the energy on the call. Next step: a 20-min demo for your ops lead.",
                        "You can reach Jordan directly at jordan.lee@acme.io or +1 415-555-0132.",
                        "Cheers,", "Alex"]), "follow-up.docx"),
        (VTT.encode(), "discovery-call.vtt"),
    ]
    ids = []
    for data, name in documents:
        r = _upload(stack, data, name)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
        done = _wait(stack, ids[-1])
        assert done["status"] == "ready", done
        assert done["word_count"] > 0
    after = _profile(stack)
    assert after["sample_count"] == before["sample_count"] + 3
    assert after["version"] > before["version"]
    assert after["word_count"] > before["word_count"]

    docx_detail = _wait(stack, ids[1])
    assert "[email]" in docx_detail["content"] and "[phone]" in docx_detail["content"]
    assert "jordan.lee@acme.io" not in docx_detail["content"]
    vtt_detail = _wait(stack, ids[2])
    assert "routing leads" not in vtt_detail["content"]  # the other speaker's words are not the rep's voice
    assert "setup guide" in vtt_detail["content"]
    assert "speakers" not in vtt_detail["metadata"] and vtt_detail["metadata"]["speaker_count"] == 2

    chunks = stack.container.db.query("SELECT count(*) AS n, min(model) AS model FROM sample_chunks "
                                      "WHERE sample_id = ANY(%s)", (ids,))[0]
    assert chunks["n"] >= 3 and chunks["model"] == stack.container.embedder.model

    r = requests.post(f"{stack.url}/ingest/profile/match", headers=SAM, timeout=60,
                      json={"text": "Hey Sasha -\n\nQuick one - trial's live, logins are in your inbox. "
                                    "Two things:\n- ping me if anything breaks\n- demo for your ops lead "
                                    "Thursday? 10 mins tops.\n\nCheers,\nAlex"})
    assert r.status_code == 200, r.text
    scores = r.json()["scores"]
    assert [s["email"] for s in scores][:1] == ["alex@example.com"]
    assert {s["email"] for s in scores} == {"alex@example.com", "sam@example.com"}
    assert [s["score"] for s in scores] == sorted((s["score"] for s in scores), reverse=True)

    deleted = requests.delete(f"{stack.url}/ingest/samples/{ids[0]}", headers=ALEX, timeout=60)
    assert deleted.status_code == 200, deleted.text
    final = _profile(stack)
    assert final["sample_count"] == after["sample_count"] - 1 and final["version"] > after["version"]
    assert stack.container.db.query("SELECT count(*) AS n FROM sample_chunks WHERE sample_id = %s",
                                    (ids[0],))[0]["n"] == 0


def test_a_corrupt_file_ends_failed_with_a_readable_error(stack):
    r = _upload(stack, b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> broken beyond repair", "broken.pdf")
    assert r.status_code == 202, r.text
    done = _wait(stack, r.json()["id"])
    assert done["status"] == "failed"
    assert "PDF" in done["error"] and len(done["error"].split()) > 4
    failed = requests.get(f"{stack.url}/ingest/samples?status=failed", headers=ALEX, timeout=30).json()["samples"]
    assert r.json()["id"] in {s["id"] for s in failed}


def test_a_redelivered_extract_task_changes_nothing(stack):
    r = _upload(stack, b"Hey Kim - contract's signed, welcome aboard! Onboarding invite coming today.\n\nCheers,\nAlex",
                "welcome.txt")
    sample_id = r.json()["id"]
    assert _wait(stack, sample_id)["status"] == "ready"
    db = stack.container.db
    before = db.query("SELECT status, updated_at, content FROM training_samples WHERE id = %s", (sample_id,))[0]
    chunks_before = db.query("SELECT id FROM sample_chunks WHERE sample_id = %s ORDER BY id", (sample_id,))
    profile_before = _profile(stack)

    settings = stack.container.settings
    url = settings.function_url("extract")
    token = stack.container.signer.service_token(settings.audience_for("extract"), settings.tasks_service_account)
    headers = {"Authorization": f"Bearer {token}", "X-CloudTasks-TaskRetryCount": "0"}
    again = requests.post(url, json={"sample_id": sample_id}, headers=headers, timeout=60)
    assert again.status_code == 200 and again.json()["status"] == "skipped", again.text
    assert requests.post(url, json={"sample_id": sample_id}, timeout=60).status_code == 401
    assert stack.container.tasks.wait_idle(30)

    assert db.query("SELECT status, updated_at, content FROM training_samples WHERE id = %s",
                    (sample_id,))[0] == before
    assert db.query("SELECT id FROM sample_chunks WHERE sample_id = %s ORDER BY id", (sample_id,)) == chunks_before
    assert _profile(stack)["version"] == profile_before["version"]


def test_racing_deliveries_of_one_embed_task_embed_it_once(stack):
    from concurrent.futures import ThreadPoolExecutor

    r = _upload(stack, b"Hi Dana - thanks for the call today. I'll send the pilot plan by Friday.\n\nBest,\nAlex",
                "race.txt")
    sample_id = r.json()["id"]
    assert _wait(stack, sample_id)["status"] == "ready"
    db = stack.container.db
    chunks = db.query("SELECT count(*) AS n FROM sample_chunks WHERE sample_id = %s", (sample_id,))[0]["n"]
    # As if the first delivery died after entering the step: every redelivery may resume it, at once.
    db.query("UPDATE training_samples SET status = 'embedding' WHERE id = %s RETURNING id", (sample_id,))
    settings = stack.container.settings
    token = stack.container.signer.service_token(settings.audience_for("embed"), settings.tasks_service_account)
    headers = {"Authorization": f"Bearer {token}", "X-CloudTasks-TaskRetryCount": "0"}

    def deliver(_):
        return requests.post(settings.function_url("embed"), json={"sample_id": sample_id}, headers=headers,
                             timeout=120)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(deliver, range(4)))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    statuses = sorted(a.json()["status"] for a in answers)
    assert "ready" in statuses and set(statuses) <= {"ready", "skipped"}
    assert db.query("SELECT status FROM training_samples WHERE id = %s", (sample_id,))[0]["status"] == "ready"
    assert db.query("SELECT count(*) AS n FROM sample_chunks WHERE sample_id = %s", (sample_id,))[0]["n"] == chunks


def test_retrain_re_embeds_ready_samples(stack):
    db = stack.container.db
    ready_before = db.query("SELECT count(*) AS n FROM training_samples t JOIN reps r ON r.id = t.rep_id "
                            "WHERE r.email = 'sam@example.com' AND status = 'ready'")[0]["n"]
    version = _profile(stack, SAM)["version"]
    r = requests.post(f"{stack.url}/ingest/retrain", headers=SAM, timeout=60)
    assert r.status_code == 202 and r.json()["queued"] == ready_before
    assert stack.container.tasks.wait_idle(120)
    listed = requests.get(f"{stack.url}/ingest/samples", headers=SAM, timeout=30).json()["samples"]
    assert all(s["status"] == "ready" for s in listed)
    assert _profile(stack, SAM)["version"] >= version + ready_before
