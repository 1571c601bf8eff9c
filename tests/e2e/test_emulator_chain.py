"""One lead through the real emulators: webhook → Cloud Tasks emulator → draft → Pub/Sub emulator push →
gate → Cloud Tasks emulator → send → outbox, with the production adapters.

The emulators deliver without the OIDC token Google attaches in production, so the local stack routes
their deliveries through the identity relay (functions/localstack/relay.py), which plays that part of
Google. The second test shows it is the relay, not a gap in the functions' checks, that lets them in.

The Cloud Tasks emulator retries a failed task at once and without end, so a broken hop shows up as the
demo's timeout, kept well under the suite's budget, rather than as a hang.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse

import pytest
import requests

from functions.localstack import demo
from functions.localstack.emulators.base import free_port
from functions.localstack.stack import LocalStack

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

DEMO_TIMEOUT = 150  # generous: the chain takes seconds, but a loaded CI machine must not flake it


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = LocalStack(port=free_port(), data_dir=tmp_path_factory.mktemp("emulator-chain"), emulators=True).start()
    yield stack
    stack.stop()
    assert stack.relay is None, "the relay must be stopped with the stack"


def _ok(counts, caller: str, function: str) -> int:
    return sum(n for (c, f, status), n in counts.items() if (c, f) == (caller, function) and 200 <= status < 300)


def test_a_lead_moves_through_the_emulators_to_a_gmail_draft(stack):
    health = requests.get(stack.url + "/healthz", timeout=60).json()
    adapters = {name: item["adapter"] for name, item in health["adapters"].items()}
    assert (adapters["tasks"], adapters["events"]) == ("CloudTasksQueue", "PubSubBus"), adapters
    drafts = sorted((stack.data_dir / "outbox" / "drafts").glob("*.eml"))

    lines: list[str] = []
    code = demo.run(url=stack.url, data_dir=stack.data_dir, mode="DRAFT_ONLY", kill_switch=False,
                    out=lines.append, timeout=DEMO_TIMEOUT)
    transcript = "\n".join(lines)
    assert code == 0, transcript
    assert [line for line in lines if line.startswith("final state:")] == ["final state: DRAFT_SAVED"], transcript
    for hop in ("RECEIVED -> DRAFTING  [draft]", "DRAFTED -> GATED  [gate]", "SENDING -> DRAFT_SAVED  [send]"):
        assert any(hop in line for line in lines), f"missing {hop!r}:\n{transcript}"
    assert any("Send mode is DRAFT_ONLY" in line for line in lines), transcript

    landed = sorted(set((stack.data_dir / "outbox" / "drafts").glob("*.eml")) - set(drafts))
    assert len(landed) == 1, transcript
    assert "From: Alex Rivera <alex@example.com>" in landed[0].read_text(errors="replace")

    # Each hop reached its function through the relay, from the emulator that owns it, and was accepted.
    counts = stack.relay.deliveries()
    assert _ok(counts, "tasks", "draft") >= 1, counts
    assert _ok(counts, "pubsub", "gate") >= 1, counts
    assert _ok(counts, "tasks", "send") >= 1, counts


def test_a_gmail_notification_is_pushed_by_the_emulator_into_the_webhook(stack):
    """Gmail publishes to `gmail-push`; the Pub/Sub emulator pushes it (through the relay, with a token
    signed by the local key) into `/webhook/gmail`, which verifies it and handles it."""
    before = _ok(stack.relay.deliveries(), "pubsub", "webhook")
    stack.container.events.publish("gmail-push", {"emailAddress": "nobody@example.com", "historyId": "4242"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _ok(stack.relay.deliveries(), "pubsub", "webhook") <= before:
        time.sleep(0.2)
    counts = stack.relay.deliveries()
    assert _ok(counts, "pubsub", "webhook") == before + 1, counts
    # Nothing else answered for the webhook: it accepted the push on the first delivery.
    assert not [k for k in counts if k[:2] == ("pubsub", "webhook") and not 200 <= k[2] < 300], counts


def _push_body(workflow_id: str) -> dict:
    data = base64.b64encode(json.dumps({"workflow_id": workflow_id}).encode()).decode()
    return {"message": {"data": data, "messageId": "1", "attributes": {}},
            "subscription": "projects/local-project/subscriptions/draft-created--gate"}


def test_a_delivery_without_the_relay_is_refused(stack):
    unknown = {"workflow_id": "00000000-0000-0000-0000-000000000000"}
    # Straight at the functions, as the emulators would deliver on their own: no token, no entry.
    for function, body in (("draft", unknown), ("send", unknown), ("gate", _push_body(unknown["workflow_id"]))):
        r = requests.post(f"{stack.url}/{function}", json=body, timeout=30)
        assert r.status_code == 401, (function, r.status_code, r.text)

    relay = stack.relay.url
    # Through the relay the same delivery gets past the identity check (whatever the step then says
    # about a workflow that does not exist) ...
    r = requests.post(f"{relay}/tasks/send", json=unknown, timeout=30)
    assert r.status_code not in (401, 403), (r.status_code, r.text)
    # ... but only with the service account of the caller it names: Pub/Sub's may not call `send`.
    r = requests.post(f"{relay}/pubsub/send", json=unknown, timeout=30)
    assert r.status_code == 403, (r.status_code, r.text)
    # And the relay forwards nowhere but to a function under a known caller.
    for path in ("/scheduler/send", "/tasks/no-such-function", "/tasks/send/../admin/flags"):
        assert _raw_post(relay, path) == 404, path


def _raw_post(base: str, path: str, body: bytes = b"{}") -> int:
    """POST with the path exactly as given (HTTP clients would resolve ``..`` before sending)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_the_relay_replaces_identity_and_hands_back_the_functions_answer():
    """Without the stack: a loopback function that answers 503, so the emulator's retry sees it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from functions.localstack.relay import IdentityRelay

    received: list[tuple[str, dict, bytes]] = []

    class Function(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, dict(self.headers),
                             self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "7")
            self.end_headers()
            self.wfile.write(b'{"error":"unavailable"}')

        def log_message(self, *args):
            pass

    function = ThreadingHTTPServer(("127.0.0.1", 0), Function)
    serving = threading.Thread(target=function.serve_forever, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{function.server_address[1]}"
    relay = IdentityRelay(target_for=lambda name: f"{base}/{name}", audience_for=lambda name: f"aud-{name}",
                          accounts={"tasks": "tasks@sa", "pubsub": "push@sa"},
                          sign=lambda audience, email: f"{audience}.{email}", functions=("gate",), max_body=64)
    try:
        relay.start()
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        conn.request("POST", "/pubsub/gate/x?y=1", body=b'{"a":1}',
                     headers={"Authorization": "Bearer forged", "Connection": "X-Secret", "X-Secret": "1",
                              "X-Kept": "yes", "Content-Type": "application/json"})
        answer = conn.getresponse()
        assert (answer.status, answer.read(), answer.getheader("Retry-After")) == (503, b'{"error":"unavailable"}', "7")
        conn.close()
        path, headers, body = received[-1]
        assert (path, body) == ("/gate/x?y=1", b'{"a":1}')
        assert headers["Authorization"] == "Bearer aud-gate.push@sa"
        assert headers["X-Kept"] == "yes" and "X-Secret" not in headers
        assert _raw_post(relay.url, "/pubsub/gate", b"x" * 65) == 413
        assert len(received) == 1  # an oversized delivery never reaches the function
    finally:
        relay.stop()
        function.shutdown()
        function.server_close()

