"""Peak memory of each function on its typical request, against a bare functions-framework + flask.

The parent prepares the state each request needs (a queued sample, a received lead, a drafted one, a
gated one) on an embedded Postgres; then every function runs its one request in a fresh process,
loaded by functions-framework exactly as in production, with the task queue and event bus replaced by
no-ops so nothing else runs in that process. Peak is VmHWM (ru_maxrss would carry the parent's peak
over fork and exec). Each figure is the median of REPEATS processes.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from functions.localstack.emulators.base import free_port

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 2

_PROBE = r"""
import json, sys
sys.path.insert(0, {root!r})

def hwm_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

import functions_framework, flask
if {function!r}:
    from shared import bootstrap
    from shared.bootstrap import Container
    from shared.config import Settings
    from shared.topology import module_name

    class Quiet:
        def enqueue(self, task): return True
        def enqueue_many(self, tasks): return [True] * len(tasks)
        def cancel(self, *a, **k): return False
        def publish(self, topic, data, attributes=None): return "1"
        def health(self): return None

    settings = Settings.from_env({env!r})
    c = Container(settings, tasks=Quiet(), events=Quiet())
    bootstrap.use(c)
    app = functions_framework.create_app(target=module_name({function!r}),
                                         source={root!r} + "/functions/" + module_name({function!r}) + "/main.py")
    client = app.test_client()
    request = json.loads({request!r})
    headers = dict(request.get("headers", {{}}))
    if request.get("token"):
        caller = request["token"]
        account = {{"tasks": settings.tasks_service_account, "pubsub": settings.pubsub_service_account,
                   "scheduler": settings.scheduler_service_account}}[caller]
        headers["Authorization"] = "Bearer " + c.signer.service_token(settings.audience_for({function!r}), account)
    if request.get("hubspot"):
        from shared.auth import hubspot_request_uri, hubspot_v3_headers
        body = request["body"].encode()
        headers.update(hubspot_v3_headers(settings.hubspot_client_secret, "POST",
                                          hubspot_request_uri(settings.public_base_url, "/webhook/hubspot"), body))
    if request.get("upload"):
        import io
        data = {{"file": (io.BytesIO(request["upload"].encode()), "note.txt"), "purpose": "voice"}}
        response = client.post(request["path"], data=data, headers=headers, content_type="multipart/form-data")
    else:
        response = client.open(request["path"], method=request.get("method", "POST"), data=request.get("body"),
                               headers=headers, content_type="application/json")
    status = response.status_code
    c.close()
else:
    status = 0
print(json.dumps({{"peak_mib": hwm_mib(), "status": status}}))
"""


def _push(workflow_id: str) -> str:
    import base64

    data = base64.b64encode(json.dumps({"workflow_id": workflow_id}).encode()).decode()
    return json.dumps({"message": {"data": data, "messageId": "1", "attributes": {}},
                       "subscription": "projects/local-project/subscriptions/draft-created--gate"})


def _prepare(data_dir: Path, port: int) -> tuple[dict[str, str], dict[str, dict]]:
    """Start embedded Postgres, migrate, seed, and build one piece of state per function."""
    from shared.adapters.embedded_postgres import EmbeddedPostgres
    from shared.bootstrap import Container
    from shared.config import Settings
    from shared.drafting.step import draft_step
    from shared.gate.step import gate_step
    from shared.leads import intake
    from shared.migrate import migrate
    from shared.voice.pipeline import extract_step

    server = EmbeddedPostgres(data_dir / "postgres", "leadvoice").start()
    socket_dir, sock_port = server.socket_path.rsplit("/.s.PGSQL.", 1)
    env = {"ENV": "local", "DATA_DIR": str(data_dir), "PORT": str(port),
           "DATABASE_URL": f"postgresql://postgres@/leadvoice?host={socket_dir}&port={sock_port}"}

    class Quiet:
        def enqueue(self, task): return True
        def enqueue_many(self, tasks): return [True] * len(tasks)
        def cancel(self, *a, **k): return False
        def publish(self, topic, data, attributes=None): return "1"
        def health(self): return None

    c = Container(Settings.from_env(env), tasks=Quiet(), events=Quiet())
    migrate(c.db, vector_index=(c.settings.embedding_model, c.settings.embedding_dim))
    from functions.localstack.seed import seed

    seed(c)  # reps, flags, guardrails, and Alex's and Sam's demo emails as queued samples
    queued = [r["id"] for r in c.db.query("SELECT id::text AS id FROM training_samples ORDER BY created_at")]
    for sample_id in queued[2:]:  # every sample but two becomes ready, so the profile exists
        extract_step(c, sample_id)
        from shared.voice.pipeline import embed_step

        embed_step(c, sample_id)
    extract_step(c, queued[1])  # one waits for embed; queued[0] waits for extract
    from shared.flags import set_flags

    set_flags(c.store, {"send_mode": "SEND_ALLOWED"}, "bench", dt.datetime.now(dt.timezone.utc))
    events = [{"eventId": 900 + i, "subscriptionType": "contact.creation", "portalId": 4242,
               "objectId": 101 + (i % 2), "occurredAt": 1764000000000} for i in range(3)]
    accepted = intake.accept(c.db, c.tasks, intake.parse(json.dumps(events).encode()))
    to_draft, to_gate, to_send = accepted.workflow_ids
    draft_step(c, to_gate)
    draft_step(c, to_send)
    gate_step(c, to_send, now=dt.datetime.now(dt.timezone.utc))
    c.close()
    hubspot_event = json.dumps([{"eventId": 999, "subscriptionType": "contact.creation", "portalId": 4242,
                                 "objectId": 103, "occurredAt": 1764000000000}])
    requests = {
        "webhook": {"path": "/hubspot", "body": hubspot_event, "hubspot": True},
        "ingest": {"path": "/", "upload": "Hi Jordan - quick one. The pilot is live. Cheers, Alex. " * 20,
                   "headers": {"X-Dev-User": "alex@example.com"}},
        "extract": {"path": "/", "body": json.dumps({"sample_id": queued[0]}), "token": "tasks"},
        "embed": {"path": "/", "body": json.dumps({"sample_id": queued[1]}), "token": "tasks"},
        "draft": {"path": "/", "body": json.dumps({"workflow_id": to_draft}), "token": "tasks"},
        "gate": {"path": "/", "body": _push(to_gate), "token": "pubsub",
                 "headers": {"ce-id": "1", "ce-source": "//pubsub", "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                             "ce-specversion": "1.0"}},
        "send": {"path": "/", "body": json.dumps({"workflow_id": to_send}), "token": "tasks"},
        "admin": {"path": "/stats", "method": "GET", "headers": {"X-Dev-User": "ops@example.com"}},
        "token-refresh": {"path": "/", "body": "{}", "token": "scheduler"},
    }
    return env, {"server": server, "requests": requests}


def _probe(function: str, env: dict[str, str], request: dict | None) -> dict:
    code = _PROBE.format(root=str(ROOT), function=function, env=env, request=json.dumps(request or {}))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"{function or 'baseline'} probe failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        env, prepared = _prepare(Path(tmp), free_port())
        try:
            baseline = statistics.median(_probe("", env, None)["peak_mib"] for _ in range(REPEATS))
            figures: dict = {"baseline_peak_mib": round(baseline, 1), "repeats": REPEATS}
            for function, request in prepared["requests"].items():
                # Each piece of state serves one request; repeats re-run it (later ones are cheap no-ops),
                # so the median leans on the first, real run only when REPEATS is 1: keep the maximum.
                runs = [_probe(function, env, request) for _ in range(REPEATS)]
                peak = max(r["peak_mib"] for r in runs)
                figures[function] = {"peak_mib": round(peak, 1), "ratio": round(peak / baseline, 2),
                                     "status": runs[0]["status"]}
        finally:
            prepared["server"].stop()
    return figures
