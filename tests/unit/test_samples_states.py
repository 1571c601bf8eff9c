"""The training-sample state machine: legal and illegal transitions, step re-entry, content hashes."""

from __future__ import annotations

import pytest

from shared.errors import BadRequest, NotFound
from shared.voice import samples
from shared.voice.samples import (EMBEDDING, EXTRACTING, FAILED, QUEUED, READY, IllegalTransition,
                                  can_move, check_transition)


@pytest.mark.parametrize("current,new", [(QUEUED, EXTRACTING), (EXTRACTING, EMBEDDING), (EMBEDDING, READY),
                                         (QUEUED, FAILED), (EXTRACTING, FAILED), (EMBEDDING, FAILED),
                                         (EXTRACTING, EXTRACTING), (READY, EMBEDDING)])
def test_legal_transitions(current, new):
    assert can_move(current, new)
    check_transition(current, new)


@pytest.mark.parametrize("current,new", [(QUEUED, READY), (QUEUED, EMBEDDING), (EXTRACTING, READY),
                                         (READY, FAILED), (READY, QUEUED), (FAILED, QUEUED), (FAILED, READY),
                                         (EMBEDDING, EXTRACTING), ("bogus", READY)])
def test_illegal_transitions_raise(current, new):
    assert not can_move(current, new)
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, new)
    assert info.value.status == 409


def test_finished_states_lead_nowhere_but_re_embedding():
    assert samples.TRANSITIONS[FAILED] == frozenset()
    assert samples.TRANSITIONS[READY] == frozenset({EMBEDDING})


def test_upload_hash_is_of_the_bytes_and_link_hash_of_the_normalised_link():
    assert samples.hash_bytes(b"abc") == samples.hash_bytes(b"abc") != samples.hash_bytes(b"abd")
    assert samples.hash_link("youtube", "dQw4w9WgXcQ") == samples.hash_link("youtube", "dQw4w9WgXcQ")
    assert samples.hash_link("youtube", "x") != samples.hash_link("web", "x")
    assert samples.hash_bytes(b"x").startswith("sha256:") and samples.hash_link("web", "x").startswith("link:")


# --- against a real database ------------------------------------------------------------------------


@pytest.fixture
def rep_id(db):
    return str(db.query("INSERT INTO reps (email, display_name) VALUES ('alex@example.com', 'Alex Rivera') "
                        "RETURNING id")[0]["id"])


def _new(db, rep_id, content=b"hello"):
    sample, created = samples.create(db, rep_id=rep_id, source_type="upload",
                                     content_hash=samples.hash_bytes(content), title="t")
    return sample, created


@pytest.mark.emulator
def test_create_is_idempotent_per_rep_and_hash(db, rep_id):
    first, created = _new(db, rep_id)
    again, created_again = _new(db, rep_id)
    assert created and not created_again
    assert again["id"] == first["id"] and first["status"] == QUEUED
    other_rep = str(db.query("INSERT INTO reps (email) VALUES ('sam@example.com') RETURNING id")[0]["id"])
    theirs, created_theirs = _new(db, other_rep)
    assert created_theirs and theirs["id"] != first["id"]


@pytest.mark.emulator
def test_create_refuses_unknown_purpose_and_source(db, rep_id):
    with pytest.raises(BadRequest):
        samples.create(db, rep_id=rep_id, source_type="upload", content_hash="h", purpose="gossip")
    with pytest.raises(BadRequest):
        samples.create(db, rep_id=rep_id, source_type="fax", content_hash="h")


@pytest.mark.emulator
def test_the_happy_path_and_step_re_entry(db, rep_id):
    sample, _ = _new(db, rep_id)
    assert samples.begin(db, sample["id"], EXTRACTING)["status"] == EXTRACTING
    # A retried extract delivery re-enters its own step.
    assert samples.begin(db, sample["id"], EXTRACTING) is not None
    moved = samples.move(db, sample["id"], EMBEDDING, expect=[EXTRACTING], content="Hi there", word_count=2,
                         metadata={"kind": "text"})
    assert moved["status"] == EMBEDDING and moved["word_count"] == 2 and moved["metadata"] == {"kind": "text"}
    # A redelivered extract task for a sample past extraction finds nothing to do.
    assert samples.begin(db, sample["id"], EXTRACTING) is None
    assert samples.begin(db, sample["id"], EMBEDDING)["content"] == "Hi there"
    assert samples.move(db, sample["id"], READY)["status"] == READY
    assert samples.begin(db, sample["id"], EMBEDDING) is None
    assert samples.get(db, sample["id"], with_content=True)["content"] == "Hi there"


@pytest.mark.emulator
def test_illegal_moves_raise_and_change_nothing(db, rep_id):
    sample, _ = _new(db, rep_id)
    with pytest.raises(IllegalTransition):
        samples.move(db, sample["id"], READY)
    with pytest.raises(IllegalTransition):
        samples.move(db, sample["id"], EMBEDDING, expect=[EXTRACTING])
    assert samples.get(db, sample["id"])["status"] == QUEUED
    with pytest.raises(NotFound):
        samples.move(db, "00000000-0000-0000-0000-000000000000", EXTRACTING)


@pytest.mark.emulator
def test_fail_records_the_message_and_finished_samples_stay_finished(db, rep_id):
    sample, _ = _new(db, rep_id)
    samples.begin(db, sample["id"], EXTRACTING)
    failed = samples.fail(db, sample["id"], "The PDF is damaged.")
    assert failed["status"] == FAILED and failed["error"] == "The PDF is damaged."
    assert samples.fail(db, sample["id"], "again") is None
    assert samples.begin(db, sample["id"], EXTRACTING) is None
    assert samples.get(db, sample["id"])["error"] == "The PDF is damaged."


@pytest.mark.emulator
def test_listing_filters_and_delete(db, rep_id):
    a, _ = _new(db, rep_id, b"a")
    b, _ = _new(db, rep_id, b"b")
    samples.begin(db, b["id"], EXTRACTING)
    samples.fail(db, b["id"], "bad")
    assert {s["id"] for s in samples.list_samples(db, rep_id)} == {a["id"], b["id"]}
    assert [s["id"] for s in samples.list_samples(db, rep_id, status=FAILED)] == [b["id"]]
    assert samples.list_samples(db, rep_id, source_type="youtube") == []
    with pytest.raises(BadRequest):
        samples.list_samples(db, rep_id, status="done")
    assert samples.delete(db, a["id"])["id"] == a["id"]
    assert samples.delete(db, a["id"]) is None
    assert samples.get(db, "not-a-uuid") is None
