"""The follow-up as an RFC 5322 message: headers, the deterministic Message-ID, footer, encodings."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy

import pytest

from shared.mail.message import (
    InvalidAddress,
    OutgoingEmail,
    build_message,
    from_raw,
    message_id_for,
    message_id_of,
    text_to_html,
    to_raw,
)

WF = "6f1c2a3e-7b7d-4d2e-9a51-0c8f3b1d2e4f"
WHEN = dt.datetime(2025, 3, 4, 9, 30, tzinfo=dt.timezone.utc)


def mail(**changes) -> OutgoingEmail:
    base = dict(workflow_id=WF, from_address="alex@example.com", from_name="Alex Rivera",
                to_address="lena@acme.test", to_name="Lena Park", subject="Your demo next week",
                text="Hi Lena,\n\nThanks for reaching out.\n\nAlex", date=WHEN)
    return OutgoingEmail(**{**base, **changes})


def parsed(message) -> email.message.EmailMessage:
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


def test_headers_of_a_first_email():
    msg = parsed(build_message(mail()))
    assert str(msg["From"]) == "Alex Rivera <alex@example.com>"
    assert str(msg["To"]) == "Lena Park <lena@acme.test>"
    assert str(msg["Subject"]) == "Your demo next week"
    assert msg["Date"].datetime == WHEN
    assert msg["Message-ID"] == f"<wf-{WF}@example.com>"
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content().replace("\r\n", "\n") == "Hi Lena,\n\nThanks for reaching out.\n\nAlex\n"


def test_the_message_id_is_the_same_for_every_build_of_a_workflow():
    first = build_message(mail(date=WHEN))
    again = build_message(mail(date=WHEN + dt.timedelta(hours=5), subject="Changed"))
    other = build_message(mail(workflow_id="0b0b0b0b-7b7d-4d2e-9a51-0c8f3b1d2e4f"))
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert message_id_for(WF, "Alex@Example.COM") == f"<wf-{WF}@example.com>"


def test_a_configured_domain_overrides_the_reps():
    assert build_message(mail(message_id_domain="mail.leadvoice.test"))["Message-ID"] == \
        f"<wf-{WF}@mail.leadvoice.test>"


@pytest.mark.parametrize("domain,address", [("bad domain", "alex@example.com"), ("", "alex@localhost"),
                                            ("", "not-an-address")])
def test_no_usable_domain_is_refused(domain, address):
    with pytest.raises(InvalidAddress):
        message_id_for(WF, address, domain)


def test_a_workflow_id_cannot_smuggle_text_into_the_message_id():
    with pytest.raises(InvalidAddress):
        message_id_for("x>\r\nBcc: a@b", "alex@example.com")


def test_the_footer_follows_the_body_in_text_and_html():
    msg = parsed(build_message(mail(footer="Acme Inc · 1 Main St\nReply STOP to opt out.",
                                    html=text_to_html("Hi Lena,\n\nThanks <3"))))
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.endswith("Alex\n\nAcme Inc · 1 Main St\nReply STOP to opt out.\n")
    markup = msg.get_body(("html",)).get_content()
    assert "<p>Hi Lena,</p><p>Thanks &lt;3</p>" in markup
    assert "<p>Acme Inc · 1 Main St<br>Reply STOP to opt out.</p>" in markup


def test_utf8_subjects_and_names_are_encoded_and_parse_back():
    msg = build_message(mail(subject="Démo — nächste Woche? 🚀", from_name="Ålex Müller, Sales",
                             to_name="Łena Żak", text="Grüße aus Köln"))
    wire = msg.as_bytes()
    wire.decode("ascii")  # every header and the body are 7-bit on the wire
    assert b"=?utf-8?" in wire
    back = from_raw(to_raw(msg))
    assert str(back["Subject"]) == "Démo — nächste Woche? 🚀"
    assert back["From"].addresses[0].display_name == "Ålex Müller, Sales"
    assert back["From"].addresses[0].addr_spec == "alex@example.com"
    assert back["To"].addresses[0].display_name == "Łena Żak"
    assert back.get_content().strip() == "Grüße aus Köln"


def test_line_breaks_in_a_subject_or_name_cannot_add_headers():
    msg = parsed(build_message(mail(subject="Hello\r\nBcc: victim@evil.test", to_name="Lena\nCc: x@evil.test")))
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert str(msg["Subject"]) == "Hello Bcc: victim@evil.test"


@pytest.mark.parametrize("address", ["lena", "lena@", "@acme.test", "a b@acme.test", "lena@acme.test, x@y.test",
                                     "Lena <lena@acme.test>"])
def test_malformed_recipients_are_refused(address):
    with pytest.raises(InvalidAddress):
        build_message(mail(to_address=address))


def test_raw_is_base64url_of_the_crlf_message():
    msg = build_message(mail())
    raw = to_raw(msg)
    assert "+" not in raw and "/" not in raw
    data = base64.urlsafe_b64decode(raw)
    assert data.startswith(b"From: Alex Rivera <alex@example.com>\r\n")
    assert message_id_of(raw) == f"<wf-{WF}@example.com>"
    assert message_id_of(raw.rstrip("=")) == f"<wf-{WF}@example.com>"  # padding is optional
