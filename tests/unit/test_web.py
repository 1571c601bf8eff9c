"""The HTTP edge: routing inside a function, JSON errors with the right status, delivery semantics."""

from __future__ import annotations

import flask
import pytest

from shared import bootstrap
from shared.bootstrap import Container
from shared.config import Settings
from shared.errors import BadRequest, DependencyDown, NotFound, PermanentError
from shared.web import Router, json_body


@pytest.fixture(autouse=True)
def local_container(tmp_path):
    previous = bootstrap.use(Container(Settings.from_env({"ENV": "local", "DATA_DIR": str(tmp_path)})))
    yield
    bootstrap.use(previous)


@pytest.fixture
def client():
    router = Router("demo")

    @router.route("GET", "/items/<item_id>")
    def get_item(request, item_id):
        if item_id == "missing":
            raise NotFound(f"No item {item_id}.")
        return {"id": item_id}

    @router.route("POST", "/items")
    def create(request):
        return json_body(request), 201

    @router.route("POST", "/work", delivery=True)
    def work(request):
        kind = json_body(request)["kind"]
        if kind == "permanent":
            raise PermanentError("cannot ever work")
        if kind == "retry":
            raise DependencyDown("try later")
        if kind == "bug":
            raise ZeroDivisionError
        return {"done": True}

    app = flask.Flask("t")
    app.add_url_rule("/", "root", lambda: router.dispatch(flask.request), methods=["GET", "POST"])
    app.add_url_rule("/<path:p>", "any", lambda p: router.dispatch(flask.request), methods=["GET", "POST", "PUT"])
    return app.test_client()


def test_routes_and_path_parameters(client):
    assert client.get("/items/42").get_json() == {"id": "42"}
    assert client.post("/items", json={"a": 1}).status_code == 201


def test_errors_are_json_with_their_status(client):
    r = client.get("/items/missing")
    assert r.status_code == 404 and r.get_json() == {"error": "not_found", "message": "No item missing."}
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"
    r = client.put("/items")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]


def test_bad_bodies_are_400_with_a_reason(client):
    r = client.post("/items", data=b"{nope", content_type="application/json")
    assert r.status_code == 400 and "not valid JSON" in r.get_json()["message"]
    r = client.post("/items", data=b"[1,2]", content_type="application/json")
    assert r.status_code == 400 and "JSON object" in r.get_json()["message"]
    r = client.post("/items", data=b"")
    assert r.status_code == 400


def test_delivery_routes_stop_redelivery_only_for_permanent_failures(client):
    assert client.post("/work", json={"kind": "ok"}).status_code == 200
    permanent = client.post("/work", json={"kind": "permanent"})
    assert permanent.status_code == 200 and permanent.get_json()["status"] == "failed"
    assert client.post("/work", json={"kind": "retry"}).status_code == 503
    bug = client.post("/work", json={"kind": "bug"})
    assert bug.status_code == 500 and bug.get_json()["error"] == "internal"


def test_bad_request_class_carries_400():
    assert BadRequest("x").status == 400 and BadRequest("x").to_json()["error"] == "bad_request"
