"""The HTTP edge every function shares: routing inside a function, JSON errors, request-scoped logging.

A function's ``main.py`` hands its request to ``Router.dispatch``. The router matches the path the
function sees (the part after its own URL, in production and in the local stack alike), calls the
handler, and turns the project's errors into ``{"error", "message"}`` bodies with their status.

Routes called by Cloud Tasks or Pub/Sub are declared ``delivery=True``: there a permanent failure has
already been recorded by the capability, so it is answered 200 to stop redelivery, while a retryable
one is answered 503 so the platform tries again with backoff.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Request, Response
from werkzeug.exceptions import MethodNotAllowed, NotFound as RouteNotFound
from werkzeug.routing import Map, Rule

from shared.errors import AppError, Forbidden, PermanentError, Unauthenticated

log = logging.getLogger(__name__)

Handler = Callable[..., Any]


@dataclass(frozen=True)
class _Route:
    handler: Handler
    delivery: bool


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, default=str, separators=(",", ":")), status=status,
                    mimetype="application/json", headers=headers)


def error_response(error: AppError) -> Response:
    return json_response(error.to_json(), error.status)


class Router:
    """Method + path rules (werkzeug syntax, e.g. ``/samples/<id>``) to handlers ``fn(request, **args)``.

    A handler returns a ``Response``, a JSON-able body, or ``(body, status)``.
    """

    def __init__(self, name: str):
        self.name = name
        self._map = Map(strict_slashes=False, merge_slashes=True)
        self._routes: dict[str, _Route] = {}

    def route(self, method: str, path: str, *, delivery: bool = False) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            endpoint = f"{method.upper()} {path}"
            self._map.add(Rule(path or "/", methods=[method.upper()], endpoint=endpoint))
            self._routes[endpoint] = _Route(fn, delivery)
            return fn
        return register

    def rules(self) -> list[tuple[str, str]]:
        """(method, path) of every route: the OpenAPI test checks them against functions/openapi.yaml."""
        return [(endpoint.split(" ", 1)[0], endpoint.split(" ", 1)[1]) for endpoint in self._routes]

    def dispatch(self, request: Request) -> Response:
        from shared.logs import bind_request
        from shared.bootstrap import settings

        with bind_request(request.headers, settings().project_id):
            return self._dispatch(request)

    def _dispatch(self, request: Request) -> Response:
        adapter = self._map.bind("function", path_info=request.path or "/")
        try:
            endpoint, args = adapter.match(method=request.method)
        except RouteNotFound:
            return json_response({"error": "not_found", "message": f"No route {request.path} in {self.name}."}, 404)
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or []))
            return json_response({"error": "method_not_allowed",
                                  "message": f"{request.method} is not allowed here; use {allowed}."}, 405,
                                 {"Allow": allowed})
        route = self._routes[endpoint]
        try:
            return _to_response(route.handler(request, **args))
        except PermanentError as exc:
            # A caller that failed authentication gets its 401/403 even on a delivery route: only the
            # work's own permanent failures are acknowledged to stop redelivery.
            if route.delivery and not isinstance(exc, (Unauthenticated, Forbidden)):
                log.warning("delivery failed permanently", extra={"fields": {"route": endpoint, "error": exc.code}})
                return json_response({"status": "failed", **exc.to_json()}, 200)
            return error_response(exc)
        except AppError as exc:
            log.warning("request failed", extra={"fields": {"route": endpoint, "error": exc.code,
                                                            "status": exc.status}})
            return error_response(exc)
        except Exception:
            # A bug. Logged with its traceback; the 500 also makes Tasks and Pub/Sub redeliver.
            log.exception("unhandled error", extra={"fields": {"route": endpoint}})
            return json_response({"error": "internal", "message": "An unexpected error occurred."}, 500)


def _to_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        body, status = result
        return json_response(body, status)
    return json_response(result)


def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    from shared.errors import BadRequest

    raw = request.get_data(cache=True)
    if not raw:
        if required:
            raise BadRequest("The request body is empty; a JSON object is expected.")
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


# --- browsers ------------------------------------------------------------------------------------

PREFLIGHT_MAX_AGE = 600


def _normalise_origin(origin: str | None) -> str:
    return (origin or "").strip().rstrip("/").lower()


def allowed_origins(settings: Any) -> frozenset[str]:
    """The origins other than the API's own that may call it from a browser (``ALLOWED_ORIGINS``).

    Empty by default: then only same-origin pages (which need no CORS headers) can call the API. Read
    defensively, so a ``Settings`` built by hand without the field means "none".
    """
    value = getattr(settings, "allowed_origins", ()) or ()
    items: Iterable[str] = value.split(",") if isinstance(value, str) else value
    # "*" is deliberately not honoured: this API carries ops credentials.
    return frozenset(o for o in (_normalise_origin(item) for item in items) if o and o != "*")


class BrowserRouter(Router):
    """A ``Router`` for APIs the pages call from a browser: CORS headers for the allowed origins, and
    answers to preflight requests."""

    def dispatch(self, request: Request) -> Response:
        from shared.bootstrap import settings as current_settings

        settings = current_settings()
        origin = _normalise_origin(request.headers.get("Origin"))
        permitted = bool(origin) and origin in allowed_origins(settings)
        if request.method == "OPTIONS":
            return self._preflight(request, origin, permitted, settings.is_local)
        response = super().dispatch(request)
        if permitted:
            response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"].strip().rstrip("/")
        # Answers differ by Origin: caches must not hand one origin's answer to another.
        response.vary.add("Origin")
        return response

    def _preflight(self, request: Request, origin: str, permitted: bool, is_local: bool) -> Response:
        methods = self._methods_for(request.path or "/")
        if not methods:
            return json_response({"error": "not_found", "message": f"No route {request.path} in {self.name}."},
                                 404)
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        if not origin:  # a plain OPTIONS, not a browser preflight
            return Response(status=204, headers={"Allow": allow})
        if not permitted:
            response = json_response({"error": "forbidden", "message": f"This origin may not call the {self.name} API."},
                                     403)
            response.vary.add("Origin")
            return response
        headers = ["Authorization", "Content-Type"] + (["X-Dev-User"] if is_local else [])
        response = Response(status=204, headers={
            "Allow": allow,
            "Access-Control-Allow-Origin": request.headers["Origin"].strip().rstrip("/"),
            "Access-Control-Allow-Methods": allow,
            "Access-Control-Allow-Headers": ", ".join(headers),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        })
        response.vary.add("Origin")
        return response

    def _methods_for(self, path: str) -> set[str]:
        from werkzeug.exceptions import HTTPException

        adapter = self._map.bind("function", path_info=path)
        try:
            return {m for m in adapter.allowed_methods() if m not in {"HEAD", "OPTIONS"}}
        except HTTPException:
            return set()


# --- who is calling ------------------------------------------------------------------------------


def person(request: Request):
    """The person behind a request to a people-facing function (``ingest``, ``admin``)."""
    from shared.auth import authenticate_person
    from shared.bootstrap import container

    c = container()
    s = c.settings
    return authenticate_person(request.headers, env_is_local=s.is_local, verifier=c.verifier,
                               client_id=s.oauth_client_id, allowed_domains=s.allowed_domains,
                               ops_emails=s.ops_emails)


def ops(request: Request):
    """The person behind a request, who must have the ops role."""
    from shared.auth import require_ops

    return require_ops(person(request))


def caller(request: Request, function: str, *, via: str):
    """The service account behind a platform delivery to ``function``.

    Args:
        request: the request.
        function: the deployed name of the called function (the token's audience is its URL).
        via: ``tasks``, ``pubsub`` or ``scheduler``: whose service account may call.
    """
    from shared.auth import authenticate_service
    from shared.bootstrap import container

    c = container()
    s = c.settings
    accounts = {"tasks": s.tasks_service_account, "pubsub": s.pubsub_service_account,
                "scheduler": s.scheduler_service_account}
    return authenticate_service(request.headers, verifier=c.verifier, audience=s.audience_for(function),
                                allowed_emails=[accounts[via]])
