"""Google's OAuth 2.0 authorization-code flow on the Google stand-in (``tests.standins.google``).

* ``GET /o/oauth2/v2/auth`` -- checks ``client_id``, the registered ``redirect_uri``,
  ``response_type=code`` and a PKCE ``code_challenge`` with ``code_challenge_method=S256``; the person
  "signed in" (``signed_in``) consents (or declines with ``decline = True``) and the browser is sent back
  with ``code`` and ``state`` (or ``error=access_denied``), as Google does.
* ``POST /token`` with ``grant_type=authorization_code`` -- the code is single use, must be presented with
  the same ``redirect_uri`` and a ``code_verifier`` whose S256 hash is the challenge, else 400
  ``invalid_grant``. Answers ``access_token``, ``refresh_token``, ``expires_in``, ``scope`` and an
  ``id_token`` (a JWT whose claims carry ``email``; its signature is not meant to be checked: it comes
  straight from the token endpoint). Other grants go to the stand-in's own ``/token``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.parse

from tests.standins.google import CLIENT_ID, CLIENT_SECRET, GoogleStandIn
from tests.standins.loopback import Reply, Request

AUTH_PATH = "/o/oauth2/v2/auth"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class GoogleOAuthStandIn:
    """The authorization endpoint and the code grant, attached to a running ``GoogleStandIn``."""

    def __init__(self, google: GoogleStandIn):
        self.google = google
        self._token = google._token  # the refresh-token grant of the base stand-in
        self.redirect_uris: set[str] = set()
        self.signed_in = ""  # the Google account that consents
        self.decline = False
        self.granted_scopes: list[str] | None = None  # None: every scope asked for
        self.rotate_refresh_tokens = False
        self.codes: dict[str, dict] = {}
        self.authorizations: list[dict[str, str]] = []
        google.route("GET", AUTH_PATH, self._authorize)
        google.route("POST", r"/token", self._token_endpoint)

    @property
    def auth_uri(self) -> str:
        return self.google.base_url + AUTH_PATH

    def _authorize(self, request: Request) -> Reply:
        q = request.query
        self.authorizations.append(dict(q))
        if q.get("client_id") != CLIENT_ID:
            return Reply(401, "Error 401: invalid_client", "text/html")
        if q.get("redirect_uri") not in self.redirect_uris:
            return Reply(400, "Error 400: redirect_uri_mismatch", "text/html")
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return Reply(400, "Error 400: invalid_request", "text/html")
        back = {"state": q.get("state", "")}
        if self.decline:
            back["error"] = "access_denied"
        else:
            code = "4/standin-" + secrets.token_urlsafe(24)
            scopes = self.granted_scopes if self.granted_scopes is not None else q.get("scope", "").split()
            self.codes[code] = {"account": self.signed_in, "challenge": q["code_challenge"],
                                "redirect_uri": q["redirect_uri"], "scopes": scopes}
            back.update(code=code, scope=" ".join(scopes))
        return Reply(302, b"", headers={"Location": q["redirect_uri"] + "?" + urllib.parse.urlencode(back)})

    def _token_endpoint(self, request: Request) -> Reply:
        form = request.form()
        if form.get("grant_type") != "authorization_code":
            reply = self._token(request)
            if self.rotate_refresh_tokens and reply.status == 200:
                account = self.google.refresh_tokens.pop(form.get("refresh_token", ""))
                reply.body["refresh_token"] = self.google.grant(account)
            return reply
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return Reply(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
        grant = self.codes.pop(form.get("code", ""), None)  # single use, as Google's codes are
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return Reply(400, {"error": "invalid_grant", "error_description": "Malformed auth code."})
        verifier = form.get("code_verifier", "")
        if _b64(hashlib.sha256(verifier.encode("ascii")).digest()) != grant["challenge"]:
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid code verifier."})
        account = grant["account"]
        refresh = self.google.grant(account)
        access = "ya29.standin-" + secrets.token_urlsafe(24)
        self.google.access_tokens[access] = account
        claims = {"iss": "https://accounts.google.com", "aud": CLIENT_ID, "azp": CLIENT_ID, "sub": "1" * 21,
                  "email": account, "email_verified": True, "iat": 1, "exp": 2**31}
        id_token = ".".join([_b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()),
                             _b64(json.dumps(claims).encode()), _b64(b"standin-signature")])
        return Reply(200, {"access_token": access, "refresh_token": refresh, "expires_in": 3599,
                           "token_type": "Bearer", "scope": " ".join(grant["scopes"]), "id_token": id_token})
