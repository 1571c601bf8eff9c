"""Read models of the ops dashboard: plain SQL over the workflow tables, every value a parameter.

Every time boundary arrives as an argument (never SQL's ``now()``), so one request sees one consistent
"now" and tests can pin it. Days are UTC days: ``(ts AT TIME ZONE 'UTC')::date`` does not depend on the
session's time zone.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from shared.errors import BadRequest
from shared.leads.workflow import BLOCKED, DRAFT_SAVED, FAILED, REPLIED, SENT, STATES
from shared.ports import Database

# The outcomes the dashboard charts per day, under the names it shows.
DAILY_OUTCOMES: dict[str, str] = {SENT: "sent", DRAFT_SAVED: "drafted", BLOCKED: "blocked", FAILED: "failed",
                                  REPLIED: "replied"}
DAYS = 7
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_QUERY_CHARS = 200
TOP_SENTENCES = 10


def utc_midnight(now: dt.datetime) -> dt.datetime:
    """The start of the UTC day containing ``now``."""
    utc = now.astimezone(dt.timezone.utc) if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


# --- stats ---------------------------------------------------------------------------------------


def state_counts(db: Database, *, since: dt.datetime | None = None) -> dict[str, int]:
    """Workflows by current state, every state present (zero when none).

    Args:
        db: The database.
        since: Count only workflows created at or after this moment; None for all time.
    """
    if since is None:
        rows = db.query("SELECT state, count(*) AS n FROM workflows GROUP BY state")
    else:
        rows = db.query("SELECT state, count(*) AS n FROM workflows WHERE created_at >= %s GROUP BY state",
                        (since,))
    counts = dict.fromkeys(STATES, 0)
    counts.update({row["state"]: int(row["n"]) for row in rows})
    return counts


def daily_outcomes(db: Database, today: dt.datetime, days: int = DAYS) -> list[dict[str, Any]]:
    """Per UTC day, oldest first, how many workflows reached each outcome state that day.

    A workflow counts on the day of its transition into the state (from ``workflow_events``), so a lead
    received on Monday and sent on Tuesday counts as sent on Tuesday.

    Args:
        db: The database.
        today: Midnight UTC of the last day of the window.
        days: How many days, ``today`` included.
    """
    start = today - dt.timedelta(days=days - 1)
    rows = db.query(
        """SELECT (at AT TIME ZONE 'UTC')::date AS day, to_state, count(DISTINCT workflow_id) AS n
             FROM workflow_events
            WHERE at >= %s AND at < %s AND to_state = ANY(%s::text[])
            GROUP BY 1, 2""",
        (start, today + dt.timedelta(days=1), list(DAILY_OUTCOMES)))
    by_day: dict[str, dict[str, Any]] = {}
    for offset in range(days):
        day = (start + dt.timedelta(days=offset)).date().isoformat()
        by_day[day] = {"day": day, **dict.fromkeys(DAILY_OUTCOMES.values(), 0)}
    for row in rows:
        by_day[row["day"].isoformat()][DAILY_OUTCOMES[row["to_state"]]] = int(row["n"])
    return list(by_day.values())


def median_latencies(db: Database, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Median seconds from the stored lead to its draft, and to the gate's decision.

    The lead's moment is ``workflows.created_at`` (when the webhook stored it). Drafts count when they
    were written in ``[since, until)``; decisions when they were made in that window.
    """
    draft = db.query(
        """SELECT percentile_cont(0.5) WITHIN GROUP (
                      ORDER BY extract(epoch FROM d.created_at - w.created_at)::float8) AS median,
                  count(*) AS n
             FROM draft_emails d JOIN workflows w ON w.id = d.workflow_id
            WHERE d.created_at >= %s AND d.created_at < %s""", (since, until))[0]
    decision = db.query(
        """SELECT percentile_cont(0.5) WITHIN GROUP (
                      ORDER BY extract(epoch FROM d.decided_at - w.created_at)::float8) AS median,
                  count(*) AS n
             FROM draft_emails d JOIN workflows w ON w.id = d.workflow_id
            WHERE d.decided_at >= %s AND d.decided_at < %s""", (since, until))[0]

    def seconds(value: Any) -> float | None:
        return None if value is None else round(float(value), 3)

    return {
        "lead_to_draft_seconds": seconds(draft["median"]), "drafts": int(draft["n"]),
        "lead_to_decision_seconds": seconds(decision["median"]), "decisions": int(decision["n"]),
    }


# Ordered: the first category whose pattern matches a reason wins, so the specific ones come first
# (a "kill switch" reason mentions sending; a PII reason may mention a "card link").
_CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE)) for name, pattern in (
        ("kill_switch", r"kill[ _-]?switch"),
        ("circuit_breaker", r"circuit|breaker"),
        ("quota", r"quota|daily limit|weekly limit|daily cap|global cap|warm-?up"),
        ("pii", r"\bpii\b|card number|credit card|\bssn\b|social security|\biban\b|personal data"),
        ("guardrails", r"guardrail|company stage|lifecycle|industr|employee|\bicp\b"),
        ("unsupported_content", r"\blinks?\b|\burls?\b|claim|unsupported|not supported|no source"),
        ("voice", r"voice"),
        ("risk", r"\brisk"),
        ("mailbox", r"gmail|google|mailbox|not connected|revoked|\btoken\b"),
        ("recipient", r"recipient|opt(ed)?[ -]?out|unsubscribe|bounce|no email|invalid email"),
    ))
CATEGORIES = tuple(name for name, _ in _CATEGORIES) + ("other",)
# Structured reasons may carry a code; these words in a code decide the category without guessing.
_CODE_HINTS = {"kill": "kill_switch", "breaker": "circuit_breaker", "quota": "quota", "pii": "pii",
               "guardrail": "guardrails", "icp": "guardrails", "link": "unsupported_content",
               "claim": "unsupported_content", "voice": "voice", "risk": "risk", "gmail": "mailbox",
               "google": "mailbox", "recipient": "recipient"}


def reason_text(reason: Any) -> tuple[str, str | None]:
    """The sentence and the code (if any) of one element of ``draft_emails.reasons``.

    The gate may write plain strings or objects (``{"code", "message"}``); both are read.
    """
    if isinstance(reason, str):
        return " ".join(reason.split()), None
    if isinstance(reason, dict):
        code = next((str(reason[k]) for k in ("code", "category", "kind", "type", "check")
                     if isinstance(reason.get(k), str) and reason[k]), None)
        text = next((str(reason[k]) for k in ("message", "text", "reason", "detail", "description")
                     if isinstance(reason.get(k), str) and reason[k]), None)
        return " ".join((text or code or json.dumps(reason, sort_keys=True)).split()), code
    return json.dumps(reason), None


def categorise(text: str, code: str | None = None) -> str:
    """The category of one block reason (one of ``CATEGORIES``)."""
    if code:
        lowered = code.lower()
        if lowered in CATEGORIES:
            return lowered
        for hint, category in _CODE_HINTS.items():
            if hint in lowered:
                return category
    for name, pattern in _CATEGORIES:
        if pattern.search(text):
            return name
    return "other"


def block_reasons(db: Database, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Why drafts decided BLOCK in ``[since, until)`` were blocked: categories and raw sentences, ranked.

    A category's ``drafts`` is the number of blocked drafts with at least one reason in it, so one draft
    with two quota reasons counts once. A blocked draft without any reason counts as ``unspecified``.
    """
    blocked = db.query(
        """SELECT count(*) AS n FROM draft_emails
            WHERE decision = 'BLOCK' AND coalesce(decided_at, created_at) >= %s
              AND coalesce(decided_at, created_at) < %s""", (since, until))[0]["n"]
    # Identical reasons are grouped in SQL; only distinct reason values travel to Python.
    rows = db.query(
        """SELECT r.elem::text AS reason, array_agg(DISTINCT d.id::text) AS drafts
             FROM draft_emails d
             CROSS JOIN LATERAL jsonb_array_elements(
                 CASE WHEN jsonb_typeof(d.reasons) = 'array' THEN d.reasons ELSE '[]'::jsonb END) AS r(elem)
            WHERE d.decision = 'BLOCK' AND coalesce(d.decided_at, d.created_at) >= %s
              AND coalesce(d.decided_at, d.created_at) < %s
            GROUP BY r.elem""", (since, until))
    by_category: dict[str, set[str]] = {}
    by_sentence: dict[str, set[str]] = {}
    sentence_category: dict[str, str] = {}
    explained: set[str] = set()
    for row in rows:
        text, code = reason_text(json.loads(row["reason"]))
        category = categorise(text, code)
        drafts = set(row["drafts"])
        explained |= drafts
        by_category.setdefault(category, set()).update(drafts)
        by_sentence.setdefault(text, set()).update(drafts)
        sentence_category.setdefault(text, category)
    unexplained = int(blocked) - len(explained)
    categories = [{"category": name, "drafts": len(ids)} for name, ids in by_category.items()]
    if unexplained > 0:
        categories.append({"category": "unspecified", "drafts": unexplained})
    categories.sort(key=lambda item: (-item["drafts"], item["category"]))
    sentences = sorted(({"reason": text[:500], "category": sentence_category[text], "drafts": len(ids)}
                        for text, ids in by_sentence.items()), key=lambda item: (-item["drafts"], item["reason"]))
    return {"blocked_drafts": int(blocked), "categories": categories, "top_reasons": sentences[:TOP_SENTENCES]}


# --- workflow list -------------------------------------------------------------------------------


def encode_cursor(created_at: dt.datetime, workflow_id: str) -> str:
    """An opaque cursor for the row after which the next page starts."""
    raw = json.dumps([created_at.isoformat(), str(workflow_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """The (created_at, id) a cursor points at.

    Raises:
        BadRequest: not a cursor this API issued.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, workflow_id = json.loads(raw)
        moment = dt.datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return moment, str(uuid.UUID(workflow_id))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadRequest("cursor is not one this API returned; start again without it.",
                         code="invalid_cursor") from exc


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_workflows(db: Database, *, states: Sequence[str] = (), rep_id: str | None = None, q: str | None = None,
                   limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
    """A page of workflows, newest first, with keyset pagination.

    The order is ``(created_at, id)`` descending and a cursor is the last row's key, so a page never
    repeats or skips a row because newer workflows arrived meanwhile: they sort before the cursor.

    Args:
        db: The database.
        states: Keep only these states (already validated); empty for all.
        rep_id: Keep only this rep's workflows (a valid UUID string).
        q: Substring of the lead's email (case-insensitive) or the exact HubSpot contact id.
        limit: Rows per page, 1..``MAX_LIMIT``.
        cursor: ``next_cursor`` of the previous page.

    Returns:
        ``{"workflows": [...], "next_cursor": str | None}``.
    """
    # Only these fixed fragments are joined into the statement; every value is a parameter.
    where: list[str] = []
    params: list[Any] = []
    if states:
        where.append("w.state = ANY(%s::text[])")
        params.append(list(states))
    if rep_id:
        where.append("w.rep_id = %s::uuid")
        params.append(rep_id)
    if q:
        where.append("(w.lead_email ILIKE %s OR w.contact_id = %s)")
        params.extend([_like_pattern(q), q])
    if cursor:
        created_at, last_id = decode_cursor(cursor)
        where.append("(w.created_at, w.id) < (%s::timestamptz, %s::uuid)")
        params.extend([created_at, last_id])
    sql = ("SELECT w.id, w.state, w.lead_email, w.contact_id, w.rep_id, r.email AS rep, w.created_at, "
           "w.updated_at, d.decision, d.voice_score, w.scheduled_send_at "
           "FROM workflows w LEFT JOIN reps r ON r.id = w.rep_id "
           "LEFT JOIN draft_emails d ON d.workflow_id = w.id")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY w.created_at DESC, w.id DESC LIMIT %s"
    params.append(limit + 1)  # one more than asked tells whether another page exists
    rows = db.query(sql, params)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    return {"workflows": page, "next_cursor": next_cursor}


# --- one workflow --------------------------------------------------------------------------------

_DRAFT_COLUMNS = ("subject, body, model, voice_score, risk_score, decision, reasons, message_id, gmail_message_id, "
                  "gmail_draft_id, gmail_thread_id, context, created_at, decided_at, sent_at")
BULKY_CONTEXT_KEYS = frozenset({"supported_text"})


def workflow_detail(db: Database, workflow_id: str) -> dict[str, Any] | None:
    """A workflow with its submission's HubSpot portal, its rep, its draft and its HubSpot records.

    Args:
        db: The database.
        workflow_id: A valid UUID string.

    Returns:
        ``{"workflow", "draft", "hubspot"}``, or None when there is no such workflow.
    """
    rows = db.query(
        """SELECT w.id, w.state, w.version, w.lead_email, w.contact_id, w.rep_id, r.email AS rep,
                  r.display_name AS rep_name, w.scheduled_send_at, w.created_at, w.updated_at,
                  f.source, f.portal_id, f.form_id, f.occurred_at, f.received_at
             FROM workflows w
             JOIN form_submissions f ON f.id = w.submission_id
             LEFT JOIN reps r ON r.id = w.rep_id
            WHERE w.id = %s::uuid""", (workflow_id,))
    if not rows:
        return None
    drafts = db.query(f"SELECT {_DRAFT_COLUMNS} FROM draft_emails WHERE workflow_id = %s::uuid", (workflow_id,))
    draft = drafts[0] if drafts else None
    if draft is not None:
        draft["context"] = without_keys(draft.get("context") or {}, BULKY_CONTEXT_KEYS)
    hubspot = db.query(
        """SELECT kind, purpose, hubspot_id, created_at FROM hubspot_tasks
            WHERE workflow_id = %s::uuid ORDER BY created_at, id""", (workflow_id,))
    return {"workflow": rows[0], "draft": draft, "hubspot": hubspot}


def without_keys(value: Any, keys: Iterable[str]) -> Any:
    """``value`` with every mapping entry named in ``keys`` removed, at any depth."""
    keys = frozenset(keys)
    if isinstance(value, dict):
        return {k: without_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without_keys(v, keys) for v in value]
    return value


# --- reps ----------------------------------------------------------------------------------------


def list_reps(db: Database) -> list[dict[str, Any]]:
    """Every rep with its Google connection, its samples by status and its latest voice profile."""
    return db.query(
        """SELECT r.id, r.email, r.display_name, r.time_zone, r.hubspot_owner_id, r.google_status,
                  r.google_scopes, r.google_connected_at, r.google_last_refresh_at, r.gmail_watch_expires_at,
                  r.created_at,
                  coalesce(s.by_status, '{}'::jsonb) AS samples,
                  p.version AS profile_version, p.created_at AS profile_updated_at,
                  p.sample_count AS profile_samples, p.word_count AS profile_words
             FROM reps r
             LEFT JOIN (SELECT rep_id, jsonb_object_agg(status, n) AS by_status
                          FROM (SELECT rep_id, status, count(*) AS n FROM training_samples
                                 GROUP BY rep_id, status) counted
                         GROUP BY rep_id) s ON s.rep_id = r.id
             LEFT JOIN LATERAL (SELECT version, created_at, sample_count, word_count FROM voice_profiles v
                                 WHERE v.rep_id = r.id ORDER BY version DESC LIMIT 1) p ON true
            ORDER BY r.email""")

