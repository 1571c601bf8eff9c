"""The Pub/Sub emulator that ships with the gcloud SDK, started from its jar with ``java``.

``bin/cloud-pubsub-emulator`` is a generated launcher that ends in ``java -jar <the jar> "$@"``; calling
``java`` ourselves skips the shell wrapper and gives us the JVM's own PID, so stopping it never needs a
search by process name. The jar's ``Main`` takes ``--host`` and ``--port`` and serves gRPC and HTTP on
that one port; ``GET /`` answers ``Ok`` once it accepts requests.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from functions.localstack.emulators.base import EmulatorError, Process, free_port, wait_until

log = logging.getLogger(__name__)

DEFAULT_JAR_DIR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib")
MAIN_CLASS = "com.google.cloud.pubsub.testing.v1.Main"


def find_jar(jar_dir: Path = DEFAULT_JAR_DIR) -> Path | None:
    """The emulator jar (its name carries a version, so it is looked up rather than hard-coded)."""
    jars = sorted(Path(jar_dir).glob("cloud-pubsub-emulator-*.jar"))
    return jars[-1] if jars else None


def available(jar_dir: Path = DEFAULT_JAR_DIR) -> str | None:
    """Why the emulator cannot run here, or None when ``java`` and the jar are both present."""
    if shutil.which("java") is None:
        return "java is not on PATH"
    if find_jar(jar_dir) is None:
        return f"the Pub/Sub emulator jar is missing under {jar_dir}; install google-cloud-cli-pubsub-emulator"
    return None


class PubSubEmulator:
    """One emulator process bound to 127.0.0.1 on a free port.

    Args:
        jar_dir: Directory holding ``cloud-pubsub-emulator-<version>.jar``.
        port: Port to bind; a free one when None.
        log_path: Where the emulator's output goes; a temporary file when None.
        startup_timeout: Seconds to wait for the first successful readiness probe.
    """

    def __init__(self, *, jar_dir: Path = DEFAULT_JAR_DIR, port: int | None = None, log_path: Path | None = None,
                 startup_timeout: float = 60.0):
        self.jar_dir = Path(jar_dir)
        self.port = port
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._process: Process | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:port`` of the running emulator (what ``PUBSUB_EMULATOR_HOST`` would hold)."""
        if self.port is None or self._process is None:
            raise EmulatorError("the Pub/Sub emulator is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> PubSubEmulator:
        """Start the JVM and wait until the emulator answers HTTP.

        Raises:
            EmulatorError: java or the jar is missing, the process exited, or it never became ready.
        """
        if self._process is not None:
            return self
        reason = available(self.jar_dir)
        if reason:
            raise EmulatorError(reason)
        jar = find_jar(self.jar_dir)
        self.port = self.port or free_port()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="pubsub-emulator-")) / "emulator.log"
        argv = [
            shutil.which("java") or "java",
            "-cp", str(jar), MAIN_CLASS,
            "--host=127.0.0.1",
            f"--port={self.port}",
        ]
        self._process = Process(argv, log=self.log_path)
        log.info("starting the Pub/Sub emulator", extra={"pid": self._process.pid, "port": self.port})
        try:
            wait_until(self._ready, timeout=self.startup_timeout, what="Pub/Sub emulator",
                       process=self._process.popen, log=self.log_path)
        except BaseException:
            self.stop()
            raise
        log.info("Pub/Sub emulator ready", extra={"host": self.host})
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop the JVM by its PID (its whole process group)."""
        if self._process is None:
            return
        log.info("stopping the Pub/Sub emulator", extra={"pid": self._process.pid})
        self._process.stop()
        self._process = None

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
