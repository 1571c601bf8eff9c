"""What every emulator launcher shares: a free loopback port, readiness polling, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


class EmulatorError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, process: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Poll ``check`` with a short, growing interval until it holds; fail with the process log otherwise."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmulatorError(f"{what} exited with {process.returncode}{_tail(log)}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)
    raise EmulatorError(f"{what} was not ready after {timeout:.0f}s{_tail(log)}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return resp.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except (urllib.error.URLError, OSError):
            return False
    return check


def port_open(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    def check() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((host, port)) == 0
    return check


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return "\n--- log tail ---\n" + log.read_text(errors="replace")[-2000:]


class Process:
    """A child process in its own process group, stopped by PID (never by name)."""

    def __init__(self, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._log_file = open(log, "ab")
        self.popen = subprocess.Popen(list(argv), stdout=self._log_file, stderr=subprocess.STDOUT,
                                      env=env, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout)
        self._log_file.close()


class ProcessEmulator:
    """An emulator run as one child process on 127.0.0.1 and a free port, stopped by its PID.

    Subclasses name themselves and say how to launch (``argv``), when they are ready (``ready``) and why
    they cannot run here (``unavailable``).
    """

    name = "emulator"

    def __init__(self, *, port: int | None = None, log_path: Path | None = None, startup_timeout: float = 60.0):
        self.port = port
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._process: Process | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def unavailable(self) -> str | None:
        return None

    @property
    def host(self) -> str:
        """``127.0.0.1:port`` of the running emulator."""
        if self.port is None or self._process is None:
            raise EmulatorError(f"the {self.name} is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self):
        """Start the process and poll until it serves.

        Raises:
            EmulatorError: it cannot run here, it exited, or it never became ready.
        """
        if self._process is not None:
            return self
        reason = self.unavailable()
        if reason:
            raise EmulatorError(reason)
        self.port = self.port or free_port()
        if self.log_path is None:
            import tempfile

            self.log_path = Path(tempfile.mkdtemp(prefix=self.name.lower().replace(" ", "-") + "-")) / "emulator.log"
        self._process = Process(self.argv(), log=self.log_path)
        try:
            wait_until(self.ready, timeout=self.startup_timeout, what=self.name, process=self._process.popen,
                       log=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process by its PID (its whole process group)."""
        if self._process is None:
            return
        self._process.stop()
        self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
