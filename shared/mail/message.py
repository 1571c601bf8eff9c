"""The follow-up as an RFC 5322 message, built with the standard ``email`` package.

The Message-ID is derived from the workflow (``<wf-{workflow id}@{domain}>``), never random: it is the
key that lets a retried ``send`` find a message an earlier attempt already delivered
(``Mailer.find_by_message_id``). The domain is the rep's own, so the id is one the sender's domain
could have minted (RFC 5322 §3.6.4), unless a fixed domain is configured.

Gmail takes the whole message base64url-encoded in ``raw``
(https://developers.google.com/gmail/api/reference/rest/v1/users.messages/send).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email.policy
import email.utils
import html
import re
from email.headerregistry import Address
from email.message import EmailMessage

# Header values come from leads and drafts: any run of whitespace (CR and LF included) becomes one space,
# so no value can start a header of its own.
_SPACE = re.compile(r"\s+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_WORKFLOW_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class InvalidAddress(ValueError):
    """An address that cannot be put in a header."""


@dataclasses.dataclass(frozen=True)
class OutgoingEmail:
    """What goes into the message.

    Attributes:
        workflow_id: The workflow (names the Message-ID).
        from_address: The rep's address.
        from_name: The rep's display name ('' for none).
        to_address: The lead's address.
        to_name: The lead's display name ('' for none).
        subject: The subject.
        text: The plain-text body.
        html: An HTML alternative of the body, or None for plain text only.
        footer: Text appended to the body (and, escaped, to the HTML) after a blank line; '' for none.
        message_id_domain: The Message-ID's domain; '' takes the rep's.
        date: The Date header (default: now).
    """

    workflow_id: str
    from_address: str
    to_address: str
    subject: str
    text: str
    from_name: str = ""
    to_name: str = ""
    html: str | None = None
    footer: str = ""
    message_id_domain: str = ""
    date: dt.datetime | None = None


def message_id_for(workflow_id: str, sender_address: str, domain: str = "") -> str:
    """The deterministic Message-ID of a workflow's email: ``<wf-{workflow_id}@{domain}>``.

    Args:
        workflow_id: The workflow.
        sender_address: The rep's address; its domain is used when ``domain`` is empty.
        domain: A configured domain that overrides the rep's.

    Raises:
        InvalidAddress: no usable domain, or a workflow id that is not a UUID-like token.
    """
    if not _WORKFLOW_ID.match(str(workflow_id)):
        raise InvalidAddress("a workflow id must be letters, digits and hyphens")
    chosen = (domain or sender_address.rpartition("@")[2]).strip().lower()
    if not _DOMAIN.match(chosen):
        raise InvalidAddress("no usable domain for the Message-ID")
    return f"<wf-{workflow_id}@{chosen}>"


def build_message(mail: OutgoingEmail) -> EmailMessage:
    """The message: From, To, Subject, Date, Message-ID, MIME-Version, and a UTF-8 body.

    A first email has no ``In-Reply-To`` or ``References``. Non-ASCII names and subjects are
    RFC 2047-encoded by the ``email`` package's policy; the body is UTF-8 in quoted-printable, which
    passes any relay that is not 8-bit clean.

    Raises:
        InvalidAddress: an address that is not ``local@domain``.
    """
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = _address(mail.from_name, mail.from_address)
    msg["To"] = _address(mail.to_name, mail.to_address)
    msg["Subject"] = _one_line(mail.subject)
    msg["Date"] = email.utils.format_datetime((mail.date or dt.datetime.now(dt.timezone.utc)).astimezone(
        dt.timezone.utc))
    msg["Message-ID"] = message_id_for(mail.workflow_id, mail.from_address, mail.message_id_domain)
    text = mail.text.rstrip() + "\n"
    if mail.footer.strip():
        text += "\n" + mail.footer.strip() + "\n"
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    if mail.html is not None:
        body = mail.html
        if mail.footer.strip():
            body += "<p>" + html.escape(mail.footer.strip()).replace("\n", "<br>") + "</p>"
        msg.add_alternative(body, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def text_to_html(text: str) -> str:
    """A minimal HTML rendering of a plain-text body: escaped paragraphs, line breaks kept."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)


def to_raw(msg: EmailMessage) -> str:
    """The message as Gmail's ``raw``: the RFC 5322 bytes (CRLF line ends), base64url-encoded."""
    return base64.urlsafe_b64encode(msg.as_bytes(policy=email.policy.SMTP)).decode("ascii")


def from_raw(raw: str) -> EmailMessage:
    """Parse a ``raw`` string back into a message (padding may be missing, as Gmail allows)."""
    data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def message_id_of(raw: str) -> str:
    """The Message-ID header of a ``raw`` message ('' when it has none)."""
    return str(from_raw(raw).get("Message-ID") or "").strip()


def _one_line(value: str) -> str:
    return _SPACE.sub(" ", value or "").strip()


def _address(name: str, address: str) -> Address:
    address = (address or "").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or _SPACE.search(address) or any(c in address for c in "<>,;\"()"):
        raise InvalidAddress("not an email address")
    try:
        return Address(display_name=_one_line(name), username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise InvalidAddress("not an email address") from exc
