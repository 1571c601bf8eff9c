"""The Pub/Sub emulator that ships with the gcloud SDK, started from its jar with ``java``.

``bin/cloud-pubsub-emulator`` is a generated launcher that ends in ``java -jar <the jar> "$@"``; calling
``java`` ourselves skips the shell wrapper and gives us the JVM's own PID, so stopping it never needs a
search by process name. The jar's ``Main`` takes ``--host`` and ``--port`` and serves gRPC and HTTP on
that one port; ``GET /`` answers ``Ok`` once it accepts requests.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from functions.localstack.emulators.base import ProcessEmulator, http_ok

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


class PubSubEmulator(ProcessEmulator):
    """One emulator process bound to 127.0.0.1 on a free port.

    Args:
        jar_dir: Directory holding ``cloud-pubsub-emulator-<version>.jar``.
        port: Port to bind; a free one when None.
        log_path: Where the emulator's output goes; a temporary file when None.
        startup_timeout: Seconds to wait for the first successful readiness probe.
    """

    name = "Pub/Sub emulator"

    def __init__(self, *, jar_dir: Path = DEFAULT_JAR_DIR, port: int | None = None, log_path: Path | None = None,
                 startup_timeout: float = 60.0):
        super().__init__(port=port, log_path=log_path, startup_timeout=startup_timeout)
        self.jar_dir = Path(jar_dir)

    def unavailable(self) -> str | None:
        return available(self.jar_dir)

    def argv(self) -> list[str]:
        return [shutil.which("java") or "java", "-cp", str(find_jar(self.jar_dir)), MAIN_CLASS,
                "--host=127.0.0.1", f"--port={self.port}"]

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.port}/")()
