"""A loopback stand-in for Google's OAuth token endpoint and the Drive v3 REST API.

Routes (``GoogleStandIn.route`` adds more: Gmail under ``/gmail/v1/...``, Calendar under
``/calendar/v3/...``; ``self.authorized(request)`` checks a bearer token the same way):

* ``POST /token`` -- ``grant_type=refresh_token`` with ``client_id``, ``client_secret``,
  ``refresh_token`` (form-encoded, as google-auth sends it). Answers ``{"access_token", "expires_in",
  "token_type": "Bearer", "scope"}``; an unknown or revoked refresh token gets 400 ``{"error":
  "invalid_grant", "error_description": "Token has been expired or revoked."}``, a wrong client 401
  ``invalid_client``.
* ``GET /drive/v3/files/<id>`` -- metadata (``fields`` is honoured at the top level), or the bytes
  with ``alt=media`` (403 ``fileNotDownloadable`` for Google-native files, as Drive does).
* ``GET /drive/v3/files/<id>/export?mimeType=`` -- Google-native files only (403
  ``fileNotExportable`` otherwise), text as given.
* ``GET /drive/v3/files?q='<folder>' in parents and trashed = false`` -- a page of ``pageSize``
  (at most 1,000; 100 by default) with ``nextPageToken``.

Files belong to refresh tokens' owners: a file someone else owns and has not shared answers 404, as
Drive does. Errors use Google's JSON error shape with ``errors[0].reason``.
"""

from __future__ import annotations

import dataclasses
import re
import secrets

from tests.standins.loopback import LoopbackStandIn, Reply, Request

CLIENT_ID = "standin-client.apps.googleusercontent.com"
CLIENT_SECRET = "standin-client-secret"
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_PARENTS_QUERY = re.compile(r"^'([A-Za-z0-9_-]+)' in parents(?: and trashed = false)?$")


def google_error(status: int, reason: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN"),
                                    "errors": [{"domain": "global", "reason": reason, "message": message}]}})


@dataclasses.dataclass
class DriveItem:
    id: str
    name: str
    mime_type: str
    content: bytes = b""  # bytes of a blob, or the export text of a Google-native file
    parents: tuple[str, ...] = ()
    owner: str = "rep"  # the account (see ``grant``) that can read it
    shared_with: tuple[str, ...] = ()
    trashed: bool = False
    modified_time: str = "2025-01-15T10:00:00.000Z"
    exports: dict[str, bytes] = dataclasses.field(default_factory=dict)  # mimeType → bytes


class GoogleStandIn(LoopbackStandIn):
    name = "google"

    def __init__(self) -> None:
        super().__init__()
        self.refresh_tokens: dict[str, str] = {}  # refresh token → account
        self.access_tokens: dict[str, str] = {}  # access token → account
        self.files: dict[str, DriveItem] = {}
        self.revocations: list[str] = []  # accounts whose grant the revocation endpoint removed
        self.route("POST", r"/token", self._token)
        self.route("POST", r"/revoke", self._revoke)
        self.route("GET", r"/drive/v3/files/(?P<file_id>[^/]+)", self._file)
        self.route("GET", r"/drive/v3/files/(?P<file_id>[^/]+)/export", self._export)
        self.route("GET", r"/drive/v3/files", self._list)

    def reset(self) -> None:
        super().reset()
        self.refresh_tokens.clear()
        self.access_tokens.clear()
        self.files.clear()
        self.revocations.clear()

    # -- setup ----------------------------------------------------------------------------------

    def grant(self, account: str = "rep") -> str:
        """A new refresh token for ``account``, as the connect flow would store it."""
        token = "1//standin-" + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = account
        return token

    def revoke(self, refresh_token: str) -> None:
        """The person removed our access: the refresh token and its access tokens stop working."""
        account = self.refresh_tokens.pop(refresh_token, None)
        for access, owner in list(self.access_tokens.items()):
            if owner == account:
                del self.access_tokens[access]

    def add(self, item: DriveItem) -> DriveItem:
        self.files[item.id] = item
        return item

    # -- auth -----------------------------------------------------------------------------------

    def authorized(self, request: Request) -> str | None:
        """The account of the request's bearer token, or None."""
        header = request.headers.get("authorization", "")
        return self.access_tokens.get(header[7:]) if header.startswith("Bearer ") else None

    def _token(self, request: Request) -> Reply:
        form = request.form()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return Reply(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
        if form.get("grant_type") != "refresh_token":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})
        account = self.refresh_tokens.get(form.get("refresh_token", ""))
        if account is None:
            return Reply(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        access = "ya29.standin-" + secrets.token_urlsafe(24)
        self.access_tokens[access] = account
        return Reply(200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer",
                           "scope": "https://www.googleapis.com/auth/drive.readonly"})

    def _revoke(self, request: Request) -> Reply:
        # Google's revocation endpoint: a refresh or access token as the form field ``token``; 200 with an
        # empty object, or 400 ``invalid_token`` for a token it does not know (already revoked, expired).
        token = request.form().get("token", "")
        account = self.refresh_tokens.get(token) or self.access_tokens.get(token)
        if account is None:
            return Reply(400, {"error": "invalid_token", "error_description": "Token expired or revoked"})
        for refresh, owner in list(self.refresh_tokens.items()):
            if owner == account:
                self.revoke(refresh)
        self.revocations.append(account)
        return Reply(200, {})

    # -- Drive ----------------------------------------------------------------------------------

    def _visible(self, request: Request, file_id: str) -> tuple[str | None, DriveItem | Reply]:
        account = self.authorized(request)
        if account is None:
            return None, google_error(401, "authError", "Request had invalid authentication credentials.")
        item = self.files.get(file_id)
        if item is None or (item.owner != account and account not in item.shared_with):
            return account, google_error(404, "notFound", f"File not found: {file_id}.")
        return account, item

    @staticmethod
    def _metadata(item: DriveItem, fields: str) -> dict:
        full = {"kind": "drive#file", "id": item.id, "name": item.name, "mimeType": item.mime_type,
                "trashed": item.trashed, "modifiedTime": item.modified_time, "parents": list(item.parents),
                "webViewLink": f"https://drive.google.com/file/d/{item.id}/view"}
        if not item.mime_type.startswith("application/vnd.google-apps."):
            full["size"] = str(len(item.content))  # Drive sends int64 as a JSON string
        if not fields:
            return {k: full[k] for k in ("kind", "id", "name", "mimeType")}
        wanted = {re.split(r"[(/]", f.strip())[0] for f in fields.split(",")}
        return {k: v for k, v in full.items() if k in wanted}

    def _file(self, request: Request) -> Reply:
        _, found = self._visible(request, request.params["file_id"])
        if isinstance(found, Reply):
            return found
        if request.query.get("alt") == "media":
            if found.mime_type.startswith("application/vnd.google-apps."):
                return google_error(403, "fileNotDownloadable",
                                    "Only files with binary content can be downloaded. Use Export with Docs "
                                    "Editors files.")
            return Reply(200, found.content, found.mime_type)
        return Reply(200, self._metadata(found, request.query.get("fields", "")))

    def _export(self, request: Request) -> Reply:
        _, found = self._visible(request, request.params["file_id"])
        if isinstance(found, Reply):
            return found
        if not found.mime_type.startswith("application/vnd.google-apps."):
            return google_error(403, "fileNotExportable", "Export only supports Docs Editors files.")
        wanted = request.query.get("mimeType", "")
        data = found.exports.get(wanted)
        if data is None:
            return google_error(400, "badRequest", "The requested conversion is not supported.")
        return Reply(200, data, wanted)

    def _list(self, request: Request) -> Reply:
        account = self.authorized(request)
        if account is None:
            return google_error(401, "authError", "Request had invalid authentication credentials.")
        match = _PARENTS_QUERY.match(request.query.get("q", ""))
        if not match:
            return google_error(400, "invalid", "Invalid Value")
        size = int(request.query.get("pageSize") or 100)
        if not 1 <= size <= 1000:
            return google_error(400, "invalid", "Invalid value for pageSize")
        items = sorted((f for f in self.files.values()
                        if match.group(1) in f.parents and not f.trashed
                        and (f.owner == account or account in f.shared_with)),
                       key=lambda f: (f.mime_type != "application/vnd.google-apps.folder", f.name))
        start = int(request.query.get("pageToken") or 0)
        page = items[start:start + size]
        body: dict = {"files": [self._metadata(f, "id,name,mimeType,size,modifiedTime") for f in page]}
        if start + size < len(items):
            body["nextPageToken"] = str(start + size)
        return Reply(200, body)
