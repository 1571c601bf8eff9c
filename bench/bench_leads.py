"""How the lead path scales, measured on the local stack in one run.

* webhook answer time for a 100-event batch against a 1-event batch (DESIGN §4: one transaction and
  concurrent enqueues, so the answer should not grow with the batch). The downstream chain is replaced
  by a recording task queue here, so only the webhook's own work is timed.
* per-lead cost through the whole chain (webhook → draft → gate → send → outbox) at 100 and at 1,000
  leads: wall time per lead and database rows per lead; the ratio says how cost grows with volume.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import requests

from functions.localstack.emulators.base import free_port
from functions.localstack.stack import LocalStack
from shared.auth import hubspot_request_uri, hubspot_v3_headers

OPS = {"X-Dev-User": "ops@example.com"}
REPEATS = 15


class _Recording:
    """The project's own TaskQueue port, keeping nothing: the webhook's answer time alone."""

    def enqueue(self, task):
        return True

    def enqueue_many(self, tasks):
        return [True] * len(tasks)

    def cancel(self, target, name, queue=None):
        return False

    def health(self):
        return None


def _events(start: int, count: int, contact: int) -> bytes:
    return json.dumps([{"eventId": start + i, "subscriptionId": 1, "portalId": 4242, "appId": 1,
                        "occurredAt": 1764000000000, "subscriptionType": "contact.creation", "attemptNumber": 0,
                        "objectId": contact + i} for i in range(count)]).encode()


def _post(stack: LocalStack, body: bytes) -> float:
    uri = hubspot_request_uri(stack.url, "/webhook/hubspot")
    headers = {"Content-Type": "application/json",
               **hubspot_v3_headers(stack.container.settings.hubspot_client_secret, "POST", uri, body)}
    started = time.perf_counter()
    r = requests.post(stack.url + "/webhook/hubspot", data=body, headers=headers, timeout=120)
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    return elapsed


def webhook_ratio() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        stack = LocalStack(port=free_port(), data_dir=Path(tmp), seed=False, tasks=_Recording()).start()
        try:
            _post(stack, _events(1, 1, 1))  # warm-up: connections, imports, JIT of nothing
            one, hundred = [], []
            event = 10_000
            for _ in range(REPEATS):  # interleaved, so machine noise falls on both alike
                one.append(_post(stack, _events(event, 1, event)))
                event += 1
                hundred.append(_post(stack, _events(event, 100, event)))
                event += 100
        finally:
            stack.stop()
    m1, m100 = statistics.median(one), statistics.median(hundred)
    return {"one_event_ms": round(m1 * 1000, 2), "hundred_events_ms": round(m100 * 1000, 2),
            "ratio_100_vs_1": round(m100 / m1, 2), "repeats": REPEATS}


def _wait_terminal(stack: LocalStack, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = stack.container.db.query(
            "SELECT count(*) AS n FROM workflows WHERE state IN ('SENT','DRAFT_SAVED','BLOCKED','FAILED')")[0]["n"]
        if done >= expected:
            return done
        time.sleep(0.25)
    return done


def _chain(leads: int) -> dict:
    from shared.adapters.hubspot_crm import SandboxCrm

    with tempfile.TemporaryDirectory(prefix="bench-leads-") as tmp:
        stack = LocalStack(port=free_port(), data_dir=Path(tmp)).start()
        try:
            stack.container.tasks.wait_idle(300)  # the seeded voice samples finish first
            requests.put(stack.url + "/admin/flags", json={"send_mode": "SEND_ALLOWED"}, headers=OPS, timeout=30)
            crm = SandboxCrm(stack.data_dir)
            contacts = [crm.add_contact({"firstname": f"Lead{i}", "email": f"lead{i}@contoso.example",
                                         "hubspot_owner_id": "7001", "company": "Contoso",
                                         "message": "Could you walk us through the reorder flow?"},
                                        company_id="202") for i in range(leads)]
            started = time.perf_counter()
            for offset in range(0, leads, 100):
                batch = contacts[offset:offset + 100]
                body = json.dumps([{"eventId": 500_000 + offset + i, "subscriptionId": 1, "portalId": 4242,
                                    "appId": 1, "occurredAt": 1764000000000, "subscriptionType": "contact.creation",
                                    "attemptNumber": 0, "objectId": int(c)} for i, c in enumerate(batch)]).encode()
                _post(stack, body)
            finished = _wait_terminal(stack, leads, timeout=60 + leads * 2.0)
            elapsed = time.perf_counter() - started
            rows = stack.container.db.query(
                "SELECT (SELECT count(*) FROM workflow_events) AS events, (SELECT count(*) FROM draft_emails) AS drafts")[0]
            states = {r["state"]: r["n"] for r in stack.container.db.query(
                "SELECT state, count(*) AS n FROM workflows GROUP BY state")}
        finally:
            stack.stop()
    return {"leads": leads, "finished": finished, "seconds": round(elapsed, 2),
            "ms_per_lead": round(elapsed / leads * 1000, 1), "events_per_lead": round(rows["events"] / leads, 2),
            "states": states}


def run() -> dict:
    small = _chain(100)
    large = _chain(1000)
    return {"webhook": webhook_ratio(), "chain_100": small, "chain_1000": large,
            "cost_ratio_1000_vs_100": round(large["ms_per_lead"] / small["ms_per_lead"], 2)}
