"""An in-process gRPC Secret Manager for tests (Google ships no emulator for it).

The service is assembled from the client library itself: its generated gRPC transport tells us each
method's path and the message types it sends and expects, so the real ``SecretManagerServiceClient``
talks to this server exactly as it talks to ``secretmanager.googleapis.com``. Behaviour follows the
API reference (https://cloud.google.com/secret-manager/docs/reference/rpc/google.cloud.secretmanager.v1):

- versions are numbered from 1 and never reused; ``versions/latest`` is the most recently created
  version, whatever its state;
- accessing a DISABLED or DESTROYED version answers FAILED_PRECONDITION, a missing one NOT_FOUND;
- payloads are at most 64 KiB; a CRC32C sent with a payload is verified, and one is always stored;
- ``ListSecretVersions`` lists newest first, pages with ``page_size``/``page_token`` and understands
  ``state:<STATE>`` filters.

Writes (create, add, destroy, delete) are counted per secret so tests can assert write volume.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import google_crc32c
import grpc
import proto
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)
from google.cloud.secretmanager_v1.types import resources, service
from google.protobuf import empty_pb2

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
DEFAULT_PAGE_SIZE = 25

_SECRET = re.compile(r"projects/(?P<project>[^/]+)/secrets/(?P<secret>[A-Za-z0-9_-]{1,255})")
_VERSION = re.compile(_SECRET.pattern + r"/versions/(?P<version>[1-9][0-9]*|latest)")
_PROJECT = re.compile(r"projects/[^/]+")
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_STATE = resources.SecretVersion.State


# --- The method table, read from the client's own transport ----------------------------------------


class _RecordingChannel:
    """Stands where the transport expects its channel and records what each stub would call."""

    def __init__(self) -> None:
        self.methods: dict[str, tuple[Callable, Callable]] = {}

    def unary_unary(self, method: str, request_serializer: Callable, response_deserializer: Callable,
                    **_: Any) -> None:
        self.methods[method] = (request_serializer, response_deserializer)


class _TransportReader(SecretManagerServiceGrpcTransport):
    """The generated transport without its constructor: no channel, credentials or network.

    Each stub property (``add_secret_version`` ...) asks ``_logged_channel.unary_unary`` for a callable
    with the method path and the (de)serializers; the recorder keeps them.
    """

    def __init__(self) -> None:  # deliberately not calling the base constructor
        self._stubs: dict[str, Any] = {}
        self._logged_channel = _RecordingChannel()


def _snake(rpc: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc).lower()


def client_methods(rpcs: list[str]) -> dict[str, tuple[str, type, type]]:
    """For each RPC name, the path and the request and response classes the client library uses.

    Raises:
        LookupError: the installed client library has no such method.
    """
    reader = _TransportReader()
    table = {}
    for rpc in rpcs:
        recorder: _RecordingChannel = reader._logged_channel
        recorder.methods.clear()
        getattr(reader, _snake(rpc))
        if len(recorder.methods) != 1:
            raise LookupError(f"the Secret Manager transport has no stub for {rpc}")
        ((path, (serializer, deserializer)),) = recorder.methods.items()
        # A bound ``serialize``/``FromString`` of a message class: its __self__ is that class.
        table[rpc] = (path, serializer.__self__, deserializer.__self__)
    return table


def _codec(message_class: type) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    if isinstance(message_class, proto.message.MessageMeta):
        return message_class.deserialize, message_class.serialize
    return message_class.FromString, message_class.SerializeToString


# --- State ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Version:
    number: int
    data: bytes | None
    crc32c: int
    create_time: dt.datetime
    client_checksum: bool
    state: int = _STATE.ENABLED
    destroy_time: dt.datetime | None = None


@dataclasses.dataclass
class _Secret:
    resource: resources.Secret
    versions: dict[int, _Version] = dataclasses.field(default_factory=dict)
    next_number: int = 1


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class SecretManagerStandin:
    """A Secret Manager gRPC server on 127.0.0.1, state in memory.

    Point ``SecretManagerStore(project, endpoint=standin.endpoint)`` at it.
    """

    RPCS = ["CreateSecret", "GetSecret", "DeleteSecret", "AddSecretVersion", "GetSecretVersion",
            "AccessSecretVersion", "ListSecretVersions", "DestroySecretVersion"]

    def __init__(self, *, max_workers: int = 8):
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._secrets: dict[str, _Secret] = {}
        self._writes: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self._server: grpc.Server | None = None
        self.port = 0

    # lifecycle

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the Secret Manager stand-in is not running")
        return f"127.0.0.1:{self.port}"

    def start(self) -> SecretManagerStandin:
        """Bind a free loopback port and serve; the port accepts calls when this returns."""
        if self._server is not None:
            return self
        handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = collections.defaultdict(dict)
        for rpc, (path, request_class, response_class) in client_methods(self.RPCS).items():
            service_name, method = path.lstrip("/").rsplit("/", 1)
            deserialize, _ = _codec(request_class)
            _, serialize = _codec(response_class)
            handlers[service_name][method] = grpc.unary_unary_rpc_method_handler(
                self._handler(rpc, getattr(self, "_" + _snake(rpc))),
                request_deserializer=deserialize, response_serializer=serialize)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        server.add_generic_rpc_handlers(
            tuple(grpc.method_handlers_generic_handler(name, methods) for name, methods in handlers.items()))
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        log.info("Secret Manager stand-in serving on %s", self.endpoint)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __enter__(self) -> SecretManagerStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every secret and every count."""
        with self._lock:
            self._secrets.clear()
            self._writes.clear()
            self.calls.clear()

    # inspection for tests

    def write_count(self, secret: str) -> int:
        """Writes (create, add version, destroy, delete) made to ``secret`` (its id or full name)."""
        with self._lock:
            if "/" in secret:
                return self._writes[secret]
            return sum(n for name, n in self._writes.items() if name.rsplit("/", 1)[-1] == secret)

    def version_states(self, secret_name: str) -> dict[int, str]:
        """Version number → state name, for a full secret resource name."""
        with self._lock:
            secret = self._secrets.get(secret_name)
            if secret is None:
                return {}
            return {n: _STATE(v.state).name for n, v in sorted(secret.versions.items())}

    # dispatch

    def _handler(self, rpc: str, fn: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.calls[rpc] += 1
                try:
                    return fn(request)
                except _Abort as exc:
                    error = exc
            context.abort(error.code, error.message)  # raises; outside the lock
        return handle

    def _secret(self, name: str) -> _Secret:
        if not _SECRET.fullmatch(name):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {name}")
        secret = self._secrets.get(name)
        if secret is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret [{name}] not found.")
        return secret

    def _version(self, name: str) -> tuple[_Secret, _Version]:
        match = _VERSION.fullmatch(name)
        if not match:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {name}")
        secret_name = name.rsplit("/versions/", 1)[0]
        secret = self._secrets.get(secret_name)
        wanted = match["version"]
        if secret is not None and secret.versions:
            number = max(secret.versions) if wanted == "latest" else int(wanted)
            version = secret.versions.get(number)
            if version is not None:
                return secret, version
        raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{name}] not found.")

    @staticmethod
    def _version_resource(secret: _Secret, version: _Version) -> resources.SecretVersion:
        out = resources.SecretVersion(
            name=f"{secret.resource.name}/versions/{version.number}",
            create_time=version.create_time,
            state=version.state,
            replication_status=resources.ReplicationStatus(automatic=resources.ReplicationStatus.AutomaticStatus()),
            client_specified_payload_checksum=version.client_checksum,
            etag=f'"{version.number}-{version.state}"',
        )
        if version.destroy_time is not None:
            out.destroy_time = version.destroy_time
        return out

    # RPCs (called with the lock held)

    def _create_secret(self, request: service.CreateSecretRequest) -> resources.Secret:
        if not _PROJECT.fullmatch(request.parent):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid parent: {request.parent}")
        if not _SECRET_ID.fullmatch(request.secret_id):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         "secret_id must be 1-255 letters, digits, hyphens or underscores")
        if "replication" not in request.secret:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Secret.replication is required")
        name = f"{request.parent}/secrets/{request.secret_id}"
        if name in self._secrets:
            raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
        resource = resources.Secret(name=name, replication=request.secret.replication, create_time=_now(),
                                    labels=dict(request.secret.labels), etag='"1"')
        self._secrets[name] = _Secret(resource=resource)
        self._writes[name] += 1
        return resource

    def _get_secret(self, request: service.GetSecretRequest) -> resources.Secret:
        return self._secret(request.name).resource

    def _delete_secret(self, request: service.DeleteSecretRequest) -> empty_pb2.Empty:
        self._secret(request.name)
        del self._secrets[request.name]
        self._writes[request.name] += 1
        return empty_pb2.Empty()

    def _add_secret_version(self, request: service.AddSecretVersionRequest) -> resources.SecretVersion:
        secret = self._secret(request.parent)
        data = request.payload.data
        if len(data) > MAX_PAYLOAD_BYTES:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"Secret payload is larger than the limit of {MAX_PAYLOAD_BYTES} bytes.")
        crc = google_crc32c.value(data)
        client_checksum = "data_crc32c" in request.payload
        if client_checksum and request.payload.data_crc32c != crc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Checksum mismatch: the payload was corrupted in transit.")
        version = _Version(number=secret.next_number, data=data, crc32c=crc, create_time=_now(),
                           client_checksum=client_checksum)
        secret.versions[version.number] = version
        secret.next_number += 1
        self._writes[request.parent] += 1
        return self._version_resource(secret, version)

    def _get_secret_version(self, request: service.GetSecretVersionRequest) -> resources.SecretVersion:
        return self._version_resource(*self._version(request.name))

    def _access_secret_version(self, request: service.AccessSecretVersionRequest) -> service.AccessSecretVersionResponse:
        secret, version = self._version(request.name)
        resolved = f"{secret.resource.name}/versions/{version.number}"
        if version.state != _STATE.ENABLED:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                         f"Secret Version [{resolved}] is in {_STATE(version.state).name} state.")
        return service.AccessSecretVersionResponse(
            name=resolved, payload=resources.SecretPayload(data=version.data, data_crc32c=version.crc32c))

    def _list_secret_versions(self, request: service.ListSecretVersionsRequest) -> service.ListSecretVersionsResponse:
        secret = self._secret(request.parent)
        wanted_states = _parse_filter(request.filter)
        versions = [v for _, v in sorted(secret.versions.items(), reverse=True)
                    if wanted_states is None or v.state in wanted_states]
        try:
            start = int(request.page_token or 0)
        except ValueError:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Invalid page_token.") from None
        size = request.page_size or DEFAULT_PAGE_SIZE
        page = versions[start:start + size]
        following = start + size
        return service.ListSecretVersionsResponse(
            versions=[self._version_resource(secret, v) for v in page],
            next_page_token=str(following) if following < len(versions) else "",
            total_size=len(versions),
        )

    def _destroy_secret_version(self, request: service.DestroySecretVersionRequest) -> resources.SecretVersion:
        if request.name.endswith("/versions/latest"):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "A version alias cannot be destroyed; name a version.")
        secret, version = self._version(request.name)
        if version.state == _STATE.DESTROYED:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION,
                         f"Secret Version [{request.name}] is already in DESTROYED state.")
        version.state = _STATE.DESTROYED
        version.data = None  # the payload is gone for good
        version.destroy_time = _now()
        self._writes[secret.resource.name] += 1
        return self._version_resource(secret, version)


def _parse_filter(text: str) -> set[int] | None:
    """States allowed by a ``state:ENABLED`` / ``state=DISABLED`` filter (terms joined by OR).

    Only the ``state`` field is understood; anything else is refused rather than ignored, so a test
    never passes on a filter this stand-in silently dropped.
    """
    text = text.strip()
    if not text:
        return None
    states: set[int] = set()
    for term in re.split(r"\s+OR\s+", text):
        match = re.fullmatch(r"state\s*[:=]\s*([A-Za-z_]+)", term.strip())
        if not match or match[1].upper() not in _STATE.__members__:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Unsupported filter: {text!r}")
        states.add(_STATE[match[1].upper()])
    return states
