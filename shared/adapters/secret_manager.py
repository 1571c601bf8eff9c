"""Secret Manager through ``google-cloud-secret-manager`` (gRPC): the production ``SecretStore``.

Secrets are created with automatic replication on their first version. Payloads carry a CRC32C both
ways, so corruption in transit is refused by the service on writes and detected here on reads
(https://cloud.google.com/secret-manager/docs/data-integrity).

The client is built on first use. With ``endpoint`` it talks plaintext gRPC to that ``host:port``
without credentials: that is the in-process stand-in the tests run, as Secret Manager has no emulator.
"""

from __future__ import annotations

import logging
import threading

import google_crc32c
import grpc
from google.api_core import exceptions as gexc
from google.cloud import secretmanager_v1
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from shared.adapters.local_secrets import validate_secret_name, validate_version
from shared.errors import DependencyDown
from shared.ports import SecretNotFound

log = logging.getLogger(__name__)

# Failures that may pass on a later attempt; surfaced as DependencyDown so the platform redelivers.
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.RetryError,
)


class SecretManagerStore:
    """Secrets of one project in Secret Manager; implements ``shared.ports.SecretStore``."""

    def __init__(self, project: str, *, client: secretmanager_v1.SecretManagerServiceClient | None = None,
                 endpoint: str | None = None):
        """Configure the store; no client or channel is created here.

        Args:
            project: the Google Cloud project id that owns the secrets.
            client: an existing ``SecretManagerServiceClient`` to use instead of building one.
            endpoint: ``host:port`` of a plaintext gRPC Secret Manager (tests only); no credentials
                are sent to it.
        """
        if not project:
            raise ValueError("project is required")
        self._project = project
        self._endpoint = endpoint
        self._client = client
        self._lock = threading.Lock()

    def _get_client(self) -> secretmanager_v1.SecretManagerServiceClient:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                if self._endpoint:
                    # A channel given to the transport means no credentials are looked up or attached.
                    transport = SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(self._endpoint))
                    self._client = secretmanager_v1.SecretManagerServiceClient(transport=transport)
                else:
                    self._client = secretmanager_v1.SecretManagerServiceClient()
            return self._client

    def _secret_path(self, name: str) -> str:
        return f"projects/{self._project}/secrets/{validate_secret_name(name)}"

    def add_version(self, name: str, data: bytes) -> str:
        """Add ``data`` as a new version, creating the secret (automatic replication) if missing.

        Returns:
            The new version id.

        Raises:
            ValueError: the name is invalid.
            DependencyDown: Secret Manager is unavailable.
        """
        secret = self._secret_path(name)
        data = bytes(data)
        request = {"parent": secret, "payload": {"data": data, "data_crc32c": google_crc32c.value(data)}}
        client = self._get_client()
        try:
            try:
                version = client.add_secret_version(request=request)
            except gexc.NotFound:
                try:
                    client.create_secret(request={
                        "parent": f"projects/{self._project}",
                        "secret_id": name,
                        "secret": {"replication": {"automatic": {}}},
                    })
                    log.info("created secret %s", name)
                except gexc.AlreadyExists:
                    pass  # created concurrently by another instance: just add the version
                version = client.add_secret_version(request=request)
        except _TRANSIENT as exc:
            raise DependencyDown(f"secret manager unavailable: {type(exc).__name__}") from exc
        return version.name.rsplit("/", 1)[-1]

    def access(self, name: str, version: str = "latest") -> bytes:
        """The bytes of one version; ``latest`` is the most recently created one.

        Raises:
            SecretNotFound: no such secret or version, or the version is disabled or destroyed
                (the service answers FAILED_PRECONDITION for those).
            ValueError: the name or the version reference is invalid.
            DependencyDown: Secret Manager is unavailable, or the payload failed its checksum.
        """
        path = f"{self._secret_path(name)}/versions/{validate_version(version)}"
        try:
            response = self._get_client().access_secret_version(request={"name": path})
        except (gexc.NotFound, gexc.FailedPrecondition):
            raise SecretNotFound(f"{name}/{version}") from None
        except _TRANSIENT as exc:
            raise DependencyDown(f"secret manager unavailable: {type(exc).__name__}") from exc
        payload = response.payload
        if "data_crc32c" in payload and google_crc32c.value(payload.data) != payload.data_crc32c:
            raise DependencyDown(f"secret {name} version {version}: payload checksum mismatch")
        return payload.data

    def destroy_old_versions(self, name: str, keep: int = 1) -> int:
        """Destroy every enabled version but the newest ``keep`` (one list, then one destroy each).

        Returns:
            How many versions this call destroyed (one destroyed concurrently by another caller is
            not counted).

        Raises:
            SecretNotFound: no such secret.
            ValueError: ``keep`` is below 1 (use ``delete`` to remove everything).
            DependencyDown: Secret Manager is unavailable.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1")
        secret = self._secret_path(name)
        client = self._get_client()
        try:
            enabled = [v.name for v in client.list_secret_versions(
                request={"parent": secret, "filter": "state:ENABLED"})]
        except gexc.NotFound:
            raise SecretNotFound(name) from None
        except _TRANSIENT as exc:
            raise DependencyDown(f"secret manager unavailable: {type(exc).__name__}") from exc
        # The listing order is not part of the API contract: sort by version number, newest first.
        enabled.sort(key=lambda path: int(path.rsplit("/", 1)[-1]), reverse=True)
        destroyed = 0
        for path in enabled[keep:]:
            try:
                client.destroy_secret_version(request={"name": path})
                destroyed += 1
            except (gexc.NotFound, gexc.FailedPrecondition):
                pass  # already destroyed (or the secret deleted) by someone else: the goal holds
            except _TRANSIENT as exc:
                raise DependencyDown(f"secret manager unavailable: {type(exc).__name__}") from exc
        if destroyed:
            log.info("destroyed %d old version(s) of secret %s", destroyed, name)
        return destroyed

    def delete(self, name: str) -> bool:
        """Delete the secret and all its versions; returns whether it existed."""
        try:
            self._get_client().delete_secret(request={"name": self._secret_path(name)})
        except gexc.NotFound:
            return False
        except _TRANSIENT as exc:
            raise DependencyDown(f"secret manager unavailable: {type(exc).__name__}") from exc
        return True

    def health(self) -> None:
        """Raise ``DependencyDown`` unless Secret Manager answers one cheap call.

        The probe reads a secret that need not exist: NOT_FOUND and PERMISSION_DENIED both prove the
        service is reachable, and neither needs a project-wide role the functions do not have.
        """
        try:
            self._get_client().get_secret(request={"name": self._secret_path("health-probe")},
                                          timeout=10)
        except (gexc.NotFound, gexc.PermissionDenied):
            return
        except gexc.GoogleAPIError as exc:
            raise DependencyDown(f"secret manager unavailable: {type(exc).__name__}") from exc
