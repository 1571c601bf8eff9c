"""The dashboard API (DESIGN §4), mounted at ``/admin``: stats, workflows, flags, quotas, guardrails, reps.

Every route needs the ops role (401 without credentials, 403 for anyone else). Reads come from
``shared.admin.queries`` (Postgres) and ``shared.flags`` / ``shared.quotas`` (the document store);
every change goes through ``shared.flags``, which validates it and audits who changed what and when.

The router also answers CORS: the dashboard may be served from another origin than the function (a
CDN, a separate Cloud Run service), so the origins listed in ``Settings.allowed_origins`` get CORS
headers and preflight answers; with none listed, only same-origin pages can use the API.
"""

from __future__ import annotations

import datetime as dt
import decimal
import urllib.parse
import uuid
from typing import Any

from flask import Request

from shared import accounts, flags, quotas
from shared.admin import queries
from shared.errors import BadRequest, NotFound
from shared.leads import workflow as workflows
from shared.web import BrowserRouter, json_body, ops

AUDIT_SHOWN = 20
MAX_AUDIT = 200
HUBSPOT_CONTACT_URL = "https://app.hubspot.com/contacts/{portal}/record/0-1/{contact}"
GMAIL_MESSAGE_URL = "https://mail.google.com/mail/u/{user}/#all/{message}"
GMAIL_DRAFTS_URL = "https://mail.google.com/mail/u/{user}/#drafts"
_NO_REP = "-"


def utcnow() -> dt.datetime:
    """The current time in UTC (one place, so tests can pin it)."""
    return dt.datetime.now(dt.timezone.utc)


def _deps():
    from shared.bootstrap import container

    return container()


# --- CORS ----------------------------------------------------------------------------------------


router = BrowserRouter("admin")


# --- response shaping ----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 UTC (``...Z``), UUIDs as strings and decimals as floats."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return utc.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}.", code="invalid_parameter") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be from {low} to {high}, not {value}.", code="invalid_parameter")
    return value


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


# --- stats ---------------------------------------------------------------------------------------


@router.route("GET", "/stats")
def get_stats(request: Request):
    ops(request)
    deps = _deps()
    return plain(stats(deps.db, deps.store, utcnow()))


def stats(db: Any, store: Any, now: dt.datetime) -> dict[str, Any]:
    """The dashboard's figures at ``now``.

    Args:
        db: The database.
        store: The document store (quota usage and limits).
        now: The moment the figures are for; days are UTC days.

    Returns:
        ``states`` (all time and today), ``daily`` (the last 7 days, oldest first), ``block_reasons``,
        ``latency`` (medians over the last 7 days) and ``quota`` (today's usage).
    """
    today = queries.utc_midnight(now)
    window_start = today - dt.timedelta(days=queries.DAYS - 1)
    window_end = today + dt.timedelta(days=1)
    return {
        "generated_at": now,
        "timezone": "UTC",
        "today": today.date(),
        "window": {"days": queries.DAYS, "from": window_start, "until": window_end},
        "states": {"all_time": queries.state_counts(db), "today": queries.state_counts(db, since=today)},
        "daily": queries.daily_outcomes(db, today),
        "block_reasons": queries.block_reasons(db, window_start, window_end),
        "latency": queries.median_latencies(db, window_start, window_end),
        "quota": quota_summary(db, store, now),
    }


def quota_summary(db: Any, store: Any, now: dt.datetime) -> dict[str, Any]:
    """Today's sends reserved against each rep's daily limit and against the global cap."""
    reps = db.query("SELECT id, email FROM reps ORDER BY email")
    day, week = quotas.periods(now)
    per_rep = []
    for rep in reps:
        rep_id = str(rep["id"])
        used = quotas.usage(store, rep_id, now)
        limits = flags.get_quota_limits(store, rep_id)
        per_rep.append({"rep_id": rep_id, "email": rep["email"], "used_today": used.rep_day,
                        "per_day": limits.per_day, "used_this_week": used.rep_week, "per_week": limits.per_week})
    cap = _global_quota_view(store, now)
    return {"day": day, "week": week, "global": {"used_today": cap["used_today"], "per_day": cap["per_day"]},
            "reps": per_rep}


# --- workflows -----------------------------------------------------------------------------------


def _states_arg(raw: str | None) -> list[str]:
    if not raw:
        return []
    wanted = [item.strip().upper() for item in raw.split(",") if item.strip()]
    unknown = sorted(set(wanted) - set(workflows.STATES))
    if unknown:
        raise BadRequest(f"Unknown state(s) {', '.join(unknown)}; expected any of {', '.join(workflows.STATES)}.",
                         code="invalid_parameter")
    return list(dict.fromkeys(wanted))


@router.route("GET", "/workflows")
def list_workflows(request: Request):
    ops(request)
    deps = _deps()
    limit = _int_arg(request, "limit", queries.DEFAULT_LIMIT, 1, queries.MAX_LIMIT)
    rep_id = request.args.get("rep_id") or None
    if rep_id is not None and _uuid_or_none(rep_id) is None:
        raise BadRequest("rep_id must be a rep's id (a UUID).", code="invalid_parameter")
    q = (request.args.get("q") or "").strip() or None
    if q is not None and len(q) > queries.MAX_QUERY_CHARS:
        raise BadRequest(f"q may be at most {queries.MAX_QUERY_CHARS} characters.", code="invalid_parameter")
    page = queries.list_workflows(deps.db, states=_states_arg(request.args.get("state")),
                                  rep_id=_uuid_or_none(rep_id) if rep_id else None, q=q, limit=limit,
                                  cursor=request.args.get("cursor") or None)
    return plain({**page, "limit": limit})


@router.route("GET", "/workflows/<workflow_id>")
def get_workflow(request: Request, workflow_id: str):
    ops(request)
    deps = _deps()
    canonical = _uuid_or_none(workflow_id)
    # A malformed id is simply an id that names no workflow.
    found = queries.workflow_detail(deps.db, canonical) if canonical else None
    if found is None:
        raise NotFound("There is no such workflow.")
    found["timeline"] = workflows.timeline(deps.db, canonical)
    found["links"] = links(found["workflow"], found["draft"])
    return plain(found)


def links(wf: dict[str, Any], draft: dict[str, Any] | None) -> dict[str, str | None]:
    """Where ops can look at the lead in HubSpot and at the email in the rep's Gmail.

    Args:
        wf: The workflow row with ``portal_id``, ``contact_id`` and ``rep`` (the rep's email).
        draft: The draft row, or None.

    Returns:
        ``hubspot_contact`` and ``gmail`` URLs; None where the ids are not known (yet).
    """
    contact = None
    if wf.get("portal_id") and wf.get("contact_id"):
        contact = HUBSPOT_CONTACT_URL.format(portal=urllib.parse.quote(str(wf["portal_id"]), safe=""),
                                             contact=urllib.parse.quote(str(wf["contact_id"]), safe=""))
    gmail = None
    if draft is not None and wf.get("rep"):
        # Gmail's /u/<n>/ accepts the account's address, which opens the right mailbox when several
        # accounts are signed in.
        user = urllib.parse.quote(str(wf["rep"]), safe="@")
        if draft.get("gmail_message_id"):
            gmail = GMAIL_MESSAGE_URL.format(user=user, message=urllib.parse.quote(str(draft["gmail_message_id"]),
                                                                                  safe=""))
        elif draft.get("gmail_draft_id"):
            gmail = GMAIL_DRAFTS_URL.format(user=user)
    return {"hubspot_contact": contact, "gmail": gmail}


# --- flags ---------------------------------------------------------------------------------------


def _flags_view(store: Any) -> dict[str, Any]:
    # max_age 0: the dashboard must show what the store holds now, not this instance's cached read.
    return plain({"flags": flags.read_flags(store, max_age_seconds=0).to_json(),
                  "audit": flags.list_audit(store, AUDIT_SHOWN)})


@router.route("GET", "/flags")
def get_flags(request: Request):
    ops(request)
    return _flags_view(_deps().store)


@router.route("PUT", "/flags")
def put_flags(request: Request):
    principal = ops(request)
    store = _deps().store
    flags.set_flags(store, json_body(request), principal.email, utcnow())
    return _flags_view(store)


@router.route("GET", "/flags/audit")
def get_audit(request: Request):
    ops(request)
    limit = _int_arg(request, "limit", 50, 1, MAX_AUDIT)
    return plain({"audit": flags.list_audit(_deps().store, limit)})


# --- quotas --------------------------------------------------------------------------------------


def _global_quota_view(store: Any, now: dt.datetime) -> dict[str, Any]:
    day, _ = quotas.periods(now)
    # shared.quotas reports the global day only alongside a rep's usage, and it does not depend on the
    # rep: a placeholder id reads it (no rep holds slots under it, and nothing is written).
    used = quotas.usage(store, _NO_REP, now).global_day
    return {"per_day": flags.get_global_cap(store), "used_today": used, "day": day}


@router.route("GET", "/quotas/global")
def get_global_quota(request: Request):
    ops(request)
    return plain(_global_quota_view(_deps().store, utcnow()))


@router.route("PUT", "/quotas/global")
def put_global_quota(request: Request):
    principal = ops(request)
    store = _deps().store
    body = json_body(request)
    unknown = sorted(set(body) - {"per_day", "used_today", "day"})
    if unknown or "per_day" not in body:
        raise BadRequest("The global cap takes one field, per_day.", code="unknown_field")
    now = utcnow()
    flags.set_global_cap(store, body["per_day"], principal.email, now)
    return plain(_global_quota_view(store, now))


def _rep_or_404(db: Any, rep_id: str) -> dict[str, Any]:
    rep = accounts.get_rep(db, rep_id)
    if rep is None:
        raise NotFound("There is no such rep.")
    return rep


def _quota_view(store: Any, rep: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    used = quotas.usage(store, rep["id"], now)
    return plain({
        "rep_id": rep["id"], "email": rep["email"],
        "limits": flags.get_quota_limits(store, rep["id"]).to_json(),
        "usage": {"day": used.day, "week": used.week, "today": used.rep_day, "this_week": used.rep_week},
        "global": {"per_day": flags.get_global_cap(store), "used_today": used.global_day},
    })


@router.route("GET", "/quotas/<rep_id>")
def get_quota(request: Request, rep_id: str):
    ops(request)
    deps = _deps()
    return _quota_view(deps.store, _rep_or_404(deps.db, rep_id), utcnow())


@router.route("PUT", "/quotas/<rep_id>")
def put_quota(request: Request, rep_id: str):
    principal = ops(request)
    deps = _deps()
    rep = _rep_or_404(deps.db, rep_id)
    body = json_body(request)
    now = utcnow()
    flags.set_quota_limits(deps.store, rep["id"], body, principal.email, now)
    return _quota_view(deps.store, rep, now)


# --- guardrails ----------------------------------------------------------------------------------


@router.route("GET", "/guardrails")
def get_guardrails(request: Request):
    ops(request)
    return plain(flags.get_guardrails(_deps().store).to_json())


@router.route("PUT", "/guardrails")
def put_guardrails(request: Request):
    principal = ops(request)
    return plain(flags.set_guardrails(_deps().store, json_body(request), principal.email, utcnow()).to_json())


# --- reps ----------------------------------------------------------------------------------------


@router.route("GET", "/reps")
def get_reps(request: Request):
    ops(request)
    deps = _deps()
    connect = deps.settings.function_url("token-refresh") + "/connect"
    reps = []
    for rep in queries.list_reps(deps.db):
        rep_id = str(rep["id"])
        reps.append({
            "id": rep_id, "email": rep["email"], "name": rep["display_name"], "time_zone": rep["time_zone"],
            "hubspot_owner_id": rep["hubspot_owner_id"], "created_at": rep["created_at"],
            "google": {"status": rep["google_status"], "scopes": list(rep["google_scopes"] or []),
                       "connected_at": rep["google_connected_at"], "last_refresh_at": rep["google_last_refresh_at"],
                       "watch_expires_at": rep["gmail_watch_expires_at"]},
            "samples": {status: int(n) for status, n in sorted((rep["samples"] or {}).items())},
            "profile": None if rep["profile_version"] is None else {
                "version": rep["profile_version"], "updated_at": rep["profile_updated_at"],
                "sample_count": rep["profile_samples"], "word_count": rep["profile_words"]},
            "reconnect_url": connect + "?" + urllib.parse.urlencode({"rep": rep_id}),
        })
    return plain({"reps": reps})
