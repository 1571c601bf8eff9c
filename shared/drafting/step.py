"""The ``draft`` step: a RECEIVED workflow → a stored draft in the rep's voice → ``draft-created``.

At least once, safely:

* ``RECEIVED → DRAFTING`` is a compare-and-set; a delivery that finds the workflow ``DRAFTING`` (the
  previous attempt died or failed retryably) resumes, and one that finds it past drafting does nothing
  but make sure ``draft-created`` went out.
* The draft row is unique per workflow and upserted in the same transaction as ``DRAFTING → DRAFTED``
  (a compare-and-set), so of two concurrent runs one stores and moves, the other rolls back.
* ``draft-created`` is published while holding a fresh ``step_runs`` row (``draft-created:<id>``) in an
  open transaction: a second delivery finds the row and does not publish again; a failed publish rolls
  the row back so the retry publishes. Only a crash between publish and commit repeats the event, which
  the gate absorbs (it decides once per workflow).

Failures: a retryable one (HubSpot 429/5xx, Vertex 429/503) is recorded in ``workflow_errors`` and
propagates, so the router answers 503 and Cloud Tasks retries with backoff; on the delivery whose
``X-CloudTasks-TaskRetryCount`` reaches ``max_attempts - 1`` it ends the workflow ``FAILED`` instead. A
permanent one ends it ``FAILED`` at once, and a lead no rep owns ends ``BLOCKED``. Each keeps its cause.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

from shared.drafting import prompt as prompts
from shared.drafting.generate import Generated
from shared.drafting.identity import Identity, IdentityResolver
from shared.errors import BadRequest, NotFound, PermanentError, RetryableError
from shared.leads import workflow
from shared.ports import Database

log = logging.getLogger(__name__)

ACTOR = "draft"
STEP = "draft"
DRAFT_CREATED = "draft-created"
NO_REP = "no rep owns this lead"
MAX_ATTEMPTS = 5  # default of the ``draft_max_attempts`` setting; the draft queue must allow at least this many
EXEMPLARS = 4  # the rep's nearest real emails shown to the writer
ASSETS = 3  # the rep's nearest assets


def draft_step(deps: Any, workflow_id: str, *, retry_count: int = 0,
               now: dt.datetime | None = None) -> dict[str, Any]:
    """Draft the follow-up of one workflow (see the module docstring).

    Args:
        deps: The container, or any object with ``db``, ``crm``, ``embedder``, ``events``, ``settings`` and
            ``generator`` (a ``TextGenerator``).
        workflow_id: The workflow (from the task payload).
        retry_count: ``X-CloudTasks-TaskRetryCount`` of this delivery.
        now: The current time (tests); default now.

    Returns:
        ``{"workflow_id", "status"}`` with status ``drafted`` (plus ``model``, ``voice_score``), ``blocked``
        (plus ``reason``), ``failed`` (plus ``error``), ``duplicate`` or ``skipped`` (plus ``state``).

    Raises:
        BadRequest: ``workflow_id`` is not a workflow id.
        NotFound: no such workflow.
        RetryableError: a dependency failed and attempts remain.
    """
    _check_id(workflow_id)
    now = now or dt.datetime.now(dt.timezone.utc)
    db = deps.db
    row = _load(db, workflow_id)
    if row["state"] == workflow.RECEIVED:
        try:
            workflow.transition(db, workflow_id, workflow.DRAFTING, actor=ACTOR, reason="drafting started",
                                expect=workflow.RECEIVED)
        except workflow.StaleTransition:
            pass  # a concurrent delivery moved it first: act on what it is now
        row = _load(db, workflow_id)
    if row["state"] == workflow.DRAFTED:
        _announce(deps, workflow_id)
        return {"workflow_id": workflow_id, "status": "duplicate"}
    if row["state"] != workflow.DRAFTING:
        log.info("draft skipped", extra={"fields": {"workflow_id": workflow_id, "state": row["state"]}})
        return {"workflow_id": workflow_id, "status": "skipped", "state": row["state"]}
    last = retry_count + 1 >= max_attempts(deps.settings)
    try:
        result = _draft(deps, row, now)
    except workflow.StaleTransition:
        return {"workflow_id": workflow_id, "status": "duplicate"}
    except PermanentError as exc:
        return _fail(db, workflow_id, exc.code, exc.message, retryable=False, attempt=retry_count + 1)
    except RetryableError as exc:
        if last:
            return _fail(db, workflow_id, exc.code, f"{exc.message} (gave up after {retry_count + 1} attempts)",
                         retryable=True, attempt=retry_count + 1)
        workflow.record_error(db, workflow_id, STEP, code=exc.code, message=exc.message, retryable=True,
                              attempt=retry_count + 1)
        log.warning("draft will be retried", extra={"fields": {"workflow_id": workflow_id, "error": exc.code,
                                                               "attempt": retry_count + 1}})
        raise
    except Exception:
        if not last:
            raise  # a bug: the router logs it and the 500 makes Cloud Tasks retry
        log.exception("draft failed on its last attempt", extra={"fields": {"workflow_id": workflow_id}})
        return _fail(db, workflow_id, "internal", "An unexpected error stopped the draft.", retryable=False,
                     attempt=retry_count + 1)
    if result["status"] == "drafted":
        _announce(deps, workflow_id)
    return result


def max_attempts(settings: Any) -> int:
    """Deliveries of one draft task, the first included (setting ``draft_max_attempts``)."""
    return max(1, int(getattr(settings, "draft_max_attempts", MAX_ATTEMPTS) or MAX_ATTEMPTS))


# --- the work ------------------------------------------------------------------------------------


def _draft(deps: Any, row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    db: Database = deps.db
    workflow_id = row["id"]
    resolver = IdentityResolver(deps.crm, db,
                                optout_properties=getattr(deps.settings, "hubspot_optout_properties", ()) or ())
    identity = resolver.resolve(contact_id=row["contact_id"], email=row["lead_email"],
                                submitted=submitted_properties(row["payload"]))
    if identity.rep is None:
        return _block_no_rep(db, workflow_id, identity)
    rep = identity.rep
    rep_id = str(rep["id"])
    inputs, exemplar_ids, asset_ids = _inputs(deps, identity)
    built = prompts.build(inputs)
    generated = deps.generator.generate(built)
    score = _voice_score(deps, generated, rep_id)
    context = {
        "lead": identity.lead,
        "company": identity.company,
        "rep": {"id": rep_id, "email": rep["email"], "name": rep.get("display_name") or "",
                "time_zone": rep.get("time_zone") or "UTC",
                "google_connected_at": _iso(rep.get("google_connected_at"))},
        "allowed_links": list(built.inputs.allowed_links),
        "supported_text": prompts.supported_text(built.inputs),
        "recent_contact_days": recent_contact_days(db, workflow_id, identity.lead.get("contact_id"),
                                                   identity.lead.get("email"), now),
        "exemplar_ids": exemplar_ids,
        "asset_ids": asset_ids,
    }
    with db.transaction() as cur:
        cur.execute(
            """INSERT INTO draft_emails (workflow_id, subject, body, model, prompt_hash, voice_score, context)
               VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)
               ON CONFLICT (workflow_id) DO UPDATE SET subject = EXCLUDED.subject, body = EXCLUDED.body,
                   model = EXCLUDED.model, prompt_hash = EXCLUDED.prompt_hash, voice_score = EXCLUDED.voice_score,
                   context = EXCLUDED.context, created_at = now()
               WHERE draft_emails.decision IS NULL""",
            (workflow_id, generated.subject, generated.body, generated.model, built.hash, score,
             json.dumps(context, default=str)))
        workflow.move(cur, workflow_id, workflow.DRAFTED, actor=ACTOR, expect=workflow.DRAFTING,
                      reason=f"draft written by {generated.model}",
                      fields={"rep_id": rep_id, "contact_id": identity.lead.get("contact_id") or row["contact_id"],
                              "lead_email": identity.lead.get("email") or row["lead_email"]})
    # "draft created" and its lead_to_draft_seconds feed the lead-to-draft SLO (terraform/monitoring.tf).
    log.info("draft created", extra={"fields": {"workflow_id": workflow_id, "model": generated.model,
                                                "voice_score": score, "exemplars": len(exemplar_ids),
                                                "assets": len(asset_ids),
                                                "lead_to_draft_seconds": round(float(row["age_seconds"]), 3)}})
    return {"workflow_id": workflow_id, "status": "drafted", "model": generated.model, "voice_score": score}


def _inputs(deps: Any, identity: Identity) -> tuple[prompts.PromptInputs, list[str], list[str]]:
    """The rep's nearest exemplars and assets for this lead, their profile and allowed links."""
    from shared.voice.profile import get_profile
    from shared.voice.retrieval import nearest_chunks

    db, embedder = deps.db, deps.embedder
    rep = identity.rep or {}
    rep_id = str(rep["id"])
    lead, company = identity.lead, identity.company
    query = "\n".join(str(x) for x in (lead.get("message"), company.get("name"), company.get("industry")) if x)
    vector = embedder.embed([query or "a follow-up to an inbound lead"])[0]
    voice = nearest_chunks(db, rep_id, embedder.model, embedder.dimension, vector, EXEMPLARS, purpose="voice")
    assets = nearest_chunks(db, rep_id, embedder.model, embedder.dimension, vector, ASSETS, purpose="asset")
    samples = _ready_samples(db, {str(c["sample_id"]) for c in voice + assets})
    exemplars = tuple(prompts.Passage(id=str(c["chunk_id"]), text=c["content"], sample_id=str(c["sample_id"]),
                                      title=samples[str(c["sample_id"])]["title"])
                      for c in voice if str(c["sample_id"]) in samples)
    asset_passages = tuple(prompts.Passage(id=str(c["chunk_id"]), text=c["content"], sample_id=str(c["sample_id"]),
                                           title=samples[str(c["sample_id"])]["title"],
                                           url=samples[str(c["sample_id"])]["source_url"])
                           for c in assets if str(c["sample_id"]) in samples)
    links = db.query("""SELECT DISTINCT source_url FROM training_samples
                        WHERE rep_id = %s AND purpose = 'asset' AND status = 'ready'
                          AND source_url ~* '^https?://' ORDER BY source_url""", (rep_id,))
    profile = get_profile(db, rep_id)
    inputs = prompts.PromptInputs(
        rep={"name": rep.get("display_name") or str(rep.get("email") or "").split("@")[0], "email": rep.get("email")},
        features=(profile or {}).get("features") or {},
        exemplars=exemplars, assets=asset_passages,
        lead={k: lead.get(k) for k in ("first_name", "last_name", "message")},
        company=company, allowed_links=tuple(r["source_url"] for r in links),
        meeting_slots=_meeting_slots(deps, rep, lead))
    return inputs, [p.id for p in exemplars], [p.id for p in asset_passages]


def _meeting_slots(deps: Any, rep: dict[str, Any], lead: dict[str, Any]) -> tuple[str, ...]:
    """Two or three free times of the rep when the lead asks to meet and the rep's calendar is connected."""
    from shared.accounts_google.calendar import propose_slots, wants_meeting

    if rep.get("google_status") != "connected" or not wants_meeting(str(lead.get("message") or "")):
        return ()
    now = dt.datetime.now(dt.timezone.utc)
    return tuple(slot["label"] for slot in propose_slots(deps, rep, lead.get("time_zone"), now))


def _ready_samples(db: Database, ids: set[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = db.query("SELECT id::text AS id, title, source_url FROM training_samples "
                    "WHERE id = ANY(%s::uuid[]) AND status = 'ready'", (sorted(ids),))
    return {r["id"]: r for r in rows}


def _voice_score(deps: Any, generated: Generated, rep_id: str) -> float | None:
    from shared.voice.profile import score_for_rep

    try:
        return float(score_for_rep(deps.db, deps.embedder, generated.body, rep_id))
    except (NotFound, BadRequest) as exc:
        # No profile yet, or a body too short to judge: the gate treats a missing score as "review".
        log.info("draft not voice-scored", extra={"fields": {"rep_id": rep_id, "reason": exc.code}})
        return None


def recent_contact_days(db: Database, workflow_id: str, contact_id: str | None, email: str | None,
                        now: dt.datetime) -> int | None:
    """Whole days since this contact was last emailed (a draft of another workflow sent or saved), or None."""
    if not contact_id and not email:
        return None
    rows = db.query(
        """SELECT max(coalesce(d.sent_at, d.decided_at, d.created_at)) AS at
           FROM draft_emails d JOIN workflows w ON w.id = d.workflow_id
           WHERE w.id <> %s AND ((%s::text IS NOT NULL AND w.contact_id = %s)
                                 OR (%s::text IS NOT NULL AND w.lead_email = %s))
             AND (d.sent_at IS NOT NULL OR d.gmail_draft_id IS NOT NULL
                  OR w.state IN ('SENT', 'DRAFT_SAVED', 'REPLIED'))""",
        (workflow_id, contact_id, contact_id, email, email))
    at = rows[0]["at"] if rows else None
    if at is None:
        return None
    return max(0, int((now - at).total_seconds() // 86_400))


# --- outcomes ------------------------------------------------------------------------------------


def _block_no_rep(db: Database, workflow_id: str, identity: Identity) -> dict[str, Any]:
    with db.transaction() as cur:
        workflow.move(cur, workflow_id, workflow.BLOCKED, actor=ACTOR, reason=NO_REP, expect=workflow.DRAFTING)
        cur.execute("INSERT INTO workflow_errors (workflow_id, step, code, message, retryable, attempt) "
                    "VALUES (%s, %s, %s, %s, false, 1)", (workflow_id, STEP, "no_rep", identity.why_no_rep))
    log.info("draft blocked: no rep", extra={"fields": {"workflow_id": workflow_id}})
    return {"workflow_id": workflow_id, "status": "blocked", "reason": NO_REP}


def _fail(db: Database, workflow_id: str, code: str, message: str, *, retryable: bool,
          attempt: int) -> dict[str, Any]:
    workflow.record_error(db, workflow_id, STEP, code=code, message=message, retryable=retryable, attempt=attempt)
    try:
        workflow.transition(db, workflow_id, workflow.FAILED, actor=ACTOR, reason=f"draft failed: {message}",
                            expect=workflow.DRAFTING)
    except workflow.StaleTransition:
        pass  # it moved on meanwhile (a concurrent delivery finished): nothing to fail
    log.warning("draft failed", extra={"fields": {"workflow_id": workflow_id, "error": code}})
    return {"workflow_id": workflow_id, "status": "failed", "error": code}


def _announce(deps: Any, workflow_id: str) -> bool:
    """Publish ``draft-created`` unless it already went out; returns whether this call published."""
    with deps.db.transaction() as cur:
        cur.execute("INSERT INTO step_runs (key, result) VALUES (%s, %s::jsonb) ON CONFLICT (key) DO NOTHING "
                    "RETURNING key", (f"{DRAFT_CREATED}:{workflow_id}", json.dumps({"topic": DRAFT_CREATED})))
        if cur.fetchone() is None:
            return False
        # Published inside the transaction: if it fails the row is rolled back and a retry publishes.
        deps.events.publish(DRAFT_CREATED, {"workflow_id": workflow_id})
    return True


# --- inputs --------------------------------------------------------------------------------------


def _check_id(workflow_id: Any) -> None:
    try:
        uuid.UUID(str(workflow_id))
    except ValueError:
        raise BadRequest("workflow_id must be a workflow id (a UUID).") from None


def _load(db: Database, workflow_id: str) -> dict[str, Any]:
    rows = db.query("""SELECT w.id::text AS id, w.state, w.contact_id, w.lead_email, f.payload,
                              extract(epoch FROM now() - w.created_at) AS age_seconds
                       FROM workflows w JOIN form_submissions f ON f.id = w.submission_id
                       WHERE w.id = %s""", (workflow_id,))
    if not rows:
        raise NotFound(f"No workflow {workflow_id}.")
    return rows[0]


def submitted_properties(payload: Any) -> dict[str, Any]:
    """The form's properties a workflow webhook carried (flat or ``{"value": ...}``); empty otherwise."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return {}
    props = payload.get("properties") if isinstance(payload, dict) else None
    if not isinstance(props, dict):
        return {}
    flat = {}
    for name, value in props.items():
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
        if isinstance(value, (str, int, float, bool)):
            flat[str(name)] = value
    return flat


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else (str(value) if value else None)


# --- the text generator --------------------------------------------------------------------------



# --- the delivery route --------------------------------------------------------------------------


def _router():
    from shared.errors import Forbidden, Unauthenticated
    from shared.web import Router, caller, error_response, json_body

    router = Router("draft")

    @router.route("POST", "", delivery=True)
    def deliver(request):
        from shared.bootstrap import container

        try:
            caller(request, "draft", via="tasks")
        except (Unauthenticated, Forbidden) as exc:
            # A delivery route answers permanent errors 200 (stop redelivery); a caller we refuse must
            # see its 401/403 instead, and nothing of the workflow is touched.
            return error_response(exc)
        body = json_body(request)
        workflow_id = body.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise BadRequest("workflow_id is required.")
        try:
            retry_count = int(request.headers.get("X-CloudTasks-TaskRetryCount", "0"))
        except ValueError:
            retry_count = 0
        return draft_step(container(), workflow_id, retry_count=retry_count)

    return router


draft_router = _router()
