"""Who is calling: HubSpot request signatures, Google OIDC tokens, people and the ops role.

Everything here is pure: settings arrive as arguments, certificates come from an injected source, and
the clock can be injected, so the functions run the same way in production, in the local stack and in
tests. Every failure is an ``Unauthenticated`` (401: we do not know who this is) or a ``Forbidden``
(403: we know, and they may not); messages say what was wrong without echoing the credential.

``cryptography`` is imported only where a token is verified or signed, so the webhook's cold start
(HubSpot signatures need nothing but ``hmac``) stays small (DESIGN §8 measures cold imports).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import DependencyDown, Forbidden, Unauthenticated

if TYPE_CHECKING:  # pragma: no cover
    import requests

# --- headers ------------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively, for Werkzeug headers and plain dicts alike."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


# --- HubSpot request signatures -----------------------------------------------------------------

HUBSPOT_SIGNATURE_V3 = "X-HubSpot-Signature-v3"
HUBSPOT_TIMESTAMP = "X-HubSpot-Request-Timestamp"
HUBSPOT_SIGNATURE = "X-HubSpot-Signature"
HUBSPOT_SIGNATURE_VERSION = "X-HubSpot-Signature-Version"
HUBSPOT_MAX_AGE_SECONDS = 300

# HubSpot's "Validating requests" guide (v3): before signing, HubSpot decodes exactly these
# URL-encoded characters in the request URI; every other escape (%20, %26, %3D ...) stays encoded.
# https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
_HUBSPOT_DECODED = {
    "3A": ":", "2F": "/", "3F": "?", "40": "@", "21": "!", "24": "$",
    "27": "'", "28": "(", "29": ")", "2A": "*", "2C": ",", "3B": ";",
}
# One pass, so a literal "%253A" (an encoded "%" followed by "3A") is never decoded twice.
_HUBSPOT_ESCAPE = re.compile("%(" + "|".join(_HUBSPOT_DECODED) + ")", re.IGNORECASE)
_BASE64_SHA256 = re.compile(r"[A-Za-z0-9+/]{43}=")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def hubspot_request_uri(public_base_url: str, path: str, query: bytes | str = b"") -> str:
    """The URI HubSpot signed: ``PUBLIC_BASE_URL`` + path + query, exactly as sent.

    Args:
        public_base_url: The external base URL HubSpot was configured with (``PUBLIC_BASE_URL``).
        path: The path as the caller addressed it, for example ``/webhook/hubspot``.
        query: The raw, still percent-encoded query string, without the ``?`` (Werkzeug's
            ``request.query_string``).

    Returns:
        The full URI, with ``?query`` only when a query string was sent.
    """
    raw_query = query.decode("utf-8", "replace") if isinstance(query, bytes) else query
    uri = public_base_url.rstrip("/") + "/" + path.lstrip("/")
    return f"{uri}?{raw_query}" if raw_query else uri


def _hubspot_v3_uri(uri: str) -> str:
    return _HUBSPOT_ESCAPE.sub(lambda m: _HUBSPOT_DECODED[m.group(1).upper()], uri)


def sign_hubspot_v3(secret: str, method: str, uri: str, body: bytes | str, timestamp_ms: int | str) -> str:
    """HubSpot's v3 signature of a request.

    Args:
        secret: The app's client secret.
        method: HTTP method, for example ``POST``.
        uri: The full request URI (``https://host/path?query``); escapes HubSpot decodes are decoded here.
        body: The raw request body.
        timestamp_ms: Milliseconds since the epoch, exactly as sent in ``X-HubSpot-Request-Timestamp``.

    Returns:
        The base64 HMAC-SHA256 of method + URI + body + timestamp, keyed with the secret.
    """
    source = (method.upper().encode("utf-8") + _hubspot_v3_uri(uri).encode("utf-8") + _as_bytes(body)
              + str(timestamp_ms).encode("utf-8"))
    digest = hmac.new(secret.encode("utf-8"), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def hubspot_v3_headers(secret: str, method: str, uri: str, body: bytes | str, *,
                       now: float | None = None) -> dict[str, str]:
    """The two headers HubSpot sends with a v3-signed request (for the demo and tests).

    Args:
        secret: The app's client secret.
        method: HTTP method.
        uri: The full request URI.
        body: The raw request body.
        now: Seconds since the epoch to stamp; the current time by default.

    Returns:
        ``X-HubSpot-Signature-v3`` and ``X-HubSpot-Request-Timestamp``.
    """
    timestamp_ms = int((time.time() if now is None else now) * 1000)
    return {
        HUBSPOT_SIGNATURE_V3: sign_hubspot_v3(secret, method, uri, body, timestamp_ms),
        HUBSPOT_TIMESTAMP: str(timestamp_ms),
    }


def _sha256_hex(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()


def sign_hubspot_legacy(secret: str, version: Literal["v1", "v2"], method: str, uri: str,
                        body: bytes | str) -> str:
    """HubSpot's older signatures: v1 = sha256(secret + body), v2 = sha256(secret + method + URI + body).

    Args:
        secret: The app's client secret.
        version: ``v1`` or ``v2``.
        method: HTTP method (v2 only).
        uri: The full request URI exactly as sent, with no decoding (v2 only).
        body: The raw request body.

    Returns:
        The lowercase hex SHA-256 digest.
    """
    if version == "v1":
        return _sha256_hex(secret.encode("utf-8"), _as_bytes(body))
    if version == "v2":
        return _sha256_hex(secret.encode("utf-8"), method.upper().encode("utf-8"), uri.encode("utf-8"),
                           _as_bytes(body))
    raise ValueError(f"unknown HubSpot signature version {version!r}")


def verify_hubspot(headers: Mapping[str, str], *, secret: str, method: str, uri: str, body: bytes | str,
                   now: float | None = None, max_age_seconds: int = HUBSPOT_MAX_AGE_SECONDS,
                   allow_legacy: bool = True) -> str:
    """Check that a request was signed by HubSpot with the app's client secret.

    A v3 signature is used whenever one is present, so a bad v3 signature is never rescued by a
    legacy one. Without v3, the v1/v2 signature named by ``X-HubSpot-Signature-Version`` is checked
    when ``allow_legacy``; those carry no timestamp, so a replay cannot be refused here (the webhook
    dedupes by event id).

    Args:
        headers: The request headers.
        secret: The app's client secret (``HUBSPOT_CLIENT_SECRET``).
        method: HTTP method of the request.
        uri: The full URI the request was sent to (see ``hubspot_request_uri``).
        body: The raw request body, unparsed.
        now: Seconds since the epoch; the current time by default.
        max_age_seconds: How far the timestamp may be from now, either way.
        allow_legacy: Whether v1/v2 signatures are accepted when no v3 signature is sent.

    Returns:
        The signature version that was verified: ``v3``, ``v2`` or ``v1``.

    Raises:
        Unauthenticated: the signature is missing, malformed, stale or does not match.
        ValueError: no secret is configured (a deployment error, not the caller's).
    """
    if not secret:
        raise ValueError("HubSpot client secret is empty")
    signature = _header(headers, HUBSPOT_SIGNATURE_V3)
    if signature is None and allow_legacy and _header(headers, HUBSPOT_SIGNATURE) is not None:
        return _verify_hubspot_legacy(headers, secret=secret, method=method, uri=uri, body=body)
    if not signature or not signature.strip():
        raise Unauthenticated(f"Missing HubSpot signature: the {HUBSPOT_SIGNATURE_V3} header is required.")
    signature = signature.strip()
    raw_timestamp = _header(headers, HUBSPOT_TIMESTAMP)
    if raw_timestamp is None or not raw_timestamp.strip():
        raise Unauthenticated(f"Missing HubSpot timestamp: the {HUBSPOT_TIMESTAMP} header is required.")
    raw_timestamp = raw_timestamp.strip()
    if not re.fullmatch(r"[0-9]{1,16}", raw_timestamp):
        raise Unauthenticated(f"Malformed {HUBSPOT_TIMESTAMP}: expected milliseconds since the epoch.")
    if not _BASE64_SHA256.fullmatch(signature):
        raise Unauthenticated(f"Malformed {HUBSPOT_SIGNATURE_V3}: expected a base64 HMAC-SHA256.")
    now_ms = (time.time() if now is None else now) * 1000
    skew_seconds = abs(now_ms - int(raw_timestamp)) / 1000
    # HubSpot: "Reject the request if the timestamp is older than 5 minutes." A timestamp as far in
    # the future is refused as well: it would let a captured request be replayed for longer.
    if skew_seconds > max_age_seconds:
        raise Unauthenticated(f"Stale HubSpot request: its timestamp is {int(skew_seconds)} s from now, "
                              f"more than the {max_age_seconds} s allowed.")
    expected = sign_hubspot_v3(secret, method, uri, body, raw_timestamp)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise Unauthenticated("Bad HubSpot signature: it does not match this request.")
    return "v3"


def _verify_hubspot_legacy(headers: Mapping[str, str], *, secret: str, method: str, uri: str,
                           body: bytes | str) -> str:
    version = (_header(headers, HUBSPOT_SIGNATURE_VERSION) or "").strip().lower()
    if version not in ("v1", "v2"):
        raise Unauthenticated(f"Unsupported {HUBSPOT_SIGNATURE_VERSION}: expected v1 or v2 "
                              f"(or send {HUBSPOT_SIGNATURE_V3}).")
    signature = (_header(headers, HUBSPOT_SIGNATURE) or "").strip()
    if not _HEX_SHA256.fullmatch(signature):
        raise Unauthenticated(f"Malformed {HUBSPOT_SIGNATURE}: expected a hex SHA-256.")
    expected = sign_hubspot_legacy(secret, version, method, uri, body)  # type: ignore[arg-type]
    if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii")):
        raise Unauthenticated("Bad HubSpot signature: it does not match this request.")
    return version


# --- OIDC tokens --------------------------------------------------------------------------------

GOOGLE_ISSUERS: tuple[str, ...] = ("https://accounts.google.com", "accounts.google.com")
# Google's OAuth2 signing certificates as kid -> PEM X.509 certificate (what google-auth's
# id_token module verifies against).
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
# Cloud Run verifies the ID token of an IAM-protected service itself and forwards it with this in
# place of the signature: https://cloud.google.com/run/docs/troubleshooting#signature-removed
PLATFORM_REMOVED_SIGNATURE = "SIGNATURE_REMOVED_BY_GOOGLE"

CertSource = Callable[[], Mapping[str, str]]
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_MAX_TOKEN_CHARS = 16 * 1024


class GoogleCerts:
    """Google's signing certificates, fetched when needed and cached as long as Google allows.

    One instance per function instance: the response's ``Cache-Control: max-age`` decides when to
    fetch again. If a refetch fails while certificates are cached, the cached ones are served
    (a signing key outlives the cache lifetime by far), so a blip at Google does not turn every
    request into an error.
    """

    def __init__(self, session: requests.Session | None = None, *, url: str = GOOGLE_CERTS_URL,
                 clock: Callable[[], float] = time.monotonic, timeout: float = 10.0,
                 default_max_age: float = 300.0):
        self._session = session
        self._url = url
        self._clock = clock
        self._timeout = timeout
        self._default_max_age = default_max_age
        self._lock = threading.Lock()
        self._certs: dict[str, str] | None = None
        self._expires = 0.0

    def __call__(self) -> Mapping[str, str]:
        """The current certificates, kid → PEM.

        Raises:
            DependencyDown: they could not be fetched and none are cached.
        """
        with self._lock:
            if self._certs is not None and self._clock() < self._expires:
                return self._certs
            try:
                certs, max_age = self._fetch()
            except DependencyDown:
                if self._certs is not None:
                    return self._certs
                raise
            self._certs = certs
            self._expires = self._clock() + max_age
            return certs

    def _fetch(self) -> tuple[dict[str, str], float]:
        import requests

        if self._session is None:
            self._session = requests.Session()
        try:
            response = self._session.get(self._url, timeout=self._timeout)
        except requests.RequestException as exc:
            raise DependencyDown(f"Could not fetch Google's signing certificates: {type(exc).__name__}.") from exc
        if response.status_code != 200:
            raise DependencyDown(f"Google's signing certificates answered HTTP {response.status_code}.")
        try:
            certs = response.json()
        except ValueError as exc:
            raise DependencyDown("Google's signing certificates were not JSON.") from exc
        if not isinstance(certs, dict) or not certs or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in certs.items()):
            raise DependencyDown("Google's signing certificates were not a mapping of key id to PEM.")
        return certs, _max_age(response.headers.get("Cache-Control", ""), self._default_max_age)


def google_certs(session: requests.Session | None = None) -> GoogleCerts:
    """The production certificate source: Google's OAuth2 certificates, cached per instance.

    Args:
        session: A ``requests.Session`` to fetch with; one is made on first use otherwise.
    """
    return GoogleCerts(session)


def _max_age(cache_control: str, default: float) -> float:
    directives = [part.strip().lower() for part in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return default


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _normalise_emails(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values if v and v.strip())


def _email_verified(claims: Mapping[str, Any]) -> bool:
    # Google sends a JSON boolean; some older tokens carried the string "true".
    value = claims.get("email_verified")
    return value is True or (isinstance(value, str) and value.lower() == "true")


class TokenVerifier:
    """Verifies RS256 JWTs (Google-issued OIDC ID tokens) against an injected certificate source.

    Production injects ``GoogleCerts()``; the local stack and tests inject ``LocalSigner.certs``.
    Only RS256 is accepted, a ``kid`` is required and must name a known key, so ``alg: none`` and
    HS256-with-the-public-key confusion are refused before any signature is computed.
    """

    def __init__(self, certs: CertSource, *, clock: Callable[[], float] = time.time,
                 clock_skew_seconds: int = 60, issuers: Iterable[str] = GOOGLE_ISSUERS,
                 accept_platform_verified: bool = False):
        """Build a verifier.

        Args:
            certs: Returns the current keys as kid → PEM X.509 certificate or PEM public key.
            clock: Seconds since the epoch.
            clock_skew_seconds: Leeway for ``exp``, ``iat`` and ``nbf`` between our clock and the issuer's.
            issuers: Accepted ``iss`` values.
            accept_platform_verified: Accept tokens whose signature Cloud Run replaced with
                ``SIGNATURE_REMOVED_BY_GOOGLE`` after verifying it itself. Only safe for a function
                that is not publicly invokable (IAM invoker binding); every claim is still checked.
        """
        self._certs = certs
        self._clock = clock
        self._skew = clock_skew_seconds
        self._issuers = tuple(issuers)
        self._accept_platform_verified = accept_platform_verified
        self._keys: dict[str, Any] = {}  # PEM -> loaded public key; PEM text identifies the key
        self._keys_lock = threading.Lock()

    # -- the two kinds of caller --

    def verify_service(self, token: str, audience: str | Iterable[str],
                       allowed_emails: Iterable[str]) -> dict[str, Any]:
        """Verify the OIDC token of Cloud Tasks, a Pub/Sub push subscription or Cloud Scheduler.

        Args:
            token: The bearer token.
            audience: The audience (or audiences) the token must carry, usually the function URL.
            allowed_emails: Service-account emails allowed to call.

        Returns:
            The token's claims.

        Raises:
            Unauthenticated: malformed, badly signed, expired, wrong issuer or wrong audience.
            Forbidden: a valid token of an account that is not allowed, or whose email is unverified.
        """
        claims = self.decode(token, audience=audience)
        email = str(claims.get("email") or "").strip().lower()
        if not email:
            raise Forbidden("The token carries no email; the caller must send an OIDC token that includes it.")
        if not _email_verified(claims):
            raise Forbidden("The token's email is not verified.")
        if email not in _normalise_emails(allowed_emails):
            raise Forbidden("This service account may not call this function.")
        return claims

    def verify_person(self, token: str, client_id: str, allowed_domains: Iterable[str], *,
                      allowed_emails: Iterable[str] = ()) -> dict[str, Any]:
        """Verify a person's Google ID token and that they may use the system.

        A Google Workspace account carries its organisation in ``hd``, and then ``hd`` decides;
        a consumer account (no ``hd``) is judged by its verified email's domain. ``allowed_emails``
        (the ops emails) are let in whatever their domain.

        Args:
            token: The bearer token.
            client_id: Our OAuth client id, the token's audience.
            allowed_domains: Email/Workspace domains whose people may sign in.
            allowed_emails: Individual emails allowed regardless of domain.

        Returns:
            The token's claims.

        Raises:
            Unauthenticated: malformed, badly signed, expired, wrong issuer or wrong audience.
            Forbidden: a valid token of someone outside the allowed domains, or with an unverified email.
        """
        claims = self.decode(token, audience=client_id)
        email = str(claims.get("email") or "").strip().lower()
        if not email or "@" not in email:
            raise Forbidden("The token carries no email address; sign in with the email scope.")
        if not _email_verified(claims):
            raise Forbidden("The account's email address is not verified.")
        if not _person_allowed(email, claims.get("hd"), allowed_domains, allowed_emails):
            raise Forbidden("This account's domain is not allowed to use this system.")
        return claims

    # -- the JWT itself --

    def decode(self, token: str, *, audience: str | Iterable[str]) -> dict[str, Any]:
        """Verify signature, expiry, issuer and audience; return the claims.

        Args:
            token: A compact-serialised JWT.
            audience: The accepted audience or audiences.

        Returns:
            The verified claims.

        Raises:
            Unauthenticated: anything about the token is wrong.
            DependencyDown: the certificate source could not be reached.
        """
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated("Malformed token.")
        parts = token.split(".")
        if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
            raise Unauthenticated("Malformed token: expected a signed JWT.")
        header = self._json_segment(parts[0], "header")
        claims = self._json_segment(parts[1], "payload")
        alg = header.get("alg")
        if alg != "RS256":
            raise Unauthenticated(f"Unsupported token algorithm {str(alg)[:16]!r}: only RS256 is accepted.")
        if parts[2] == PLATFORM_REMOVED_SIGNATURE and self._accept_platform_verified:
            pass  # Cloud Run checked the signature before stripping it; the claims are checked below.
        else:
            self._check_signature(header, f"{parts[0]}.{parts[1]}".encode("ascii"), parts[2])
        self._check_times(claims)
        if claims.get("iss") not in self._issuers:
            raise Unauthenticated("Token issuer is not accepted.")
        expected = {audience} if isinstance(audience, str) else set(audience)
        claimed = claims.get("aud")
        claimed_set = {claimed} if isinstance(claimed, str) else (
            {a for a in claimed if isinstance(a, str)} if isinstance(claimed, list) else set())
        if not expected or not (claimed_set & expected):
            raise Unauthenticated("Token audience does not match this function.")
        return claims

    @staticmethod
    def _json_segment(segment: str, what: str) -> dict[str, Any]:
        try:
            value = json.loads(_b64url_decode(segment))
        except (binascii.Error, ValueError) as exc:
            raise Unauthenticated(f"Malformed token {what}.") from exc
        if not isinstance(value, dict):
            raise Unauthenticated(f"Malformed token {what}.")
        return value

    def _check_signature(self, header: Mapping[str, Any], signed: bytes, signature_segment: str) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("Token has no key id.")
        pem = self._certs().get(kid)
        if pem is None:
            raise Unauthenticated("Token was signed by an unknown key.")
        key = self._public_key(pem)
        try:
            key.verify(_b64url_decode(signature_segment), signed, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise Unauthenticated("Bad token signature.") from exc

    def _public_key(self, pem: str) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        with self._keys_lock:
            cached = self._keys.get(pem)
        if cached is not None:
            return cached
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        if b"BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
        if not isinstance(key, rsa.RSAPublicKey):
            raise Unauthenticated("Token key is not an RSA key.")
        with self._keys_lock:
            self._keys[pem] = key
        return key

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not _is_number(exp) or not _is_number(iat):
            raise Unauthenticated("Token lacks a numeric exp or iat.")
        if now > exp + self._skew:
            raise Unauthenticated("Token expired.")
        if iat > now + self._skew:
            raise Unauthenticated("Token issued in the future; check the clocks.")
        if nbf is not None and (not _is_number(nbf) or nbf > now + self._skew):
            raise Unauthenticated("Token not valid yet.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _person_allowed(email: str, hd: Any, allowed_domains: Iterable[str], allowed_emails: Iterable[str]) -> bool:
    if email in _normalise_emails(allowed_emails):
        return True
    domains = _normalise_emails(allowed_domains)
    if isinstance(hd, str) and hd:
        return hd.strip().lower() in domains
    return email.rsplit("@", 1)[1] in domains


# --- principals ---------------------------------------------------------------------------------

DEV_USER_HEADER = "X-Dev-User"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling, once authenticated."""

    email: str
    is_ops: bool = False
    kind: Literal["person", "service"] = "person"


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Raises:
        Unauthenticated: the header is missing or is not a bearer token.
    """
    value = (_header(headers, "Authorization") or "").strip()
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Missing credentials: send Authorization: Bearer <Google ID token>.")
    return token.strip()


def authenticate_person(headers: Mapping[str, str], *, env_is_local: bool, verifier: TokenVerifier,
                        client_id: str, allowed_domains: Iterable[str], ops_emails: Iterable[str]) -> Principal:
    """Identify the person behind a request to ``ingest`` or ``admin``.

    ``X-Dev-User: <email>`` names the user only when ``env_is_local`` (DESIGN §4), and is still held
    to the allowed domains and ops emails; anywhere else it is ignored and a Google ID token is required.

    Args:
        headers: The request headers.
        env_is_local: ``Settings.is_local``.
        verifier: Verifies the ID token.
        client_id: Our OAuth client id (the token's audience).
        allowed_domains: Domains whose people may sign in.
        ops_emails: Emails with the ops role.

    Returns:
        The person, with ``is_ops`` set for ops emails.

    Raises:
        Unauthenticated: no usable credentials.
        Forbidden: a known person who may not use the system.
    """
    ops = _normalise_emails(ops_emails)
    domains = tuple(allowed_domains)
    if env_is_local:
        dev_user = (_header(headers, DEV_USER_HEADER) or "").strip().lower()
        if dev_user:
            if not _EMAIL.fullmatch(dev_user):
                raise Unauthenticated(f"{DEV_USER_HEADER} must be an email address.")
            if not _person_allowed(dev_user, None, domains, ops):
                raise Forbidden("This account's domain is not allowed to use this system.")
            return Principal(email=dev_user, is_ops=dev_user in ops, kind="person")
    claims = verifier.verify_person(bearer_token(headers), client_id, domains, allowed_emails=ops)
    email = str(claims["email"]).strip().lower()
    return Principal(email=email, is_ops=email in ops, kind="person")


def authenticate_service(headers: Mapping[str, str], *, verifier: TokenVerifier, audience: str | Iterable[str],
                         allowed_emails: Iterable[str]) -> Principal:
    """Identify the service account behind a Cloud Tasks, Pub/Sub push or Scheduler request.

    Raises:
        Unauthenticated: no usable token.
        Forbidden: a valid token of an account that may not call.
    """
    claims = verifier.verify_service(bearer_token(headers), audience, allowed_emails)
    return Principal(email=str(claims["email"]).strip().lower(), is_ops=False, kind="service")


def require_ops(principal: Principal) -> Principal:
    """Return the principal if it has the ops role.

    Raises:
        Forbidden: it does not.
    """
    if not principal.is_ops:
        raise Forbidden("This needs the ops role.")
    return principal


# --- a local issuer ----------------------------------------------------------------------------


class LocalSigner:
    """An OIDC issuer for the local stack and tests: one RSA key kept in the data directory.

    The in-process task dispatcher and event bus attach tokens signed here, and the functions verify
    them with ``TokenVerifier(signer.certs)`` exactly as they verify Google's in production. The key
    is created once (file mode 0600) and reused, so tokens survive a restart of the stack.
    """

    KEY_FILE = "oidc-signing-key.pem"

    def __init__(self, data_dir: Path | str, *, issuer: str = GOOGLE_ISSUERS[0],
                 clock: Callable[[], float] = time.time):
        self._path = Path(data_dir) / self.KEY_FILE
        self._issuer = issuer
        self._clock = clock
        self._key = self._load_or_create()
        self.kid = self._compute_kid()

    @property
    def key_path(self) -> Path:
        return self._path

    def _load_or_create(self) -> Any:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        if not self._path.exists():
            self._path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            # Write a private temp file, then hard-link it into place: the link fails if another
            # process won the race, and then both use the winner's key.
            tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.{threading.get_ident()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(pem)
                try:
                    os.link(tmp, self._path)
                except FileExistsError:
                    pass
                except OSError:  # a filesystem without hard links: last writer wins, still 0600
                    if not self._path.exists():
                        os.replace(tmp, self._path)
            finally:
                tmp.unlink(missing_ok=True)
        key = serialization.load_pem_private_key(self._path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{self._path} does not hold an RSA private key")
        return key

    def _compute_kid(self) -> str:
        from cryptography.hazmat.primitives import serialization

        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return "local-" + hashlib.sha256(der).hexdigest()[:16]

    def certs(self) -> dict[str, str]:
        """The verification keys, kid → PEM public key (a ``CertSource``)."""
        from cryptography.hazmat.primitives import serialization

        pem = self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return {self.kid: pem.decode("ascii")}

    def sign(self, claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None) -> str:
        """Sign claims as an RS256 JWT with this key.

        Args:
            claims: The payload, used as given.
            headers: Extra or overriding JOSE header fields.

        Returns:
            The compact-serialised JWT.
        """
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT", **(headers or {})}
        signed = (_b64url_encode(json.dumps(header, separators=(",", ":")).encode("utf-8")) + "."
                  + _b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode("utf-8")))
        signature = self._key.sign(signed.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64url_encode(signature)}"

    def _base_claims(self, audience: str, email: str, lifetime: int) -> dict[str, Any]:
        now = int(self._clock())
        # A stable numeric subject per email, like Google's; a service account's azp is the same id.
        subject = str(int(hashlib.sha256(email.encode("utf-8")).hexdigest()[:15], 16))
        return {
            "iss": self._issuer,
            "aud": audience,
            "azp": subject,
            "sub": subject,
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + lifetime,
        }

    def service_token(self, audience: str, email: str, *, lifetime: int = 3600) -> str:
        """An OIDC token like the ones Cloud Tasks, Pub/Sub push and Scheduler attach.

        Args:
            audience: The receiving function's audience.
            email: The service account the caller acts as.
            lifetime: Seconds until it expires.
        """
        return self.sign(self._base_claims(audience, email, lifetime))

    def person_token(self, email: str, client_id: str, hd: str | None = None, *, lifetime: int = 3600) -> str:
        """A Google-style ID token of a person signing in to our OAuth client.

        Args:
            email: The person's verified email.
            client_id: Our OAuth client id (audience and authorised party).
            hd: The Workspace domain, when the account belongs to one.
            lifetime: Seconds until it expires.
        """
        claims = self._base_claims(client_id, email, lifetime)
        claims["azp"] = client_id
        if hd:
            claims["hd"] = hd
        return self.sign(claims)
