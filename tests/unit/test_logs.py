"""Structured logging: Cloud Logging's JSON shape, request traces, and redaction of PII and secrets."""

from __future__ import annotations

import datetime as dt
import inspect
import io
import json
import logging
import threading

import pytest

from shared import logs
from shared.logs import Redactor, add_secret, bind_request, current_trace, parse_trace, redact, setup_logging

PROJECT = "leadvoice-test"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
CLOUD_TRACE = "105445aa7843bc8bf206b12000100000/1234;o=1"

JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImxvY2FsIn0.eyJlbWFpbCI6ImFsZXhAZXhhbXBsZS5jb20ifQ."
       "c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYW5kLW1vcmU")
HUBSPOT_SECRET = "5f0b7c2e-1a9d-4e3b-8c6f-0d2e4a6b8c1f"  # UUID-shaped, like a real client secret

# Every class of sensitive value, each in a sentence, with the exact text that must not survive.
SENSITIVE = [
    ("email", "reply from jane.doe+leads@acme-corp.co.uk arrived", "jane.doe+leads@acme-corp.co.uk"),
    ("phone, international", "call her on +44 20 7946 0958 today", "7946 0958"),
    ("phone, E.164", "sms to +14155550132 queued", "4155550132"),
    ("phone, US dashed", "office 415-555-0132 ext 4", "555-0132"),
    ("phone, US parenthesised", "office (415) 555-0132", "555-0132"),
    ("phone, dotted", "mobile 415.555.0132", "555.0132"),
    ("bearer token", "header Authorization: Bearer abc123DEF456ghi789.jkl", "abc123DEF456ghi789"),
    ("jwt", f"id token {JWT} rejected", JWT.split(".")[1]),
    ("google access token", "using ya29.a0AfH6SMBxQ3-abc_DEF123xyz for gmail", "a0AfH6SMBxQ3"),
    ("google refresh token", "stored 1//0gLq3v-KdZ8mCgYIARAAGBASNwF-L9Ir for rep", "0gLq3v-KdZ8mCgYIARAAGBASNwF"),
    ("hubspot token", "client built with pat-na1-0f1e2d3c-aaaa-bbbb-cccc-1234567890ab", "0f1e2d3c-aaaa"),
    ("hubspot secret (known value)", f"secret is {HUBSPOT_SECRET}", HUBSPOT_SECRET),
    ("card, grouped", "card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
    ("card, dashed", "card 5500-0000-0000-0004 declined", "5500-0000-0000-0004"),
    ("card, bare amex", "amex 378282246310005 on file", "378282246310005"),
    ("oauth query", "GET /callback?code=4/0AeaYSHDx1fakecodevalue12345&state=abc", "0AeaYSHDx1fakecodevalue"),
    ("client secret pair", "posted client_secret=GOCSPX-s3cr3tv4lu3abcdef", "s3cr3tv4lu3"),
]

# Ordinary text that must come through unchanged.
ORDINARY = [
    "lead received 2024-05-01 at 12:30:45",
    "occurredAt=1716650000000 (ms) and 1716650000 (s)",
    "workflow 123e4567-e89b-12d3-a456-426614174000 moved to DRAFTED",
    "sample 12345678-1234-1234-1234-123456789012 is ready",
    "retry 3 of 5 after 1500 ms; 42 leads, 0 errors",
    "HubSpot contact 51234567890 in portal 62515",
    "price $1,299.00, growth +12.5%, delta +100.25, score 0.87",
    "version 1.2.3 on 10.0.0.1:8080, zip 94103, Q3 2024",
    "2024-05-01T12:30:45.123456Z took 250ms",
    "token expired; refresh scheduled",
    "https://app.example.com/leads?page=2&limit=50",
    "non-Luhn digits 4111111111111112 are an id, not a card",
    "send_mode=DRAFT_ONLY kill_switch=false",
]


@pytest.fixture
def json_log():
    """setup_logging writing to a buffer; torn down after the test so the root logger is left as found."""
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()
    setup_logging("DEBUG", PROJECT, stream=buffer, secrets=[HUBSPOT_SECRET])
    logger = logging.getLogger("tests.logs")

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield logger, lines
    logs.teardown_logging()
    root.setLevel(level)


# --- shape -------------------------------------------------------------------------------------


def test_entry_has_cloud_loggings_shape(json_log):
    logger, lines = json_log
    before = dt.datetime.now(dt.timezone.utc)
    line = inspect.currentframe().f_lineno + 1
    logger.info("lead %s accepted", "L-17", extra={"fields": {"workflow_id": "wf-1", "events": 3}})
    after = dt.datetime.now(dt.timezone.utc)
    (entry,) = lines()
    assert entry["severity"] == "INFO"
    assert entry["message"] == "lead L-17 accepted"
    assert entry["logger"] == "tests.logs"
    assert entry["workflow_id"] == "wf-1" and entry["events"] == 3
    assert entry["time"].endswith("Z")
    stamp = dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= stamp <= after + dt.timedelta(seconds=1)
    source = entry["logging.googleapis.com/sourceLocation"]
    assert source["file"].endswith("test_logs.py")
    assert source["line"] == str(line)
    assert source["function"] == "test_entry_has_cloud_loggings_shape"
    assert "logging.googleapis.com/trace" not in entry  # no request bound


@pytest.mark.parametrize("method, severity", [
    ("debug", "DEBUG"), ("info", "INFO"), ("warning", "WARNING"), ("error", "ERROR"), ("critical", "CRITICAL"),
])
def test_levels_map_to_cloud_severities(json_log, method, severity):
    logger, lines = json_log
    getattr(logger, method)("x")
    assert lines()[-1]["severity"] == severity


def test_each_record_is_one_line_even_with_newlines_and_tracebacks(json_log):
    logger, lines = json_log
    logger.info("first\nsecond")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    entries = lines()
    assert len(entries) == 2
    assert entries[0]["message"] == "first\nsecond"
    assert entries[1]["severity"] == "ERROR"
    assert entries[1]["message"].startswith("failed\nTraceback (most recent call last):")
    assert "RuntimeError: boom" in entries[1]["message"]


def test_fields_that_collide_with_special_keys_are_kept_aside(json_log):
    logger, lines = json_log
    logger.info("real message", extra={"fields": {"message": "spoof", "severity": "DEBUG", "when": dt.date(2024, 5, 1)}})
    (entry,) = lines()
    assert entry["message"] == "real message" and entry["severity"] == "INFO"
    assert entry["field_message"] == "spoof" and entry["field_severity"] == "DEBUG"
    assert entry["when"] == "2024-05-01"


def test_setup_logging_is_idempotent(json_log):
    logger, lines = json_log
    handler = setup_logging("WARNING", PROJECT)
    assert setup_logging("WARNING", PROJECT) is handler
    assert logging.getLogger().handlers.count(handler) == 1
    logger.info("dropped at WARNING")
    logger.warning("kept")
    assert [e["message"] for e in lines()] == ["kept"]


def test_setup_logging_refuses_an_unknown_level(json_log):
    with pytest.raises(ValueError):
        setup_logging("LOUD", PROJECT)


# --- trace ---------------------------------------------------------------------------------------


def test_trace_from_w3c_traceparent(json_log):
    logger, lines = json_log
    with bind_request({"traceparent": TRACEPARENT}):
        logger.info("inside")
    logger.info("outside")
    inside, outside = lines()
    assert inside["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert inside["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert inside["logging.googleapis.com/trace_sampled"] is True
    assert "logging.googleapis.com/trace" not in outside


def test_trace_from_x_cloud_trace_context(json_log):
    logger, lines = json_log
    with bind_request({"X-Cloud-Trace-Context": CLOUD_TRACE}, "other-project"):
        logger.info("inside")
    (entry,) = lines()
    assert entry["logging.googleapis.com/trace"] == "projects/other-project/traces/105445aa7843bc8bf206b12000100000"
    assert entry["logging.googleapis.com/spanId"] == f"{1234:016x}"
    assert entry["logging.googleapis.com/trace_sampled"] is True


def test_traceparent_wins_over_the_legacy_header():
    context = parse_trace({"X-Cloud-Trace-Context": CLOUD_TRACE, "traceparent": TRACEPARENT}, PROJECT)
    assert context.trace_id == TRACE_ID
    assert context.resource == f"projects/{PROJECT}/traces/{TRACE_ID}"


def test_legacy_header_is_used_when_traceparent_is_invalid():
    context = parse_trace({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                           "x-cloud-trace-context": "105445AA7843BC8BF206B12000100000"}, PROJECT)
    assert context.trace_id == "105445aa7843bc8bf206b12000100000"
    assert context.span_id is None and context.sampled is False


@pytest.mark.parametrize("headers", [
    {},
    {"traceparent": "garbage"},
    {"traceparent": f"ff-{TRACE_ID}-00f067aa0ba902b7-01"},
    {"traceparent": f"00-{TRACE_ID}-0000000000000000-01"},
    {"X-Cloud-Trace-Context": "not-hex/1;o=1"},
    {"X-Cloud-Trace-Context": "0" * 32 + "/1;o=1"},
])
def test_invalid_trace_headers_bind_no_trace(headers):
    assert parse_trace(headers, PROJECT) is None


def test_unsampled_traceparent():
    assert parse_trace({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-00"}, PROJECT).sampled is False


def test_bind_request_nests_and_restores():
    assert current_trace() is None
    with bind_request({"traceparent": TRACEPARENT}, PROJECT) as outer:
        with bind_request({"X-Cloud-Trace-Context": CLOUD_TRACE}, PROJECT) as inner:
            assert current_trace() is inner
        assert current_trace() is outer
    assert current_trace() is None


def test_bound_trace_does_not_leak_into_other_threads(json_log):
    logger, lines = json_log
    with bind_request({"traceparent": TRACEPARENT}):
        worker = threading.Thread(target=lambda: logger.info("from another request's thread"))
        worker.start()
        worker.join()
    (entry,) = lines()
    assert "logging.googleapis.com/trace" not in entry


def test_bind_request_defaults_to_the_configured_project(json_log):
    with bind_request({"traceparent": TRACEPARENT}) as context:
        assert context.resource == f"projects/{PROJECT}/traces/{TRACE_ID}"


# --- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, text, secret", SENSITIVE, ids=[s[0] for s in SENSITIVE])
def test_redacted_in_the_message(json_log, kind, text, secret):
    logger, lines = json_log
    logger.info(text)
    output = json.dumps(lines())
    assert secret not in output
    assert "[" in lines()[0]["message"]  # a placeholder says something was there


@pytest.mark.parametrize("kind, text, secret", SENSITIVE, ids=[s[0] for s in SENSITIVE])
def test_redacted_in_arguments(json_log, kind, text, secret):
    logger, lines = json_log
    logger.info("value: %s", text)
    logger.info("values: %(v)s", {"v": text})
    assert secret not in json.dumps(lines())


@pytest.mark.parametrize("kind, text, secret", SENSITIVE, ids=[s[0] for s in SENSITIVE])
def test_redacted_in_extra_fields(json_log, kind, text, secret):
    logger, lines = json_log
    logger.info("with fields", extra={"fields": {"note": text, "nested": {"items": [text, {"deep": text}]}}})
    assert secret not in json.dumps(lines())


@pytest.mark.parametrize("kind, text, secret", SENSITIVE, ids=[s[0] for s in SENSITIVE])
def test_redacted_in_exception_tracebacks(json_log, kind, text, secret):
    logger, lines = json_log

    def failing(payload):
        raise ValueError(f"could not process {payload}")

    try:
        failing(text)
    except ValueError:
        logger.exception("processing failed")
    (entry,) = lines()
    assert "ValueError: could not process" in entry["message"]
    assert secret not in entry["message"]


def test_redacted_in_stack_info(json_log):
    logger, lines = json_log
    logger.info("where am I, jane@acme.com?", stack_info=True)
    (entry,) = lines()
    assert "Stack (most recent call last)" in entry["message"]
    assert "jane@acme.com" not in entry["message"]


def test_values_under_secret_sounding_keys_are_dropped(json_log):
    logger, lines = json_log
    logger.info("refreshed", extra={"fields": {"refresh_token": "opaque-value-without-a-known-shape",
                                              "Authorization": "Token abc", "rep_id": 7}})
    (entry,) = lines()
    assert entry["refresh_token"] == "[redacted]" and entry["Authorization"] == "[redacted]"
    assert entry["rep_id"] == 7


def test_card_numbers_given_as_integers_are_redacted(json_log):
    logger, lines = json_log
    logger.info("ints", extra={"fields": {"card": 4111111111111111, "contact_id": 51234567890}})
    (entry,) = lines()
    assert entry["card"] == "[card]" and entry["contact_id"] == 51234567890


def test_records_seen_by_other_handlers_are_redacted_too(json_log, caplog):
    logger, _ = json_log
    with caplog.at_level(logging.INFO):
        logger.info("lead %s from %s", "jane@acme.com", "+44 20 7946 0958")
        try:
            raise KeyError("ya29.a0AfH6SMBxQ3-abc_DEF123xyz")
        except KeyError:
            logger.exception("lookup failed")
    assert "jane@acme.com" not in caplog.text and "7946" not in caplog.text
    assert "a0AfH6SMBxQ3" not in caplog.text
    assert "[email]" in caplog.text


def test_handlers_that_run_before_ours_see_redacted_text(json_log):
    logger, _ = json_log
    # A handler on the logger itself runs before the record propagates to the root's JSON handler.
    early = io.StringIO()
    handler = logging.StreamHandler(early)
    logger.addHandler(handler)
    try:
        logger.warning("lead %s", "jane@acme.com")
        try:
            raise KeyError("card 4111 1111 1111 1111")
        except KeyError:
            logger.exception("lookup failed")
    finally:
        logger.removeHandler(handler)
    assert "jane@acme.com" not in early.getvalue() and "4111 1111" not in early.getvalue()
    assert "lead [email]" in early.getvalue() and "KeyError" in early.getvalue()


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_not_mangled(json_log, text):
    logger, lines = json_log
    assert redact(text) == text
    logger.info(text, extra={"fields": {"copy": text}})
    (entry,) = lines()
    assert entry["message"] == text and entry["copy"] == text


def test_secrets_can_be_added_after_setup(json_log):
    logger, lines = json_log
    add_secret("rotated-refresh-material-42")
    logger.info("stored rotated-refresh-material-42")
    assert lines()[0]["message"] == "stored [secret]"


def test_known_secrets_are_registered_per_redactor():
    redactor = Redactor(["s3cr3t-value-1"])
    redactor.add_secret("s3cr3t-value-1-longer")
    redactor.add_secret("abc")  # too short to redact without mangling ordinary words
    assert redactor.redact("a s3cr3t-value-1-longer b s3cr3t-value-1 c abc") == "a [secret] b [secret] c abc"
    assert Redactor().redact("s3cr3t-value-1") == "s3cr3t-value-1"


def test_redact_handles_empty_and_non_string_values():
    redactor = Redactor()
    assert redactor.redact("") == ""
    assert redactor.redact_value(None) is None
    assert redactor.redact_value(True) is True
    assert redactor.redact_value(3.5) == 3.5
    assert redactor.redact_value(("a@b.io", 1)) == ["[email]", 1]


def test_a_message_replaced_after_creation_is_redacted_again(json_log):
    _, lines = json_log
    # logging.makeLogRecord (socket and queue listeners) fills a record from a dict after creating it.
    record = logging.makeLogRecord({"name": "tests.logs", "levelno": logging.INFO, "levelname": "INFO",
                                    "msg": "forwarded for %s", "args": ("jane@acme.com",)})
    logging.getLogger("tests.logs").handle(record)
    (entry,) = lines()
    assert entry["message"] == "forwarded for [email]"


def test_plain_extra_keys_are_kept_and_redacted():
    import io
    import json as _json
    import logging as _logging

    from shared.logs import JsonFormatter

    stream = io.StringIO()
    handler = _logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("p"))
    logger = _logging.getLogger("tests.logs.plain-extra")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("task delivery failed", extra={"queue": "draft-queue", "error": "ConnectTimeout",
                                                      "who": "someone@acme.test"})
    finally:
        logger.removeHandler(handler)
    entry = _json.loads(stream.getvalue().splitlines()[-1])
    assert entry["queue"] == "draft-queue" and entry["error"] == "ConnectTimeout"
    assert "someone@acme.test" not in stream.getvalue()
