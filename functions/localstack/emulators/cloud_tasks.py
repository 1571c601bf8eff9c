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
import tempfile
from collections.abc import Iterable
from pathlib import Path

from functions.localstack.emulators.base import EmulatorError, Process, free_port, port_open, wait_until

log = logging.getLogger(__name__)

MODULE = "gcloud_tasks_emulator"


def available() -> str | None:
    """Why the emulator cannot run here, or None when its package is importable."""
    if importlib.util.find_spec(MODULE) is None:
        return "gcloud-tasks-emulator is not installed (pip install --no-deps gcloud-tasks-emulator)"
    return None


class CloudTasksEmulator:
    """One emulator process on a free port, reached at 127.0.0.1.

    Args:
        port: Port to bind; a free one when None.
        queues: Full queue paths (``projects/P/locations/L/queues/Q``) to create at start.
        max_retries: Retries of a failed task before the emulator drops it; -1 retries forever. A small
            number keeps a test's failing tasks from spinning for the rest of the session.
        log_path: Where the emulator's output goes; a temporary file when None.
        startup_timeout: Seconds to wait for the port to accept connections.
    """

    def __init__(self, *, port: int | None = None, queues: Iterable[str] = (), max_retries: int = -1,
                 log_path: Path | None = None, startup_timeout: float = 30.0):
        self.port = port
        self.queues = tuple(queues)
        self.max_retries = max_retries
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._process: Process | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:port`` of the running emulator."""
        if self.port is None or self._process is None:
            raise EmulatorError("the Cloud Tasks emulator is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> CloudTasksEmulator:
        """Start the emulator and wait until its gRPC port accepts connections.

        Raises:
            EmulatorError: the package is missing, the process exited, or it never became ready.
        """
        if self._process is not None:
            return self
        reason = available()
        if reason:
            raise EmulatorError(reason)
        self.port = self.port or free_port()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="cloud-tasks-emulator-")) / "emulator.log"
        argv = [sys.executable, "-m", MODULE, "start", "--port", str(self.port),
                "--max-retries", str(self.max_retries)]
        for queue in self.queues:
            argv += ["--default-queue", queue]
        self._process = Process(argv, log=self.log_path)
        log.info("starting the Cloud Tasks emulator", extra={"pid": self._process.pid, "port": self.port})
        try:
            # The servicer is registered before the gRPC server starts listening, so an open port means
            # requests are served.
            wait_until(port_open(self.port), timeout=self.startup_timeout, what="Cloud Tasks emulator",
                       process=self._process.popen, log=self.log_path)
        except BaseException:
            self.stop()
            raise
        log.info("Cloud Tasks emulator ready", extra={"host": self.host})
        return self

    def stop(self) -> None:
        """Stop the emulator by its PID (its whole process group)."""
        if self._process is None:
            return
        log.info("stopping the Cloud Tasks emulator", extra={"pid": self._process.pid})
        self._process.stop()
        self._process = None

    def __enter__(self) -> CloudTasksEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
