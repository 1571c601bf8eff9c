"""The BlobStore contract, run against the embedded directory store and against Cloud Storage
(google-cloud-storage talking to fake-gcs-server)."""

from __future__ import annotations

import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.adapters.gcs import GcsBlobStore
from shared.adapters.local_blobs import LocalBlobStore
from shared.errors import DependencyDown
from shared.ports import BlobNotFound, BlobStore

PROJECT = "test-project"


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.emulator)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LocalBlobStore | GcsBlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    bucket = request.getfixturevalue("gcs_bucket")
    return GcsBlobStore(bucket, PROJECT, endpoint=request.getfixturevalue("gcs_emulator").url)


def read_uri(uri: str, store: LocalBlobStore | GcsBlobStore) -> bytes:
    """Read an object back through the URI ``put`` returned, not through the store's own ``get``."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path)).read_bytes()
    assert parsed.scheme == "gs"
    assert parsed.netloc == store.bucket_name
    return store.get(parsed.path.lstrip("/"))


def test_implements_the_port(store):
    assert isinstance(store, BlobStore)


def test_put_get_exists_delete(store):
    assert not store.exists("notes/a.txt")
    uri = store.put("notes/a.txt", b"hello", content_type="text/plain")
    assert store.exists("notes/a.txt")
    assert store.get("notes/a.txt") == b"hello"
    assert read_uri(uri, store) == b"hello"

    assert store.delete("notes/a.txt") is True
    assert not store.exists("notes/a.txt")
    with pytest.raises(BlobNotFound):
        store.get("notes/a.txt")
    assert store.delete("notes/a.txt") is False


def test_uri_names_the_object(store, tmp_path):
    uri = store.put("rep-1/sample 1.pdf", b"%PDF-1.7")
    if isinstance(store, GcsBlobStore):
        assert uri == f"gs://{store.bucket_name}/rep-1/sample 1.pdf"
    else:
        assert uri.startswith("file://")
        assert Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path)).is_relative_to(tmp_path / "blobs")


@pytest.mark.parametrize("data", [b"", b"\x00", bytes(range(256)) * 17, b"\r\n\x1a\xff\xfe\x00tail"],
                         ids=["empty", "nul", "all-bytes", "line-ends"])
def test_binary_round_trip(store, data):
    store.put("bin/blob", data)
    assert store.get("bin/blob") == data


def test_content_type_is_kept(store):
    store.put("doc.pdf", b"%PDF", content_type="application/pdf")
    store.put("plain", b"x")
    assert store.content_type("doc.pdf") == "application/pdf"
    assert store.content_type("plain") == "application/octet-stream"
    with pytest.raises(BlobNotFound):
        store.content_type("absent")


def test_overwrite_replaces_bytes_and_type(store):
    store.put("k", b"first version, longer", content_type="text/plain")
    store.put("k", b"second", content_type="application/json")
    assert store.get("k") == b"second"
    assert store.content_type("k") == "application/json"


def test_missing_key(store):
    with pytest.raises(BlobNotFound) as info:
        store.get("never/written")
    assert isinstance(info.value, KeyError)
    assert store.exists("never/written") is False
    assert store.delete("never/written") is False


def test_a_key_and_its_prefix_coexist(store):
    # Cloud Storage has no folders: "a" and "a/b" are unrelated objects, and so they must be here.
    store.put("a", b"parent")
    store.put("a/b", b"child")
    assert (store.get("a"), store.get("a/b")) == (b"parent", b"child")
    assert store.delete("a") is True
    assert store.get("a/b") == b"child"


def test_unicode_key(store):
    store.put("résumé/naïve – 日本.txt", "ok".encode())
    assert store.get("résumé/naïve – 日本.txt") == b"ok"
    assert not store.exists("resume/naive – 日本.txt")


INVALID_KEYS = ["", "/etc/passwd", "../escape", "a/../../b", "a/..", "..", ".", "./a", "a//b", "a/", "a\\..\\b",
                "line\nbreak", "nul\x00", "x" * 1025, "y" * 201]


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused(store, key, tmp_path):
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError):
        store.put(key, b"payload")
    for call in (store.get, store.exists, store.delete):
        with pytest.raises(ValueError):
            call(key)
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_local_store_cannot_write_outside_its_root(tmp_path):
    root = tmp_path / "root"
    store = LocalBlobStore(root)
    for key in ["../outside", "a/../../outside", "/tmp/outside", "..%2Foutside"]:
        try:
            store.put(key, b"x")
        except ValueError:
            pass
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(root) for p in written)
    assert not (tmp_path / "outside").exists()


def test_local_files_are_private(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    uri = store.put("people/cv.pdf", b"private")
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_large_object(store):
    # 9 MiB: above google-cloud-storage's 8 MiB multipart limit, so the resumable path is used.
    data = os.urandom(9 * 1024 * 1024 + 123)
    store.put("big/upload.bin", data, content_type="application/zip")
    assert store.get("big/upload.bin") == data
    assert store.content_type("big/upload.bin") == "application/zip"


def test_concurrent_puts_from_one_store(store):
    keys = [f"many/{i}" for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda k: store.put(k, k.encode()), keys))
    assert [store.get(k) for k in keys] == [k.encode() for k in keys]


def test_health(store):
    store.health()


@pytest.mark.emulator
def test_gcs_health_fails_for_a_missing_bucket(gcs_emulator):
    store = GcsBlobStore("no-such-bucket", PROJECT, endpoint=gcs_emulator.url)
    with pytest.raises(DependencyDown):
        store.health()


@pytest.mark.emulator
def test_gcs_objects_are_visible_to_the_emulator(gcs_emulator, gcs_bucket):
    store = GcsBlobStore(gcs_bucket, PROJECT, endpoint=gcs_emulator.url)
    store.put("x/y", b"1")
    assert gcs_emulator.objects(gcs_bucket) == ["x/y"]
    gcs_emulator.reset()
    assert not store.exists("x/y")
