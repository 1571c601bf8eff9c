"""`python -m functions demo`: one lead end to end, printing each step.

It talks to the local stack over HTTP exactly as HubSpot and the dashboard do: a signed webhook in, the
admin API to follow the workflow. When no stack answers at the URL it starts an embedded one for the
run. Each run adds a fresh lead to the sandbox CRM (owned by Alex), so the gate's repeat-contact rule
does not turn a second demo into a review draft.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from shared.auth import hubspot_request_uri, hubspot_v3_headers
from shared.config import Settings

OPS = {"X-Dev-User": "ops@example.com"}
TERMINAL = {"SENT", "DRAFT_SAVED", "BLOCKED", "FAILED", "REPLIED"}
CONTOSO = "202"  # the sandbox's company at lifecycle stage "lead": inside the seeded guardrails
ALEX_OWNER = "7001"


def run(*, url: str | None, data_dir: Path, mode: str | None, kill_switch: bool | None, timeout: float = 180,
        out=print) -> int:
    settings = Settings.from_env(env="local", data_dir=data_dir)
    base = (url or settings.public_base_url).rstrip("/")
    stack = None
    if not _answers(base):
        from functions.localstack.emulators.base import free_port
        from functions.localstack.stack import LocalStack

        port = free_port()
        out(f"No stack at {base}; starting an embedded one on port {port} (data in {data_dir}) ...")
        stack = LocalStack(port=port, data_dir=data_dir).start()
        base = stack.url
        settings = stack.container.settings
    try:
        return _demo(base, settings, mode=mode, kill_switch=kill_switch, timeout=timeout, out=out)
    finally:
        if stack is not None:
            stack.stop()


def _answers(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=30).status_code < 500
    except requests.RequestException:
        return False


def _demo(base: str, settings: Settings, *, mode, kill_switch, timeout, out) -> int:
    changes: dict[str, Any] = {}
    if mode:
        changes["send_mode"] = mode
    if kill_switch is not None:
        changes["kill_switch"] = kill_switch
    if changes:
        r = requests.put(base + "/admin/flags", json=changes, headers=OPS, timeout=30)
        r.raise_for_status()
        out(f"flags set by ops@example.com: {json.dumps(r.json()['flags'])}")
    flags = requests.get(base + "/admin/flags", headers=OPS, timeout=30).json()["flags"]
    out(f"flags: send_mode={flags['send_mode']} kill_switch={flags['kill_switch']}")

    from shared.adapters.hubspot_crm import SandboxCrm

    stamp = int(time.time() * 1000)
    contact_id = SandboxCrm(settings.data_dir).add_contact({
        "firstname": "Lena", "lastname": "Fischer", "email": f"lena.fischer+{stamp}@contoso.example",
        "company": "Contoso", "jobtitle": "Head of Sales Operations", "hubspot_owner_id": ALEX_OWNER,
        "hs_timezone": "europe_slash_berlin", "hs_email_optout": "false",
        "message": "We lose a day a week to manual reorders. Could you walk us through the reorder flow?"},
        company_id=CONTOSO)
    out(f"1. new lead in the sandbox CRM: contact {contact_id} (Contoso, owned by alex@example.com)")

    body = json.dumps([{"eventId": stamp, "subscriptionId": 1, "portalId": 4242, "appId": 1, "occurredAt": stamp,
                        "subscriptionType": "contact.creation", "attemptNumber": 0,
                        "objectId": int(contact_id)}]).encode()
    answer = _post_webhook(base, settings, body)
    out(f"2. POST /webhook/hubspot (signed v3) -> {answer}")

    workflow_id = _find_workflow(base, contact_id, timeout)
    out(f"3. workflow {workflow_id}")
    detail = _follow(base, workflow_id, timeout, out)

    draft = detail.get("draft") or {}
    if draft:
        out("\n--- draft ---------------------------------------------------------------")
        out(f"Subject: {draft.get('subject')}\n")
        out(str(draft.get("body", "")).rstrip())
        out("-------------------------------------------------------------------------")
        score = draft.get("voice_score")
        out(f"voice score: {score:.2f}" if isinstance(score, (int, float)) else "voice score: -")
        out(f"gate decision: {draft.get('decision')} (risk {draft.get('risk_score')})")
        for reason in draft.get("reasons") or []:
            out(f"  - {reason if isinstance(reason, str) else reason.get('message', reason)}")
    landed = _landed(settings.data_dir, draft)
    if landed:
        out(f"email: {landed}")
    for item in detail.get("hubspot") or []:
        out(f"HubSpot {item.get('kind')}: {item.get('hubspot_id')} ({item.get('purpose')})")

    replay = _post_webhook(base, settings, body)
    out(f"4. the same delivery again -> {replay} (nothing changes)")
    final = detail["workflow"]["state"]
    out(f"final state: {final}")
    return 0 if final in TERMINAL else 1


def _post_webhook(base: str, settings: Settings, body: bytes) -> dict:
    # A local stack's public base URL is its own address, which is what HubSpot would have signed.
    uri = hubspot_request_uri(base, "/webhook/hubspot")
    headers = {"Content-Type": "application/json",
               **hubspot_v3_headers(settings.hubspot_client_secret, "POST", uri, body)}
    r = requests.post(base + "/webhook/hubspot", data=body, headers=headers, timeout=60)
    r.raise_for_status()
    return r.json()


def _find_workflow(base: str, contact_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = requests.get(base + "/admin/workflows", params={"q": contact_id, "limit": 5}, headers=OPS,
                            timeout=30).json()["workflows"]
        if rows:
            return rows[0]["id"]
        time.sleep(0.2)
    raise SystemExit(f"no workflow appeared for contact {contact_id} within {timeout:.0f}s")


def _follow(base: str, workflow_id: str, timeout: float, out) -> dict:
    seen = 0
    deadline = time.monotonic() + timeout
    detail: dict = {}
    while time.monotonic() < deadline:
        detail = requests.get(f"{base}/admin/workflows/{workflow_id}", headers=OPS, timeout=30).json()
        events = detail["timeline"]["events"]
        for event in events[seen:]:
            reason = f" - {event['reason']}" if event.get("reason") else ""
            out(f"   {event['at'][11:19] if isinstance(event['at'], str) else event['at']}  "
                f"{event.get('from_state') or '·'} -> {event['to_state']}  [{event['actor']}]{reason}")
        seen = len(events)
        if detail["workflow"]["state"] in TERMINAL:
            for error in detail["timeline"]["errors"]:
                out(f"   error in {error['step']}: {error['code']}: {error['message']}")
            return detail
        time.sleep(0.3)
    out(f"   (still {detail.get('workflow', {}).get('state')} after {timeout:.0f}s; scheduled for "
        f"{detail.get('workflow', {}).get('scheduled_send_at')})")
    return detail


def _landed(data_dir: Path, draft: dict) -> str | None:
    """Where the local outbox put the email, found by its Message-ID."""
    message_id = draft.get("message_id")
    outbox = Path(data_dir) / "outbox"
    if not message_id or not outbox.exists():
        return draft.get("gmail_message_id") or draft.get("gmail_draft_id")
    for path in outbox.rglob("*.eml"):
        if message_id in path.read_text(errors="replace"):
            return str(path)
    return None
