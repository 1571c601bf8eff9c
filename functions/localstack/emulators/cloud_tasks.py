"""The Cloud Tasks emulator from PyPI (``gcloud-tasks-emulator``), run as a child Python process.

It is installed with ``--no-deps`` because it pins an old protobuf; the client libraries we install bring
everything it imports. It is launched with the same interpreter as the caller, so it finds them.

What it does not do, and what the contract tests therefore check on the embedded queue only: it retries a
failed task at once and forever (no backoff; ``--max-retries`` bounds the count), it does not refuse a
duplicate task name, it ignores the OIDC token, and it does not implement ``DeleteTask``. Its gRPC server
listens on every interface (``[::]``) whatever the host flag says; the port is a fresh free one.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from functions.localstack.emulators.base import ProcessEmulator, port_open

log = logging.getLogger(__name__)

MODULE = "gcloud_tasks_emulator"


def available() -> str | None:
    """Why the emulator cannot run here, or None when its package is importable."""
    if importlib.util.find_spec(MODULE) is None:
        return "gcloud-tasks-emulator is not installed (pip install --no-deps gcloud-tasks-emulator)"
    return None


class CloudTasksEmulator(ProcessEmulator):
    """One emulator process on a free port, reached at 127.0.0.1.

    Args:
        port: Port to bind; a free one when None.
        queues: Full queue paths (``projects/P/locations/L/queues/Q``) to create at start.
        max_retries: Retries of a failed task before the emulator drops it; -1 retries forever. A small
            number keeps a test's failing tasks from spinning for the rest of the session.
        log_path: Where the emulator's output goes; a temporary file when None.
        startup_timeout: Seconds to wait for the port to accept connections.
    """

    name = "Cloud Tasks emulator"

    def __init__(self, *, port: int | None = None, queues: Iterable[str] = (), max_retries: int = -1,
                 log_path: Path | None = None, startup_timeout: float = 30.0):
        super().__init__(port=port, log_path=log_path, startup_timeout=startup_timeout)
        self.queues = tuple(queues)
        self.max_retries = max_retries

    def unavailable(self) -> str | None:
        return available()

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", MODULE, "start", "--port", str(self.port),
                "--max-retries", str(self.max_retries)]
        for queue in self.queues:
            argv += ["--default-queue", queue]
        return argv

    def ready(self) -> bool:
        # The servicer is registered before the gRPC server starts listening, so an open port means
        # requests are served.
        return port_open(self.port)()
