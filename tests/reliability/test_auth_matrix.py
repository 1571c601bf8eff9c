"""Every route of every function against every wrong credential: 401 or 403 with an error body, never data.

The routes come from the routers themselves, so a route added later is in the matrix without an edit
here (and ``test_the_matrix_covers_every_route`` fails if a router gains one this file cannot call).
Path parameters are filled with ids that exist (Alex's sample, a workflow, Sam's rep id), so a route
that forgot its check would answer with real data, not a 404.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from shared.auth import LocalSigner, hubspot_request_uri, hubspot_v3_headers, sign_hubspot_v3

pytestmark = [pytest.mark.emulator]

ERROR_KEYS = {"error", "message", "details"}
STRANGER_SA = "attacker@evil-project.iam.gserviceaccount.com"


def _routers():
    from shared.mail.send_step import send_router as send
    from shared.admin.api import router as admin
    from shared.drafting.step import draft_router
    from shared.leads.webhook_api import router as webhook
    from shared.accounts_google.api import router as token_refresh
    from shared.voice.ingest import router as ingest
    from shared.voice.pipeline import embed_router, extract_router

    return {"ingest": ingest, "admin": admin, "webhook": webhook, "extract": extract_router,
            "embed": embed_router, "draft": draft_router, "send": send, "token-refresh": token_refresh}


PEOPLE = ("ingest", "admin", "token-refresh")
SIGNED = {("webhook", "/hubspot")}
PUSH = {("webhook", "/gmail"), ("gate", "/")}  # Pub/Sub push: the push service account
SCHEDULED = {("token-refresh", "/")}  # Cloud Scheduler: the scheduler service account
# Public by design, each with its own check (tests/functions/test_google_connect.py): /connect sends the
# browser to Google, and only the rep's own Google account can complete it; /callback needs the signed,
# single-use state that /connect issued.
PUBLIC = {("token-refresh", "/connect"), ("token-refresh", "/callback")}


def all_routes() -> list[tuple[str, str, str]]:
    routes = [(name, method, path or "/") for name, router in _routers().items() for method, path in router.rules()]
    routes.append(("gate", "POST", "/"))  # a CloudEvent function: its one route is its URL
    return sorted(set(routes))


@pytest.fixture(scope="module")
def world(reliability_stack):
    """Real ids to put in paths, and the signers."""
    stack = reliability_stack
    alex, ops = {"X-Dev-User": "alex@example.com"}, {"X-Dev-User": "ops@example.com"}
    samples = requests.get(stack.url + "/ingest/samples", headers=alex, timeout=30).json()["samples"]
    reps = requests.get(stack.url + "/admin/reps", headers=ops, timeout=30).json()["reps"]
    from functions.localstack import demo

    # One workflow of the stack's own, so /admin/workflows/<id> has something to leak.
    demo.run(url=stack.url, data_dir=stack.data_dir, mode="DRAFT_ONLY", kill_switch=False, out=lambda _: None,
             timeout=120)
    workflows = requests.get(stack.url + "/admin/workflows", headers=ops, timeout=30).json()["workflows"]
    assert samples and reps and workflows
    sam = [r for r in reps if r["email"] == "sam@example.com"][0]
    return {"stack": stack, "sample_id": samples[0]["id"], "workflow_id": workflows[0]["id"],
            "rep_id": sam["id"], "signer": stack.container.signer, "settings": stack.container.settings,
            "forger": LocalSigner(stack.data_dir / "forged-keys")}


def _path(world, path: str) -> str:
    return (path.replace("<sample_id>", world["sample_id"]).replace("<workflow_id>", world["workflow_id"])
            .replace("<rep_id>", world["rep_id"]))


def _body(world, function: str, path: str) -> bytes:
    """A body the route would act on if it let the caller in."""
    if function in ("extract", "embed"):
        return json.dumps({"sample_id": world["sample_id"]}).encode()
    if function in ("draft", "send"):
        return json.dumps({"workflow_id": world["workflow_id"]}).encode()
    if (function, path) in PUSH:
        data = base64.b64encode(json.dumps({"workflow_id": world["workflow_id"], "emailAddress": "alex@example.com",
                                            "historyId": "1"}).encode()).decode()
        return json.dumps({"message": {"data": data, "messageId": "1", "attributes": {}},
                           "subscription": "projects/local-project/subscriptions/x"}).encode()
    if function == "admin" and path.startswith(("/flags", "/guardrails")):
        return json.dumps({"kill_switch": True, "send_mode": "SEND_ALLOWED"}).encode()
    if function == "admin" and path.startswith("/quotas"):
        return json.dumps({"daily": 999, "weekly": 9999}).encode()
    if path == "/profile/match":
        return json.dumps({"text": "hello"}).encode()
    return json.dumps({"source": "url", "url": "https://example.com/"}).encode()


def _expired_claims_token(signer, audience: str, email: str) -> str:
    return signer.service_token(audience, email, lifetime=-3600)


def _alg_none(audience: str, email: str) -> str:
    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return (enc({"alg": "none", "typ": "JWT"}) + "." +
            enc({"iss": "https://accounts.google.com", "aud": audience, "email": email, "email_verified": True,
                 "iat": now, "exp": now + 600, "sub": "1"}) + ".")


def credentials(world, function: str, path: str) -> dict[str, dict[str, str]]:
    """Every wrong credential for this route, by name."""
    s, signer, forger = world["settings"], world["signer"], world["forger"]
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    if function in PEOPLE and (function, path) not in SCHEDULED:
        cid = s.oauth_client_id
        creds = {
            "none": {},
            "garbage bearer": bearer("not-a-token"),
            "expired ID token": bearer(signer.person_token("ops@example.com", cid, lifetime=-3600)),
            "wrong audience": bearer(signer.person_token("ops@example.com", "someone-else.apps.googleusercontent.com")),
            "forged key": bearer(forger.person_token("ops@example.com", cid)),
            "alg none": bearer(_alg_none(cid, "ops@example.com")),
            "service account token": bearer(signer.service_token(cid, s.tasks_service_account)),
            "person of another domain": {"X-Dev-User": "mallory@evil.example"},
            "malformed dev user": {"X-Dev-User": "ops@example.com x"},
            "person token of another domain": bearer(signer.person_token("mallory@evil.example", cid)),
        }
        if function == "admin":
            creds["rep without the ops role"] = {"X-Dev-User": "alex@example.com"}
            creds["rep ID token without the ops role"] = bearer(signer.person_token("alex@example.com", cid))
        return creds
    if (function, path) in SIGNED:
        return {}  # its own matrix below: signatures, not tokens
    audience = s.audience_for(function)
    right_sa = (s.pubsub_service_account if (function, path) in PUSH else
                s.scheduler_service_account if (function, path) in SCHEDULED else s.tasks_service_account)
    wrong_sa = s.tasks_service_account if (function, path) in PUSH | SCHEDULED else s.pubsub_service_account
    return {
        "none": {},
        "dev user header (ops)": {"X-Dev-User": "ops@example.com"},
        "garbage bearer": bearer("a.b.c"),
        "expired token": bearer(_expired_claims_token(signer, audience, right_sa)),
        "wrong audience": bearer(signer.service_token(audience.rstrip("/") + "-other", right_sa)),
        "another function's audience": bearer(signer.service_token(s.audience_for("admin"), right_sa)),
        "wrong service account": bearer(signer.service_token(audience, wrong_sa)),
        "stranger service account": bearer(signer.service_token(audience, STRANGER_SA)),
        "forged key": bearer(forger.service_token(audience, right_sa)),
        "alg none": bearer(_alg_none(audience, right_sa)),
        "person ID token": bearer(signer.person_token("ops@example.com", s.oauth_client_id)),
    }


def _cases():
    for function, method, path in all_routes():
        if (function, path) in SIGNED | PUBLIC:
            continue
        yield pytest.param(function, method, path, id=f"{method} /{function}{path if path != '/' else ''}")


def _assert_refused(response: requests.Response, what: str) -> None:
    assert response.status_code in (401, 403), f"{what}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert isinstance(body, dict) and "error" in body, f"{what}: {body}"
    assert set(body) <= ERROR_KEYS, f"{what}: the refusal carries data: {sorted(set(body) - ERROR_KEYS)}"


@pytest.mark.parametrize("function, method, path", list(_cases()))
def test_every_wrong_credential_is_refused(world, function, method, path):
    stack = world["stack"]
    url = f"{stack.url}/{function}{_path(world, path) if path != '/' else '/'}"
    body = _body(world, function, path) if method in ("POST", "PUT") else None
    creds = credentials(world, function, path)
    assert len(creds) >= 8
    for name, headers in creds.items():
        response = requests.request(method, url, data=body, timeout=30,
                                    headers={"Content-Type": "application/json", **headers})
        _assert_refused(response, f"{method} {url} with {name}")
        if name in ("none", "garbage bearer", "expired token", "expired ID token", "forged key", "alg none"):
            assert response.status_code == 401, f"{name} on {url}: {response.status_code}"
        if name in ("rep without the ops role", "person of another domain", "wrong service account",
                    "stranger service account"):
            assert response.status_code == 403, f"{name} on {url}: {response.status_code}"


def test_the_refusals_changed_nothing(world):
    """The PUT /admin/flags attempts above asked for the kill switch and SEND_ALLOWED: neither happened."""
    flags = requests.get(world["stack"].url + "/admin/flags", headers={"X-Dev-User": "ops@example.com"},
                         timeout=30).json()["flags"]
    assert flags["kill_switch"] is False and flags["send_mode"] == "DRAFT_ONLY"


def test_the_matrix_covers_every_route():
    routes = all_routes()
    functions = {f for f, _, _ in routes}
    assert {"ingest", "admin", "webhook", "extract", "embed", "draft", "send", "gate", "token-refresh"} <= functions
    assert len(routes) >= 33, routes


def _hubspot_cases(world):
    s = world["settings"]
    base = world["stack"].url
    uri = hubspot_request_uri(s.public_base_url, "/webhook/hubspot")
    body = json.dumps([{"eventId": 991, "portalId": 1, "subscriptionType": "contact.creation",
                        "objectId": 101, "occurredAt": 1}]).encode()
    good = hubspot_v3_headers(s.hubspot_client_secret, "POST", uri, body)
    stale_at = time.time() - 6 * 60
    stale = hubspot_v3_headers(s.hubspot_client_secret, "POST", uri, body, now=stale_at)
    future = hubspot_v3_headers(s.hubspot_client_secret, "POST", uri, body, now=time.time() + 6 * 60)
    other_secret = hubspot_v3_headers("not-the-secret", "POST", uri, body)
    other_uri = hubspot_v3_headers(s.hubspot_client_secret, "POST", uri + "?x=1", body)
    tampered = dict(good)
    ts = good["X-HubSpot-Request-Timestamp"]
    tampered["X-HubSpot-Signature-v3"] = sign_hubspot_v3(s.hubspot_client_secret, "POST", uri, body + b" ", ts)
    return base + "/webhook/hubspot", body, {
        "no signature": {},
        "forged signature": {**good, "X-HubSpot-Signature-v3": base64.b64encode(b"x" * 32).decode()},
        "stale (6 minutes)": stale,
        "from the future (6 minutes)": future,
        "another app's secret": other_secret,
        "signed for another URI": other_uri,
        "signature of another body": tampered,
        "signature without timestamp": {"X-HubSpot-Signature-v3": good["X-HubSpot-Signature-v3"]},
        "garbage timestamp": {**good, "X-HubSpot-Request-Timestamp": "soon"},
    }


def test_hubspot_webhook_refuses_every_bad_signature_and_stores_nothing(world):
    url, body, cases = _hubspot_cases(world)
    db = world["stack"].container.db
    before = db.query("SELECT count(*) AS n FROM form_submissions")[0]["n"]
    for name, headers in cases.items():
        response = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=30)
        assert response.status_code == 401, f"{name}: {response.status_code} {response.text[:200]}"
        _assert_refused(response, name)
    assert db.query("SELECT count(*) AS n FROM form_submissions")[0]["n"] == before
