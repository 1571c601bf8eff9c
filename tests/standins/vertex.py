"""A loopback stand-in for Vertex AI's REST surface, as google-genai calls it with ``vertexai=True``.

Routes are ``POST /{v1|v1beta1}/projects/{project}/locations/{location}/publishers/{publisher}/models/
{model}:{verb}``, dispatched on ``verb`` through ``VertexStandIn.routes`` (``predict`` and
``embedContent`` are built in; ``standin.route("generateContent", handler)`` adds another).

Wire format of the embeddings routes (what google-genai 3.x sends and parses):

* ``:predict`` (``text-embedding-*``) -- request ``{"instances": [{"content": str, "task_type": str,
  "title"?: str}], "parameters": {"outputDimensionality"?: int, "autoTruncate"?: bool}}``; reply
  ``{"predictions": [{"embeddings": {"values": [float], "statistics": {"token_count": int,
  "truncated": bool}}}], "metadata": {"billableCharacterCount": int}}``.
* ``:embedContent`` (``gemini-embedding-*``) -- request ``{"content": {"parts": [{"text": str}]},
  "embedContentConfig": {"outputDimensionality"?: int, "taskType"?: str}}``; reply ``{"embedding":
  {"values": [float]}, "usageMetadata": {"promptTokenCount": int}, "truncated": bool}``.
* errors -- Google's JSON error ``{"error": {"code": int, "message": str, "status": "INVALID_ARGUMENT"|
  "RESOURCE_EXHAUSTED"|"UNAVAILABLE"|...}}``.

The documented per-request limits are enforced (250 instances, 20,000 tokens, 2,048 tokens per text),
with tokens counted as one per four characters. Vectors are deterministic but not semantic: hashed
character trigrams, unit length at the model's full size and then cut to ``outputDimensionality``
without renormalising, as Vertex does with a reduced dimensionality. Every request is recorded, and
``fail_next`` makes the next requests answer an error (429 quota, 503 unavailable ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_INSTANCES = 250
MAX_REQUEST_TOKENS = 20_000
MAX_INPUT_TOKENS = 2_048
CHARS_PER_TOKEN = 4

STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
    501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    429: "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base "
         "model: textembedding-gecko. Please submit a quota increase request.",
    503: "The service is currently unavailable.",
    500: "Internal error encountered.",
}

_PATH = re.compile(
    r"^/(?P<api_version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+):(?P<verb>[A-Za-z]+)$"
)


@dataclasses.dataclass
class Call:
    """One request as the stand-in saw it, with the status it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    api_version: str = ""
    project: str = ""
    location: str = ""
    model: str = ""
    verb: str = ""
    status: int = 0


Handler = Callable[[Call], tuple[int, dict[str, Any]]]


@dataclasses.dataclass
class _Failure:
    status: int
    message: str
    verb: str | None
    times: int
    after: int


class Refusal(Exception):
    """Raised by a handler to answer with Google's JSON error: ``raise Refusal(400, "why")``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def google_error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    """A reply in Google's JSON error shape."""
    return status, {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}}


def full_dimension(model: str) -> int:
    """The unreduced output size of a model: 3,072 for Gemini embeddings, 768 for the others."""
    return 3072 if "gemini" in model else 768


def count_tokens(text: str) -> int:
    """The stand-in's token count of one text (before truncation)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def standin_vector(text: str, dimension: int, full: int = 768) -> list[float]:
    """The deterministic vector the stand-in returns for ``text``.

    Character trigrams of the lower-cased text are hashed into ``full`` signed buckets, and once more
    into the first 64, so that a vector cut short still tells texts apart; a constant first component
    keeps any cut from being all zeros. The result is scaled to unit length and then cut to
    ``dimension``.
    """
    padded = f"  {text.lower()} "
    counts = Counter(padded[i:i + 3] for i in range(len(padded) - 2))
    vector = [0.0] * full
    vector[0] = 1.0
    head = min(full, 64)
    for gram, count in counts.items():
        digest = int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "big")
        vector[digest % full] += count if (digest >> 63) & 1 else -count
        vector[(digest >> 24) % head] += count if (digest >> 62) & 1 else -count
    norm = math.sqrt(math.fsum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector[:dimension]]


class VertexStandIn:
    """A threaded HTTP server on a free loopback port that answers like Vertex AI.

    Args:
        host: interface to bind; loopback only.
        port: 0 picks a free port.
        max_instances: texts allowed in one ``:predict`` request.
        max_request_tokens: tokens allowed in one request.
        max_input_tokens: tokens kept of one text (more is truncated, or refused when
            ``autoTruncate`` is false).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_instances: int = MAX_INSTANCES,
                 max_request_tokens: int = MAX_REQUEST_TOKENS, max_input_tokens: int = MAX_INPUT_TOKENS):
        self.host = host
        self.port = port
        self.max_instances = max_instances
        self.max_request_tokens = max_request_tokens
        self.max_input_tokens = max_input_tokens
        self.routes: dict[str, Handler] = {"predict": self._predict, "embedContent": self._embed_content}
        self._calls: list[Call] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> VertexStandIn:
        """Bind and serve in a background thread; ready to answer when this returns."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="vertex-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Kept-alive connections would go on being served by their handler threads: cut them, so that
        # a stopped stand-in looks like a service that is down.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> VertexStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The URL to give google-genai as ``HttpOptions(base_url=...)``."""
        return f"http://{self.host}:{self.port}"

    # -- control and inspection -----------------------------------------------------------------

    def route(self, verb: str, handler: Handler) -> None:
        """Serve ``...:{verb}`` with ``handler``.

        The handler gets the Call (parsed JSON body, model, project ...) and returns ``(status, json_body)``,
        or raises ``Refusal`` to answer with Google's error shape.
        """
        self.routes[verb] = handler

    def fail_next(self, status: int, times: int = 1, *, after: int = 0, message: str | None = None,
                  verb: str | None = None) -> None:
        """Answer ``times`` requests with a Google JSON error, after letting ``after`` requests through.

        Only requests to ``verb`` (``predict`` ...) count when it is given.
        """
        text = message or DEFAULT_MESSAGES.get(status, "Error.")
        with self._lock:
            self._failures.append(_Failure(status, text, verb, times, after))

    @property
    def calls(self) -> list[Call]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        """Forget recorded requests and pending failures."""
        with self._lock:
            self._calls.clear()
            self._failures.clear()

    # -- dispatch -------------------------------------------------------------------------------

    def handle(self, call: Call) -> tuple[int, dict[str, Any]]:
        """Record ``call`` and answer it: an injected failure, a Google error, or the route's reply."""
        match = _PATH.match(call.path.split("?", 1)[0])
        if match:
            for key, value in match.groupdict().items():
                if key != "publisher":
                    setattr(call, key, value)
        with self._lock:
            self._calls.append(call)
            failure = next((f for f in self._failures if f.verb in (None, call.verb)), None)
            if failure is not None:
                if failure.after > 0:
                    failure.after -= 1
                    failure = None
                else:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
        status, body = self._dispatch(call, match, failure)
        call.status = status
        return status, body

    def _dispatch(self, call: Call, match: re.Match[str] | None,
                  failure: _Failure | None) -> tuple[int, dict[str, Any]]:
        if call.method != "POST":
            return google_error(405, f"Method {call.method} is not allowed.")
        if not match or match["verb"] not in self.routes:
            return google_error(404, f"The requested URL {call.path} was not found on this server.")
        if not call.headers.get("authorization", "").startswith("Bearer "):
            return google_error(401, "Request is missing required authentication credential. Expected OAuth 2 "
                                     "access token, login cookie or other valid authentication credential.")
        if failure is not None:
            return google_error(failure.status, failure.message)
        if not isinstance(call.body, dict):
            return google_error(400, "Invalid JSON payload received.")
        try:
            return self.routes[match["verb"]](call)
        except Refusal as refusal:
            return google_error(refusal.status, refusal.message)

    # -- embeddings -----------------------------------------------------------------------------

    def _dimension(self, model: str, requested: Any) -> int:
        full = full_dimension(model)
        if requested is None:
            return full
        if not isinstance(requested, int) or not 1 <= requested <= full:
            raise Refusal(400, f"Output dimensionality must be between 1 and {full}, got {requested}.")
        return requested

    def _tokens(self, text: str, auto_truncate: bool) -> tuple[int, bool]:
        """Tokens counted for one text after truncation, and whether it was truncated."""
        tokens = count_tokens(text)
        if tokens > self.max_input_tokens and not auto_truncate:
            raise Refusal(400, f"Unable to submit request because the input token count is {tokens} but "
                                     f"the model supports up to {self.max_input_tokens}. Reduce the input "
                                     "token count and try again.")
        return min(tokens, self.max_input_tokens), tokens > self.max_input_tokens

    def _predict(self, call: Call) -> tuple[int, dict[str, Any]]:
        instances = call.body.get("instances")
        parameters = call.body.get("parameters") or {}
        if not isinstance(instances, list) or not instances:
            raise Refusal(400, "Instances must be a non-empty list.")
        if len(instances) > self.max_instances:
            raise Refusal(400, f"{self.max_instances} instance(s) is allowed per prediction. "
                                     f"Actual: {len(instances)}")
        dimension = self._dimension(call.model, parameters.get("outputDimensionality"))
        auto_truncate = parameters.get("autoTruncate", True)
        predictions, total, characters = [], 0, 0
        for instance in instances:
            text = instance.get("content") if isinstance(instance, dict) else None
            if not isinstance(text, str) or not text:
                raise Refusal(400, "Each instance needs a non-empty \"content\" string.")
            tokens, truncated = self._tokens(text, auto_truncate)
            total += tokens
            characters += len(text)
            predictions.append({"embeddings": {
                "values": standin_vector(text, dimension, full_dimension(call.model)),
                "statistics": {"token_count": tokens, "truncated": truncated},
            }})
        if total > self.max_request_tokens:
            raise Refusal(400, f"Unable to submit request because the input token count is {total} but "
                                     f"the model supports up to {self.max_request_tokens}. Reduce the input "
                                     "token count and try again.")
        return 200, {"predictions": predictions, "metadata": {"billableCharacterCount": characters}}

    def _embed_content(self, call: Call) -> tuple[int, dict[str, Any]]:
        content = call.body.get("content")
        config = call.body.get("embedContentConfig") or {}
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            raise Refusal(400, "Content must have at least one part.")
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
        if not text:
            raise Refusal(400, "The content has no text.")
        dimension = self._dimension(call.model, config.get("outputDimensionality"))
        tokens, truncated = self._tokens(text, config.get("autoTruncate", True))
        return 200, {
            "embedding": {"values": standin_vector(text, dimension, full_dimension(call.model))},
            "usageMetadata": {"promptTokenCount": tokens},
            "truncated": truncated,
        }


def _handler_for(standin: VertexStandIn) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps google-genai's pooled connections open between batches, as Google's front end does.
        protocol_version = "HTTP/1.1"
        timeout = 30

        def setup(self) -> None:
            super().setup()
            with standin._lock:
                standin._connections.add(self.connection)

        def finish(self) -> None:
            with standin._lock:
                standin._connections.discard(self.connection)
            super().finish()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = None
            call = Call(method=self.command, path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()}, body=body)
            status, reply = standin.handle(call)
            data = json.dumps(reply).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
            pass  # request lines would carry nothing the recorded calls do not

    return _Handler
