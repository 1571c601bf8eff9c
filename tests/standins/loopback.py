"""The part every HTTP stand-in shares: a threaded loopback server, recorded requests, routes by method
and path pattern, and injected failures.

A stand-in subclasses ``LoopbackStandIn`` and registers routes with ``self.route(method, pattern,
handler)``; a handler gets the ``Request`` (with the pattern's named groups in ``request.params``) and
returns ``Reply``. Other engineers extend a stand-in the same way (Gmail and Calendar routes on the
Google stand-in, writes on the HubSpot one).
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclasses.dataclass
class Request:
    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    status: int = 0  # what the stand-in answered

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode("utf-8")))


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    content_type: str = ""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode("utf-8"), self.content_type or "application/json; charset=UTF-8"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), self.content_type or "text/plain; charset=utf-8"
        return self.body, self.content_type or "application/octet-stream"


Handler = Callable[[Request], Reply]


@dataclasses.dataclass
class _Failure:
    reply: Reply
    pattern: re.Pattern[str] | None
    times: int


class LoopbackStandIn:
    """A threaded HTTP/1.1 server on 127.0.0.1 and a free port."""

    name = "standin"

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._requests: list[Request] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> LoopbackStandIn:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.name}-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- routes, failures, records --------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Serve ``method`` requests whose path fully matches ``pattern`` (later routes win)."""
        self._routes.insert(0, (method.upper(), re.compile(pattern), handler))

    def fail_next(self, status: int, body: bytes | str | dict | list = b"", *, path: str | None = None,
                  times: int = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests (whose path matches the regex ``path``, if given) with this."""
        with self._lock:
            self._failures.append(_Failure(Reply(status, body, headers=headers or {}),
                                           re.compile(path) if path else None, times))

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, pattern: str) -> list[Request]:
        regex = re.compile(pattern)
        return [r for r in self.requests if regex.search(r.path)]

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._failures.clear()

    def handle(self, request: Request) -> Reply:
        with self._lock:
            self._requests.append(request)
            failure = next((f for f in self._failures
                            if f.pattern is None or f.pattern.search(request.path)), None)
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
        if failure is not None:
            return failure.reply
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                request.params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items() if v is not None}
                return handler(request)
        return self.not_found(request)

    def not_found(self, request: Request) -> Reply:
        return Reply(404, f"no route for {request.method} {request.path}")


def _handler_for(standin: LoopbackStandIn) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urllib.parse.urlsplit(self.path)
            request = Request(method=self.command, path=split.path,
                              query=dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
                              headers={k.lower(): v for k, v in self.headers.items()}, body=body)
            reply = standin.handle(request)
            request.status = reply.status
            data, content_type = reply.encoded()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
            pass

    return _Handler
