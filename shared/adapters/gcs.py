"""Cloud Storage through ``google-cloud-storage``: the production ``BlobStore``.

The client is built on first use, not at import or construction, so a function that never touches
blobs pays nothing for them on a cold start. With ``endpoint`` (fake-gcs-server in tests and in the
local stack with emulators) the client talks to that URL with anonymous credentials.
"""

from __future__ import annotations

import logging
import threading

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from shared.adapters.local_blobs import validate_key
from shared.errors import DependencyDown
from shared.ports import BlobNotFound

log = logging.getLogger(__name__)

# Failures that may pass on a later attempt: surfaced as DependencyDown so Cloud Tasks and Pub/Sub
# redeliver. Anything else (403 from a missing role, 400) propagates unchanged: retrying will not help.
_TRANSIENT = (
    gexc.ServerError,
    gexc.TooManyRequests,
    gexc.RetryError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    auth_exceptions.TransportError,
)


class GcsBlobStore:
    """Objects in one Cloud Storage bucket; implements ``shared.ports.BlobStore``."""

    def __init__(self, bucket: str, project: str, *, client: storage.Client | None = None,
                 endpoint: str | None = None):
        """Configure the store; no client is created here.

        Args:
            bucket: the bucket name.
            project: the Google Cloud project id the client bills to.
            client: an existing ``storage.Client`` to use instead of building one.
            endpoint: base URL of a Cloud Storage emulator (``http://127.0.0.1:4443``); the client then
                uses anonymous credentials.
        """
        if not bucket:
            raise ValueError("bucket is required")
        self._bucket_name = bucket
        self._project = project
        self._endpoint = endpoint.rstrip("/") if endpoint else None
        self._client = client
        self._bucket: storage.Bucket | None = None
        self._lock = threading.Lock()

    @property
    def bucket_name(self) -> str:
        return self._bucket_name

    def _get_bucket(self) -> storage.Bucket:
        bucket = self._bucket
        if bucket is not None:
            return bucket
        with self._lock:
            if self._bucket is None:
                client = self._client
                if client is None:
                    if self._endpoint:
                        client = storage.Client(project=self._project, credentials=AnonymousCredentials(),
                                                client_options={"api_endpoint": self._endpoint})
                    else:
                        client = storage.Client(project=self._project)
                    self._client = client
                # ``client.bucket`` builds a handle without a request, so the function's service
                # account needs object roles only, not storage.buckets.get.
                self._bucket = client.bucket(self._bucket_name)
            return self._bucket

    def _uri(self, key: str) -> str:
        return f"gs://{self._bucket_name}/{key}"

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Upload ``data`` to ``key``, replacing any previous object.

        Objects over 8 MiB go through a resumable upload (the client library's threshold).

        Returns:
            ``gs://bucket/key``.

        Raises:
            ValueError: the key is invalid.
            DependencyDown: Cloud Storage is unreachable or answered 429/5xx.
        """
        validate_key(key)
        blob = self._get_bucket().blob(key)
        try:
            blob.upload_from_string(bytes(data), content_type=content_type)
        except _TRANSIENT as exc:
            raise DependencyDown(f"cloud storage upload failed: {type(exc).__name__}") from exc
        return self._uri(key)

    def get(self, key: str) -> bytes:
        """Download the object's bytes (checksums verified by the client library).

        Raises:
            BlobNotFound: no object has that key.
            ValueError: the key is invalid.
            DependencyDown: Cloud Storage is unreachable or answered 429/5xx.
        """
        validate_key(key)
        try:
            return self._get_bucket().blob(key).download_as_bytes()
        except gexc.NotFound:
            raise BlobNotFound(key) from None
        except _TRANSIENT as exc:
            raise DependencyDown(f"cloud storage download failed: {type(exc).__name__}") from exc

    def content_type(self, key: str) -> str:
        """The object's content type.

        Raises:
            BlobNotFound: no object has that key.
        """
        validate_key(key)
        try:
            blob = self._get_bucket().get_blob(key)
        except _TRANSIENT as exc:
            raise DependencyDown(f"cloud storage metadata read failed: {type(exc).__name__}") from exc
        if blob is None:
            raise BlobNotFound(key)
        return blob.content_type or "application/octet-stream"

    def delete(self, key: str) -> bool:
        """Delete the object; returns whether it existed."""
        validate_key(key)
        try:
            self._get_bucket().blob(key).delete()
        except gexc.NotFound:
            return False
        except _TRANSIENT as exc:
            raise DependencyDown(f"cloud storage delete failed: {type(exc).__name__}") from exc
        return True

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            return self._get_bucket().blob(key).exists()
        except _TRANSIENT as exc:
            raise DependencyDown(f"cloud storage metadata read failed: {type(exc).__name__}") from exc

    def health(self) -> None:
        """Raise ``DependencyDown`` unless the bucket answers a one-object listing.

        Listing needs only ``storage.objects.list``, which the functions' object roles grant; a
        missing bucket answers 404 and counts as unhealthy.
        """
        bucket = self._get_bucket()
        try:
            next(iter(bucket.client.list_blobs(bucket, max_results=1)), None)
        except (gexc.GoogleAPIError, *_TRANSIENT) as exc:
            raise DependencyDown(f"cloud storage bucket {self._bucket_name} unavailable: "
                                 f"{type(exc).__name__}") from exc
