"""The SecretStore contract, run against the embedded file store and against Secret Manager
(google-cloud-secret-manager over gRPC to the in-process stand-in)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import secretmanager_v1
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from shared.adapters.local_secrets import LocalSecretStore
from shared.adapters.secret_manager import SecretManagerStore
from shared.errors import DependencyDown
from shared.ports import SecretNotFound, SecretStore
from tests.standins.secret_manager import SecretManagerStandin

PROJECT = "test-project"


@pytest.fixture(params=["local", pytest.param("secret_manager", marks=pytest.mark.emulator)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LocalSecretStore | SecretManagerStore:
    if request.param == "local":
        return LocalSecretStore(tmp_path / "secrets")
    return SecretManagerStore(PROJECT, endpoint=request.getfixturevalue("secret_manager").endpoint)


@pytest.fixture
def raw_client(secret_manager) -> Iterator[secretmanager_v1.SecretManagerServiceClient]:
    """The client library on its own, to look at what the adapter left in the service."""
    channel = grpc.insecure_channel(secret_manager.endpoint)
    yield secretmanager_v1.SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
    channel.close()


def test_implements_the_port(store):
    assert isinstance(store, SecretStore)


def test_versions_are_numbered_from_one_and_increase(store):
    assert [store.add_version("oauth-rep-1", b"v%d" % i) for i in range(1, 4)] == ["1", "2", "3"]
    assert [store.access("oauth-rep-1", v) for v in ("1", "2", "3")] == [b"v1", b"v2", b"v3"]


def test_latest_is_the_newest(store):
    store.add_version("api_key", b"old")
    assert store.access("api_key") == b"old"
    store.add_version("api_key", b"new")
    assert store.access("api_key") == b"new"
    assert store.access("api_key", "latest") == b"new"


def test_binary_payload_round_trip(store):
    data = bytes(range(256)) + b"\x00\xff{json}"
    store.add_version("blob", data)
    assert store.access("blob") == data


def test_destroy_old_versions_keeps_only_the_newest(store):
    for i in range(1, 4):
        store.add_version("refresh-token", b"t%d" % i)
    assert store.destroy_old_versions("refresh-token") == 2
    for old in ("1", "2"):
        with pytest.raises(SecretNotFound):
            store.access("refresh-token", old)
    assert store.access("refresh-token") == b"t3"
    assert store.access("refresh-token", "3") == b"t3"
    # Nothing enabled is left to destroy.
    assert store.destroy_old_versions("refresh-token") == 0


def test_destroy_with_keep_two(store):
    for i in range(1, 5):
        store.add_version("s", b"%d" % i)
    assert store.destroy_old_versions("s", keep=2) == 2
    for old in ("1", "2"):
        with pytest.raises(SecretNotFound):
            store.access("s", old)
    assert (store.access("s", "3"), store.access("s", "4")) == (b"3", b"4")


def test_numbers_are_not_reused_after_destroy(store):
    store.add_version("s", b"a")
    store.add_version("s", b"b")
    store.destroy_old_versions("s")
    assert store.add_version("s", b"c") == "3"
    assert store.destroy_old_versions("s") == 1
    assert store.access("s") == b"c"


def test_keep_must_be_positive(store):
    store.add_version("s", b"a")
    with pytest.raises(ValueError):
        store.destroy_old_versions("s", keep=0)
    assert store.access("s") == b"a"


def test_missing_secret_and_version(store):
    with pytest.raises(SecretNotFound) as info:
        store.access("absent")
    assert isinstance(info.value, KeyError)
    with pytest.raises(SecretNotFound):
        store.destroy_old_versions("absent")
    store.add_version("present", b"x")
    with pytest.raises(SecretNotFound):
        store.access("present", "2")


def test_delete(store):
    store.add_version("gone", b"1")
    store.add_version("gone", b"2")
    assert store.delete("gone") is True
    with pytest.raises(SecretNotFound):
        store.access("gone")
    assert store.delete("gone") is False
    # A secret created again under the same name is a new secret: its versions start over.
    assert store.add_version("gone", b"again") == "1"
    assert store.access("gone") == b"again"


@pytest.mark.parametrize("name", ["", "a/b", "../up", "dots.not.allowed", "sp ace", "x" * 256, "ünï"])
def test_invalid_names_are_refused(store, name):
    with pytest.raises(ValueError):
        store.add_version(name, b"x")
    with pytest.raises(ValueError):
        store.access(name)
    with pytest.raises(ValueError):
        store.delete(name)


@pytest.mark.parametrize("version", ["0", "-1", "01", "newest", "1/../2", ""])
def test_invalid_version_references_are_refused(store, version):
    store.add_version("s", b"x")
    with pytest.raises(ValueError):
        store.access("s", version)


def test_longest_valid_name(store):
    name = "A_-9" * 63 + "zzz"  # 255 characters
    assert store.add_version(name, b"ok") == "1"
    assert store.access(name) == b"ok"


def test_concurrent_adds_get_distinct_versions(store):
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda i: store.add_version("busy", b"%d" % i), range(12)))
    assert sorted(ids, key=int) == [str(n) for n in range(1, 13)]
    assert store.access("busy", "12") in {b"%d" % i for i in range(12)}


def test_health(store):
    store.health()


# --- the embedded store on disk ------------------------------------------------------------------


def test_local_files_are_0600_in_0700_directories(tmp_path):
    root = tmp_path / "secrets"
    store = LocalSecretStore(root)
    previous = os.umask(0o000)  # a permissive umask must not loosen anything
    try:
        store.add_version("token", b"secret-bytes")
        store.add_version("token", b"more-bytes")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "token").stat().st_mode) == 0o700
    versions = sorted(p for p in (root / "token").iterdir())
    assert [p.name for p in versions] == ["1", "2"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in versions} == {0o600}


def test_local_destroyed_bytes_leave_the_disk(tmp_path):
    root = tmp_path / "secrets"
    store = LocalSecretStore(root)
    store.add_version("token", b"first-secret-value")
    store.add_version("token", b"second-secret-value")
    store.destroy_old_versions("token")
    on_disk = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert b"first-secret-value" not in on_disk
    assert b"second-secret-value" in on_disk


def test_local_health_tightens_an_open_directory(tmp_path):
    root = tmp_path / "secrets"
    store = LocalSecretStore(root)
    store.health()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    root.chmod(0o755)
    store.health()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


# --- Secret Manager: what the adapter leaves in the service, and the stand-in's fidelity ---------


@pytest.mark.emulator
def test_first_version_creates_an_automatically_replicated_secret(secret_manager, raw_client):
    store = SecretManagerStore(PROJECT, endpoint=secret_manager.endpoint)
    store.add_version("new-secret", b"x")
    secret = raw_client.get_secret(name=f"projects/{PROJECT}/secrets/new-secret")
    assert "automatic" in secret.replication
    version = raw_client.get_secret_version(name=f"projects/{PROJECT}/secrets/new-secret/versions/1")
    assert version.client_specified_payload_checksum is True


@pytest.mark.emulator
def test_write_volume(secret_manager):
    store = SecretManagerStore(PROJECT, endpoint=secret_manager.endpoint)
    store.add_version("counted", b"1")
    assert secret_manager.write_count("counted") == 2  # create the secret, add version 1
    store.add_version("counted", b"2")
    store.add_version("counted", b"3")
    assert secret_manager.write_count("counted") == 4
    store.destroy_old_versions("counted")
    assert secret_manager.write_count("counted") == 6  # one destroy per old version
    store.destroy_old_versions("counted")
    assert secret_manager.write_count("counted") == 6  # nothing to destroy: a listing, no write
    store.access("counted")
    assert secret_manager.write_count("counted") == 6
    assert secret_manager.calls["ListSecretVersions"] == 2


@pytest.mark.emulator
def test_destroyed_versions_are_reported_destroyed(secret_manager):
    store = SecretManagerStore(PROJECT, endpoint=secret_manager.endpoint)
    for i in range(3):
        store.add_version("s", b"%d" % i)
    store.destroy_old_versions("s", keep=2)
    assert secret_manager.version_states(f"projects/{PROJECT}/secrets/s") == {
        1: "DESTROYED", 2: "ENABLED", 3: "ENABLED"}


@pytest.mark.emulator
def test_standin_answers_like_the_service(raw_client):
    parent = f"projects/{PROJECT}"
    name = f"{parent}/secrets/s"
    with pytest.raises(gexc.InvalidArgument):  # replication is required
        raw_client.create_secret(request={"parent": parent, "secret_id": "s", "secret": {}})
    raw_client.create_secret(request={"parent": parent, "secret_id": "s",
                                      "secret": {"replication": {"automatic": {}}}})
    with pytest.raises(gexc.AlreadyExists):
        raw_client.create_secret(request={"parent": parent, "secret_id": "s",
                                          "secret": {"replication": {"automatic": {}}}})
    with pytest.raises(gexc.NotFound):
        raw_client.access_secret_version(name=f"{name}/versions/latest")  # no versions yet

    for data in (b"a", b"b", b"c"):
        raw_client.add_secret_version(parent=name, payload={"data": data})
    response = raw_client.access_secret_version(name=f"{name}/versions/latest")
    assert response.name == f"{name}/versions/3"  # the alias resolves to the number
    assert response.payload.data == b"c"
    assert "data_crc32c" in response.payload  # stored even when the client sent none

    raw_client.destroy_secret_version(name=f"{name}/versions/1")
    with pytest.raises(gexc.FailedPrecondition):
        raw_client.access_secret_version(name=f"{name}/versions/1")
    with pytest.raises(gexc.FailedPrecondition):
        raw_client.destroy_secret_version(name=f"{name}/versions/1")
    with pytest.raises(gexc.NotFound):
        raw_client.access_secret_version(name=f"{name}/versions/9")

    listed = [v.name.rsplit("/", 1)[-1] for v in raw_client.list_secret_versions(
        request={"parent": name, "page_size": 1})]
    assert listed == ["3", "2", "1"]  # newest first, across pages
    enabled = [v.name.rsplit("/", 1)[-1] for v in raw_client.list_secret_versions(
        request={"parent": name, "filter": "state:ENABLED"})]
    assert enabled == ["3", "2"]
    with pytest.raises(gexc.InvalidArgument):
        list(raw_client.list_secret_versions(request={"parent": name, "filter": "labels.team:x"}))

    with pytest.raises(gexc.InvalidArgument):  # payloads are capped at 64 KiB
        raw_client.add_secret_version(parent=name, payload={"data": b"x" * (64 * 1024 + 1)})
    with pytest.raises(gexc.InvalidArgument):  # a wrong checksum is refused
        raw_client.add_secret_version(parent=name, payload={"data": b"x", "data_crc32c": 1})

    # "latest" names the newest version even when that one is destroyed: it does not fall back.
    raw_client.destroy_secret_version(name=f"{name}/versions/3")
    with pytest.raises(gexc.FailedPrecondition):
        raw_client.access_secret_version(name=f"{name}/versions/latest")

    raw_client.delete_secret(name=name)
    with pytest.raises(gexc.NotFound):
        raw_client.get_secret(name=name)
    with pytest.raises(gexc.NotFound):
        raw_client.delete_secret(name=name)


@pytest.mark.emulator
def test_health_fails_when_the_service_is_down():
    with SecretManagerStandin() as server:
        endpoint = server.endpoint
    store = SecretManagerStore(PROJECT, endpoint=endpoint)
    with pytest.raises(DependencyDown):
        store.health()
