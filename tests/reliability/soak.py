"""The soak runs shared by ``tests/reliability/test_soak.py`` and ``bench/bench_soak.py``.

``lead_soak`` pushes N leads through webhook → draft → gate → send on a ``FaultyStack``: every webhook
delivery three times (two at once, one later), a share of tasks and events twice, and HubSpot, Gmail,
Vertex and Postgres failing on a seeded schedule. ``sample_soak`` does the same for voice samples
through ingest → extract → embed. Both return figures; the callers assert on them.
"""

from __future__ import annotations

import collections
import email
import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from shared.auth import hubspot_request_uri, hubspot_v3_headers
from tests.reliability.faults import FaultPlan, FaultyStack, stack_with_faults

OPS = {"X-Dev-User": "ops@example.com"}
TERMINAL = ("SENT", "DRAFT_SAVED", "BLOCKED", "FAILED", "REPLIED")
CONTOSO = "202"
OWNERS = ("7001", "7002")  # Alex and Sam in the sandbox CRM

# Rates per call. The draft step reads HubSpot several times per attempt, so its rate is lower.
LEAD_FAULTS = {"crm": 0.03, "mail": 0.25, "mail_lookup": 0.05, "generate": 0.1, "embed": 0.05,
               "db_drop": 0.01, "dup_task": 0.5, "dup_event": 0.5}
SAMPLE_FAULTS = {"blob_get": 0.25, "embed": 0.25, "db_drop": 0.01, "dup_task": 0.5, "dup_event": 0.5}


def _retrying_post(url: str, *, attempts: int = 10, **kwargs: Any) -> requests.Response:
    """POST like HubSpot and browsers retry: again on a 5xx or a refused connection, a bounded number of times."""
    last: requests.Response | None = None
    for attempt in range(attempts):
        try:
            last = requests.post(url, timeout=60, **kwargs)
        except requests.ConnectionError:
            last = None
        if last is not None and last.status_code < 500:
            return last
        time.sleep(0.05 * (attempt + 1))
    raise AssertionError(f"{url} kept failing: {last.status_code if last is not None else 'no answer'}"
                         f" {last.text[:300] if last is not None else ''}")


def _put_flags(fs: FaultyStack, changes: dict[str, Any]) -> None:
    for _ in range(10):
        r = requests.put(fs.url + "/admin/flags", json=changes, headers=OPS, timeout=30)
        if r.status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"could not set flags: {r.status_code} {r.text[:300]}")


def _post_webhook(fs: FaultyStack, body: bytes) -> dict[str, Any]:
    settings = fs.stack.container.settings
    uri = hubspot_request_uri(fs.url, "/webhook/hubspot")

    def headers() -> dict[str, str]:  # signed per attempt: the timestamp must be fresh
        return {"Content-Type": "application/json",
                **hubspot_v3_headers(settings.hubspot_client_secret, "POST", uri, body)}

    for attempt in range(10):
        try:
            r = requests.post(fs.url + "/webhook/hubspot", data=body, headers=headers(), timeout=60)
        except requests.ConnectionError:
            time.sleep(0.05 * (attempt + 1))
            continue
        if r.status_code == 200:
            return r.json()
        assert r.status_code >= 500, f"webhook refused a signed delivery: {r.status_code} {r.text[:300]}"
        time.sleep(0.05 * (attempt + 1))
    raise AssertionError("the webhook kept answering 5xx")


def _add_contacts(data_dir: Path, n: int, stamp: int) -> list[str]:
    from shared.adapters.hubspot_crm import SandboxCrm

    crm = SandboxCrm(data_dir)  # the real sandbox: seeding is not under test
    ids = []
    for i in range(n):
        ids.append(crm.add_contact({
            "firstname": f"Lead{i}", "lastname": "Soak", "email": f"lead{i}.{stamp}@contoso.example",
            "company": "Contoso", "jobtitle": "Head of Operations", "hubspot_owner_id": OWNERS[i % 2],
            "hs_timezone": "europe_slash_berlin", "hs_email_optout": "false",
            "message": f"We lose a day a week to manual reorders at site {i}. Could you walk us through it?"},
            company_id=CONTOSO))
    return ids


def _wait_terminal(fs: FaultyStack, n: int, timeout: float) -> tuple[bool, float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        rows = fs.real_db.query("SELECT count(*) AS total, count(*) FILTER (WHERE state = ANY(%s)) AS done "
                                "FROM workflows", (list(TERMINAL),))
        if rows[0]["total"] >= n and rows[0]["done"] == rows[0]["total"]:
            return True, time.monotonic() - start
        time.sleep(0.25)
    return False, time.monotonic() - start


def lead_soak(data_dir: Path, *, n: int, batch: int = 10, seed: int = 7, timeout: float = 600.0,
              faults: dict[str, float] | None = None) -> dict[str, Any]:
    """Run N leads through a faulty stack; return the figures (the stack is stopped before returning)."""
    plan = FaultPlan(LEAD_FAULTS if faults is None else faults, seed=seed)
    fs = stack_with_faults(Path(data_dir), plan)
    try:
        return _lead_soak(fs, n=n, batch=batch, seed=seed, timeout=timeout)
    finally:
        fs.stop()


def _lead_soak(fs: FaultyStack, *, n: int, batch: int, seed: int, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    _put_flags(fs, {"send_mode": "SEND_ALLOWED", "kill_switch": False})
    baseline_workflows = fs.real_db.query("SELECT count(*) AS n FROM workflows")[0]["n"]
    stamp = int(time.time() * 1000)
    contacts = _add_contacts(fs.stack.data_dir, n, stamp)
    bodies = []
    for start in range(0, n, batch):
        events = [{"eventId": stamp + i, "subscriptionId": 1, "portalId": 4242, "appId": 1, "occurredAt": stamp,
                   "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": int(contacts[i])}
                  for i in range(start, min(n, start + batch))]
        bodies.append(json.dumps(events).encode())

    answers: list[dict[str, Any]] = []
    # Deliveries one and two of each batch race each other; the third comes after every batch was sent.
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers += pool.map(lambda b: _post_webhook(fs, b), [b for body in bodies for b in (body, body)])
        late = list(bodies)
        random.Random(seed).shuffle(late)
        answers += pool.map(lambda b: _post_webhook(fs, b), late)
    accepted = sum(a["accepted"] for a in answers)
    duplicates = sum(a["duplicates"] for a in answers)

    all_terminal, to_terminal = _wait_terminal(fs, baseline_workflows + n, timeout)
    idle = fs.wait_idle(timeout=60)  # the late duplicates of tasks and events still run
    figures = collect_lead_figures(fs, baseline_workflows)
    figures.update(n=n, webhook_deliveries=len(answers), accepted=accepted, duplicates=duplicates,
                   all_terminal=all_terminal, seconds_to_terminal=round(to_terminal, 1), idle_after=idle,
                   seconds_total=round(time.monotonic() - started, 1), faults_injected=dict(fs.plan.injected),
                   calls=dict(fs.plan.calls), db_connections_cut=fs.db.dropped,
                   tasks_duplicated=fs.tasks.duplicated, events_duplicated=fs.events.duplicated)
    return figures


_WF = re.compile(r"<wf-([0-9a-f-]{36})@")


def collect_lead_figures(fs: FaultyStack, baseline: int) -> dict[str, Any]:
    from shared.adapters.hubspot_crm import SandboxCrm

    db = fs.real_db
    states = {r["state"]: r["n"] for r in db.query("SELECT state, count(*) AS n FROM workflows GROUP BY state")}
    # Every .eml in the outbox, sent or draft, keyed by its Message-ID header.
    by_message_id: collections.Counter[str] = collections.Counter()
    for folder in ("sent", "drafts"):
        for path in (fs.stack.data_dir / "outbox" / folder).glob("*.eml"):
            with path.open("rb") as handle:
                by_message_id[str(email.message_from_binary_file(handle).get("Message-ID", "")).strip()] += 1
    emailed = {m.group(1) for mid in by_message_id if (m := _WF.search(mid))}
    delivered = {r["id"] for r in db.query("SELECT id::text AS id FROM workflows WHERE state IN "
                                           "('SENT', 'DRAFT_SAVED')")}
    per_workflow_crm = db.query(
        "SELECT w.id::text AS id, count(*) FILTER (WHERE h.kind = 'task' AND h.purpose = 'follow_up') AS tasks, "
        "count(*) FILTER (WHERE h.kind = 'note') AS notes, count(h.hubspot_id) AS recorded "
        "FROM workflows w LEFT JOIN hubspot_tasks h ON h.workflow_id = w.id "
        "WHERE w.state IN ('SENT', 'DRAFT_SAVED') GROUP BY w.id")
    sandbox = SandboxCrm(fs.stack.data_dir).snapshot()
    sandbox_keys = [k for k in sandbox.get("idempotency", {}) if k.startswith(("task-", "note-"))]
    failed_without_cause = db.query(
        "SELECT w.id::text AS id FROM workflows w WHERE w.state = 'FAILED' AND NOT EXISTS "
        "(SELECT 1 FROM workflow_errors e WHERE e.workflow_id = w.id)")
    errors = db.query("SELECT step, code, retryable, count(*) AS n, "
                      "count(*) FILTER (WHERE coalesce(message, '') = '') AS blank FROM workflow_errors "
                      "GROUP BY step, code, retryable ORDER BY step, code")
    after_effect_ids = {m.group(1) for mid in fs.mailer.after_effect if (m := _WF.search(mid))}
    send_error_ids = {r["id"] for r in db.query("SELECT DISTINCT workflow_id::text AS id FROM workflow_errors "
                                                "WHERE step = 'send'")}
    failed_reasons = db.query(
        "SELECT e.reason FROM workflows w JOIN LATERAL (SELECT reason FROM workflow_events v WHERE "
        "v.workflow_id = w.id ORDER BY v.id DESC LIMIT 1) e ON true WHERE w.state = 'FAILED'")
    stuck = []
    for row in db.query("SELECT id::text AS id, state FROM workflows WHERE NOT (state = ANY(%s)) LIMIT 5",
                        (list(TERMINAL),)):
        events = db.query("SELECT from_state, to_state, actor, reason, at FROM workflow_events WHERE workflow_id = %s "
                          "ORDER BY id", (row["id"],))
        errs = db.query("SELECT step, code, message, attempt, at FROM workflow_errors WHERE workflow_id = %s "
                        "ORDER BY id", (row["id"],))
        runs = db.query("SELECT key, result, at FROM step_runs WHERE key LIKE %s", (f"%{row['id']}%",))
        stuck.append({"id": row["id"], "state": row["state"], "events": events, "errors": errs, "step_runs": runs})
    return {
        "stuck": stuck,
        "workflows": sum(states.values()) - baseline,
        "states": states,
        "submissions": db.query("SELECT count(*) AS n FROM form_submissions")[0]["n"],
        "emails_in_outbox": sum(by_message_id.values()),
        "duplicate_emails_in_outbox": sum(c - 1 for c in by_message_id.values() if c > 1),
        "mailer_repeat_deliveries": sum(fs.mailer.repeats.values()),
        "mailer_deliveries": sum(fs.mailer.deliveries.values()),
        "mail_failed_after_storing": sum(fs.mailer.after_effect.values()),
        "delivered_workflows_without_email": len(delivered - emailed),
        "emails_without_delivered_workflow": len(emailed - delivered),
        "hubspot_rows_not_one_task_one_note": sum(1 for r in per_workflow_crm
                                                  if (r["tasks"], r["notes"], r["recorded"]) != (1, 1, 2)),
        "hubspot_repeat_creates": sum(fs.crm.repeats.values()),
        "hubspot_creates": sum(fs.crm.creates.values()),
        "sandbox_task_and_note_keys": len(sandbox_keys),
        "failed_without_cause": len(failed_without_cause),
        "failed_blank_reason": sum(1 for r in failed_reasons if not (r["reason"] or "").strip()),
        "workflow_errors": [{k: r[k] for k in ("step", "code", "retryable", "n", "blank")} for r in errors],
        "after_effect_without_send_error": len(after_effect_ids - send_error_ids),
    }


# --- voice samples -------------------------------------------------------------------------------------


def _sample_text(i: int, stamp: int) -> str:
    # Unique per sample (the content hash dedupes per rep) and long enough to make two or three chunks.
    lines = [f"Hi team {i}, quick note from Alex after our call on {stamp}.",
             "Thanks for walking me through the reorder flow; the Monday crunch is exactly what we fix.",
             f"I'll send the pilot plan for site {i} tonight, and we can review it together on Thursday."]
    return "\n\n".join(lines * 6) + "\n\nCheers,\nAlex\n"


def _wait_samples(fs: FaultyStack, ids: list[str], timeout: float) -> tuple[bool, float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        rows = fs.real_db.query("SELECT count(*) AS n FROM training_samples WHERE id::text = ANY(%s) AND "
                                "status IN ('ready', 'failed')", (ids,))
        if rows[0]["n"] == len(ids):
            return True, time.monotonic() - start
        time.sleep(0.25)
    return False, time.monotonic() - start


def sample_soak(data_dir: Path, *, n: int, seed: int = 11, timeout: float = 600.0,
                faults: dict[str, float] | None = None) -> dict[str, Any]:
    """Upload N text samples through POST /ingest on a faulty stack; return the figures."""
    plan = FaultPlan(SAMPLE_FAULTS if faults is None else faults, seed=seed)
    fs = stack_with_faults(Path(data_dir), plan)
    try:
        started = time.monotonic()
        stamp = int(time.time() * 1000)

        def upload(i: int) -> str:
            headers = {"X-Dev-User": ("alex@example.com", "sam@example.com")[i % 2]}
            r = _retrying_post(fs.url + "/ingest", headers=headers,
                               files={"file": (f"note-{i}.txt", _sample_text(i, stamp).encode())})
            assert r.status_code == 202, f"upload {i}: {r.status_code} {r.text[:300]}"
            return r.json()["id"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(upload, range(n)))
        finished, to_finish = _wait_samples(fs, ids, timeout)
        idle = fs.wait_idle(timeout=60)
        db = fs.real_db
        statuses = {r["status"]: r["n"] for r in db.query(
            "SELECT status, count(*) AS n FROM training_samples WHERE id::text = ANY(%s) GROUP BY status", (ids,))}
        failed = db.query("SELECT error FROM training_samples WHERE id::text = ANY(%s) AND status = 'failed'",
                          (ids,))
        duplicate_chunks = db.query(
            "SELECT count(*) AS n FROM (SELECT sample_id, ordinal, model FROM sample_chunks GROUP BY "
            "sample_id, ordinal, model HAVING count(*) > 1) d")[0]["n"]
        ready_without_chunks = db.query(
            "SELECT count(*) AS n FROM training_samples s WHERE s.id::text = ANY(%s) AND s.status = 'ready' AND "
            "NOT EXISTS (SELECT 1 FROM sample_chunks c WHERE c.sample_id = s.id)", (ids,))[0]["n"]
        return {
            "n": n, "statuses": statuses, "all_finished": finished, "seconds_to_finish": round(to_finish, 1),
            "idle_after": idle, "seconds_total": round(time.monotonic() - started, 1),
            "failed_without_error": sum(1 for r in failed if not (r["error"] or "").strip()),
            "failed_errors": sorted({(r["error"] or "")[:120] for r in failed}),
            "duplicate_chunks": duplicate_chunks, "ready_without_chunks": ready_without_chunks,
            "faults_injected": dict(plan.injected), "db_connections_cut": fs.db.dropped,
            "tasks_duplicated": fs.tasks.duplicated, "events_duplicated": fs.events.duplicated,
        }
    finally:
        fs.stop()
