"""The local stack as `make run` starts it: every adapter healthy, pages and functions mounted, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from functions.localstack.emulators.base import free_port, http_ok, wait_until
from functions.localstack.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.emulator, pytest.mark.slow]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=180) as resp:  # a loaded CI machine is slow, not broken
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def embedded_stack(tmp_path_factory):
    stack = LocalStack(port=free_port(), data_dir=tmp_path_factory.mktemp("stack")).start()
    yield stack
    stack.stop()


def test_healthz_reports_every_adapter_healthy(embedded_stack):
    status, body = _get(embedded_stack.url + "/healthz")
    assert status == 200, body
    assert body["status"] == "ok" and body["env"] == "local" and body["adapters_mode"] == "embedded"
    assert set(body["adapters"]) == {"db", "store", "tasks", "events", "blobs", "secrets", "embedder"}
    assert all(item["ok"] for item in body["adapters"].values())


def test_unknown_paths_are_json_404(embedded_stack):
    status, body = _get(embedded_stack.url + "/no-such-page.html")
    assert status == 404 and body["error"] == "not_found"


def test_seed_is_applied_once(embedded_stack):
    db = embedded_stack.container.db
    emails = sorted(r["email"] for r in db.query("SELECT email FROM reps"))
    assert emails == ["alex@example.com", "sam@example.com"]
    from functions.localstack.seed import seed

    seed(embedded_stack.container)
    assert db.query("SELECT count(*) AS n FROM reps")[0]["n"] == 2
    flags = embedded_stack.container.store.get("flags", "global")
    assert flags["send_mode"] == "DRAFT_ONLY" and flags["kill_switch"] is False


def test_emulator_mode_uses_the_production_adapters(tmp_path):
    stack = LocalStack(port=free_port(), data_dir=tmp_path, emulators=True).start()
    try:
        status, body = _get(stack.url + "/healthz")
        assert status == 200, body
        assert body["adapters_mode"] == "google"
        adapters = {name: item["adapter"] for name, item in body["adapters"].items()}
        assert adapters["store"] == "FirestoreStore"
        assert adapters["tasks"] == "CloudTasksQueue"
        assert adapters["events"] == "PubSubBus"
        assert adapters["blobs"] == "GcsBlobStore"
    finally:
        stack.stop()


def test_serve_command_answers_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "functions", "serve", "--port", str(port),
                             "--data-dir", str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=120, what="local stack", process=proc)
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200, body
        postmaster = (tmp_path / "postgres" / "postmaster.pid").read_text().split()[0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{postmaster}").exists():
            time.sleep(0.1)
        assert not Path(f"/proc/{postmaster}").exists(), "embedded postgres outlived the stack"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
