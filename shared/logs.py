"""Structured logs in Cloud Logging's shape, with the request's trace and no PII or secrets.

Cloud Run and Cloud Functions turn each JSON line on stdout/stderr into a log entry and lift the
special fields (``severity``, ``message``, ``time``, ``logging.googleapis.com/trace``, ``.../spanId``,
``.../trace_sampled``, ``.../sourceLocation``) into the entry itself:
https://cloud.google.com/logging/docs/structured-logging

Usage::

    setup_logging(settings.log_level, settings.project_id)
    with bind_request(request.headers):
        log.info("lead accepted", extra={"fields": {"workflow_id": wid}})

Redaction covers the message and its arguments, exception and stack text, and the ``fields`` extra.
Text is redacted when a record is created (a record factory installed by ``setup_logging``), so every
handler sees it redacted, pytest's ``caplog`` included. ``fields`` are attached by ``Logger.makeRecord``
after the factory runs, so they are redacted by the handler's filter; the formatter redacts again
whatever reached it unredacted (records created before setup).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# --- redaction ----------------------------------------------------------------------------------

_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _LUHN_DOUBLED[d] if i % 2 else d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def _international_phone(match: re.Match[str]) -> str:
    # E.164 allows at most 15 digits; fewer than 8 is a signed quantity ("+100.25"), not a number.
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "[phone]" if 8 <= digits <= 15 else match.group(0)


# Order matters: whole tokens first (a JWT contains neither an email nor a phone number, but a
# Bearer header contains a JWT), then personal data, then digit runs.
_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    # Authorization header values of any scheme that carries a credential.
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1 [redacted]"),
    # JWTs: base64url of a JSON header always starts "eyJ" ('{"').
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[jwt]"),
    # Google OAuth access tokens, refresh tokens, authorization codes, API keys, client secrets.
    (re.compile(r"\bya29\.[A-Za-z0-9._-]{10,}"), "[google-token]"),
    (re.compile(r"(?<![A-Za-z0-9])1//[A-Za-z0-9._-]{10,}"), "[google-token]"),
    (re.compile(r"(?<![A-Za-z0-9/])4/[0-9][A-Za-z0-9._-]{20,}"), "[google-token]"),
    (re.compile(r"\bAIza[A-Za-z0-9_-]{35}"), "[google-key]"),
    (re.compile(r"\bGOCSPX-[A-Za-z0-9_-]{10,}"), "[google-secret]"),
    # HubSpot private-app / personal access tokens.
    (re.compile(r"\bpat-[a-z]{2}[0-9]-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
     "[hubspot-token]"),
    # key=value and "key": "value" pairs whose key names a credential (query strings, JSON bodies).
    (re.compile(r"(?i)\b((?:access|refresh|id)_token|client_secret|api_?key|password|hapikey)"
                r"(\s*[=:]\s*\"?)[^&\s\",;}]+"), r"\1\2[redacted]"),
    (re.compile(r"(?<=[?&])code=[^&\s\"]+"), "code=[redacted]"),
    # Email addresses.
    (re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
     "[email]"),
    # Card-like digit runs: 13-19 digits, optionally grouped by single spaces or dashes, starting
    # with a card-network digit (2-6) and passing Luhn. Millisecond timestamps start with 1; UUIDs
    # and other ids are excluded by refusing to start or end inside a longer word or dash-run.
    (re.compile(r"(?<![\w-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\w]|-\d)"), _card),
    # Phone numbers: only shapes that ordinary numbers do not take: a leading +, a (area code), or
    # three groups 3-3-4 with separators. A bare digit run is indistinguishable from an id or an
    # epoch timestamp, and is left alone.
    (re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){1,6}(?![\w-])"), _international_phone),
    (re.compile(r"(?<![\w(])\(\d{3}\)\s?\d{3}[ .-]\d{4}(?![\w-])"), "[phone]"),
    (re.compile(r"(?<![\w.-])\d{3}([ .-])\d{3}\1\d{4}(?![\w]|[.-]\d)"), "[phone]"),
)

# Keys whose values are dropped whole in the ``fields`` extra, whatever they look like.
_SECRET_KEY = re.compile(r"(?i)(password|secret|token|authorization|cookie|api_?key|credential)")


class Redactor:
    """Removes personal data and credentials from text and JSON-like values.

    Known secrets (the HubSpot client secret, a refresh token read from Secret Manager) are registered
    with ``add_secret`` and replaced wherever they appear, because their shape alone (often a UUID)
    cannot tell them from ordinary ids.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, value: str | None) -> None:
        """Redact this exact value from now on. Values shorter than 6 characters are ignored, since
        replacing them would mangle ordinary text."""
        if not value or len(value) < 6:
            return
        with self._lock:
            if value not in self._secrets:
                # Longest first, so a secret containing another is replaced whole.
                self._secrets = tuple(sorted((*self._secrets, value), key=len, reverse=True))

    def redact(self, text: str) -> str:
        """Text with every secret, token and personal datum replaced by a ``[kind]`` placeholder."""
        if not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[secret]")
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value: Any, _depth: int = 0) -> Any:
        """A JSON-like value with its strings redacted; values under secret-sounding keys dropped."""
        if _depth > 20:
            return "[nested]"
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            text = str(value)
            redacted = self.redact(text)
            return value if redacted == text else redacted
        if isinstance(value, Mapping):
            return {str(k): ("[redacted]" if _SECRET_KEY.search(str(k)) else self.redact_value(v, _depth + 1))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.redact_value(v, _depth + 1) for v in value]
        return self.redact(str(value))


REDACTOR = Redactor()


def redact(text: str) -> str:
    """Redact text with the process-wide redactor (see ``Redactor.redact``)."""
    return REDACTOR.redact(text)


def add_secret(value: str | None) -> None:
    """Register a known secret with the process-wide redactor."""
    REDACTOR.add_secret(value)


def redact_record(record: logging.LogRecord, redactor: Redactor | None = None) -> logging.LogRecord:
    """Redact a log record in place: message and arguments, ``fields``, exception and stack text.

    The message is rendered with its arguments first, so a PII argument cannot escape through
    ``%s``. The exception object is kept (handlers may want its type), but its formatted text is
    stored redacted in ``exc_text``, which formatters use instead of formatting it again. Each part is
    redacted once: the record factory sees a record before ``extra`` is attached to it, so ``fields``
    are redacted later, by the handler's filter or the formatter.
    """
    redactor = redactor or REDACTOR
    state = record.__dict__
    # Remember which message was redacted rather than a flag: ``logging.makeLogRecord`` replaces the
    # message after the factory ran, and a replaced message must be redacted again.
    if state.get("_redacted_msg") is not record.msg or record.args:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can, never lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redactor.redact(message)
        record.args = ()
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact(record.stack_info)
        state["_redacted_msg"] = record.msg
    fields = state.get("fields")
    if isinstance(fields, Mapping) and not state.get("_redacted_fields"):
        state["fields"] = redactor.redact_value(fields)
        state["_redacted_fields"] = True
    return record


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record it sees (for handlers built outside ``setup_logging``)."""

    def __init__(self, redactor: Redactor | None = None):
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record, self._redactor)
        return True


# --- trace context ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits
    span_id: str | None  # 16 hex digits, as Cloud Logging's spanId wants
    sampled: bool
    project_id: str | None

    @property
    def resource(self) -> str | None:
        """``projects/<project>/traces/<trace id>``, the form Cloud Logging links to Cloud Trace."""
        return f"projects/{self.project_id}/traces/{self.trace_id}" if self.project_id else None


_TRACE: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("trace", default=None)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?")


def parse_trace(headers: Mapping[str, str], project_id: str | None = None) -> TraceContext | None:
    """The trace of a request from its W3C ``traceparent`` or ``X-Cloud-Trace-Context`` header.

    ``traceparent`` wins when both are valid (Google's front end sends both, with the same trace).

    Args:
        headers: The request headers.
        project_id: The project whose Cloud Trace holds the trace.

    Returns:
        The trace context, or None when neither header carries a valid trace id.
    """
    def get(name: str) -> str | None:
        value = headers.get(name)
        if value is None:
            value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
        return value.strip() if isinstance(value, str) else None

    traceparent = get("traceparent")
    if traceparent:
        match = _TRACEPARENT.fullmatch(traceparent.lower())
        # W3C Trace Context: version ff is invalid, and all-zero trace or parent ids are invalid.
        if match and match.group(1) != "ff" and set(match.group(2)) != {"0"} and set(match.group(3)) != {"0"}:
            return TraceContext(match.group(2), match.group(3), bool(int(match.group(4), 16) & 1), project_id)
    cloud = get("X-Cloud-Trace-Context")
    if cloud:
        match = _CLOUD_TRACE.fullmatch(cloud)
        if match and set(match.group(1)) != {"0"}:
            span = match.group(2)
            # The legacy header carries the span id in decimal; Cloud Logging wants 16 hex digits.
            span_hex = f"{int(span):016x}" if span and 0 < int(span) < 2 ** 64 else None
            return TraceContext(match.group(1).lower(), span_hex, match.group(3) == "1", project_id)
    return None


@contextlib.contextmanager
def bind_request(headers: Mapping[str, str], project_id: str | None = None) -> Iterator[TraceContext | None]:
    """Tie every log line written inside the block to the request's trace.

    Args:
        headers: The request headers.
        project_id: The project of the trace; defaults to the one given to ``setup_logging``.

    Yields:
        The trace context, or None when the request carries none.
    """
    context = parse_trace(headers, project_id or _STATE.project_id)
    token = _TRACE.set(context)
    try:
        yield context
    finally:
        _TRACE.reset(token)


def current_trace() -> TraceContext | None:
    """The trace bound by the innermost ``bind_request``, if any."""
    return _TRACE.get()


# --- the JSON formatter -------------------------------------------------------------------------

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
SOURCE_KEY = "logging.googleapis.com/sourceLocation"
_RESERVED = {"severity", "message", "time", "logger", TRACE_KEY, SPAN_KEY, SAMPLED_KEY, SOURCE_KEY}

# Python level names that are not Cloud Logging LogSeverity names.
_SEVERITY = {"WARN": "WARNING", "FATAL": "CRITICAL"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, in Cloud Logging's structured shape.

    Extra fields given as ``extra={"fields": {...}}`` become top-level keys of the entry (a key that
    collides with a special field is kept as ``field_<key>``). The exception text is appended to
    ``message``, where Error Reporting looks for a stack trace.
    """

    def __init__(self, project_id: str | None = None, redactor: Redactor | None = None):
        super().__init__()
        self.project_id = project_id
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        redact_record(record, self._redactor)
        message = record.getMessage()
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, record.levelname),
            "message": message,
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="microseconds").replace("+00:00", "Z"),
            "logger": record.name,
            SOURCE_KEY: {"file": record.pathname, "line": str(record.lineno), "function": record.funcName},
        }
        trace = _TRACE.get()
        if trace is not None:
            project = trace.project_id or self.project_id
            if project:
                entry[TRACE_KEY] = f"projects/{project}/traces/{trace.trace_id}"
            if trace.span_id:
                entry[SPAN_KEY] = trace.span_id
            entry[SAMPLED_KEY] = trace.sampled
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                entry[f"field_{key}" if key in _RESERVED else str(key)] = value
        # Plain ``extra={...}`` keys (libraries and older call sites use them) are kept too, redacted
        # like ``fields``, so a log line never loses its details.
        redactor = self._redactor or REDACTOR
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRIBUTES or key.startswith("_") or key in entry or key == "fields":
                continue
            entry[f"field_{key}" if key in _RESERVED else key] = redactor.redact_value(value)
        return json.dumps(entry, default=str, ensure_ascii=False)


# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


# --- setup --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _State:
    handler: logging.Handler | None = None
    project_id: str | None = None
    previous_factory: Any = None  # the record factory ours wraps; None while ours is not installed


_STATE = _State()
_SETUP_LOCK = threading.Lock()


def _install_record_factory() -> None:
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _STATE.previous_factory = previous


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted, not when the handler was made:
    test runners swap stdout, and records emitted at interpreter exit must not hit a closed stream."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(level: str | int = "INFO", project_id: str | None = None, *,
                  stream: Any = None, secrets: Iterable[str | None] = ()) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stdout by default) as Cloud Logging JSON.

    Idempotent: a second call updates the level and project and returns the same handler, so every
    function's ``main.py`` may call it at cold start.

    Args:
        level: A level name or number (``LOG_LEVEL``).
        project_id: The project whose Cloud Trace holds request traces.
        stream: Where lines go; Cloud Run collects stdout and stderr alike.
        secrets: Known secret values to redact (for example ``HUBSPOT_CLIENT_SECRET``); more can be
            added later with ``add_secret``.

    Returns:
        The installed handler.
    """
    for secret in secrets:
        REDACTOR.add_secret(secret)
    with _SETUP_LOCK:
        if _STATE.previous_factory is None:
            _install_record_factory()
        _STATE.project_id = project_id
        root = logging.getLogger()
        numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
        if not isinstance(numeric, int):
            raise ValueError(f"unknown log level {level!r}")
        root.setLevel(numeric)
        current = _STATE.handler
        if current is None or current not in root.handlers or (
                stream is not None and isinstance(current, _StdoutHandler)):
            if current is not None:
                root.removeHandler(current)
            handler = logging.StreamHandler(stream) if stream is not None else _StdoutHandler()
            handler.addFilter(RedactingFilter())
            root.addHandler(handler)
            _STATE.handler = handler
        elif stream is not None and isinstance(_STATE.handler, logging.StreamHandler):
            _STATE.handler.setStream(stream)
        _STATE.handler.setFormatter(JsonFormatter(project_id))
        return _STATE.handler


def teardown_logging() -> None:
    """Undo ``setup_logging``: remove its handler and record factory (tests, a reloading local stack)."""
    with _SETUP_LOCK:
        if _STATE.handler is not None:
            logging.getLogger().removeHandler(_STATE.handler)
            _STATE.handler = None
        if _STATE.previous_factory is not None:
            logging.setLogRecordFactory(_STATE.previous_factory)
            _STATE.previous_factory = None
        _STATE.project_id = None
