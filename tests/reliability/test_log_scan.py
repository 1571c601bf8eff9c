"""The end-to-end paths with every log line captured: no seeded email address, phone number, card number,
OAuth token or client secret may appear in any of them (DESIGN §7).

The seeds go where real ones would: the lead's contact record and form message, a training sample's
text, a person's bearer token, the stored Google refresh token, the HubSpot client secret that signs
webhooks. Logging runs at DEBUG for the test, so lines that production would drop are scanned too.
"""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
import requests

from functions.localstack import demo
from shared.auth import hubspot_request_uri, hubspot_v3_headers

pytestmark = [pytest.mark.emulator, pytest.mark.slow]

OPS = {"X-Dev-User": "ops@example.com"}


def _seeds(stamp: int) -> dict[str, str]:
    return {
        "lead email": f"lena.vogel.{stamp}@contoso.example",
        "third-party email": f"priya.private.{stamp}@fabrikam.example",
        "phone": "+44 20 7946 0958",
        "phone digits": "442079460958",
        "card": "4111 1111 1111 1111",
        "card digits": "4111111111111111",
        "oauth access token": f"ya29.a0AfB_seeded{stamp}Token",
        "oauth refresh token": f"1//0gSeededRefresh{stamp}",
        "client secret": "local-hubspot-secret",
    }


@pytest.fixture
def debug_logging():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.setLevel(level)


def _wait_terminal(stack, contact_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = requests.get(stack.url + "/admin/workflows", params={"q": contact_id, "limit": 5}, headers=OPS,
                            timeout=30).json()["workflows"]
        if rows and rows[0]["state"] in demo.TERMINAL:
            return rows[0]
        time.sleep(0.3)
    raise AssertionError(f"the workflow of contact {contact_id} did not finish within {timeout}s")


def _wait_sample(stack, sample_id: str, headers, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{stack.url}/ingest/samples/{sample_id}", headers=headers, timeout=30).json()
        if body.get("status") in ("ready", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"sample {sample_id} did not finish within {timeout}s")


def test_no_seeded_secret_or_pii_reaches_a_log_line(reliability_stack, capsys, debug_logging):
    from shared.adapters.hubspot_crm import SandboxCrm

    stack = reliability_stack
    settings = stack.container.settings
    stamp = time.time_ns()
    seeds = _seeds(stamp)
    stack.container.secrets.add_version(f"google-refresh-seeded-{stamp}", seeds["oauth refresh token"].encode())
    capsys.readouterr()  # only what follows is scanned

    # 1. A lead whose record and message carry PII, through webhook → draft → gate → send.
    contact_id = SandboxCrm(stack.data_dir).add_contact({
        "firstname": "Lena", "lastname": "Vogel", "email": seeds["lead email"], "phone": seeds["phone"],
        "company": "Contoso", "hubspot_owner_id": "7001", "hs_email_optout": "false",
        "message": (f"Call me on {seeds['phone']} or write to {seeds['third-party email']}. My card is "
                    f"{seeds['card']}; our token {seeds['oauth access token']} expired.")}, company_id="202")
    body = json.dumps([{"eventId": stamp, "portalId": 4242, "subscriptionType": "contact.creation",
                        "objectId": int(contact_id), "occurredAt": stamp // 10**6}]).encode()
    uri = hubspot_request_uri(stack.url, "/webhook/hubspot")
    signed = hubspot_v3_headers(settings.hubspot_client_secret, "POST", uri, body)
    assert requests.post(stack.url + "/webhook/hubspot", data=body, timeout=30,
                         headers={"Content-Type": "application/json", **signed}).status_code == 200
    # A forged delivery, so the refusal path logs too.
    forged = {**signed, "X-HubSpot-Signature-v3": "Zm9yZ2Vk"}
    assert requests.post(stack.url + "/webhook/hubspot", data=body, headers=forged, timeout=30).status_code == 401
    _wait_terminal(stack, contact_id)

    # 2. A training sample with third-party PII, through ingest → extract → embed, sent with a bearer token.
    token = stack.container.signer.person_token("alex@example.com", settings.oauth_client_id)
    alex = {"Authorization": f"Bearer {token}"}
    text = (f"Hi Jordan,\n\nPriya ({seeds['third-party email']}, {seeds['phone']}) asked me to pass this on. "
            f"The old card {seeds['card']} is cancelled. Token for the sandbox: {seeds['oauth access token']}.\n\n"
            f"I'll send the pilot plan tonight. Marker {stamp}.\n\nCheers,\nAlex\n")
    r = requests.post(stack.url + "/ingest", files={"file": ("note.txt", text.encode())}, headers=alex, timeout=60)
    assert r.status_code == 202, r.text
    sample = _wait_sample(stack, r.json()["id"], alex)
    assert sample["status"] == "ready", sample
    # An expired token and an unknown rep: the refusal paths log too.
    expired = stack.container.signer.person_token("alex@example.com", settings.oauth_client_id, lifetime=-60)
    assert requests.get(stack.url + "/ingest/samples", headers={"Authorization": f"Bearer {expired}"},
                        timeout=30).status_code == 401

    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    # The scan only means something if the chain's own lines were captured: look for two of them
    # (how many other lines there are depends on log levels other tests of the session may have set).
    for expected in ("webhook batch stored", "draft created"):
        assert any(f'"message": "{expected}"' in line for line in lines), \
            f"no {expected!r} line captured ({len(lines)} lines): is logging still captured?"
    leaks = {name: [line[:300] for line in lines if value.lower() in line.lower()]
             for name, value in {**seeds, "bearer token": token, "expired bearer token": expired}.items()}
    leaks = {name: found for name, found in leaks.items() if found}
    assert not leaks, json.dumps(leaks, indent=1)
    # And the extracted sample itself kept none of the third party's details (PII scrubbing).
    for name in ("third-party email", "phone", "card"):
        assert seeds[name] not in sample["content"], name


def test_the_scan_would_see_a_leak(reliability_stack, capsys):
    """The capture above is the real log stream: a line logged with an unregistered value is found."""
    marker = f"canary-{time.time_ns()}"
    logging.getLogger("shared.reliability.canary").warning("canary %s", marker)
    captured = capsys.readouterr()
    assert re.search(re.escape(marker), captured.out + captured.err)
