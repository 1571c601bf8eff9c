"""The production Embedder: Vertex AI text embeddings through ``google-genai`` (``vertexai=True``).

Per-request limits, from "Get text embeddings" > "API limits"
(https://cloud.google.com/vertex-ai/generative-ai/docs/embeddings/get-text-embeddings#api_limits):

* at most 250 input texts per request for the ``text-embedding-*`` models (a 251st is refused with
  400 "250 instance(s) is allowed per prediction"), and a single input text per request for the Gemini
  embedding models;
* at most 20,000 input tokens per request; more is a 400;
* each text is cut at 2,048 tokens (silently, unless ``autoTruncate`` is false).

So texts are packed into requests that respect both the count and an estimate of the token total. The
estimate errs high (see ``estimate_tokens``) because there is no way to count Vertex's tokens locally
without a call.

For ``text-embedding-*`` models the SDK posts to ``.../publishers/google/models/<model>:predict`` with
``{"instances": [{"content", "task_type"}], "parameters": {"outputDimensionality"}}``; for
``gemini-*`` models it uses ``:embedContent`` with one content per request.

Vectors are scaled to unit length here. The Gemini embeddings docs say only gemini-embedding-001's full
3,072-dimension vectors come normalised and that a smaller ``output_dimensionality`` (a Matryoshka cut)
must be normalised by the caller; doing it for every model and size keeps one contract, and costs
nothing for a vector that is already unit length.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from shared.adapters.local_embeddings import check_texts
from shared.errors import DependencyDown, PermanentError, RateLimited

log = logging.getLogger(__name__)

# "API limits" of the Get-text-embeddings page (module docstring).
MAX_TEXTS_PER_REQUEST = 250
MAX_TEXTS_PER_REQUEST_GEMINI = 1
MAX_TOKENS_PER_REQUEST = 20_000
MAX_TOKENS_PER_TEXT = 2_048

# Vertex's tokenizers average about four characters per token on English prose. Three per token
# over-counts ordinary text, so a request built from the estimate stays under the 20,000-token cap.
_CHARS_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens Vertex counts for one text, capped where Vertex truncates.

    Args:
        text: one input text.

    Returns:
        Estimated tokens, between 1 and 2,048.
    """
    return max(1, min(MAX_TOKENS_PER_TEXT, math.ceil(len(text) / _CHARS_PER_TOKEN)))


def is_gemini_model(model: str) -> bool:
    """Whether ``model`` is a Gemini embedding model (one text per request, ``:embedContent``)."""
    return "gemini" in model.rsplit("/", 1)[-1]


def _texts_per_request(model: str) -> int:
    return MAX_TEXTS_PER_REQUEST_GEMINI if is_gemini_model(model) else MAX_TEXTS_PER_REQUEST


def plan_requests(texts: Sequence[str], max_texts: int,
                  max_tokens: int = MAX_TOKENS_PER_REQUEST) -> Iterator[tuple[int, int]]:
    """Split texts into consecutive ``[start, end)`` ranges that each fit one request.

    Args:
        texts: the texts, in order.
        max_texts: most texts in one request.
        max_tokens: most estimated tokens in one request.

    Yields:
        ``(start, end)`` index ranges covering ``texts`` in order; each holds at least one text.
    """
    start, tokens = 0, 0
    for index, text in enumerate(texts):
        cost = estimate_tokens(text)
        if index > start and (index - start >= max_texts or tokens + cost > max_tokens):
            yield start, index
            start, tokens = index, 0
        tokens += cost
    if start < len(texts):
        yield start, len(texts)


class VertexEmbedder:
    """Vertex AI text embeddings, batched within the per-request limits.

    Args:
        project: Google Cloud project id.
        location: Vertex AI region (``us-central1``).
        model: embedding model id; ``text-embedding-005`` or a ``gemini-embedding-*`` model.
        dimension: ``output_dimensionality`` asked of the model and the length of every vector returned.
        client: a ready ``google.genai.Client``; built on first use when None.
        base_url: send requests here instead of Google's endpoint (a loopback stand-in in tests).
        credentials: ``google.auth`` credentials; None uses Application Default Credentials, or a
            static placeholder token when ``base_url`` is set (a stand-in checks no signature).
        batch_size: most texts per request; capped at the model's documented limit.
        task_type: Vertex ``task_type`` sent with every text; None omits it. The port embeds queries and
            documents through the same call, so the default is the symmetric ``SEMANTIC_SIMILARITY``.
        timeout: seconds for one HTTP request.
    """

    def __init__(self, project: str, location: str, model: str = "text-embedding-005", dimension: int = 768,
                 client: Any = None, base_url: str | None = None, credentials: Any = None,
                 batch_size: int | None = None, task_type: str | None = "SEMANTIC_SIMILARITY",
                 timeout: float = 60.0):
        if dimension < 1:
            raise ValueError("dimension must be positive")
        limit = _texts_per_request(model)
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.project = project
        self.location = location
        self.model = model
        self.dimension = dimension
        self.batch_size = min(batch_size or limit, limit)
        self.task_type = task_type
        self._base_url = base_url
        self._credentials = credentials
        self._timeout = timeout
        self._client = client
        self._lock = threading.Lock()

    # -- client ---------------------------------------------------------------------------------

    def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        from shared.adapters.vertex import vertex_client

        return vertex_client(self.project, self.location, base_url=self._base_url, credentials=self._credentials,
                             timeout=self._timeout)

    # -- the port -------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts with the configured Vertex model.

        Args:
            texts: non-empty strings; each is cut at 2,048 tokens by Vertex.

        Returns:
            One unit vector of length ``dimension`` per text, in order.

        Raises:
            TypeError: ``texts`` is not a sequence of strings.
            BadRequest: a text is blank.
            RateLimited: Vertex answered 429 (quota).
            DependencyDown: Vertex answered 5xx or 408, or could not be reached.
            PermanentError: Vertex refused the request (another 4xx) or answered with the wrong shape.
        """
        items = check_texts(texts)
        vectors: list[list[float]] = []
        for start, end in plan_requests(items, self.batch_size):
            vectors.extend(self._embed_request(items[start:end]))
        return vectors

    def _embed_request(self, texts: list[str]) -> list[list[float]]:
        from google.genai import types

        config = types.EmbedContentConfig(output_dimensionality=self.dimension, task_type=self.task_type)
        try:
            response = self._get_client().models.embed_content(model=self.model, contents=texts, config=config)
        except Exception as exc:  # noqa: BLE001 -- only known failures are translated; others re-raise
            mapped = _translate(exc, self.model)
            if mapped is exc:
                raise
            raise mapped from exc
        embeddings = response.embeddings or []
        if len(embeddings) != len(texts):
            raise PermanentError(
                f"Vertex returned {len(embeddings)} embeddings for {len(texts)} texts",
                code="embedding_shape", details={"model": self.model},
            )
        return [self._unit(e.values or []) for e in embeddings]

    def _unit(self, values: Sequence[float]) -> list[float]:
        if len(values) != self.dimension:
            raise PermanentError(
                f"Vertex returned {len(values)} dimensions, expected {self.dimension}",
                code="embedding_shape", details={"model": self.model},
            )
        norm = math.sqrt(math.fsum(v * v for v in values))
        if norm == 0.0:
            raise PermanentError("Vertex returned a zero vector", code="embedding_shape",
                                 details={"model": self.model})
        return [v / norm for v in values]

    def health(self) -> None:
        """Embed one short text: one small billed request that proves auth, quota and model.

        Raises:
            RateLimited, DependencyDown, PermanentError: as ``embed``.
        """
        self.embed(["health check"])


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of whichever HTTP stack google-genai runs on (httpx2, httpx or requests)."""
    found: list[type[BaseException]] = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout"),
                         ("google.auth.exceptions", "TransportError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _translate(exc: Exception, model: str) -> Exception:
    """Map an SDK or transport error to the project's errors; return ``exc`` itself when unknown."""
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        status = exc.code or 0
        details = {"model": model, "status": status, "vertex_status": exc.status}
        # The service's message names limits and models, never the texts, so it is safe to keep.
        message = f"Vertex AI embeddings answered {status} {exc.status}: {exc.message}"
        log.warning("vertex embeddings error", extra={"status": status, "vertex_status": exc.status})
        if status == 429:
            return RateLimited(message, details=details)
        if status >= 500 or status == 408:
            return DependencyDown(message, details=details)
        if 400 <= status < 500:
            return PermanentError(message, code="embedding_rejected", details=details)
        return DependencyDown(message, details=details)
    if isinstance(exc, _transport_errors()):
        return DependencyDown(f"Vertex AI embeddings unreachable: {type(exc).__name__}",
                              details={"model": model})
    return exc
