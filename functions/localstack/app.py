"""One WSGI app for the whole system: each function mounted at /<name>, the pages at /.

Each function is loaded exactly as Cloud Functions loads it (functions-framework's ``create_app`` on
``functions/<module>/main.py``), and sees the rest of the path after ``/<name>``, as in production.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.utils import safe_join
from werkzeug.wrappers import Request, Response

from shared.bootstrap import Container
from shared.topology import FUNCTIONS, module_name

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = ROOT / "functions"
FRONTEND_DIR = ROOT / "frontend"
OPENAPI = FUNCTIONS_DIR / "openapi.yaml"

HEALTH_PORTS = ("db", "store", "tasks", "events", "blobs", "secrets", "embedder")


def available_functions() -> list[str]:
    """Deployed names of the functions whose folder exists."""
    return [name for name in FUNCTIONS if (FUNCTIONS_DIR / module_name(name) / "main.py").exists()]


def load_function(name: str):
    import functions_framework

    source = FUNCTIONS_DIR / module_name(name) / "main.py"
    return functions_framework.create_app(target=module_name(name), source=str(source))


def health(container: Container, timeout: float = 20.0) -> tuple[int, dict]:
    """Check every adapter concurrently; 200 when all answer, else 503 naming the failures."""

    def check(port: str) -> dict:
        started = time.perf_counter()
        try:
            adapter = getattr(container, port)
            adapter.health()
            return {"ok": True, "adapter": type(adapter).__name__,
                    "ms": round((time.perf_counter() - started) * 1000, 1)}
        except Exception as exc:  # reported, not raised: this is the health report
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    with ThreadPoolExecutor(max_workers=len(HEALTH_PORTS)) as pool:
        futures = {port: pool.submit(check, port) for port in HEALTH_PORTS}
        report = {}
        for port, future in futures.items():
            try:
                report[port] = future.result(timeout=timeout)
            except Exception as exc:
                report[port] = {"ok": False, "error": f"no answer: {type(exc).__name__}"}
    healthy = all(item["ok"] for item in report.values())
    body = {"status": "ok" if healthy else "degraded", "env": container.settings.env,
            "adapters_mode": container.settings.adapters, "functions": available_functions(), "adapters": report}
    return (200 if healthy else 503), body


class _Root:
    """/healthz, /openapi.yaml and the static pages of frontend/."""

    def __init__(self, container: Container):
        self.container = container

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.route(request)
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        path = request.path
        if path == "/healthz":
            status, body = health(self.container)
            return Response(json.dumps(body), status=status, mimetype="application/json")
        if path == "/openapi.yaml" and OPENAPI.exists():
            return Response(OPENAPI.read_bytes(), mimetype="application/yaml")
        if request.method not in ("GET", "HEAD"):
            return _not_found(path)
        relative = path.lstrip("/") or "index.html"
        target = safe_join(str(FRONTEND_DIR), relative)
        if target is None:
            return _not_found(path)
        file = Path(target)
        if file.is_dir():
            file = file / "index.html"
        if not file.is_file():
            return _not_found(path)
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return Response(file.read_bytes(), mimetype=kind, headers={"Cache-Control": "no-cache"})


def _not_found(path: str) -> Response:
    body = {"error": "not_found", "message": f"Nothing at {path}."}
    return Response(json.dumps(body), status=404, mimetype="application/json")


class _BarePathIsRoot:
    """A function's own URL with nothing after it reaches the function as ``/``, as in production
    (werkzeug's dispatcher would hand it an empty path, which Flask answers with a redirect)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return self.app(environ, start_response)


def build_app(container: Container):
    """The WSGI app of the local stack for an installed container."""
    mounts = {f"/{name}": _BarePathIsRoot(load_function(name)) for name in available_functions()}
    return DispatcherMiddleware(_Root(container), mounts)
