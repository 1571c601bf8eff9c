"""Google Drive v3 over REST with the rep's own OAuth grant: the production ``DriveSource``.

No discovery client: ``googleapiclient`` fetches or unpickles a discovery document and imports a large
tree on a cold start, while these three calls are plain HTTP. ``AuthorizedSession`` (google-auth) adds
the bearer token and refreshes it from the rep's refresh token, which ``token-refresh`` keeps in the
secret store as ``google-refresh-<rep id>`` (``shared.adapters.google_session`` builds that session).

Calls used (https://developers.google.com/drive/api/reference/rest/v3/files):

* ``files.get`` with ``fields`` for the name, type and size, then ``alt=media`` to download a blob;
* ``files.export`` for Google-native files. Export output is capped by Google at 10 MB
  (https://developers.google.com/drive/api/reference/rest/v3/files/export), so a larger Doc fails
  there with ``exportSizeLimitExceeded``;
* ``files.list`` with ``q='<folder>' in parents and trashed = false`` for a folder.

``supportsAllDrives`` is set on every call so files in shared drives work as in the Drive UI.

``UnavailableDrive`` is the embedded adapter: the local stack has no Google account to act for.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import requests

from shared.errors import (
    BadRequest,
    DependencyDown,
    Forbidden,
    NotFound,
    PermanentError,
    RateLimited,
    Refused,
    TooLarge,
    UnsupportedType,
)
from shared.adapters.google_session import (
    GOOGLE_API_BASE_URL,
    GOOGLE_TOKEN_URI,
    MISCONFIGURED,
    RETRY,
    NoRefreshToken,
    RepSessions,
    refresh_failure_kind,
)
from shared.ports import SecretStore
from shared.voice.sources import GOOGLE_NOT_CONNECTED, GOOGLE_RECONNECT, DriveEntry, DriveFile

log = logging.getLogger(__name__)

FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
# Google-native type → the export format that keeps the words and drops the layout.
EXPORTS = {
    "application/vnd.google-apps.document": "text/plain",
    "application/vnd.google-apps.spreadsheet": "text/csv",  # the first sheet only: Drive's CSV export
    "application/vnd.google-apps.presentation": "text/plain",
}
_EXTENSIONS = {"text/plain": ".txt", "text/csv": ".csv"}
# Drive ids are URL-safe base64-ish; anything else could break out of the files.list query.
_DRIVE_ID = re.compile(r"[A-Za-z0-9_-]{10,200}")
_FILE_FIELDS = "id,name,mimeType,size,modifiedTime,webViewLink,trashed,shortcutDetails(targetId,targetMimeType)"
_RATE_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded", "sharingRateLimitExceeded"})
_CHUNK = 64 * 1024

NOT_CONNECTED_MESSAGE = ("Connect your Google account on the voice-training page to import from Google Drive "
                         "(or download the file and upload it instead).")
RECONNECT_MESSAGE = ("Your Google connection has expired or was revoked. Reconnect your Google account on the "
                     "voice-training page to import from Google Drive.")


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _DRIVE_ID.fullmatch(value):
        raise BadRequest(f"That is not a Google Drive {what} id.")
    return value


class GoogleDrive:
    """Drive files a rep can read, fetched with the rep's own grant; implements ``DriveSource``.

    Args:
        secrets: where each rep's refresh token lives (``google-refresh-<rep id>``).
        client_id: the OAuth client the refresh tokens were issued to.
        client_secret: that client's secret.
        token_uri: Google's token endpoint (a stand-in's in tests).
        api_base_url: ``https://www.googleapis.com`` (a stand-in's in tests).
        max_bytes: the largest file accepted (413 above it).
        timeout: seconds per HTTP request.
        http: the ``requests.Session`` used for token refreshes and API calls (default: a new one).
    """

    def __init__(self, secrets: SecretStore, *, client_id: str, client_secret: str,
                 token_uri: str = GOOGLE_TOKEN_URI, api_base_url: str = GOOGLE_API_BASE_URL,
                 max_bytes: int = 25 * 1024 * 1024, timeout: float = 30.0, http: requests.Session | None = None):
        self._sessions = RepSessions(secrets, client_id=client_id, client_secret=client_secret,
                                     token_uri=token_uri, http=http)
        self._base = api_base_url.rstrip("/") + "/drive/v3"
        self.max_bytes = max_bytes
        self._timeout = timeout

    # -- the port -------------------------------------------------------------------------------

    def get_file(self, rep_id: Any, file_id: str) -> DriveFile:
        """See ``DriveSource.get_file``."""
        _check_id(file_id, "file")
        session = self._session(rep_id)
        meta = self._json(session, "GET", f"/files/{file_id}", params={"fields": _FILE_FIELDS}, what="file")
        if meta.get("mimeType") == SHORTCUT:
            target = (meta.get("shortcutDetails") or {}).get("targetId", "")
            meta = self._json(session, "GET", f"/files/{_check_id(target, 'file')}", params={"fields": _FILE_FIELDS},
                              what="file")
        name = str(meta.get("name") or file_id)
        mime = str(meta.get("mimeType") or "application/octet-stream")
        common = {"id": str(meta.get("id") or file_id), "name": name, "source_mime_type": mime,
                  "modified_time": str(meta.get("modifiedTime") or ""), "web_link": str(meta.get("webViewLink") or "")}
        if meta.get("trashed"):
            raise NotFound(f"The Drive file “{name}” is in the trash.", code="drive_file_not_found")
        if mime == FOLDER:
            raise UnsupportedType(f"“{name}” is a Drive folder; choose the files in it instead.")
        if mime in EXPORTS:
            export = EXPORTS[mime]
            body = self._download(session, f"/files/{file_id}/export", {"mimeType": export}, name)
            text = body.decode("utf-8-sig", errors="replace")
            return DriveFile(mime_type=export, text=text, **common)
        if mime.startswith("application/vnd.google-apps."):
            kind = mime.rsplit(".", 1)[-1]
            raise UnsupportedType(f"“{name}” is a Google {kind.capitalize()}, which has no text to import.")
        size = meta.get("size")
        if size is not None and str(size).isdigit() and int(size) > self.max_bytes:
            raise TooLarge(f"“{name}” is larger than {self.max_bytes // (1024 * 1024)} MB.")
        data = self._download(session, f"/files/{file_id}", {"alt": "media"}, name)
        return DriveFile(mime_type=mime, data=data, **common)

    def list_folder(self, rep_id: Any, folder_id: str, limit: int = 50) -> list[DriveEntry]:
        """See ``DriveSource.list_folder``; ``limit`` is capped at 1,000."""
        _check_id(folder_id, "folder")
        limit = max(1, min(int(limit), 1000))
        session = self._session(rep_id)
        entries: list[DriveEntry] = []
        token = None
        while len(entries) < limit:
            params = {
                "q": f"'{folder_id}' in parents and trashed = false",
                "fields": "nextPageToken,files(id,name,mimeType,size,modifiedTime)",
                "pageSize": str(min(limit - len(entries), 100)),
                "orderBy": "folder,name",
                "includeItemsFromAllDrives": "true",
            }
            if token:
                params["pageToken"] = token
            page = self._json(session, "GET", "/files", params=params, what="folder")
            for item in page.get("files") or []:
                size = item.get("size")
                entries.append(DriveEntry(id=str(item.get("id", "")), name=str(item.get("name", "")),
                                          mime_type=str(item.get("mimeType", "")),
                                          size=int(size) if str(size or "").isdigit() else None,
                                          modified_time=str(item.get("modifiedTime") or "")))
            token = page.get("nextPageToken")
            if not token:
                break
        return entries[:limit]

    # -- credentials ----------------------------------------------------------------------------

    def _session(self, rep_id: Any) -> Any:
        try:
            return self._sessions.get(rep_id)
        except NoRefreshToken:
            raise Refused(NOT_CONNECTED_MESSAGE, code=GOOGLE_NOT_CONNECTED) from None

    def _forget(self, session: Any) -> None:
        self._sessions.forget(session)

    # -- HTTP -----------------------------------------------------------------------------------

    def _send(self, session: Any, method: str, path: str, params: dict[str, str], *, stream: bool) -> Any:
        from google.auth import exceptions as gexc

        params = {**params, "supportsAllDrives": "true"}
        try:
            return session.request(method, self._base + path, params=params, timeout=self._timeout, stream=stream)
        except gexc.RefreshError as exc:
            self._forget(session)
            raise _refresh_failure(exc) from None
        except gexc.TransportError:
            raise DependencyDown("Could not reach Google to renew the Drive connection; the import will be tried "
                                 "again.") from None
        except requests.Timeout:
            raise DependencyDown("Google Drive did not answer in time; the import will be tried again.") from None
        except requests.RequestException:
            raise DependencyDown("Could not reach Google Drive; the import will be tried again.") from None

    def _json(self, session: Any, method: str, path: str, *, params: dict[str, str], what: str) -> dict[str, Any]:
        response = self._send(session, method, path, params, stream=False)
        try:
            if response.status_code != 200:
                raise _http_failure(response, what)
            try:
                body = response.json()
            except ValueError:
                raise DependencyDown("Google Drive sent an answer that could not be read.") from None
            if not isinstance(body, dict):
                raise DependencyDown("Google Drive sent an answer that could not be read.")
            return body
        finally:
            response.close()

    def _download(self, session: Any, path: str, params: dict[str, str], name: str) -> bytes:
        response = self._send(session, "GET", path, params, stream=True)
        try:
            if response.status_code != 200:
                raise _http_failure(response, "file")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise TooLarge(f"“{name}” is larger than {self.max_bytes // (1024 * 1024)} MB.")
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TooLarge(f"“{name}” is larger than {self.max_bytes // (1024 * 1024)} MB.")
                    chunks.append(chunk)
            except requests.RequestException:
                raise DependencyDown("The download from Google Drive was interrupted; the import will be tried "
                                     "again.") from None
            return b"".join(chunks)
        finally:
            response.close()


def _refresh_failure(exc: Exception) -> Exception:
    kind = refresh_failure_kind(exc)
    if kind == RETRY:
        return DependencyDown("Google could not renew the Drive connection just now; the import will be tried again.")
    if kind == MISCONFIGURED:
        return DependencyDown("The Google Drive connection is misconfigured on our side; the import will be tried "
                              "again once it is fixed.")
    return Refused(RECONNECT_MESSAGE, code=GOOGLE_RECONNECT)


def _http_failure(response: Any, what: str) -> Exception:
    """The project's error for one of Drive's JSON errors."""
    status = response.status_code
    reason, message = "", ""
    try:
        error = json.loads(response.content or b"{}").get("error") or {}
        message = str(error.get("message") or "")
        reason = str(((error.get("errors") or [{}])[0]).get("reason") or "")
    except (ValueError, AttributeError, IndexError, TypeError):
        pass
    # https://developers.google.com/drive/api/guides/handle-errors: 403 with a rate-limit reason and 429
    # are both "slow down", answered with exponential backoff.
    if status == 429 or reason in _RATE_REASONS:
        return RateLimited("Google Drive is limiting requests right now; the import will be tried again shortly.")
    if status >= 500:
        return DependencyDown(f"Google Drive answered HTTP {status}; the import will be tried again.")
    if status == 401:
        return Refused(RECONNECT_MESSAGE, code=GOOGLE_RECONNECT)
    if status == 404:
        return NotFound(f"The Drive {what} was not found, or your Google account cannot open it. Check the link, or "
                        "ask its owner to share it with you.", code="drive_file_not_found")
    if status == 403:
        if reason == "exportSizeLimitExceeded":
            return TooLarge("This Google file is too large for Drive to export as text (10 MB). Download it and "
                            "upload it instead.")
        if reason in ("cannotDownloadFile", "downloadQuotaExceeded"):
            return Forbidden("The owner of this Drive file does not allow downloads. Ask them for a copy, or "
                             "upload it yourself.", code="drive_forbidden")
        return Forbidden(f"Your Google account is not allowed to read this Drive {what}. Ask its owner to share "
                         "it with you.", code="drive_forbidden")
    log.warning("drive answered HTTP %s (%s)", status, reason or "no reason")
    return PermanentError(f"Google Drive refused the request (HTTP {status}{': ' + message[:120] if message else ''}).",
                          code="drive_refused")


class UnavailableDrive:
    """The embedded ``DriveSource``: the local stack acts for no Google account, so every call says so."""

    def get_file(self, rep_id: Any, file_id: str) -> DriveFile:
        """Raises ``Refused`` (``google_not_connected``): connect a Google account, or upload the file."""
        raise Refused(NOT_CONNECTED_MESSAGE, code=GOOGLE_NOT_CONNECTED)

    def list_folder(self, rep_id: Any, folder_id: str, limit: int = 50) -> list[DriveEntry]:
        """Raises ``Refused`` (``google_not_connected``)."""
        raise Refused(NOT_CONNECTED_MESSAGE, code=GOOGLE_NOT_CONNECTED)
