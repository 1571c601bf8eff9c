"""The Firestore emulator that ships with the gcloud SDK, started from its jar with ``java``.

Going around ``gcloud emulators firestore start`` saves the SDK's Python start-up and, more importantly,
gives us the PID of the JVM itself, so stopping it never needs a search by process name.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from functions.localstack.emulators.base import EmulatorError, Process, free_port, wait_until

log = logging.getLogger(__name__)

DEFAULT_JAR = Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"


def available(jar: Path = DEFAULT_JAR) -> str | None:
    """Why the emulator cannot run here, or None when ``java`` and the jar are both present."""
    if shutil.which("java") is None:
        return "java is not on PATH"
    if not jar.is_file():
        return f"the Firestore emulator jar is missing ({jar}); install google-cloud-cli-firestore-emulator"
    return None


class FirestoreEmulator:
    """One emulator process bound to 127.0.0.1 on a free port.

    Args:
        jar: The emulator jar.
        port: Port to bind; a free one when None.
        log_path: Where the emulator's output goes; a temporary file when None.
        startup_timeout: Seconds to wait for the first successful readiness probe.
    """

    def __init__(self, *, jar: Path = DEFAULT_JAR, port: int | None = None, log_path: Path | None = None,
                 startup_timeout: float = 90.0):
        self.jar = Path(jar)
        self.port = port
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._process: Process | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:port`` of the running emulator."""
        if self.port is None or self._process is None:
            raise EmulatorError("the Firestore emulator is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> FirestoreEmulator:
        """Start the JVM and wait until the emulator answers HTTP.

        Raises:
            EmulatorError: java or the jar is missing, the process exited, or it never became ready.
        """
        if self._process is not None:
            return self
        reason = available(self.jar)
        if reason:
            raise EmulatorError(reason)
        self.port = self.port or free_port()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="firestore-emulator-")) / "emulator.log"
        argv = [
            shutil.which("java") or "java",
            # The emulator only supports English error messages (as gcloud's own wrapper script notes).
            "-Duser.language=en",
            "-cp", str(self.jar), MAIN_CLASS,
            "--host", "127.0.0.1",
            "--port", str(self.port),
        ]
        self._process = Process(argv, log=self.log_path)
        log.info("starting the Firestore emulator", extra={"pid": self._process.pid, "port": self.port})
        try:
            # The root path answers "Ok" once the gRPC and REST servers accept requests.
            wait_until(self._ready, timeout=self.startup_timeout, what="Firestore emulator",
                       process=self._process.popen, log=self.log_path)
        except BaseException:
            self.stop()
            raise
        log.info("Firestore emulator ready", extra={"host": self.host})
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def reset(self, project: str, database: str = "(default)") -> None:
        """Delete every document of ``project``'s database (the emulator's own DELETE endpoint).

        Raises:
            EmulatorError: the emulator refused the request.
        """
        path = f"/emulator/v1/projects/{urllib.parse.quote(project)}/databases/{urllib.parse.quote(database)}/documents"
        request = urllib.request.Request(f"http://{self.host}{path}", method="DELETE")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                if resp.status >= 300:
                    raise EmulatorError(f"Firestore emulator reset answered {resp.status}")
        except urllib.error.HTTPError as exc:
            raise EmulatorError(f"Firestore emulator reset answered {exc.code}") from exc

    def stop(self) -> None:
        """Stop the JVM by its PID (its whole process group)."""
        if self._process is None:
            return
        log.info("stopping the Firestore emulator", extra={"pid": self._process.pid})
        self._process.stop()
        self._process = None

    def __enter__(self) -> FirestoreEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
