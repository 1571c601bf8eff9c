"""The identity relay: the local stand-in for the part of Google's infrastructure that attaches identity.

In production, Cloud Tasks and Pub/Sub push mint an OIDC token for the configured service account and
attach it to every delivery; the functions verify it (DESIGN §7). The emulators do not: the Cloud Tasks
emulator ignores a task's ``oidc_token`` and the Pub/Sub emulator pushes without an ``Authorization``
header, so every delivery would (rightly) be refused with 401.

In emulator mode the local stack therefore points the task URLs and the push endpoints at this relay
instead of at the functions. A delivery arrives at ``/<caller>/<function>/<rest>`` (``caller`` is
``tasks`` or ``pubsub``); the relay signs a token with the stack's local signer for that caller's service
account and the function's audience, forwards the request to the function and hands back the
function's status and body unchanged, so the emulator's own retry logic sees the real answer.

Production never uses this: there Google attaches the token. The relay listens on loopback only, runs
only in the local stack (the local signer exists only under ``ENV=local``), and signs for nothing but the
two delivery service accounts.
"""

from __future__ import annotations

import http.client
import logging
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

CALLERS = ("tasks", "pubsub")

# Cloud Tasks caps an HTTP task at 1 MB and Pub/Sub a message at 10 MB; a push body is base64 of the
# message plus an envelope, so 16 MiB holds any real delivery and refuses anything absurd.
DEFAULT_MAX_BODY = 16 * 1024 * 1024
# How long the relay waits for a function. Cloud Tasks' default dispatch deadline is 10 minutes, but a
# local function that is silent for two means something is stuck; the emulator then retries.
DEFAULT_FORWARD_TIMEOUT = 120.0
# How long a client may take to send its request to the relay.
DEFAULT_READ_TIMEOUT = 30.0

# RFC 9110 §7.6.1: connection-specific headers that a proxy must not forward.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade"})
# Recomputed or replaced by the relay rather than copied.
_REPLACED = frozenset({"host", "content-length", "authorization"})


def _dropped(headers) -> frozenset[str]:
    """Hop-by-hop headers, including any the ``Connection`` header names."""
    named = set()
    for value in headers.get_all("Connection", []) if hasattr(headers, "get_all") else []:
        named.update(part.strip().lower() for part in value.split(",") if part.strip())
    return HOP_BY_HOP | named


class IdentityRelay:
    """A threaded loopback HTTP server that adds the delivery's OIDC token and forwards it.

    Args:
        target_for: Base URL of a function on the local stack (``draft`` → ``http://127.0.0.1:8080/draft``).
        audience_for: The audience that function expects (``Settings.audience_for``).
        accounts: Service account per caller: ``{"tasks": ..., "pubsub": ...}``.
        sign: ``(audience, email) → token``: the stack's ``LocalSigner.service_token``.
        functions: Deployed function names the relay forwards to; anything else is 404.
        max_body: Largest request body accepted (413 beyond it).
        forward_timeout: Seconds to wait for the function's answer (504 beyond it).
        read_timeout: Seconds a client may take to send its request.
    """

    def __init__(self, *, target_for: Callable[[str], str], audience_for: Callable[[str], str],
                 accounts: Mapping[str, str], sign: Callable[[str, str], str], functions: tuple[str, ...],
                 max_body: int = DEFAULT_MAX_BODY, forward_timeout: float = DEFAULT_FORWARD_TIMEOUT,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, host: str = "127.0.0.1"):
        unknown = set(accounts) - set(CALLERS)
        missing = set(CALLERS) - set(accounts)
        if unknown or missing:
            raise ValueError(f"accounts must name exactly {CALLERS}")
        self.target_for = target_for
        self.audience_for = audience_for
        self.accounts = dict(accounts)
        self.sign = sign
        self.functions = frozenset(functions)
        self.max_body = max_body
        self.forward_timeout = forward_timeout
        self.read_timeout = read_timeout
        self.host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._deliveries: Counter[tuple[str, str, int]] = Counter()

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> IdentityRelay:
        """Bind a free loopback port and serve in a background thread."""
        if self._server is not None:
            return self
        server = _Server((self.host, 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="identity-relay", daemon=True)
        self._thread.start()
        log.info("identity relay serving", extra={"fields": {"url": self.url}})
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> IdentityRelay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the identity relay is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def deliveries(self) -> Counter[tuple[str, str, int]]:
        """How many deliveries were forwarded, by (caller, function, the function's status)."""
        with self._lock:
            return Counter(self._deliveries)

    def url_for(self, caller: str) -> Callable[[str], str]:
        """The base URL a ``caller`` (``tasks`` or ``pubsub``) should deliver to, per function."""
        if caller not in CALLERS:
            raise ValueError(f"caller must be one of {CALLERS}")
        return lambda function: f"{self.url}/{caller}/{function}"

    # --- one delivery ----------------------------------------------------------------------------

    def route(self, path: str) -> tuple[str, str, str] | None:
        """``/<caller>/<function>/<rest>?q`` → (caller, function, ``/<rest>?q``), or None if not ours."""
        raw_path, sep, query = path.partition("?")
        parts = raw_path.split("/", 3)  # "", caller, function, rest
        if len(parts) < 3 or parts[0] != "" or parts[1] not in CALLERS or parts[2] not in self.functions:
            return None
        rest = "/" + parts[3] if len(parts) == 4 else ""
        if any(segment in (".", "..") for segment in urllib.parse.unquote(rest).split("/")):
            return None  # a delivery stays inside the function it names
        return parts[1], parts[2], rest + (sep + query if sep else "")

    def forward(self, method: str, caller: str, function: str, rest: str, headers: list[tuple[str, str]],
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one delivery to the function with the caller's token; its answer, unchanged."""
        token = self.sign(self.audience_for(function), self.accounts[caller])
        target = urllib.parse.urlsplit(self.target_for(function).rstrip("/") + rest)
        if target.scheme != "http" or not target.hostname:
            raise ValueError("the relay forwards to plain-HTTP local functions only")
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=self.forward_timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Authorization", f"Bearer {token}")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            answer = response.read()
        finally:
            conn.close()
        with self._lock:
            self._deliveries[(caller, function, response.status)] += 1
        return response.status, response.getheaders(), answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            # An emulator closing a kept-alive connection (at shutdown, say) is not a fault.
            log.debug("identity relay: client connection ended", extra={"fields": {"error": type(error).__name__}})
            return
        log.exception("identity relay: unexpected error while serving a delivery")


def _handler_for(relay: IdentityRelay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = relay.read_timeout
        server_version = "identity-relay"

        def _deliver(self) -> None:
            route = relay.route(self.path)
            if route is None:
                self._answer(404, b'{"error":"not_found","message":"Deliver to /tasks/<function> or '
                                  b'/pubsub/<function>."}', close=True)
                return
            body = self._body()
            if body is None:
                return
            caller, function, rest = route
            dropped = _dropped(self.headers)
            headers = [(k, v) for k, v in self.headers.items()
                       if k.lower() not in dropped and k.lower() not in _REPLACED]
            try:
                status, answer_headers, answer = relay.forward(self.command, caller, function, rest, headers, body)
            except http.client.InvalidURL:
                self._answer(400, b'{"error":"bad_request","message":"Malformed delivery path."}')
                return
            except TimeoutError:
                log.warning("identity relay: the function timed out", extra={"fields": {"function": function}})
                self._answer(504, b'{"error":"timeout","message":"The function did not answer in time."}')
                return
            except (OSError, http.client.HTTPException) as exc:
                log.warning("identity relay: the function is unreachable",
                            extra={"fields": {"function": function, "error": type(exc).__name__}})
                self._answer(502, b'{"error":"bad_gateway","message":"The function could not be reached."}')
                return
            log.debug("identity relay delivered",
                      extra={"fields": {"caller": caller, "function": function, "status": status}})
            kept = [(k, v) for k, v in answer_headers
                    if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-length", "server", "date")]
            self._answer(status, answer, kept)

        def _body(self) -> bytes | None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._chunked()
            raw = self.headers.get("Content-Length")
            try:
                length = int(raw) if raw is not None else 0
            except ValueError:
                length = -1
            if length < 0:
                self._answer(400, b'{"error":"bad_request","message":"Malformed Content-Length."}', close=True)
                return None
            if length > relay.max_body:
                self._answer(413, b'{"error":"too_large","message":"The delivery is too large."}', close=True)
                return None
            return self.rfile.read(length)

        def _chunked(self) -> bytes | None:
            body = bytearray()
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._answer(400, b'{"error":"bad_request","message":"Malformed chunked body."}', close=True)
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(body)
                if len(body) + size > relay.max_body:
                    self._answer(413, b'{"error":"too_large","message":"The delivery is too large."}', close=True)
                    return None
                body += self.rfile.read(size)
                self.rfile.readline(1024)

        def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None, *,
                    close: bool = False) -> None:
            self.send_response(status)
            for name, value in headers if headers is not None else [("Content-Type", "application/json")]:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if close:
                # The request body was left unread: the connection cannot carry another request.
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _deliver

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            # Logged through ``logging`` (without tokens) instead of stderr.
            log.debug("identity relay: " + format, *args)

    return Handler
