"""Voice profiles on embedded Postgres: versions, counts, sources, concurrency, and match ranking."""

from __future__ import annotations

import hashlib
import threading

import pytest

from shared.errors import BadRequest, NotFound
from shared.voice import profile

pytestmark = pytest.mark.emulator

CASUAL = [
    "Hey Dana,\n\nQuick one - did the deck land ok? Happy to hop on a call tomorrow if that's easier! "
    "Honestly it's super quick to set up, we've got teams live in a day.\n\nCheers,\nJo",
    "Hey Sam,\n\nLoved chatting today! Want me to send over the pricing sheet? No pressure at all - "
    "just shout if anything's unclear. Can't wait to hear what you think!\n\nCheers,\nJo",
    "Hey Lee,\n\nJust bumping this up! Did the team get a chance to poke around the trial? If you're "
    "stuck anywhere, ping me and I'll jump on it. It's no trouble!\n\nCheers,\nJo",
    "Hey Priya,\n\nThanks a ton for the intro! Super excited. Got 15 mins Thursday? I'll keep it short, "
    "promise - just want to see what's bugging your reps most.\n\nCheers,\nJo",
    "Hey Max,\n\nHope the offsite was fun! Wanted to loop back on the rollout. Shall I grab a slot "
    "next week? Whatever works for you is great!\n\nCheers,\nJo",
]
FORMAL = [
    "Dear Mr. Alvarez,\n\nThank you for your time on Tuesday. As discussed, I have attached the proposal, "
    "which outlines the implementation timeline, the associated investment, and the responsibilities of "
    "each party during the evaluation period.\n\nKind regards,\nMorgan Reyes",
    "Dear Ms. Chen,\n\nFollowing our conversation, I would like to confirm the arrangements for the "
    "evaluation period. Please find the relevant documentation enclosed; should any question arise, I "
    "remain at your disposal.\n\nKind regards,\nMorgan Reyes",
    "Dear Dr. Okafor,\n\nI am writing to follow up on the proposal submitted on the fourteenth. Our "
    "organisation would welcome the opportunity to present the solution to your procurement committee "
    "at a time of your convenience.\n\nKind regards,\nMorgan Reyes",
    "Dear Mr. Novak,\n\nPlease accept my thanks for the informative meeting. In accordance with your "
    "request, I enclose a summary of the contractual terms, together with the reference accounts you "
    "asked to consult.\n\nKind regards,\nMorgan Reyes",
    "Dear Ms. Laurent,\n\nI trust this message finds you well. With reference to our earlier "
    "correspondence, I should be grateful if you would indicate a convenient date for the final "
    "review of the agreement.\n\nKind regards,\nMorgan Reyes",
]
HELD_OUT_CASUAL = ("Hey Robin,\n\nSo great meeting you at the expo! Want me to set up a quick demo for the "
                   "team? It's honestly painless - we'd be done in 20 mins. Just shout!\n\nCheers,\nJo")
HELD_OUT_FORMAL = ("Dear Mr. Ibrahim,\n\nThank you for your correspondence of the ninth. I have enclosed the "
                   "revised schedule, which reflects the amendments requested by your legal department, "
                   "and I should be pleased to arrange a review at your convenience.\n\nKind regards,\nMorgan Reyes")


class FakeEmbedder:
    """Eight-dimensional vectors from a hash: enough to exercise the centroid without a model."""

    model = "test-model"
    dimension = 8

    def embed(self, texts):
        out = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            vector = [b - 127.5 for b in digest[:8]]
            norm = sum(x * x for x in vector) ** 0.5
            out.append([x / norm for x in vector])
        return out

    def health(self):
        pass


def add_rep(db, email: str) -> str:
    return db.query("INSERT INTO reps (email) VALUES (%s) RETURNING id::text AS id", (email,))[0]["id"]


def add_sample(db, rep_id: str, content: str, embedder, *, source_type: str = "upload", status: str = "ready",
               purpose: str = "voice") -> str:
    sample_id = db.query(
        """INSERT INTO training_samples (rep_id, source_type, content, content_hash, status, purpose, word_count)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id::text AS id""",
        (rep_id, source_type, content, hashlib.sha256(content.encode()).hexdigest(), status, purpose,
         len(content.split())))[0]["id"]
    vector = embedder.embed([content])[0]
    db.query("""INSERT INTO sample_chunks (sample_id, rep_id, ordinal, content, model, embedding)
                VALUES (%s, %s, 0, %s, %s, %s::vector)""",
             (sample_id, rep_id, content, embedder.model, profile._vector_text(vector)))
    return sample_id


def test_versions_counts_and_sources(db):
    embedder = FakeEmbedder()
    rep = add_rep(db, "jo@example.com")
    assert profile.get_profile(db, rep) is None
    add_sample(db, rep, CASUAL[0], embedder, source_type="upload")
    add_sample(db, rep, CASUAL[1], embedder, source_type="gmail")
    add_sample(db, rep, CASUAL[2], embedder, source_type="gmail")
    add_sample(db, rep, CASUAL[3], embedder, status="embedding")       # not ready: left out
    add_sample(db, rep, CASUAL[4], embedder, purpose="asset")          # not voice: left out

    first = profile.rebuild_profile(db, embedder, rep)
    assert first["version"] == 1 and first["sample_count"] == 3 and first["model"] == "test-model"
    assert first["sources"]["gmail"]["samples"] == 2 and first["sources"]["upload"]["samples"] == 1
    assert first["word_count"] == sum(s["words"] for s in first["sources"].values()) > 0
    assert first["features"]["signoffs"][0]["text"] == "cheers"
    assert "style_model" not in first["features"]

    second = profile.rebuild_profile(db, embedder, rep)
    assert second["version"] == 2
    stored = profile.get_profile(db, rep)
    assert stored["version"] == 2 and stored["sample_count"] == 3 and stored["features"] == second["features"]
    assert "centroid" not in stored and isinstance(stored["created_at"], str)
    row = db.query("SELECT centroid FROM voice_profiles WHERE rep_id = %s AND version = 2", (rep,))[0]
    centroid = profile._as_list(row["centroid"])  # text or list, depending on when the connection opened
    assert len(centroid) == 8 and sum(x * x for x in centroid) == pytest.approx(1.0, abs=1e-5)


def test_a_deleted_sample_changes_the_next_version(db):
    embedder = FakeEmbedder()
    rep = add_rep(db, "jo@example.com")
    keep = add_sample(db, rep, CASUAL[0], embedder, source_type="upload")
    gone = add_sample(db, rep, FORMAL[0], embedder, source_type="drive")
    before = profile.rebuild_profile(db, embedder, rep)
    assert set(before["sources"]) == {"upload", "drive"}
    db.query("DELETE FROM training_samples WHERE id = %s", (gone,))
    after = profile.rebuild_profile(db, embedder, rep)
    assert after["version"] == before["version"] + 1
    assert after["sample_count"] == 1 and set(after["sources"]) == {"upload"}
    assert after["word_count"] < before["word_count"]
    assert after["features"]["greetings"] == [{"text": "hey", "count": 1, "share": 1.0}]
    assert keep  # the remaining sample is the casual one


def test_concurrent_rebuilds_get_distinct_versions(db):
    embedder = FakeEmbedder()
    rep = add_rep(db, "jo@example.com")
    for text in CASUAL:
        add_sample(db, rep, text, embedder)
    versions, errors = [], []
    start = threading.Barrier(4)

    def rebuild():
        start.wait()
        try:
            versions.append(profile.rebuild_profile(db, embedder, rep)["version"])
        except Exception as exc:  # a lost race would surface here as a unique violation
            errors.append(exc)

    threads = [threading.Thread(target=rebuild) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions) == [1, 2, 3, 4]


def test_match_ranks_the_right_rep_first(db, local_embedder):
    casual = add_rep(db, "jo@example.com")
    formal = add_rep(db, "morgan@example.com")
    nobody = add_rep(db, "new@example.com")  # no profile: absent from the results
    for text in CASUAL:
        add_sample(db, casual, text, local_embedder)
    for text in FORMAL:
        add_sample(db, formal, text, local_embedder)
    profile.rebuild_profile(db, local_embedder, casual)
    profile.rebuild_profile(db, local_embedder, formal)

    casual_scores = profile.match(db, local_embedder, HELD_OUT_CASUAL)
    assert [s["email"] for s in casual_scores] == ["jo@example.com", "morgan@example.com"]
    assert casual_scores[0]["score"] > 0.5 > casual_scores[1]["score"]
    formal_scores = profile.match(db, local_embedder, HELD_OUT_FORMAL)
    assert [s["email"] for s in formal_scores] == ["morgan@example.com", "jo@example.com"]
    assert all(0.0 <= s["score"] <= 1.0 for s in casual_scores + formal_scores)

    only = profile.match(db, local_embedder, HELD_OUT_FORMAL, rep_ids=[casual])
    assert [s["rep_id"] for s in only] == [casual]
    assert profile.score_for_rep(db, local_embedder, HELD_OUT_CASUAL, casual) == casual_scores[0]["score"]
    with pytest.raises(NotFound):
        profile.score_for_rep(db, local_embedder, HELD_OUT_CASUAL, nobody)
    with pytest.raises(BadRequest) as short:
        profile.match(db, local_embedder, "Thanks, talk soon!")
    assert short.value.code == "text_too_short"


def test_profiles_of_another_model_are_matched_on_style_alone(db, local_embedder):
    rep = add_rep(db, "jo@example.com")
    fake = FakeEmbedder()
    for text in CASUAL:
        add_sample(db, rep, text, fake)
    profile.rebuild_profile(db, fake, rep)
    scores = profile.match(db, local_embedder, HELD_OUT_CASUAL)
    assert [s["email"] for s in scores] == ["jo@example.com"] and 0.0 < scores[0]["score"] < 1.0


@pytest.fixture(scope="module")
def local_embedder():
    from shared.adapters.local_embeddings import LocalEmbedder

    return LocalEmbedder()
