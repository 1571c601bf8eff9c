"""functions/openapi.yaml stays true: every route of every public function is documented, and nothing else."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "functions" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}

# Public functions (called by people or HubSpot) and where their Router lives. Delivery-only functions
# (extract, embed, draft, gate, send) are called by the platform and are not part of the public API.
PUBLIC_ROUTERS = {
    "ingest": ("shared.voice.ingest", "router"),
    "admin": ("shared.admin.api", "router"),
    "webhook": ("shared.leads.webhook_api", "router"),
}


@pytest.fixture(scope="module")
def spec():
    return yaml.safe_load(DOCUMENT.read_text())


def _documented(spec) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item if method in METHODS}


def _routed() -> set[tuple[str, str]]:
    out = set()
    for function, (module, attribute) in PUBLIC_ROUTERS.items():
        router = getattr(importlib.import_module(module), attribute)
        for method, path in router.rules():
            # werkzeug's <name> and <conv:name> become OpenAPI's {name}; "" is the function's own URL.
            openapi_path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", path)
            out.add((method, f"/{function}{openapi_path}".rstrip("/") or "/"))
    return out


def test_it_parses_as_openapi_3(spec):
    assert str(spec["openapi"]).startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["paths"]


def test_every_route_is_documented_and_every_documented_path_is_routed(spec):
    documented = {(m, p) for m, p in _documented(spec) if p.split("/")[1] in PUBLIC_ROUTERS}
    assert _routed() == documented


def test_every_operation_has_responses_and_errors_use_the_error_schema(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            assert operation.get("responses"), f"{method} {path} has no responses"
            assert operation.get("operationId"), f"{method} {path} has no operationId"
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response.get("$ref", "").startswith("#/components/responses/"), (method, path, status)


def test_path_parameters_are_declared(spec):
    for path, item in spec["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in item.get("parameters", []) + operation.get("parameters", [])
                        if "name" in p and p.get("in") == "path"}
            assert names == declared, (method, path)


def test_every_reference_resolves(spec):
    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    refs = set(walk(spec))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        target = spec
        for part in ref[2:].split("/"):
            assert part in target, f"unresolved {ref}"
            target = target[part]
    error = spec["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "message"}
