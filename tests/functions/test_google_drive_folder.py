"""A Drive folder through `POST /ingest` with the rep's real grant (the Drive adapter against the Google
stand-in): one queued sample per readable file, bounded, deduplicated."""

from __future__ import annotations

import pytest

from shared.adapters.google_drive import GoogleDrive
from shared.voice.sources import google_refresh_secret
from tests.fixtures.functions import function_app
from tests.standins.google import CLIENT_ID, CLIENT_SECRET, DriveItem

pytestmark = pytest.mark.emulator

ALEX = "alex@example.com"
FOLDER = "folder0000001"
DOC = "application/vnd.google-apps.document"


@pytest.fixture
def client(lifecycle, google_world, db):
    google = google_world.google
    lifecycle._built["drive"] = GoogleDrive(lifecycle.secrets, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                            token_uri=google.base_url + "/token", api_base_url=google.base_url,
                                            timeout=5)
    rep_id = str(db.query("INSERT INTO reps (email, google_status) VALUES (%s, 'connected') RETURNING id",
                          (ALEX,))[0]["id"])
    lifecycle.secrets.add_version(google_refresh_secret(rep_id), google.grant(ALEX).encode())
    for n in range(3):
        google.add(DriveItem(f"doc00000000{n}", f"Email {n}", DOC, parents=(FOLDER,), owner=ALEX))
    google.add(DriveItem("img000000001", "logo.png", "image/png", b"\x89PNG", parents=(FOLDER,), owner=ALEX))
    google.add(DriveItem("sub000000001", "Archive", "application/vnd.google-apps.folder", parents=(FOLDER,),
                         owner=ALEX))
    return function_app("ingest").test_client()


def test_a_folder_becomes_one_sample_per_document(client, lifecycle, db):
    answer = client.post("/", json={"source": "drive", "folder_id": FOLDER}, headers={"X-Dev-User": ALEX})
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert sorted(q["title"] for q in body["queued"]) == ["Email 0", "Email 1", "Email 2"]
    assert {s["name"] for s in body["skipped"]} == {"logo.png", "Archive"}
    rows = db.query("SELECT source_type, source_id, status FROM training_samples ORDER BY source_id")
    assert [(r["source_type"], r["source_id"]) for r in rows] == [("drive", f"doc00000000{n}") for n in range(3)]
    assert len(lifecycle.tasks.tasks) == 3
    # The same folder again (as a link this time) adds nothing new.
    again = client.post("/", json={"source": "drive", "url": f"https://drive.google.com/drive/folders/{FOLDER}"},
                        headers={"X-Dev-User": ALEX}).get_json()
    assert again["queued"] == [] and len(again["duplicates"]) == 3


def test_a_folder_import_is_bounded(client, lifecycle, google_world, db, monkeypatch):
    from shared.accounts_google import drive_folder

    monkeypatch.setattr(drive_folder, "MAX_FILES", 2)
    body = client.post("/", json={"source": "drive", "folder_id": FOLDER}, headers={"X-Dev-User": ALEX}).get_json()
    assert len(body["queued"]) == 2
    assert any("over the 2 files" in s["reason"] for s in body["skipped"])


def test_a_queued_folder_file_is_extracted_through_the_normal_path(client, lifecycle, google_world, db):
    from shared.voice import pipeline

    google_world.google.files["doc000000000"].exports["text/plain"] = b"Hi Sam, thanks for the call today."
    client.post("/", json={"source": "drive", "folder_id": FOLDER}, headers={"X-Dev-User": ALEX})
    sample_id = str(db.query("SELECT id FROM training_samples WHERE source_id = 'doc000000000'")[0]["id"])
    assert pipeline.extract_step(lifecycle, sample_id)["status"] == "embedding"
    assert "thanks for the call" in db.query("SELECT content FROM training_samples WHERE id = %s",
                                              (sample_id,))[0]["content"]
