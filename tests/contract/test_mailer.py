"""Contract tests of the Mailer port: Gmail REST through google-auth's AuthorizedSession against the
loopback Gmail stand-in (refresh token from a LocalSecretStore, the stand-in's token endpoint), and the
embedded outbox of .eml files."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging

import pytest

from shared.adapters.gmail import GmailMailer
from shared.adapters.local_secrets import LocalSecretStore
from shared.adapters.outbox import OutboxMailer
from shared.errors import DependencyDown, PermanentError, RateLimited, RetryableError
from shared.mail.message import OutgoingEmail, build_message, to_raw
from shared.mail.ports import DraftRef, GoogleAccessRevoked, GoogleNotConnected, Mailer, Sender, SentRef
from shared.voice.sources import google_refresh_secret
from tests.standins.gmail import GmailStandIn
from tests.standins.google import CLIENT_ID, CLIENT_SECRET

REP = Sender(id="7b1f5d0e-1111-4222-8333-444455556666", email="alex@example.com", display_name="Alex Rivera")
WF1 = "6f1c2a3e-7b7d-4d2e-9a51-0c8f3b1d2e4f"
WF2 = "0b0b0b0b-7b7d-4d2e-9a51-0c8f3b1d2e4f"


def raw_for(workflow_id: str = WF1, subject: str = "Your demo next week") -> str:
    return to_raw(build_message(OutgoingEmail(
        workflow_id=workflow_id, from_address=REP.email, from_name=REP.display_name, to_address="lena@acme.test",
        to_name="Lena Park", subject=subject, text="Hi Lena,\n\nThanks.\n\nAlex",
        date=dt.datetime(2025, 3, 4, 9, 30, tzinfo=dt.timezone.utc))))


def mid(workflow_id: str = WF1) -> str:
    return f"<wf-{workflow_id}@example.com>"


@pytest.fixture
def secrets(tmp_path) -> LocalSecretStore:
    return LocalSecretStore(tmp_path / "secrets")


@pytest.fixture
def gmail(google_standin) -> GmailStandIn:
    return GmailStandIn.on(google_standin)


@pytest.fixture
def refresh_token(google_standin, secrets) -> str:
    token = google_standin.grant("alex")
    secrets.add_version(google_refresh_secret(REP.id), token.encode())
    return token


def gmail_mailer(google_standin, secrets, timeout: float = 5) -> GmailMailer:
    return GmailMailer(secrets, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                       token_uri=google_standin.base_url + "/token", api_base_url=google_standin.base_url,
                       timeout=timeout)


@pytest.fixture(params=["gmail", "outbox"])
def mailer(request, tmp_path):
    if request.param == "outbox":
        return OutboxMailer(tmp_path / "data")
    google_standin = request.getfixturevalue("google_standin")
    request.getfixturevalue("gmail")
    request.getfixturevalue("refresh_token")
    return gmail_mailer(google_standin, request.getfixturevalue("secrets"))


# --- both adapters -----------------------------------------------------------------------------------


def test_both_adapters_implement_the_port(mailer):
    assert isinstance(mailer, Mailer)
    mailer.health()


def test_a_sent_message_is_found_by_its_message_id(mailer):
    assert mailer.find_by_message_id(REP, mid()) is None
    sent = mailer.send(REP, raw_for())
    assert isinstance(sent, SentRef) and sent.message_id and sent.thread_id
    assert mailer.find_by_message_id(REP, mid()) == sent
    assert mailer.find_by_message_id(REP, mid(WF2)) is None


def test_a_draft_is_found_as_a_draft(mailer):
    draft = mailer.create_draft(REP, raw_for())
    assert isinstance(draft, DraftRef) and draft.draft_id and draft.message_id
    found = mailer.find_by_message_id(REP, mid())
    assert isinstance(found, DraftRef) and found.draft_id == draft.draft_id
    assert mailer.find_by_message_id(REP, mid(WF2)) is None


def test_the_lookup_accepts_the_id_with_or_without_angle_brackets(mailer):
    sent = mailer.send(REP, raw_for())
    assert mailer.find_by_message_id(REP, mid().strip("<>")) == sent


# --- Gmail -------------------------------------------------------------------------------------------


def test_gmail_send_posts_raw_with_the_reps_bearer_token(google_standin, gmail, secrets, refresh_token):
    mailer = gmail_mailer(google_standin, secrets)
    sent = mailer.send(REP, raw_for())
    mailer.send(REP, raw_for(WF2))
    stored = gmail.messages("alex", "SENT")
    assert [m.id for m in stored][:1] == [sent.message_id] and len(stored) == 2
    message = email.message_from_bytes(stored[0].raw, policy=email.policy.default)
    assert message["Message-ID"] == mid() and str(message["To"]) == "Lena Park <lena@acme.test>"
    calls = google_standin.requests_to(r"^/gmail/v1/users/me/messages/send$")
    assert [c.method for c in calls] == ["POST", "POST"]
    assert all(c.headers["authorization"].startswith("Bearer ya29.standin-") for c in calls)
    # One refresh serves both calls: the access token is cached until shortly before it expires.
    assert len(google_standin.requests_to(r"^/token$")) == 1


def test_gmail_draft_posts_the_message_under_message(google_standin, gmail, secrets, refresh_token):
    gmail_mailer(google_standin, secrets).create_draft(REP, raw_for())
    call = google_standin.requests_to(r"^/gmail/v1/users/me/drafts$")[0]
    assert set(call.json()) == {"message"} and set(call.json()["message"]) == {"raw"}
    assert [m.label_ids for m in gmail.messages("alex")] == [["DRAFT"]]


def test_gmail_lookup_searches_spam_and_trash(google_standin, gmail, secrets, refresh_token):
    mailer = gmail_mailer(google_standin, secrets)
    sent = mailer.send(REP, raw_for())
    gmail.trash("alex", sent.message_id)
    assert mailer.find_by_message_id(REP, mid()) == sent
    search = google_standin.requests_to(r"^/gmail/v1/users/me/messages$")[-1]
    assert search.query["q"] == f"rfc822msgid:wf-{WF1}@example.com"
    assert search.query["includeSpamTrash"] == "true"


def test_gmail_lookup_refuses_ids_that_could_change_the_query(google_standin, gmail, secrets, refresh_token):
    with pytest.raises(ValueError):
        gmail_mailer(google_standin, secrets).find_by_message_id(REP, "<x@y> OR from:someone")


def test_a_message_stored_before_a_500_is_found_afterwards(google_standin, gmail, secrets, refresh_token):
    mailer = gmail_mailer(google_standin, secrets)
    gmail.fail_after_store(mode="500")
    with pytest.raises(DependencyDown):
        mailer.send(REP, raw_for())
    assert isinstance(mailer.find_by_message_id(REP, mid()), SentRef)
    assert len(gmail.messages("alex")) == 1


def test_a_send_whose_answer_times_out_is_retryable_and_found(google_standin, gmail, secrets, refresh_token):
    mailer = gmail_mailer(google_standin, secrets, timeout=0.5)
    gmail.fail_after_store(mode="timeout", hold_seconds=1.5)
    with pytest.raises(DependencyDown):
        mailer.send(REP, raw_for())
    assert isinstance(mailer.find_by_message_id(REP, mid()), SentRef)


@pytest.mark.parametrize("status,body,error", [
    (429, {"error": {"code": 429, "message": "Too many", "errors": [{"reason": "rateLimitExceeded"}]}}, RateLimited),
    (403, {"error": {"code": 403, "message": "User-rate limit", "errors": [{"reason": "userRateLimitExceeded"}]}},
     RateLimited),
    (403, {"error": {"code": 403, "message": "Rate limit", "errors": [{"reason": "rateLimitExceeded"}]}},
     RateLimited),
    (500, {"error": {"code": 500, "message": "Backend Error"}}, DependencyDown),
    (503, b"", DependencyDown),
])
def test_gmail_slow_down_and_outages_are_retryable(google_standin, gmail, secrets, refresh_token, status, body,
                                                   error):
    google_standin.fail_next(status, body, path="/gmail/")
    with pytest.raises(error) as caught:
        gmail_mailer(google_standin, secrets).send(REP, raw_for())
    assert isinstance(caught.value, RetryableError)
    assert gmail.messages("alex") == []


def test_a_400_is_permanent(google_standin, gmail, secrets, refresh_token):
    google_standin.fail_next(400, {"error": {"code": 400, "message": "Invalid To header",
                                             "errors": [{"reason": "invalidArgument"}]}}, path="/gmail/")
    with pytest.raises(PermanentError) as caught:
        gmail_mailer(google_standin, secrets).send(REP, raw_for())
    assert caught.value.code == "gmail_refused" and not isinstance(caught.value, RetryableError)


def test_a_revoked_grant_is_google_revoked(google_standin, gmail, secrets, refresh_token):
    mailer = gmail_mailer(google_standin, secrets)
    mailer.send(REP, raw_for())  # a cached access token ...
    google_standin.revoke(refresh_token)  # ... dies with the grant: the retry after 401 must refresh, and fails
    with pytest.raises(GoogleAccessRevoked) as caught:
        mailer.send(REP, raw_for(WF2))
    assert caught.value.code == "google_revoked" and isinstance(caught.value, PermanentError)
    with pytest.raises(GoogleAccessRevoked):
        gmail_mailer(google_standin, secrets).find_by_message_id(REP, mid())


def test_no_refresh_token_means_not_connected(google_standin, gmail, secrets):
    with pytest.raises(GoogleNotConnected) as caught:
        gmail_mailer(google_standin, secrets).send(REP, raw_for())
    assert caught.value.code == "google_not_connected"
    assert google_standin.requests == []


def test_no_token_or_address_reaches_the_logs(google_standin, gmail, secrets, refresh_token, caplog):
    caplog.set_level(logging.DEBUG)
    mailer = gmail_mailer(google_standin, secrets)
    mailer.send(REP, raw_for())
    google_standin.fail_next(400, {"error": {"code": 400, "message": "bad"}}, path="/gmail/")
    with pytest.raises(PermanentError):
        mailer.send(REP, raw_for(WF2))
    issued = list(google_standin.access_tokens)
    assert issued
    for secret in [refresh_token, *issued, "lena@acme.test", REP.email]:
        assert secret not in caplog.text


# --- the outbox --------------------------------------------------------------------------------------


def test_the_outbox_writes_eml_files_named_by_message_id(tmp_path):
    outbox = OutboxMailer(tmp_path)
    outbox.send(REP, raw_for())
    outbox.create_draft(REP, raw_for(WF2))
    sent, drafts = outbox.files("sent"), outbox.files("drafts")
    assert [p.name for p in sent] == [f"wf-{WF1}@example.com.eml"]
    assert [p.name for p in drafts] == [f"wf-{WF2}@example.com.eml"]
    assert sent[0].parent == tmp_path / "outbox" / "sent"
    message = email.message_from_bytes(sent[0].read_bytes(), policy=email.policy.default)
    assert message["Message-ID"] == mid() and str(message["Subject"]) == "Your demo next week"


def test_a_second_write_of_one_message_is_detected(tmp_path):
    outbox = OutboxMailer(tmp_path)
    first = outbox.send(REP, raw_for(subject="First"))
    again = outbox.send(REP, raw_for(subject="Second"))
    assert first == again and len(outbox.files("sent")) == 1
    assert b"First" in outbox.files("sent")[0].read_bytes()
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "outbox" / "sent").iterdir())


def test_the_outbox_refuses_what_is_not_a_message(tmp_path):
    with pytest.raises(PermanentError):
        OutboxMailer(tmp_path).send(REP, "%%%not base64")
