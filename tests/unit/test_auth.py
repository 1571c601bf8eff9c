"""Caller authentication: HubSpot signatures, OIDC tokens, people, ops and the local signer.

Tokens are signed with real RSA keys (``LocalSigner`` or keys made here) and verified against injected
certificates; nothing reaches Google.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import stat
import threading
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from shared.auth import (
    GoogleCerts,
    LocalSigner,
    Principal,
    TokenVerifier,
    authenticate_person,
    authenticate_service,
    hubspot_request_uri,
    hubspot_v3_headers,
    require_ops,
    sign_hubspot_legacy,
    sign_hubspot_v3,
    verify_hubspot,
)
from shared.errors import DependencyDown, Forbidden, Unauthenticated

SECRET = "local-hubspot-secret"
NOW = 1_750_000_000.0  # a fixed "now", seconds since the epoch
BODY = b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000}]'
BASE = "https://hooks.example.com"

TASKS_SA = "tasks-invoker@proj.iam.gserviceaccount.com"
PUBSUB_SA = "pubsub-push@proj.iam.gserviceaccount.com"
AUDIENCE = "https://draft-abc123-uc.a.run.app"
CLIENT_ID = "1234-abc.apps.googleusercontent.com"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict) -> str:
    return _b64url(json.dumps(obj).encode())


# --- HubSpot v3 ----------------------------------------------------------------------------------


def _independent_v3(secret: str, source: str) -> str:
    """HubSpot's recipe, computed here without the code under test."""
    return base64.b64encode(hmac.new(secret.encode(), source.encode(), hashlib.sha256).digest()).decode()


def _v3_headers(signature: str, timestamp_ms: int | str) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": str(timestamp_ms)}


def test_v3_signature_over_decoded_uri_with_query_is_accepted():
    ts = int(NOW * 1000)
    # As received: ':', '/', '@', '!', '(', ')', ',' encoded; a space (%20), '&' (%26) and '=' (%3D) too.
    received = (f"{BASE}/webhook/hubspot?portal=62515&next=https%3A%2F%2Fapp.example.com%2Fa%40b%21"
                f"&tags=%28x%29%2Cy&q=a%20b%26c%3Dd")
    # HubSpot decodes only the characters of its table before signing; %20, %26 and %3D stay encoded.
    signed = (f"{BASE}/webhook/hubspot?portal=62515&next=https://app.example.com/a@b!"
              f"&tags=(x),y&q=a%20b%26c%3Dd")
    headers = _v3_headers(_independent_v3(SECRET, "POST" + signed + BODY.decode() + str(ts)), ts)
    assert verify_hubspot(headers, secret=SECRET, method="POST", uri=received, body=BODY, now=NOW) == "v3"


def test_v3_escapes_outside_hubspots_table_are_not_decoded():
    ts = int(NOW * 1000)
    received = f"{BASE}/webhook/hubspot?q=a%20b%26c"
    wrongly_decoded = f"{BASE}/webhook/hubspot?q=a b&c"
    headers = _v3_headers(_independent_v3(SECRET, "POST" + wrongly_decoded + BODY.decode() + str(ts)), ts)
    with pytest.raises(Unauthenticated, match="Bad HubSpot signature"):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=received, body=BODY, now=NOW)


def test_v3_decoding_is_a_single_pass():
    ts = int(NOW * 1000)
    received = f"{BASE}/webhook/hubspot?literal=%253A"  # an encoded '%' followed by "3A"
    as_signed = _independent_v3(SECRET, "POST" + received + BODY.decode() + str(ts))
    double_decoded = _independent_v3(SECRET, "POST" + f"{BASE}/webhook/hubspot?literal=%:" + BODY.decode() + str(ts))
    assert verify_hubspot(_v3_headers(as_signed, ts), secret=SECRET, method="POST", uri=received,
                          body=BODY, now=NOW) == "v3"
    with pytest.raises(Unauthenticated):
        verify_hubspot(_v3_headers(double_decoded, ts), secret=SECRET, method="POST", uri=received,
                       body=BODY, now=NOW)


def test_sign_hubspot_v3_matches_the_recipe_and_round_trips():
    uri = f"{BASE}/webhook/hubspot?a=1%2C2"
    ts = int(NOW * 1000)
    expected = _independent_v3(SECRET, "POST" + f"{BASE}/webhook/hubspot?a=1,2" + BODY.decode() + str(ts))
    assert sign_hubspot_v3(SECRET, "POST", uri, BODY, ts) == expected
    headers = hubspot_v3_headers(SECRET, "POST", uri, BODY, now=NOW)
    assert headers["X-HubSpot-Request-Timestamp"] == str(ts)
    assert verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW) == "v3"


def test_v3_tampered_body_is_refused():
    uri = f"{BASE}/webhook/hubspot"
    headers = hubspot_v3_headers(SECRET, "POST", uri, BODY, now=NOW)
    with pytest.raises(Unauthenticated, match="Bad HubSpot signature"):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY.replace(b"62515", b"62516"),
                       now=NOW)


def test_v3_other_uri_or_method_is_refused():
    uri = f"{BASE}/webhook/hubspot"
    headers = hubspot_v3_headers(SECRET, "POST", uri, BODY, now=NOW)
    with pytest.raises(Unauthenticated):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=uri + "?x=1", body=BODY, now=NOW)
    with pytest.raises(Unauthenticated):
        verify_hubspot(headers, secret=SECRET, method="PUT", uri=uri, body=BODY, now=NOW)


def test_v3_wrong_secret_is_refused():
    uri = f"{BASE}/webhook/hubspot"
    headers = hubspot_v3_headers("another-apps-secret", "POST", uri, BODY, now=NOW)
    with pytest.raises(Unauthenticated, match="Bad HubSpot signature"):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW)


@pytest.mark.parametrize("offset_seconds", [-301, 301, -3600, 86400])
def test_v3_timestamp_beyond_five_minutes_either_way_is_stale(offset_seconds):
    uri = f"{BASE}/webhook/hubspot"
    headers = hubspot_v3_headers(SECRET, "POST", uri, BODY, now=NOW + offset_seconds)
    with pytest.raises(Unauthenticated, match="Stale"):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW)


@pytest.mark.parametrize("offset_seconds", [-300, -299, 0, 299, 300])
def test_v3_timestamp_within_five_minutes_is_accepted(offset_seconds):
    uri = f"{BASE}/webhook/hubspot"
    headers = hubspot_v3_headers(SECRET, "POST", uri, BODY, now=NOW + offset_seconds)
    assert verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW) == "v3"


def test_v3_timestamp_is_checked_against_the_real_clock_by_default():
    uri = f"{BASE}/webhook/hubspot"
    fresh = hubspot_v3_headers(SECRET, "POST", uri, BODY)
    assert verify_hubspot(fresh, secret=SECRET, method="POST", uri=uri, body=BODY) == "v3"
    old = hubspot_v3_headers(SECRET, "POST", uri, BODY, now=time.time() - 600)
    with pytest.raises(Unauthenticated, match="Stale"):
        verify_hubspot(old, secret=SECRET, method="POST", uri=uri, body=BODY)


def test_v3_missing_headers_are_refused():
    uri = f"{BASE}/webhook/hubspot"
    headers = hubspot_v3_headers(SECRET, "POST", uri, BODY, now=NOW)
    with pytest.raises(Unauthenticated, match="X-HubSpot-Signature-v3"):
        verify_hubspot({}, secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW)
    with pytest.raises(Unauthenticated, match="X-HubSpot-Request-Timestamp"):
        verify_hubspot({"X-HubSpot-Signature-v3": headers["X-HubSpot-Signature-v3"]},
                       secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW)
    with pytest.raises(Unauthenticated, match="X-HubSpot-Signature-v3"):
        verify_hubspot({"X-HubSpot-Request-Timestamp": headers["X-HubSpot-Request-Timestamp"],
                        "X-HubSpot-Signature-v3": "  "}, secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW)


@pytest.mark.parametrize("timestamp", ["abc", "1.75e12", "-1750000000000", "", "1750000000000x", "9" * 30])
def test_v3_malformed_timestamp_is_refused(timestamp):
    uri = f"{BASE}/webhook/hubspot"
    signature = sign_hubspot_v3(SECRET, "POST", uri, BODY, timestamp)
    with pytest.raises(Unauthenticated, match="timestamp|Timestamp"):
        verify_hubspot(_v3_headers(signature, timestamp), secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW)


@pytest.mark.parametrize("signature", ["not base64!", "c2hvcnQ=", "x" * 44])
def test_v3_malformed_signature_is_refused(signature):
    with pytest.raises(Unauthenticated, match="Malformed X-HubSpot-Signature-v3"):
        verify_hubspot(_v3_headers(signature, int(NOW * 1000)), secret=SECRET, method="POST",
                       uri=f"{BASE}/webhook/hubspot", body=BODY, now=NOW)


def test_v3_headers_are_matched_case_insensitively_in_plain_dicts():
    uri = f"{BASE}/webhook/hubspot"
    headers = {k.lower(): v for k, v in hubspot_v3_headers(SECRET, "POST", uri, BODY, now=NOW).items()}
    assert verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW) == "v3"


def test_an_empty_secret_is_a_deployment_error_not_a_401():
    with pytest.raises(ValueError):
        verify_hubspot({}, secret="", method="POST", uri=BASE, body=BODY, now=NOW)


def test_hubspot_request_uri_joins_base_path_and_raw_query():
    assert hubspot_request_uri("http://127.0.0.1:8080/", "/webhook/hubspot", b"a=1%2C2&b=%20") == (
        "http://127.0.0.1:8080/webhook/hubspot?a=1%2C2&b=%20")
    assert hubspot_request_uri("https://hooks.example.com", "/webhook/hubspot") == (
        "https://hooks.example.com/webhook/hubspot")


# --- HubSpot v1 / v2 -------------------------------------------------------------------------------

# The worked examples of HubSpot's v1 and v2 validation pages.
DOC_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
DOC_V1_BODY = ('[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
               '"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
               '"changeFlag":"NEW","appId":54321}]')


def test_legacy_signatures_match_hubspots_worked_examples():
    assert sign_hubspot_legacy(DOC_SECRET, "v1", "POST", "", DOC_V1_BODY) == (
        "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de")
    assert sign_hubspot_legacy(DOC_SECRET, "v2", "GET", "https://www.example.com/webhook_uri", b"") == (
        "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e")


def test_v1_signature_is_accepted_and_checked():
    headers = {"X-HubSpot-Signature-Version": "v1",
               "X-HubSpot-Signature": hashlib.sha256(SECRET.encode() + BODY).hexdigest()}
    uri = f"{BASE}/webhook/hubspot"
    assert verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY) == "v1"
    with pytest.raises(Unauthenticated, match="Bad HubSpot signature"):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY + b" ")


def test_v2_signature_covers_method_and_uri():
    uri = f"{BASE}/webhook/hubspot?x=%3A"  # v2 signs the URI exactly as sent: no decoding
    headers = {"X-HubSpot-Signature-Version": "v2",
               "X-HubSpot-Signature": hashlib.sha256(f"{SECRET}POST{uri}".encode() + BODY).hexdigest()}
    assert verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY) == "v2"
    with pytest.raises(Unauthenticated):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=f"{BASE}/webhook/hubspot?x=:", body=BODY)


def test_legacy_signatures_can_be_turned_off():
    headers = {"X-HubSpot-Signature-Version": "v1",
               "X-HubSpot-Signature": hashlib.sha256(SECRET.encode() + BODY).hexdigest()}
    with pytest.raises(Unauthenticated, match="X-HubSpot-Signature-v3"):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=BASE, body=BODY, allow_legacy=False)


def test_a_bad_v3_signature_is_not_rescued_by_a_good_legacy_one():
    uri = f"{BASE}/webhook/hubspot"
    headers = hubspot_v3_headers("wrong-secret", "POST", uri, BODY, now=NOW)
    headers |= {"X-HubSpot-Signature-Version": "v1",
                "X-HubSpot-Signature": hashlib.sha256(SECRET.encode() + BODY).hexdigest()}
    with pytest.raises(Unauthenticated, match="Bad HubSpot signature"):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=uri, body=BODY, now=NOW)


@pytest.mark.parametrize("version, signature, message", [
    ("v9", "0" * 64, "Unsupported X-HubSpot-Signature-Version"),
    ("", "0" * 64, "Unsupported X-HubSpot-Signature-Version"),
    ("v1", "zz", "Malformed X-HubSpot-Signature"),
])
def test_legacy_malformed_headers_are_refused(version, signature, message):
    headers = {"X-HubSpot-Signature-Version": version, "X-HubSpot-Signature": signature}
    with pytest.raises(Unauthenticated, match=message):
        verify_hubspot(headers, secret=SECRET, method="POST", uri=BASE, body=BODY)


# --- OIDC: fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return LocalSigner(tmp_path_factory.mktemp("oidc"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """Another issuer's key: its tokens must never verify against ``signer``'s certificates."""
    return LocalSigner(tmp_path_factory.mktemp("other-oidc"))


@pytest.fixture
def verifier(signer):
    return TokenVerifier(signer.certs)


def _claims(iss="https://accounts.google.com", **overrides):
    now = int(time.time())
    claims = {"iss": iss, "aud": AUDIENCE, "sub": "1234567890", "email": TASKS_SA,
              "email_verified": True, "iat": now, "exp": now + 3600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


# --- OIDC: service tokens ------------------------------------------------------------------------


def test_valid_service_token_is_accepted(signer, verifier):
    token = signer.service_token(AUDIENCE, TASKS_SA)
    claims = verifier.verify_service(token, AUDIENCE, [TASKS_SA, PUBSUB_SA])
    assert claims["email"] == TASKS_SA
    assert claims["aud"] == AUDIENCE


def test_service_token_accepts_any_of_several_audiences_and_the_bare_issuer(signer, verifier):
    token = signer.sign(_claims("accounts.google.com"))
    assert verifier.verify_service(token, ["https://other", AUDIENCE], [TASKS_SA])["iss"] == "accounts.google.com"


def test_service_email_is_compared_case_insensitively(signer, verifier):
    token = signer.service_token(AUDIENCE, TASKS_SA)
    assert verifier.verify_service(token, AUDIENCE, [TASKS_SA.upper()])


def test_expired_service_token_is_refused(signer):
    token = signer.sign(_claims(iat=int(NOW) - 3600, exp=int(NOW) - 61))
    with pytest.raises(Unauthenticated, match="expired"):
        TokenVerifier(signer.certs, clock=lambda: NOW).verify_service(token, AUDIENCE, [TASKS_SA])


def test_small_clock_skew_is_tolerated_both_ways(signer):
    verifier = TokenVerifier(signer.certs, clock=lambda: NOW, clock_skew_seconds=60)
    just_expired = signer.sign(_claims(iat=int(NOW) - 3600, exp=int(NOW) - 30))
    slightly_early = signer.sign(_claims(iat=int(NOW) + 30, exp=int(NOW) + 3600))
    assert verifier.verify_service(just_expired, AUDIENCE, [TASKS_SA])
    assert verifier.verify_service(slightly_early, AUDIENCE, [TASKS_SA])


def test_token_issued_in_the_future_is_refused(signer):
    token = signer.sign(_claims(iat=int(NOW) + 600, exp=int(NOW) + 4200))
    with pytest.raises(Unauthenticated, match="future"):
        TokenVerifier(signer.certs, clock=lambda: NOW).verify_service(token, AUDIENCE, [TASKS_SA])


def test_token_not_yet_valid_is_refused(signer):
    token = signer.sign(_claims(iat=int(NOW), exp=int(NOW) + 3600, nbf=int(NOW) + 600))
    with pytest.raises(Unauthenticated, match="not valid yet"):
        TokenVerifier(signer.certs, clock=lambda: NOW).verify_service(token, AUDIENCE, [TASKS_SA])


@pytest.mark.parametrize("missing", ["exp", "iat"])
def test_token_without_times_is_refused(signer, verifier, missing):
    token = signer.sign(_claims(**{missing: None}))
    with pytest.raises(Unauthenticated, match="exp or iat"):
        verifier.verify_service(token, AUDIENCE, [TASKS_SA])


def test_wrong_audience_is_refused(signer, verifier):
    token = signer.service_token("https://send-abc123-uc.a.run.app", TASKS_SA)
    with pytest.raises(Unauthenticated, match="audience"):
        verifier.verify_service(token, AUDIENCE, [TASKS_SA])


def test_wrong_service_account_is_forbidden(signer, verifier):
    token = signer.service_token(AUDIENCE, "attacker@evil-project.iam.gserviceaccount.com")
    with pytest.raises(Forbidden):
        verifier.verify_service(token, AUDIENCE, [TASKS_SA, PUBSUB_SA])


def test_unverified_or_missing_email_is_forbidden(signer, verifier):
    with pytest.raises(Forbidden, match="not verified"):
        verifier.verify_service(signer.sign(_claims(email_verified=False)), AUDIENCE, [TASKS_SA])
    with pytest.raises(Forbidden, match="not verified"):
        verifier.verify_service(signer.sign(_claims(email_verified=None)), AUDIENCE, [TASKS_SA])
    with pytest.raises(Forbidden, match="no email"):
        verifier.verify_service(signer.sign(_claims(email=None)), AUDIENCE, [TASKS_SA])


def test_wrong_issuer_is_refused(signer, verifier):
    token = signer.sign(_claims("https://evil.example.com"))
    with pytest.raises(Unauthenticated, match="issuer"):
        verifier.verify_service(token, AUDIENCE, [TASKS_SA])


def test_unknown_or_missing_kid_is_refused(signer, verifier):
    with pytest.raises(Unauthenticated, match="unknown key"):
        verifier.verify_service(signer.sign(_claims(), headers={"kid": "rotated-away"}), AUDIENCE, [TASKS_SA])
    with pytest.raises(Unauthenticated, match="key id"):
        verifier.verify_service(signer.sign(_claims(), headers={"kid": None}), AUDIENCE, [TASKS_SA])


def test_token_signed_by_another_key_is_refused(signer, stranger, verifier):
    # The stranger claims our key id; only the signature can tell.
    token = stranger.sign(_claims(), headers={"kid": signer.kid})
    with pytest.raises(Unauthenticated, match="Bad token signature"):
        verifier.verify_service(token, AUDIENCE, [TASKS_SA])
    with pytest.raises(Unauthenticated, match="unknown key"):
        verifier.verify_service(stranger.service_token(AUDIENCE, TASKS_SA), AUDIENCE, [TASKS_SA])


def test_tampered_claims_are_refused(signer, verifier):
    header, _, signature = signer.service_token(AUDIENCE, PUBSUB_SA).split(".")
    forged = f"{header}.{_segment(_claims(email=TASKS_SA))}.{signature}"
    with pytest.raises(Unauthenticated, match="Bad token signature"):
        verifier.verify_service(forged, AUDIENCE, [TASKS_SA])


def test_alg_none_is_refused(signer, verifier):
    header = _segment({"alg": "none", "kid": signer.kid, "typ": "JWT"})
    payload = _segment(_claims())
    for token in (f"{header}.{payload}.", f"{header}.{payload}.c2ln"):
        with pytest.raises(Unauthenticated):
            verifier.verify_service(token, AUDIENCE, [TASKS_SA])


def test_hs256_signed_with_the_public_key_is_refused(signer, verifier):
    # The classic confusion: HMAC keyed with the published public key, which anyone can compute.
    public_pem = signer.certs()[signer.kid].encode()
    signed = f"{_segment({'alg': 'HS256', 'kid': signer.kid, 'typ': 'JWT'})}.{_segment(_claims())}"
    signature = _b64url(hmac.new(public_pem, signed.encode(), hashlib.sha256).digest())
    with pytest.raises(Unauthenticated, match="algorithm"):
        verifier.verify_service(f"{signed}.{signature}", AUDIENCE, [TASKS_SA])


@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c.d", "!!!.###.$$$",
    f"{_segment({'alg': 'RS256'})}.bm90IGpzb24.c2ln",  # payload is not JSON
    f"{_segment({'alg': 'RS256'})}.{_b64url(b'[1, 2]')}.c2ln",  # payload is not an object
    "x" * 20000,
])
def test_malformed_tokens_are_refused(verifier, token):
    with pytest.raises(Unauthenticated):
        verifier.verify_service(token, AUDIENCE, [TASKS_SA])


def test_error_messages_never_echo_the_token(signer, verifier):
    token = signer.service_token("https://elsewhere", TASKS_SA)
    with pytest.raises(Unauthenticated) as excinfo:
        verifier.verify_service(token, AUDIENCE, [TASKS_SA])
    assert token.split(".")[1] not in str(excinfo.value)


def test_signature_removed_by_cloud_run_is_refused_unless_trusted(signer):
    header, payload, _ = signer.service_token(AUDIENCE, TASKS_SA).split(".")
    stripped = f"{header}.{payload}.SIGNATURE_REMOVED_BY_GOOGLE"
    with pytest.raises(Unauthenticated, match="Bad token signature"):
        TokenVerifier(signer.certs).verify_service(stripped, AUDIENCE, [TASKS_SA])
    trusting = TokenVerifier(signer.certs, accept_platform_verified=True)
    assert trusting.verify_service(stripped, AUDIENCE, [TASKS_SA])["email"] == TASKS_SA
    with pytest.raises(Unauthenticated, match="audience"):  # the claims are still checked
        trusting.verify_service(stripped, "https://elsewhere", [TASKS_SA])


def test_x509_certificates_are_accepted_as_google_publishes_them():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    certs = {"google-kid-1": cert.public_bytes(serialization.Encoding.PEM).decode()}
    signed = f"{_segment({'alg': 'RS256', 'kid': 'google-kid-1', 'typ': 'JWT'})}.{_segment(_claims())}"
    token = f"{signed}.{_b64url(key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256()))}"
    assert TokenVerifier(lambda: certs).verify_service(token, AUDIENCE, [TASKS_SA])["email"] == TASKS_SA


def test_certificate_source_is_consulted_per_token_so_rotation_is_seen(signer, stranger):
    current = dict(signer.certs())
    verifier = TokenVerifier(lambda: current)
    with pytest.raises(Unauthenticated, match="unknown key"):
        verifier.verify_service(stranger.service_token(AUDIENCE, TASKS_SA), AUDIENCE, [TASKS_SA])
    current.update(stranger.certs())
    assert verifier.verify_service(stranger.service_token(AUDIENCE, TASKS_SA), AUDIENCE, [TASKS_SA])


# --- OIDC: people ----------------------------------------------------------------------------------


def test_person_of_allowed_email_domain_is_accepted(signer, verifier):
    token = signer.person_token("alex@example.com", CLIENT_ID)
    assert verifier.verify_person(token, CLIENT_ID, ["example.com"])["email"] == "alex@example.com"


def test_person_of_allowed_workspace_domain_is_accepted(signer, verifier):
    token = signer.person_token("alex@example.com", CLIENT_ID, hd="example.com")
    assert verifier.verify_person(token, CLIENT_ID, ["EXAMPLE.com"])["hd"] == "example.com"


def test_person_of_other_domain_is_forbidden(signer, verifier):
    with pytest.raises(Forbidden, match="domain"):
        verifier.verify_person(signer.person_token("eve@gmail.com", CLIENT_ID), CLIENT_ID, ["example.com"])
    with pytest.raises(Forbidden, match="domain"):
        verifier.verify_person(signer.person_token("eve@example.com.evil.io", CLIENT_ID), CLIENT_ID,
                               ["example.com"])


def test_workspace_domain_decides_when_present(signer, verifier):
    # An account of another Workspace organisation is not let in by the shape of its address.
    token = signer.person_token("eve@example.com", CLIENT_ID, hd="other-org.com")
    with pytest.raises(Forbidden):
        verifier.verify_person(token, CLIENT_ID, ["example.com"])


def test_person_token_for_another_client_is_refused(signer, verifier):
    token = signer.person_token("alex@example.com", "someone-elses-client.apps.googleusercontent.com")
    with pytest.raises(Unauthenticated, match="audience"):
        verifier.verify_person(token, CLIENT_ID, ["example.com"])


def test_person_with_unverified_email_is_forbidden(signer, verifier):
    token = signer.sign(_claims(aud=CLIENT_ID, email="alex@example.com", email_verified=False))
    with pytest.raises(Forbidden, match="not verified"):
        verifier.verify_person(token, CLIENT_ID, ["example.com"])


def test_service_token_is_not_a_person_token(signer, verifier):
    with pytest.raises(Unauthenticated):
        verifier.verify_person(signer.service_token(AUDIENCE, TASKS_SA), CLIENT_ID, ["example.com"])


# --- principals ---------------------------------------------------------------------------------


def _person(headers, *, local, verifier, domains=("example.com",), ops=("ops@example.com",)):
    return authenticate_person(headers, env_is_local=local, verifier=verifier, client_id=CLIENT_ID,
                               allowed_domains=domains, ops_emails=ops)


def test_bearer_person_becomes_a_principal_with_the_ops_flag(signer, verifier):
    rep = _person({"Authorization": f"Bearer {signer.person_token('alex@example.com', CLIENT_ID)}"},
                  local=False, verifier=verifier)
    ops = _person({"authorization": f"bearer {signer.person_token('ops@example.com', CLIENT_ID)}"},
                  local=False, verifier=verifier)
    assert rep == Principal(email="alex@example.com", is_ops=False, kind="person")
    assert ops == Principal(email="ops@example.com", is_ops=True, kind="person")


def test_ops_email_outside_the_allowed_domains_is_let_in(signer, verifier):
    token = signer.person_token("boss@consultancy.io", CLIENT_ID)
    principal = _person({"Authorization": f"Bearer {token}"}, local=False, verifier=verifier,
                        ops=("boss@consultancy.io",))
    assert principal.is_ops and principal.email == "boss@consultancy.io"


def test_person_of_another_domain_is_forbidden_at_the_door(signer, verifier):
    token = signer.person_token("eve@gmail.com", CLIENT_ID)
    with pytest.raises(Forbidden):
        _person({"Authorization": f"Bearer {token}"}, local=False, verifier=verifier)


def test_dev_user_is_honoured_when_local(verifier):
    assert _person({"X-Dev-User": "Sam@Example.com"}, local=True, verifier=verifier) == Principal(
        "sam@example.com", False, "person")
    assert _person({"x-dev-user": "ops@example.com"}, local=True, verifier=verifier).is_ops


def test_dev_user_is_still_held_to_the_allowed_domains(verifier):
    with pytest.raises(Forbidden):
        _person({"X-Dev-User": "eve@gmail.com"}, local=True, verifier=verifier)
    with pytest.raises(Unauthenticated, match="email address"):
        _person({"X-Dev-User": "not-an-email"}, local=True, verifier=verifier)


def test_dev_user_is_ignored_outside_local(signer, verifier):
    with pytest.raises(Unauthenticated, match="Bearer"):
        _person({"X-Dev-User": "ops@example.com"}, local=False, verifier=verifier)
    # With a real token as well, the token decides and the header has no effect.
    token = signer.person_token("alex@example.com", CLIENT_ID)
    principal = _person({"X-Dev-User": "ops@example.com", "Authorization": f"Bearer {token}"},
                        local=False, verifier=verifier)
    assert principal == Principal("alex@example.com", False, "person")


def test_local_without_dev_user_still_accepts_a_token(signer, verifier):
    token = signer.person_token("alex@example.com", CLIENT_ID)
    assert _person({"Authorization": f"Bearer {token}"}, local=True, verifier=verifier).email == "alex@example.com"


@pytest.mark.parametrize("value", [None, "", "Bearer", "Bearer   ", "Basic YWxleDpwdw=="])
def test_missing_or_non_bearer_credentials_are_unauthenticated(verifier, value):
    headers = {} if value is None else {"Authorization": value}
    with pytest.raises(Unauthenticated, match="Bearer"):
        _person(headers, local=False, verifier=verifier)


def test_authenticate_service_returns_a_service_principal(signer, verifier):
    headers = {"Authorization": f"Bearer {signer.service_token(AUDIENCE, PUBSUB_SA)}"}
    principal = authenticate_service(headers, verifier=verifier, audience=AUDIENCE, allowed_emails=[PUBSUB_SA])
    assert principal == Principal(PUBSUB_SA, False, "service")
    with pytest.raises(Forbidden):
        authenticate_service(headers, verifier=verifier, audience=AUDIENCE, allowed_emails=[TASKS_SA])


def test_require_ops():
    ops = Principal("ops@example.com", is_ops=True)
    assert require_ops(ops) is ops
    with pytest.raises(Forbidden) as excinfo:
        require_ops(Principal("alex@example.com"))
    assert excinfo.value.status == 403


def test_errors_carry_their_http_status():
    assert Unauthenticated("x").status == 401 and Forbidden("x").status == 403


# --- LocalSigner ---------------------------------------------------------------------------------


def test_local_signer_keeps_its_key_private_and_reuses_it(tmp_path):
    first = LocalSigner(tmp_path)
    mode = stat.S_IMODE(first.key_path.stat().st_mode)
    assert mode == 0o600
    content = first.key_path.read_bytes()
    second = LocalSigner(tmp_path)
    assert second.kid == first.kid
    assert second.key_path.read_bytes() == content
    # A token from before the "restart" verifies against the certificates after it.
    token = first.service_token(AUDIENCE, TASKS_SA)
    assert TokenVerifier(second.certs).verify_service(token, AUDIENCE, [TASKS_SA])


def test_local_signer_creates_the_data_dir(tmp_path):
    signer = LocalSigner(tmp_path / "deep" / "data")
    assert signer.key_path.parent == tmp_path / "deep" / "data"
    assert signer.key_path.exists()


def test_local_signers_in_different_dirs_have_different_keys(signer, stranger):
    assert signer.kid != stranger.kid
    assert signer.certs() != stranger.certs()


def test_concurrent_first_starts_agree_on_one_key(tmp_path):
    kids: list[str] = []
    barrier = threading.Barrier(4)

    def start():
        barrier.wait()
        kids.append(LocalSigner(tmp_path).kid)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kids) == 4 and len(set(kids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [LocalSigner.KEY_FILE]


def test_local_signer_tokens_have_google_shaped_claims(signer):
    header, payload, _ = signer.person_token("alex@example.com", CLIENT_ID, hd="example.com").split(".")
    decoded_header = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert decoded_header == {"alg": "RS256", "kid": signer.kid, "typ": "JWT"}
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == claims["azp"] == CLIENT_ID
    assert claims["hd"] == "example.com" and claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 3600


def test_a_private_key_file_that_is_not_rsa_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / LocalSigner.KEY_FILE).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ValueError, match="RSA"):
        LocalSigner(tmp_path)


# --- Google's certificates, served from a loopback stand-in ------------------------------------------


class _CertServer:
    """A loopback HTTP server answering like Google's certs endpoint."""

    def __init__(self, certs: dict[str, str], cache_control: str):
        self.certs = certs
        self.cache_control = cache_control
        self.status = 200
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                outer.hits += 1
                body = json.dumps(outer.certs).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", outer.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/oauth2/v1/certs"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cert_server(signer):
    server = _CertServer(signer.certs(), "public, max-age=120, must-revalidate, no-transform")
    yield server
    server.close()


def test_google_certs_are_cached_for_max_age(signer, cert_server):
    clock = [1000.0]
    with requests.Session() as session:
        source = GoogleCerts(session, url=cert_server.url, clock=lambda: clock[0])
        verifier = TokenVerifier(source)
        for _ in range(3):
            assert verifier.verify_service(signer.service_token(AUDIENCE, TASKS_SA), AUDIENCE, [TASKS_SA])
        assert cert_server.hits == 1
        clock[0] += 119
        source()
        assert cert_server.hits == 1
        clock[0] += 2
        source()
        assert cert_server.hits == 2


def test_google_certs_without_caching_headers_use_the_default(cert_server):
    cert_server.cache_control = "no-cache"
    clock = [0.0]
    with requests.Session() as session:
        source = GoogleCerts(session, url=cert_server.url, clock=lambda: clock[0])
        source()
        source()
        assert cert_server.hits == 2


def test_google_certs_outage_serves_cached_certs_then_fails_cleanly(signer, cert_server):
    clock = [0.0]
    with requests.Session() as session:
        source = GoogleCerts(session, url=cert_server.url, clock=lambda: clock[0])
        assert source() == signer.certs()
        cert_server.status = 500
        clock[0] += 1000
        assert source() == signer.certs()  # stale but usable beats refusing every caller
        cold = GoogleCerts(session, url=cert_server.url, clock=lambda: clock[0])
        with pytest.raises(DependencyDown) as excinfo:
            cold()
        assert excinfo.value.status == 503


def test_google_certs_unreachable_is_dependency_down():
    server = _CertServer({}, "max-age=60")
    url = server.url
    server.close()
    with requests.Session() as session, pytest.raises(DependencyDown):
        GoogleCerts(session, url=url, timeout=2)()


def test_google_certs_malformed_answer_is_dependency_down(cert_server):
    cert_server.certs = {"kid": 42}
    with requests.Session() as session, pytest.raises(DependencyDown, match="mapping"):
        GoogleCerts(session, url=cert_server.url)()


def test_google_certs_factory_builds_a_lazy_source():
    from shared.auth import GOOGLE_CERTS_URL, google_certs

    source = google_certs()
    assert isinstance(source, GoogleCerts)
    assert source._url == GOOGLE_CERTS_URL and source._certs is None  # nothing fetched at build time
