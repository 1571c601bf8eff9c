"""The Embedder port, on the embedded model (real all-MiniLM-L6-v2 int8) and on Vertex AI (google-genai
talking real HTTP to the loopback stand-in of tests/standins/vertex.py).

The stand-in's vectors are hashed character trigrams, not meanings, so the semantic check runs on the
local model only.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from shared.adapters.local_embeddings import LocalEmbedder
from shared.adapters.vertex_embeddings import (
    MAX_TEXTS_PER_REQUEST,
    MAX_TOKENS_PER_REQUEST,
    VertexEmbedder,
)
from shared.errors import BadRequest, DependencyDown, PermanentError, RateLimited, RetryableError
from shared.ports import Embedder
from tests.standins.vertex import count_tokens, standin_vector

ROOT = Path(__file__).resolve().parents[2]
# Below the model's full 768 so that the stand-in, like Vertex, returns vectors that are not unit
# length: the unit-length check then tests the adapter's own normalisation.
VERTEX_DIMENSION = 256


def cosine(a: list[float], b: list[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b)))


@pytest.fixture(scope="module")
def local_embedder() -> LocalEmbedder:
    # A small batch so that "more than one batch" stays quick on the real model.
    return LocalEmbedder(batch_size=4)


def make_vertex(standin, **kwargs) -> VertexEmbedder:
    kwargs.setdefault("dimension", VERTEX_DIMENSION)
    return VertexEmbedder(project="test-project", location="us-central1", base_url=standin.base_url, **kwargs)


@pytest.fixture(params=["local", "vertex"])
def embedder(request) -> Embedder:
    if request.param == "local":
        return request.getfixturevalue("local_embedder")
    return make_vertex(request.getfixturevalue("vertex_standin"))


SENTENCES = [
    "Thanks for taking the time to talk with me yesterday.",
    "Our onboarding usually takes two weeks.",
    "Could we move the call to Thursday morning?",
    "I have attached the proposal we discussed.",
    "Let me know if the pricing works for your team.",
]


# --- both adapters ---------------------------------------------------------------------------------


def test_implements_the_port(embedder):
    assert isinstance(embedder, Embedder)
    assert embedder.model and isinstance(embedder.model, str)


def test_vectors_have_the_declared_dimension(embedder):
    vectors = embedder.embed(SENTENCES)
    assert len(vectors) == len(SENTENCES)
    assert {len(v) for v in vectors} == {embedder.dimension}
    assert all(isinstance(x, float) for x in vectors[0])


def test_vectors_are_unit_length(embedder):
    for vector in embedder.embed(SENTENCES + ["x", "a much longer text " * 40]):
        assert math.sqrt(math.fsum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-5)


def test_order_is_preserved(embedder):
    together = embedder.embed(SENTENCES)
    alone = [embedder.embed([text])[0] for text in SENTENCES]
    reversed_ = embedder.embed(list(reversed(SENTENCES)))[::-1]
    for a, b, c in zip(together, alone, reversed_):
        assert cosine(a, b) == pytest.approx(1.0, abs=1e-4)
        assert cosine(a, c) == pytest.approx(1.0, abs=1e-4)
    # Distinct texts give distinct vectors, so a reordering could not pass unnoticed.
    assert cosine(together[0], together[1]) < 0.99


def test_more_texts_than_one_batch(embedder):
    texts = [f"Follow-up note {i}: {SENTENCES[i % len(SENTENCES)]}" for i in range(2 * embedder.batch_size + 1)]
    vectors = embedder.embed(texts)
    assert len(vectors) == len(texts)
    for index in (0, embedder.batch_size, len(texts) - 1):
        assert cosine(vectors[index], embedder.embed([texts[index]])[0]) == pytest.approx(1.0, abs=1e-4)


def test_empty_input_gives_no_vectors(embedder):
    assert embedder.embed([]) == []


def test_deterministic(embedder):
    first = embedder.embed(SENTENCES)
    second = embedder.embed(SENTENCES)
    for a, b in zip(first, second):
        assert a == pytest.approx(b, abs=1e-6)


def test_blank_texts_are_refused(embedder):
    with pytest.raises(BadRequest):
        embedder.embed(["fine", "   "])
    with pytest.raises(BadRequest):
        embedder.embed([""])


def test_a_bare_string_is_a_type_error(embedder):
    with pytest.raises(TypeError):
        embedder.embed("not a list")  # type: ignore[arg-type]


def test_health(embedder):
    embedder.health()


# --- the local model -------------------------------------------------------------------------------

PARAPHRASES = [
    ("Thanks for reaching out about our pricing plans.",
     "I appreciate you asking how much our plans cost.",
     "The weather in Lisbon is sunny today."),
    ("Can we schedule a demo next Tuesday afternoon?",
     "Would Tuesday afternoon work for a product walkthrough?",
     "Our quarterly revenue grew by twelve percent."),
    ("Please find the signed contract attached.",
     "I've attached the contract with our signature.",
     "The cat slept on the warm windowsill."),
]


@pytest.mark.parametrize("anchor,paraphrase,unrelated", PARAPHRASES)
def test_local_paraphrase_is_closer_than_unrelated_text(local_embedder, anchor, paraphrase, unrelated):
    a, p, u = local_embedder.embed([anchor, paraphrase, unrelated])
    assert cosine(a, p) > cosine(a, u) + 0.2


def test_local_truncates_at_256_tokens(local_embedder):
    # 300 one-token words: anything after the 254th word (256 minus [CLS] and [SEP]) is cut off.
    head = " ".join(["sales"] * 300)
    same = local_embedder.embed([head, head + " weather forecast storms rain"])
    assert cosine(same[0], same[1]) == pytest.approx(1.0, abs=1e-5)
    short = local_embedder.embed(["sales " * 10, "sales " * 10 + "weather forecast storms rain"])
    assert cosine(short[0], short[1]) < 0.999


def test_local_batches_match_single_texts_of_mixed_lengths(local_embedder):
    texts = ["hi", "a medium sized sentence about a meeting", "word " * 200, "ok then"]
    batched = local_embedder.embed(texts)
    for text, vector in zip(texts, batched):
        assert cosine(vector, local_embedder.embed([text])[0]) == pytest.approx(1.0, abs=1e-4)


def test_local_loads_once_under_concurrent_first_use():
    builds = []

    class Counting(LocalEmbedder):
        def _build_session(self):
            builds.append(1)
            return super()._build_session()

    embedder = Counting(threads=1)
    results: list[list[list[float]]] = []
    errors: list[BaseException] = []

    def work():
        try:
            results.append(embedder.embed(SENTENCES[:2]))
        except BaseException as exc:  # noqa: BLE001 -- re-raised by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(builds) == 1
    assert len(results) == 4
    for other in results[1:]:
        assert other[0] == pytest.approx(results[0][0], abs=1e-6)


def test_local_missing_model_is_dependency_down(tmp_path):
    with pytest.raises(DependencyDown):
        LocalEmbedder(model_path=tmp_path / "absent.onnx").embed(["text"])
    with pytest.raises(DependencyDown):
        LocalEmbedder(vocab_path=tmp_path / "absent.txt").embed(["text"])


@pytest.mark.parametrize("module,heavy", [
    ("shared.adapters.local_embeddings", ["onnxruntime", "tokenizers", "numpy"]),
    ("shared.adapters.vertex_embeddings", ["google.genai", "httpx2"]),
])
def test_importing_an_adapter_loads_no_client(module, heavy):
    code = f"import json, sys, {module}; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# --- Vertex AI through the stand-in ----------------------------------------------------------------


def test_vertex_requests_respect_the_instance_limit(vertex_standin):
    embedder = make_vertex(vertex_standin, batch_size=10_000)  # asks for more than Vertex allows
    texts = [f"text {i}" for i in range(2 * MAX_TEXTS_PER_REQUEST + 1)]
    assert len(embedder.embed(texts)) == len(texts)
    calls = vertex_standin.calls
    assert [len(c.body["instances"]) for c in calls] == [250, 250, 1]
    assert [i["content"] for c in calls for i in c.body["instances"]] == texts
    assert all(c.status == 200 for c in calls)


def test_vertex_requests_respect_the_token_limit(vertex_standin):
    # 30 texts of about 2,000 tokens each: 60,000 tokens, three times what one request may carry.
    texts = [f"chunk {i} " + "pipeline " * 900 for i in range(30)]
    assert len(make_vertex(vertex_standin).embed(texts)) == 30
    calls = vertex_standin.calls
    assert len(calls) > 1 and all(c.status == 200 for c in calls)
    for call in calls:
        tokens = sum(min(count_tokens(i["content"]), 2048) for i in call.body["instances"])
        assert tokens <= MAX_TOKENS_PER_REQUEST


def test_vertex_request_shape(vertex_standin):
    make_vertex(vertex_standin).embed(["hello"])
    (call,) = vertex_standin.calls
    assert call.path == ("/v1/projects/test-project/locations/us-central1/publishers/google/models/"
                         "text-embedding-005:predict")
    assert call.headers["authorization"].startswith("Bearer ")
    assert call.body == {"instances": [{"content": "hello", "task_type": "SEMANTIC_SIMILARITY"}],
                         "parameters": {"outputDimensionality": VERTEX_DIMENSION}}


def test_vertex_vectors_are_the_services_scaled_to_unit_length(vertex_standin):
    (vector,) = make_vertex(vertex_standin).embed(["Let me know if Thursday works."])
    raw = standin_vector("Let me know if Thursday works.", VERTEX_DIMENSION)
    # What the service sent is shorter than unit length at a reduced dimensionality ...
    assert math.sqrt(math.fsum(x * x for x in raw)) < 0.9
    # ... and the adapter returns the same direction at unit length.
    assert cosine(vector, raw) == pytest.approx(1.0, abs=1e-9)


def test_vertex_full_dimension(vertex_standin):
    (vector,) = make_vertex(vertex_standin, dimension=768).embed(["full size"])
    assert len(vector) == 768


def test_vertex_gemini_model_sends_one_text_per_request(vertex_standin):
    embedder = make_vertex(vertex_standin, model="gemini-embedding-001", dimension=768)
    vectors = embedder.embed(SENTENCES[:3])
    assert [len(v) for v in vectors] == [768] * 3
    calls = vertex_standin.calls
    assert [c.verb for c in calls] == ["embedContent"] * 3
    assert [c.body["content"]["parts"][0]["text"] for c in calls] == SENTENCES[:3]
    assert all(c.body["embedContentConfig"]["outputDimensionality"] == 768 for c in calls)


def test_vertex_standin_refuses_more_than_250_instances(vertex_standin):
    url = (f"{vertex_standin.base_url}/v1/projects/p/locations/us-central1/publishers/google/models/"
           "text-embedding-005:predict")
    body = {"instances": [{"content": f"t{i}"} for i in range(251)]}
    response = requests.post(url, json=body, headers={"Authorization": "Bearer t"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "250 instance(s) is allowed per prediction. Actual: 251" in response.json()["error"]["message"]


def test_vertex_429_is_rate_limited(vertex_standin):
    vertex_standin.fail_next(429)
    with pytest.raises(RateLimited) as caught:
        make_vertex(vertex_standin).embed(["quota"])
    assert caught.value.details["vertex_status"] == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("status", [500, 503, 504])
def test_vertex_5xx_is_dependency_down(vertex_standin, status):
    vertex_standin.fail_next(status)
    with pytest.raises(DependencyDown):
        make_vertex(vertex_standin).embed(["down"])


@pytest.mark.parametrize("status", [400, 403, 404])
def test_vertex_4xx_is_permanent(vertex_standin, status):
    vertex_standin.fail_next(status, message="refused")
    with pytest.raises(PermanentError) as caught:
        make_vertex(vertex_standin).embed(["refused"])
    assert not isinstance(caught.value, RetryableError)
    assert caught.value.details["status"] == status


def test_vertex_dimension_above_the_model_is_permanent(vertex_standin):
    with pytest.raises(PermanentError):
        make_vertex(vertex_standin, dimension=1024).embed(["too wide"])


def test_vertex_failure_in_a_later_batch_fails_the_whole_call(vertex_standin):
    embedder = make_vertex(vertex_standin)
    vertex_standin.fail_next(503, after=1)
    with pytest.raises(DependencyDown):
        embedder.embed([f"t{i}" for i in range(300)])  # two requests: 250 pass, then 50 fail
    assert [c.status for c in vertex_standin.calls] == [200, 503]
    assert len(embedder.embed([f"t{i}" for i in range(300)])) == 300


def test_vertex_unreachable_is_dependency_down():
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = VertexEmbedder(project="p", location="us-central1", base_url=f"http://127.0.0.1:{port}",
                              timeout=5)
    with pytest.raises(DependencyDown):
        embedder.embed(["anyone there?"])


def test_vertex_empty_input_sends_nothing(vertex_standin):
    assert make_vertex(vertex_standin).embed([]) == []
    assert vertex_standin.calls == []
