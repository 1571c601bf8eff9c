"""The Firestore emulator that ships with the gcloud SDK, started from its jar with ``java``.

Going around ``gcloud emulators firestore start`` saves the SDK's Python start-up and, more importantly,
gives us the PID of the JVM itself, so stopping it never needs a search by process name.
"""

from __future__ import annotations

import logging
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from functions.localstack.emulators.base import EmulatorError, ProcessEmulator, http_ok

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


class FirestoreEmulator(ProcessEmulator):
    """One emulator process bound to 127.0.0.1 on a free port.

    Args:
        jar: The emulator jar.
        port: Port to bind; a free one when None.
        log_path: Where the emulator's output goes; a temporary file when None.
        startup_timeout: Seconds to wait for the first successful readiness probe.
    """

    name = "Firestore emulator"

    def __init__(self, *, jar: Path = DEFAULT_JAR, port: int | None = None, log_path: Path | None = None,
                 startup_timeout: float = 90.0):
        super().__init__(port=port, log_path=log_path, startup_timeout=startup_timeout)
        self.jar = Path(jar)

    def unavailable(self) -> str | None:
        return available(self.jar)

    def argv(self) -> list[str]:
        return [
            shutil.which("java") or "java",
            # The emulator only supports English error messages (as gcloud's own wrapper script notes).
            "-Duser.language=en",
            "-cp", str(self.jar), MAIN_CLASS,
            "--host", "127.0.0.1",
            "--port", str(self.port),
        ]

    def ready(self) -> bool:
        # The root path answers "Ok" once the gRPC and REST servers accept requests.
        return http_ok(f"http://127.0.0.1:{self.port}/")()

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
