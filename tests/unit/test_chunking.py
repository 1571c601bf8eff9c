"""The chunker: passage sizes, sentence and paragraph boundaries, overlap, and the token cap."""

from __future__ import annotations

import random

import pytest

from shared.voice.chunking import chunk_text, estimate_tokens, sentences

WORDS = ("the quick brown fox jumps over a lazy dog while our team reviews pricing options for "
         "next quarter and considers extraordinary implementation timelines carefully").split()


def _prose(paragraphs: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))).capitalize() + "."
                 for _ in range(rng.randint(2, 8))]
        out.append(" ".join(sents))
    return "\n\n".join(out)


def test_empty_text_has_no_chunks():
    assert chunk_text("") == []
    assert chunk_text("  \n\n \t ") == []


def test_a_short_email_is_one_chunk_with_its_paragraphs():
    text = "Hi Jordan,\n\nThanks for the call today. Quick recap below.\n\nCheers,\nAlex"
    chunks = chunk_text(text)
    assert len(chunks) == 1
    assert chunks[0].ordinal == 0
    assert chunks[0].text.startswith("Hi Jordan,\n\nThanks for the call today.")
    assert chunks[0].text.endswith("Cheers,\nAlex")


def test_long_text_gives_passages_within_bounds_and_under_the_token_cap():
    text = _prose(30)
    chunks = chunk_text(text, max_tokens=256)
    assert len(chunks) > 3
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.words <= 250
        assert estimate_tokens(chunk.text) <= 256
    # Every passage but the last reaches a useful size.
    assert all(c.words >= 100 for c in chunks[:-1])


def test_chunks_end_at_sentence_boundaries():
    for chunk in chunk_text(_prose(20)):
        assert chunk.text.rstrip().endswith("."), chunk.text[-40:]


def test_consecutive_chunks_overlap_by_whole_sentences():
    # One long paragraph of short sentences: every boundary falls between sentences that fit the overlap.
    text = " ".join(f"Sentence number {i} talks about pricing." for i in range(200))
    chunks = chunk_text(text, overlap_words=30)
    assert len(chunks) > 3
    for before, after in zip(chunks, chunks[1:]):
        shared = [s for s in sentences(after.text) if s in sentences(before.text)]
        assert shared and after.text.startswith(" ".join(shared))
        assert before.text.endswith(" ".join(shared))
        assert 0 < sum(len(s.split()) for s in shared) <= 30


def test_no_overlap_when_asked_for_none():
    chunks = chunk_text(_prose(20), overlap_words=0)
    joined_words = sum(c.words for c in chunks)
    assert joined_words == len(_prose(20).split())


def test_every_word_is_kept():
    text = _prose(25, seed=3)
    chunks = chunk_text(text, overlap_words=0)
    assert " ".join(" ".join(c.text.split()) for c in chunks) == " ".join(text.split())


def test_a_sentence_longer_than_a_passage_is_cut_between_words():
    giant = " ".join(["word"] * 700) + "."
    chunks = chunk_text(giant, max_tokens=256)
    assert len(chunks) >= 3
    assert all(estimate_tokens(c.text) <= 256 for c in chunks)


def test_a_smaller_model_limit_makes_smaller_chunks():
    text = _prose(30)
    wide = chunk_text(text, max_tokens=2048)
    narrow = chunk_text(text, max_tokens=128)
    assert max(c.words for c in narrow) < max(c.words for c in wide)
    assert all(estimate_tokens(c.text) <= 128 for c in narrow)


def test_a_tiny_tail_is_merged_into_the_previous_passage():
    text = _prose(6, seed=11) + "\n\nThanks again."
    chunks = chunk_text(text, max_tokens=2048, target_words=120, max_words=250)
    assert chunks[-1].text.endswith("Thanks again.")
    assert chunks[-1].words > 5


def test_estimate_over_counts_long_words_and_punctuation():
    assert estimate_tokens("hi") == 3
    assert estimate_tokens("internationalisation") > estimate_tokens("cat")
    assert estimate_tokens("a, b.") == 6


@pytest.mark.parametrize("kwargs", [{"min_words": 0}, {"target_words": 300, "max_words": 250},
                                    {"overlap_words": 200}, {"max_tokens": 4}])
def test_contradictory_sizes_are_refused(kwargs):
    with pytest.raises(ValueError):
        chunk_text("Some text.", **kwargs)
