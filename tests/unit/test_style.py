"""Style features and the stylometric vectors on hand-written texts."""

from __future__ import annotations

import json

import pytest

from shared.voice import style

CASUAL = [
    "Hey Dana,\n\nQuick one - did the deck land ok? 🙂 Happy to hop on a call tomorrow!\n\nCheers,\nJo",
    "Hey Sam,\n\nLoved chatting today! Want me to send the pricing sheet? 🚀\n\nCheers,\nJo",
    "Hi Lee,\n\nJust checking in. Any questions on the trial? Can't wait to hear what the team thinks!\n\nCheers",
]
FORMAL = [
    "Dear Mr. Alvarez,\n\nThank you for your time on Tuesday. As discussed, I have attached the proposal, "
    "which outlines the implementation timeline and the associated investment.\n\nKind regards,\nMorgan",
    "Dear Ms. Chen,\n\nFollowing our conversation, I would like to confirm the arrangements for the "
    "evaluation period. Please find the relevant documentation enclosed.\n\nKind regards,\nMorgan",
]


def test_greetings_and_signoffs_are_counted():
    feats = style.features(CASUAL)
    assert feats["greetings"][0] == {"text": "hey", "count": 2, "share": 0.667}
    assert {"text": "hi", "count": 1, "share": 0.333} in feats["greetings"]
    assert feats["signoffs"] == [{"text": "cheers", "count": 3, "share": 1.0}]
    formal = style.features(FORMAL)
    assert formal["greetings"] == [{"text": "dear", "count": 2, "share": 1.0}]
    assert formal["signoffs"] == [{"text": "kind regards", "count": 2, "share": 1.0}]


def test_split_envelope_keeps_the_body():
    body, greeting, signoff = style.split_envelope("Hi Pat,\n\nThe contract is attached.\n\nBest,\nAlex")
    assert (body, greeting, signoff) == ("The contract is attached.", "hi", "best")
    assert style.split_envelope("The contract is attached.") == ("The contract is attached.", None, None)


def test_questions_exclamations_and_emoji():
    feats = style.features(CASUAL)
    # Body sentences with words: 2 + 2 + 3 (a lone emoji is not a sentence); questions: "did the deck land
    # ok?", "send the pricing sheet?", "Any questions on the trial?"; exclamations: "tomorrow!", "today!",
    # "thinks!".
    assert feats["questions_per_100_sentences"] == pytest.approx(300 / 7, abs=0.01)
    assert feats["exclamations_per_100_sentences"] == pytest.approx(300 / 7, abs=0.01)
    assert feats["emoji"]["top"] == [{"emoji": "🙂", "count": 1}, {"emoji": "🚀", "count": 1}] or \
        feats["emoji"]["top"] == [{"emoji": "🚀", "count": 1}, {"emoji": "🙂", "count": 1}]
    assert feats["emoji"]["per_1000_words"] > 0
    assert style.features(FORMAL)["emoji"] == {"per_1000_words": 0.0, "top": []}


def test_sentence_lengths_histogram():
    text = "One two three. " + "A b c d e f g h i j k l. " + " ".join(["word"] * 45) + "."
    feats = style.features([text])
    bins = {b["bin"]: b["count"] for b in feats["sentence_lengths"]}
    assert bins["1-5"] == 1 and bins["11-15"] == 1 and bins["41+"] == 1
    assert sum(bins.values()) == 3
    assert [b["bin"] for b in feats["sentence_lengths"]] == ["1-5", "6-10", "11-15", "16-20", "21-25", "26-30",
                                                             "31-40", "41+"]
    assert feats["sentence_length"]["median"] == 12.0


def test_formality_orders_casual_below_formal():
    casual, formal = style.features(CASUAL)["formality"], style.features(FORMAL)["formality"]
    assert casual < 0.2 and formal > 0.45 and formal - casual > 0.3


def test_characteristic_words_need_two_texts_and_skip_function_words():
    texts = ["The synergy roadmap looks great.", "Our synergy plan and the roadmap are ready.", "Pineapple."]
    words = [w["word"] for w in style.features(texts)["characteristic_words"]]
    assert words[:2] == ["roadmap", "synergy"]
    assert "pineapple" not in words and "the" not in words


def test_openers_and_closers():
    texts = ["Hi A,\n\nJust following up on the demo. It went well. Let me know what you think.\n\nBest",
             "Hi B,\n\nJust following up on pricing. It is attached. Let me know what you think.\n\nBest"]
    feats = style.features(texts)
    assert feats["openers"] == [{"text": "just following up", "count": 2}]
    assert feats["closers"] == [{"text": "let me know", "count": 2}]


def test_strength_levels():
    assert style.strength(0)["level"] == "none"
    assert style.strength(120) == {"level": "weak", "words": 120, "next_level_at": 500}
    assert style.strength(2500)["level"] == "good"
    assert style.strength(9000) == {"level": "strong", "words": 9000, "next_level_at": None}


def test_empty_input():
    feats = style.features([])
    assert feats["word_count"] == 0 and feats["text_count"] == 0
    assert feats["strength"]["level"] == "none"
    assert all(b["count"] == 0 for b in feats["sentence_lengths"])
    assert feats["greetings"] == [] and feats["characteristic_words"] == []
    assert style.features(["", "   "])["text_count"] == 0
    model = style.style_model([])
    assert model["words"] == 0 and model["fw"] == {}


def test_deterministic_and_json_able():
    first = style.features(CASUAL + FORMAL)
    again = style.features(list(CASUAL + FORMAL))
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    model = style.style_model(CASUAL + FORMAL)
    assert json.loads(json.dumps(model)) == model
    assert style.style_model(CASUAL + FORMAL) == model


def test_model_is_small_enough_for_a_json_column():
    long_texts = [" ".join(f"word{i % 97}x lorem ipsum, dolor; sit amet." for i in range(400))] * 5
    model = style.style_model(long_texts)
    assert all(len(grams) <= 300 for grams in model["grams"].values())
    assert len(json.dumps(model)) < 40_000


def test_similarity_prefers_the_same_writer():
    casual_model = style.style_model(CASUAL)
    formal_model = style.style_model(FORMAL)
    probe_casual = style.style_vector("Hey Kim,\n\nDid the quote land ok? 🙂 Can't wait to chat tomorrow!\n\nCheers")
    probe_formal = style.style_vector("Dear Mr. Patel,\n\nThank you for your patience. Please find the revised "
                                      "agreement enclosed, which reflects the terms discussed.\n\nKind regards")
    for part in ("char_grams", "rates"):
        assert style.similarity(probe_casual, casual_model)[part] > style.similarity(probe_casual, formal_model)[part]
        assert style.similarity(probe_formal, formal_model)[part] > style.similarity(probe_formal, casual_model)[part]


def test_function_word_delta_uses_background_of_models():
    models = [style.style_model([t]) for t in CASUAL + FORMAL]
    background = style.background_from_models(models)
    assert background is not None and set(background) == set(style.FUNCTION_WORDS)
    assert style.background_from_models(models[:2]) is None
    vector = style.style_vector(FORMAL[0])
    # A text against its own model is as close as Cosine Delta gets.
    assert style.function_word_similarity(vector, models[3], background) == pytest.approx(1.0)
