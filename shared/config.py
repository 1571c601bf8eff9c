"""Settings: the only place that reads the environment.

Every setting is declared once in ``FIELDS`` with its meaning and its local default. ``ENV=local`` fills
the gaps with the embedded stack's defaults; anywhere else a missing required setting fails fast, and
the error names every one that is missing. The README's configuration table is generated from
``FIELDS`` (``python -m functions settings``) and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

LOCAL = "local"
EMBEDDED = "embedded"
GOOGLE = "google"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names each one."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in value.split(",") if item.strip())


def _bool(value: str) -> bool:
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Field:
    name: str  # attribute on Settings
    env: str  # environment variable
    meaning: str
    local: str | None = None  # default under ENV=local; None = no default there either
    production: str | None = None  # default elsewhere; None = required in production
    parse: Callable[[str], Any] = str
    required: bool = True  # False: may stay empty in production too
    secret: bool = False  # never printed


FIELDS: tuple[Field, ...] = (
    Field("env", "ENV", "`local` enables local defaults and the `X-Dev-User` header; anything else is production.",
          LOCAL, "production"),
    Field("adapters", "ADAPTERS", "`embedded` (in-process stand-ins) or `google` (client libraries, real or emulated).",
          EMBEDDED, GOOGLE),
    Field("project_id", "GOOGLE_CLOUD_PROJECT", "Google Cloud project id.", "local-project"),
    Field("region", "REGION", "Region of the functions, queues and Vertex AI.", "us-central1", "us-central1"),
    Field("port", "PORT", "Port of the local stack.", "8080", "8080", int),
    Field("data_dir", "DATA_DIR", "Where the embedded stack keeps its state.", ".local", "/tmp/data", Path),
    Field("public_base_url", "PUBLIC_BASE_URL",
          "External base URL of the webhook; HubSpot signs `PUBLIC_BASE_URL` + path + query.", ""),
    Field("function_url_template", "FUNCTION_URL_TEMPLATE",
          "URL of a function, `{name}` replaced by its deployed name (Cloud Run's deterministic URLs in production).",
          ""),
    Field("allowed_domains", "ALLOWED_DOMAINS", "Email domains whose people may sign in as reps.", "example.com",
          parse=_csv),
    Field("ops_emails", "OPS_EMAILS", "Emails with the ops role (dashboard, flags, other reps' voices).",
          "ops@example.com", parse=_csv),
    Field("hubspot_client_secret", "HUBSPOT_CLIENT_SECRET", "HubSpot app client secret (webhook signatures).",
          "local-hubspot-secret", secret=True),
    Field("hubspot_access_token", "HUBSPOT_ACCESS_TOKEN",
          "HubSpot private-app token (CRM read and write). Empty locally: the sandbox CRM is used.", "",
          secret=True, required=False),
    Field("hubspot_base_url", "HUBSPOT_BASE_URL", "Override of HubSpot's API base URL (loopback stand-ins).", "", "",
          required=False),
    Field("oauth_client_secret", "GOOGLE_OAUTH_CLIENT_SECRET",
          "Secret of the OAuth client (Gmail connect flow, token refresh). Empty locally: no Google APIs.", "",
          secret=True, required=False),
    Field("google_token_uri", "GOOGLE_TOKEN_URI", "Google's OAuth token endpoint.",
          "https://oauth2.googleapis.com/token", "https://oauth2.googleapis.com/token"),
    Field("google_api_base_url", "GOOGLE_API_BASE_URL", "Base URL of Google's REST APIs (Drive, Gmail, Calendar).",
          "https://www.googleapis.com", "https://www.googleapis.com"),
    Field("google_auth_uri", "GOOGLE_AUTH_URI", "Google's OAuth authorization endpoint (the connect flow).",
          "https://accounts.google.com/o/oauth2/v2/auth", "https://accounts.google.com/o/oauth2/v2/auth"),
    Field("gmail_push_topic", "GMAIL_PUSH_TOPIC",
          "Pub/Sub topic Gmail watches publish to (default: projects/<project>/topics/gmail-push).", "", "",
          required=False),
    Field("gmail_watch_renew_hours", "GMAIL_WATCH_RENEW_HOURS",
          "Renew a Gmail watch when less than this much of its 7 days is left.", "48", "48", int),
    Field("token_refresh_concurrency", "TOKEN_REFRESH_CONCURRENCY", "Reps refreshed at once by the scheduled run.",
          "4", "4", int),
    Field("google_connected_redirect", "GOOGLE_CONNECTED_REDIRECT",
          "Where the browser goes after connecting Google (empty: a small confirmation page).", "", "",
          required=False),
    Field("allowed_origins", "ALLOWED_ORIGINS",
          "Origins (besides the API's own) allowed to call the APIs from a browser: the pages' site.", "", "",
          parse=_csv, required=False),
    Field("oauth_client_id", "GOOGLE_OAUTH_CLIENT_ID",
          "OAuth client id: audience of people's ID tokens and client of the Gmail connect flow.",
          "local-client-id.apps.googleusercontent.com"),
    Field("invoker_audience", "INVOKER_AUDIENCE",
          "Audience expected in Cloud Tasks, Pub/Sub and Scheduler OIDC tokens (default: the function URL).",
          "", "", required=False),
    Field("platform_verifies_invoker", "PLATFORM_VERIFIES_INVOKER",
          "True only on functions behind IAM invoker checks: Cloud Run has verified the caller's OIDC token and "
          "strips its signature, so the function checks the claims only.", "false", "false", _bool),
    Field("tasks_service_account", "TASKS_SERVICE_ACCOUNT",
          "Service account whose OIDC token Cloud Tasks attaches (and that functions accept from Tasks).",
          "tasks-invoker@local-project.iam.gserviceaccount.com"),
    Field("pubsub_service_account", "PUBSUB_SERVICE_ACCOUNT",
          "Service account of Pub/Sub push subscriptions (accepted on push routes).",
          "pubsub-push@local-project.iam.gserviceaccount.com"),
    Field("scheduler_service_account", "SCHEDULER_SERVICE_ACCOUNT",
          "Service account of Cloud Scheduler jobs (accepted on scheduled routes).",
          "scheduler@local-project.iam.gserviceaccount.com"),
    Field("database_url", "DATABASE_URL",
          "Direct Postgres DSN (tests, emulator mode). Empty in production: the Cloud SQL connector is used.",
          "", "", required=False, secret=True),
    Field("db_instance", "DB_INSTANCE", "Cloud SQL instance connection name `project:region:instance`.", "", "",
          required=False),
    Field("db_name", "DB_NAME", "Database name.", "leadvoice", "leadvoice"),
    Field("db_user", "DB_USER", "Database user (an IAM service account user in production).", "postgres"),
    Field("db_password", "DB_PASSWORD", "Database password; empty means IAM database authentication.", "", "",
          required=False, secret=True),
    Field("db_pool_size", "DB_POOL_SIZE", "Connections kept per function instance.", "4", "4", int),
    Field("firestore_database", "FIRESTORE_DATABASE", "Firestore database id.", "(default)", "(default)"),
    Field("firestore_emulator_host", "FIRESTORE_EMULATOR_HOST", "host:port of the Firestore emulator.", "", "",
          required=False),
    Field("pubsub_emulator_host", "PUBSUB_EMULATOR_HOST", "host:port of the Pub/Sub emulator.", "", "",
          required=False),
    Field("tasks_emulator_host", "CLOUD_TASKS_EMULATOR_HOST", "host:port of the Cloud Tasks emulator.", "", "",
          required=False),
    Field("storage_emulator_host", "STORAGE_EMULATOR_HOST", "URL of the Cloud Storage emulator.", "", "",
          required=False),
    Field("secrets_endpoint", "SECRET_MANAGER_ENDPOINT",
          "host:port of a plaintext Secret Manager endpoint (tests only).", "", "", required=False),
    Field("uploads_bucket", "UPLOADS_BUCKET", "Bucket of raw uploads.", "uploads"),
    Field("embedding_model", "EMBEDDING_MODEL", "Embedding model; a change re-embeds every chunk.",
          "all-MiniLM-L6-v2-int8", "text-embedding-005"),
    Field("embedding_dim", "EMBEDDING_DIM", "Dimension of the embedding model.", "384", "768", int),
    Field("generation_model", "GENERATION_MODEL", "Gemini model that writes drafts.", "offline-drafter",
          "gemini-2.5-flash"),
    Field("vertex_base_url", "VERTEX_BASE_URL", "Override of the Vertex AI endpoint (loopback stand-ins).", "", "",
          required=False),
    Field("flags_cache_seconds", "FLAGS_CACHE_SECONDS",
          "How long a function instance may reuse flags it read (never the kill switch on the send path).",
          "5", "5", float),
    Field("max_upload_bytes", "MAX_UPLOAD_BYTES", "Largest accepted upload.", str(25 * 1024 * 1024),
          str(25 * 1024 * 1024), int),
    Field("gate_review_threshold", "GATE_REVIEW_THRESHOLD", "A draft whose risk score reaches this is left as a Gmail draft for review.", "0.3", "0.3", parse=float),
    Field("gate_block_threshold", "GATE_BLOCK_THRESHOLD", "A draft whose risk score reaches this is blocked.", "0.7", "0.7", parse=float),
    Field("gate_min_voice_score", "GATE_MIN_VOICE_SCORE", "Below this voice score (or with none) a draft is left for review.", "0.5", "0.5", parse=float),
    Field("gate_recent_contact_days", "GATE_RECENT_CONTACT_DAYS", "Another email to the same contact within this many days is left for review.", "14", "14", parse=int),
    Field("gate_warmup_start_per_day", "GATE_WARMUP_START_PER_DAY", "Daily sends of a newly connected mailbox in its first week, doubling weekly up to the rep's limit; 0 turns the ramp off.", "10", "10", parse=int),
    Field("gate_business_days", "GATE_BUSINESS_DAYS", "Days emails are sent on, in the recipient's time zone (every day locally, so the demo never waits).", "mon,tue,wed,thu,fri,sat,sun", "mon,tue,wed,thu,fri"),
    Field("gate_business_start", "GATE_BUSINESS_START", "Local time sending starts.", "00:00", "09:00"),
    Field("gate_business_end", "GATE_BUSINESS_END", "Local time sending ends.", "23:59", "17:00"),
    Field("gate_send_spread_seconds", "GATE_SEND_SPREAD_SECONDS", "At most this much is added to a send time per workflow, so a batch does not leave at once.", "0", "900", parse=int),
    Field("gate_hold_max_seconds", "GATE_HOLD_MAX_SECONDS", "How long a draft waits while Gmail's circuit is open before its workflow fails.", "86400", "86400", parse=int),
    Field("breaker_error_rate", "BREAKER_ERROR_RATE", "Error share over the window that opens a circuit breaker.", "0.1", "0.1", parse=float),
    Field("breaker_window_seconds", "BREAKER_WINDOW_SECONDS", "Sliding window of a circuit breaker.", "300", "300", parse=int),
    Field("breaker_bucket_seconds", "BREAKER_BUCKET_SECONDS", "Bucket size inside the window.", "60", "60", parse=int),
    Field("breaker_min_calls", "BREAKER_MIN_CALLS", "Fewest calls in the window that can open a breaker.", "20", "20", parse=int),
    Field("breaker_cooldown_seconds", "BREAKER_COOLDOWN_SECONDS", "Time a breaker stays open before one probe is let through.", "60", "60", parse=int),
    Field("draft_max_attempts", "DRAFT_MAX_ATTEMPTS",
          "Deliveries of a draft task, the first included, before the workflow fails (the queue must allow as many).",
          "5", "5", int),
    Field("hubspot_optout_properties", "HUBSPOT_OPTOUT_PROPERTIES",
          "Extra contact properties that mean 'do not email' when true (e.g. hs_email_optout_<subscription id>).",
          "", "", parse=_csv, required=False),
    Field("email_footer", "EMAIL_FOOTER", "Text added after every email body.", "", "", required=False),
    Field("message_id_domain", "MESSAGE_ID_DOMAIN", "Domain of the Message-IDs; empty uses the rep's email domain.",
          "", "", required=False),
    Field("send_max_attempts", "SEND_MAX_ATTEMPTS",
          "Deliveries of one send task, the first included (the send queue must allow as many).", "8", "8", int),
    Field("follow_up_task_days", "FOLLOW_UP_TASK_DAYS", "Days until the HubSpot follow-up task is due.", "3", "3", int),
    Field("send_lease_seconds", "SEND_LEASE_SECONDS",
          "How long one delivery may hold a workflow's send (longer than Gmail's and HubSpot's timeouts).",
          "300", "300", int),
    Field("gmail_timeout_seconds", "GMAIL_TIMEOUT_SECONDS", "Seconds per Gmail request.", "30", "30", int),
    Field("log_level", "LOG_LEVEL", "Python log level.", "INFO", "INFO"),
)

_BY_NAME = {f.name: f for f in FIELDS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything configurable, parsed and validated once per process."""

    env: str
    adapters: str
    project_id: str
    region: str
    port: int
    data_dir: Path
    public_base_url: str
    function_url_template: str
    allowed_domains: tuple[str, ...]
    ops_emails: tuple[str, ...]
    hubspot_client_secret: str
    hubspot_access_token: str
    hubspot_base_url: str
    oauth_client_secret: str
    google_token_uri: str
    google_api_base_url: str
    google_auth_uri: str
    gmail_push_topic: str
    gmail_watch_renew_hours: int
    token_refresh_concurrency: int
    google_connected_redirect: str
    allowed_origins: tuple[str, ...]
    oauth_client_id: str
    invoker_audience: str
    platform_verifies_invoker: bool
    tasks_service_account: str
    pubsub_service_account: str
    scheduler_service_account: str
    database_url: str
    db_instance: str
    db_name: str
    db_user: str
    db_password: str
    db_pool_size: int
    firestore_database: str
    firestore_emulator_host: str
    pubsub_emulator_host: str
    tasks_emulator_host: str
    storage_emulator_host: str
    secrets_endpoint: str
    uploads_bucket: str
    embedding_model: str
    embedding_dim: int
    generation_model: str
    vertex_base_url: str
    flags_cache_seconds: float
    max_upload_bytes: int
    gate_review_threshold: float
    gate_block_threshold: float
    gate_min_voice_score: float
    gate_recent_contact_days: int
    gate_warmup_start_per_day: int
    gate_business_days: str
    gate_business_start: str
    gate_business_end: str
    gate_send_spread_seconds: int
    gate_hold_max_seconds: int
    breaker_error_rate: float
    breaker_window_seconds: int
    breaker_bucket_seconds: int
    breaker_min_calls: int
    breaker_cooldown_seconds: int
    draft_max_attempts: int
    hubspot_optout_properties: tuple[str, ...]
    email_footer: str
    message_id_domain: str
    send_max_attempts: int
    follow_up_task_days: int
    send_lease_seconds: int
    gmail_timeout_seconds: int
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Parse settings from ``environ`` (default ``os.environ``); keyword overrides win.

        Raises:
            SettingsError: naming every missing or malformed setting.
        """
        source = dict(os.environ if environ is None else environ)
        local = str(overrides.get("env", source.get("ENV", "production"))).strip().lower() == LOCAL
        values: dict[str, Any] = {}
        missing: list[str] = []
        malformed: list[str] = []
        for field in FIELDS:
            if field.name in overrides:
                values[field.name] = overrides[field.name]
                continue
            raw = source.get(field.env)
            if raw is None or (raw == "" and field.required):
                raw = field.local if local else field.production
            if raw is None:
                missing.append(field.env)
                continue
            try:
                values[field.name] = field.parse(raw)
            except ValueError as exc:
                malformed.append(f"{field.env} ({exc})")
        if local:
            port = values.get("port", 8080)
            values["public_base_url"] = values.get("public_base_url") or f"http://127.0.0.1:{port}"
        if not values.get("function_url_template") and values.get("public_base_url"):
            values["function_url_template"] = values["public_base_url"].rstrip("/") + "/{name}"
        if values.get("env") not in (None, LOCAL) and values.get("adapters") == GOOGLE:
            if not values.get("database_url") and not values.get("db_instance"):
                missing.append("DB_INSTANCE (or DATABASE_URL)")
        if values.get("adapters") not in (None, EMBEDDED, GOOGLE):
            malformed.append(f"ADAPTERS (expected {EMBEDDED} or {GOOGLE})")
        if missing or malformed:
            parts = []
            if missing:
                parts.append("missing: " + ", ".join(missing))
            if malformed:
                parts.append("malformed: " + ", ".join(malformed))
            raise SettingsError("Invalid settings; " + "; ".join(parts))
        return cls(**values)

    @property
    def is_local(self) -> bool:
        return self.env == LOCAL

    def function_url(self, name: str) -> str:
        """The base URL of a deployed function (``token-refresh``, not ``token_refresh``)."""
        return self.function_url_template.format(name=name).rstrip("/")

    def audience_for(self, name: str) -> str:
        """The audience an OIDC token must carry to call function ``name``."""
        return self.invoker_audience or self.function_url(name)

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked: safe for logs and /healthz."""
        out = {}
        for field in FIELDS:
            value = getattr(self, field.name)
            out[field.name] = "***" if (field.secret and value) else (str(value) if isinstance(value, Path) else value)
        return out


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | meaning | local default | production |", "|---|---|---|---|"]
    for f in FIELDS:
        local = f"`{f.local}`" if f.local else "—"
        if f.production is None:
            prod = "required"
        elif f.production == "":
            prod = "optional"
        else:
            prod = f"`{f.production}`"
        rows.append(f"| `{f.env}` | {f.meaning} | {local} | {prod} |")
    return "\n".join(rows)


def field(name: str) -> Field:
    return _BY_NAME[name]
