"""Every parser of outside input, fed generated input: it answers or raises one of the project's own
errors (``AppError``), never anything else (which would be a 500 at the edge, or a dead worker).

The strategies build inputs near the accepted shapes (a HubSpot event with one field of the wrong
type, a MIME message with an unknown charset, a cue whose timestamp runs backwards), where parsers
break, rather than uniform noise, which tests/unit/test_extract.py already covers.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import AppError

# Bounded: the whole module runs in about half a minute; `-m slow` is not needed for it.
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                      st.floats(allow_nan=False), st.text(max_size=40))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                          max_leaves=20)


def _is_ours(exc: BaseException) -> bool:
    return isinstance(exc, AppError)


def _calls(fn, *args, **kwargs):
    """Call a parser; an AppError is an answer, any other exception fails the test with its input."""
    try:
        return fn(*args, **kwargs)
    except AppError:
        return None


# --- HubSpot webhook bodies ---------------------------------------------------------------------------

EVENT_KEYS = ["eventId", "subscriptionId", "portalId", "appId", "occurredAt", "subscriptionType", "attemptNumber",
              "objectId", "propertyName", "propertyValue", "changeSource", "objectTypeId"]
SUBSCRIPTIONS = st.sampled_from(["contact.creation", "contact.propertyChange", "object.creation",
                                 "object.propertyChange", "deal.creation", "", "contact."])
PROPERTIES = st.sampled_from(["recent_conversion_date", "recent_conversion_event_name", "num_conversion_events",
                              "first_conversion_date", "email", ""])


@st.composite
def hubspot_event(draw):
    event = {"eventId": draw(st.one_of(st.integers(), st.text(max_size=10), json_value)),
             "subscriptionType": draw(st.one_of(SUBSCRIPTIONS, json_value)),
             "objectId": draw(st.one_of(st.integers(), st.text(max_size=10), json_value)),
             "portalId": draw(st.one_of(st.integers(), json_value)),
             "occurredAt": draw(st.one_of(st.integers(min_value=-2**63, max_value=2**63), st.floats(), json_value)),
             "propertyName": draw(st.one_of(PROPERTIES, json_value)),
             "objectTypeId": draw(st.one_of(st.sampled_from(["0-1", "0-2", 1]), json_value))}
    for key in draw(st.lists(st.sampled_from(EVENT_KEYS), max_size=4)):
        event.pop(key, None)
    return event


@st.composite
def workflow_object(draw):
    props = draw(st.dictionaries(st.sampled_from(["email", "firstname", "message", "hs_object_id", "company"]),
                                 st.one_of(json_value, st.fixed_dictionaries({"value": json_value})), max_size=5))
    body = {"objectId": draw(json_value), "vid": draw(json_value), "portalId": draw(json_value),
            "properties": draw(st.one_of(st.just(props), json_value)),
            "form-submissions": draw(st.one_of(
                st.lists(st.dictionaries(st.sampled_from(["conversion-id", "timestamp", "form-id"]), json_value,
                                         max_size=3), max_size=3), json_value)),
            "submissionId": draw(json_value), "conversionId": draw(json_value)}
    for key in draw(st.lists(st.sampled_from(list(body)), max_size=6)):
        body.pop(key, None)
    return body


webhook_bodies = st.one_of(
    st.lists(hubspot_event(), max_size=5).map(lambda v: json.dumps(v).encode()),
    workflow_object().map(lambda v: json.dumps(v).encode()),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@FUZZ
@given(webhook_bodies)
def test_hubspot_webhook_parse_answers_or_raises_a_project_error(body):
    from shared.leads.intake import parse

    parsed = _calls(parse, body)
    if parsed is not None:
        for sub in parsed.submissions:
            # The key is what dedupes deliveries: it must exist and be text whatever the input was.
            assert isinstance(sub.idempotency_key, str) and sub.idempotency_key
            json.dumps(sub.payload)


def test_a_huge_integer_event_id_is_not_a_crash():
    # Found by the strategy above once integers outgrew 64 bits; kept as a fixed example.
    from shared.leads.intake import parse

    _calls(parse, json.dumps([{"eventId": 2**80, "subscriptionType": "contact.creation", "objectId": 2**80,
                                "occurredAt": 2**80}]).encode())


# --- Pub/Sub push bodies (the gate's draft-created event) --------------------------------------------


@st.composite
def push_body(draw):
    payload = draw(st.one_of(st.fixed_dictionaries({"workflow_id": json_value}), json_value))
    raw = json.dumps(payload).encode()
    data = draw(st.one_of(st.just(base64.b64encode(raw).decode()), st.text(max_size=30),
                          st.just(base64.urlsafe_b64encode(raw).decode()), json_value,
                          st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())))
    message = {"data": data, "messageId": draw(json_value), "attributes": draw(json_value)}
    return draw(st.one_of(st.just({"message": message, "subscription": "s"}), st.just({"message": data}),
                          json_value))


@FUZZ
@given(push_body())
def test_pubsub_push_decoding_answers_or_raises_a_project_error(data):
    from shared.gate.step import workflow_id_of

    result = _calls(workflow_id_of, data)
    assert result is None or (isinstance(result, str) and result)


# --- Gmail push notifications (webhook /gmail) -------------------------------------------------------


@st.composite
def gmail_notification(draw):
    payload = draw(st.one_of(
        st.fixed_dictionaries({"emailAddress": st.one_of(st.emails(), json_value),
                               "historyId": st.one_of(st.integers(min_value=-5, max_value=2**80),
                                                      st.text(max_size=25), json_value)}),
        json_value))
    raw = json.dumps(payload).encode()
    data = draw(st.one_of(st.just(base64.b64encode(raw).decode()),
                          st.just(base64.urlsafe_b64encode(raw).decode().rstrip("=")),
                          st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
                          st.text(max_size=40), json_value))
    return draw(st.one_of(st.just({"message": {"data": data, "messageId": "1"}, "subscription": "s"}),
                          st.just({"message": data}), json_value))


@FUZZ
@given(gmail_notification())
def test_gmail_notification_decoding_answers_or_ignores(envelope):
    from shared.accounts_google.gmail_push import decode

    result = _calls(decode, envelope)
    if result is not None:
        address, history_id = result
        assert "@" in address and address == address.strip().lower()
        assert isinstance(history_id, int) and history_id > 0


def test_a_well_formed_gmail_notification_decodes_in_both_alphabets():
    from shared.accounts_google.gmail_push import decode

    raw = json.dumps({"emailAddress": " Alex@Example.com", "historyId": 9876543210123}).encode()
    for data in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert decode({"message": {"data": data}}) == ("alex@example.com", 9876543210123)


# --- MIME, VTT, SRT, HTML through the extractor -------------------------------------------------------

CHARSETS = st.sampled_from(["utf-8", "us-ascii", "iso-8859-1", "koi8-r", "utf-16", "x-unknown", "", "utf-7",
                            "gb2312", "\"utf-8", "utf-8'en'"])
ENCODINGS = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus", ""])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120)


@st.composite
def mime_message(draw):
    boundary = draw(st.sampled_from(["b1", "=_x", "", "a" * 80, "b1\r\n"]))
    headers = [f"From: {draw(st.sampled_from(['Alex <alex@example.com>', '=?utf-8?q?=E2=82?= <x@y>', '', '<>']))}",
               f"To: {draw(st.sampled_from(['jordan@acme.io', 'undisclosed-recipients:;', '=?bogus?b?@@?=']))}",
               f"Subject: {draw(TEXT)}".replace("\n", " ").replace("\r", " "),
               f"Date: {draw(st.sampled_from(['Mon, 1 Jan 2024 10:00:00 +0000', 'yesterday', '', 'Mon, 99 Foo']))}",
               "MIME-Version: 1.0"]
    parts = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        ctype = draw(st.sampled_from(["text/plain", "text/html", "message/rfc822", "application/pdf",
                                      "multipart/alternative", "text/x-weird"]))
        parts.append(f"--{boundary}\r\nContent-Type: {ctype}; charset={draw(CHARSETS)}\r\n"
                     f"Content-Transfer-Encoding: {draw(ENCODINGS)}\r\n\r\n{draw(TEXT)}\r\n")
    if parts:
        headers.append(f'Content-Type: multipart/{draw(st.sampled_from(["mixed", "alternative", "related"]))}; '
                       f'boundary="{boundary}"')
        body = "".join(parts) + draw(st.sampled_from([f"--{boundary}--\r\n", "", f"--{boundary}"]))
    else:
        headers.append(f"Content-Type: text/plain; charset={draw(CHARSETS)}")
        headers.append(f"Content-Transfer-Encoding: {draw(ENCODINGS)}")
        body = draw(TEXT)
    data = ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8", "surrogatepass")
    return data[: draw(st.integers(min_value=max(1, len(data) // 2), max_value=len(data)))]


STAMP = st.one_of(st.sampled_from(["00:00:01.000", "00:00:01,000", "99:99:99.999", "00:01.5", "", "1:2:3"]),
                  st.from_regex(r"\A\d{1,3}:\d{2}:\d{2}[.,]\d{1,4}\Z"))


@st.composite
def transcript(draw):
    srt = draw(st.booleans())
    cues = []
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        speaker = draw(st.sampled_from(["<v Alex Rivera>", "<v>", "Alex:", "JORDAN:", "", "<v Jordan Lee"]))
        line = f"{draw(STAMP)} --> {draw(STAMP)}{draw(st.sampled_from(['', ' align:start', ' -->']))}"
        cues.append((f"{draw(st.sampled_from([str(i + 1), '', 'x']))}\n" if srt else "") +
                    f"{line}\n{speaker}{draw(TEXT)}\n")
    head = "" if srt else draw(st.sampled_from(["WEBVTT\n\n", "WEBVTT - title\nKind: captions\n\n", "WEBVTT"]))
    return (head + "\n".join(cues)).encode("utf-8", "surrogatepass"), ("talk.srt" if srt else "talk.vtt")


TAGS = st.sampled_from(["p", "div", "main", "article", "nav", "header", "footer", "script", "style", "br",
                        "blockquote", "table", "td", "pre", "!--", "![CDATA[", "svg", "template", "noscript"])


@st.composite
def html_page(draw):
    pieces = ["<!doctype html><html><head><meta charset=" + draw(CHARSETS) + "><title>t</title></head><body>"]
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        tag = draw(TAGS)
        pieces.append(draw(st.sampled_from([f"<{tag}>", f"</{tag}>", f"<{tag} class='gmail_quote'>", f"<{tag}/>",
                                            "&#x110000;", "&bogus;", "&#99999999999;", "<"])))
        pieces.append(draw(TEXT))
    return "".join(pieces).encode("utf-8", "surrogatepass")


@FUZZ
@given(mime_message())
def test_mime_extraction_answers_or_raises_a_project_error(data):
    from shared.voice.extract import extract

    result = _calls(extract, data, filename="mail.eml", rep_name="Alex Rivera", rep_email="alex@example.com")
    assert result is None or isinstance(result.text, str)


@FUZZ
@given(transcript())
def test_vtt_and_srt_extraction_answers_or_raises_a_project_error(case):
    from shared.voice.extract import extract

    data, name = case
    result = _calls(extract, data, filename=name, rep_name="Alex Rivera")
    assert result is None or isinstance(result.text, str)


@FUZZ
@given(html_page())
def test_html_extraction_answers_or_raises_a_project_error(data):
    from shared.voice.extract import extract

    result = _calls(extract, data, filename="page.html", declared_type="text/html")
    assert result is None or isinstance(result.text, str)


# --- share links ---------------------------------------------------------------------------------------

HOSTS = st.sampled_from(["drive.google.com", "docs.google.com", "www.youtube.com", "youtu.be", "m.youtube.com",
                         "app.hubspot.com", "app-eu1.hubspot.com", "www.dropbox.com", "1drv.ms",
                         "contoso.sharepoint.com", "app.box.com", "example.com", "[::1]", "127.0.0.1", "[fe80::1%25x]",
                         "xn--", "a..b", "", "exa mple.com", "[::ffff:10.0.0.1]", "0x7f.1"])
SEGMENTS = st.lists(st.one_of(st.sampled_from(["file", "d", "view", "document", "watch", "shorts", "contacts",
                                               "record", "0-1", "s", ":w:", ":x:", "%", "%zz", "..", "embed"]),
                              st.text(max_size=8)), max_size=5)


@st.composite
def share_link(draw):
    scheme = draw(st.sampled_from(["https://", "http://", "", "//", "javascript:", "file://", "HTTPS://", "ftp://"]))
    port = draw(st.sampled_from(["", ":443", ":0", ":99999", ":-1", ":abc", ":"]))
    path = "/".join(draw(SEGMENTS))
    query = draw(st.sampled_from(["", "?v=dQw4w9WgXcQ", "?id=abc", "?v=", "?v=%00", "?dl=0", "?&&=", "?id"]))
    return f"{scheme}{draw(HOSTS)}{port}/{path}{query}{draw(st.sampled_from(['', '#t=1', '#']))}"


@FUZZ
@given(st.one_of(share_link(), st.text(max_size=60), json_value))
def test_share_link_classification_answers_or_raises_a_project_error(url):
    from shared.voice.links import classify

    link = _calls(classify, url)
    if link is not None:
        assert link.kind in ("youtube", "drive", "dropbox", "onedrive", "box", "hubspot", "web")
