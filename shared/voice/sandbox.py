"""Run a function in a child process under time and memory limits.

Parsers of uploaded files are exposed to bytes written by anyone. A hostile or broken file can make a
parser loop, recurse or allocate without end; inside the worker that would hang or kill the instance
and every request it is serving. Here the work runs in a forked child with ``RLIMIT_AS`` and
``RLIMIT_CPU`` set, while the parent waits with a wall-clock deadline and kills the child by its PID
when the deadline passes. The result or the exception comes back through a pipe, pickled.

Linux only (``os.fork``). The child starts as a copy of the worker, so nothing is re-imported and a call
costs a fork and a pickle round trip: about a millisecond or two for a small worker.
"""

from __future__ import annotations

import gc
import math
import os
import pickle
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from shared.errors import PermanentError

T = TypeVar("T")

_OK, _RAISED, _UNPICKLABLE, _OUT_OF_MEMORY = "ok", "raised", "unpicklable", "out_of_memory"
_EXIT_OUT_OF_MEMORY = 86
_EXIT_FAILED = 87
_READ_CHUNK = 1 << 20


class ChildError(RuntimeError):
    """An exception from the child that could not be sent back as itself (it does not pickle).

    Attributes:
        type_name: The qualified name of the original exception class.
    """

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


def run_limited(fn: Callable[..., T], /, *args: Any, timeout_s: float, memory_mb: int, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` in a forked child limited in wall-clock time, CPU time and memory.

    The child's address space may grow by ``memory_mb`` beyond what the worker had mapped when it
    forked (the child starts as a copy of it, so an absolute cap would depend on the worker's size).
    The child is killed and reaped in every case: on return, on an exception, on a timeout, and when the
    caller itself is interrupted.

    Args:
        fn: The function to run. It, its arguments and its result must pickle (the result crosses a pipe).
        *args: Positional arguments for ``fn``.
        timeout_s: Wall-clock seconds before the child is killed. CPU time is capped at the same
            number of seconds, rounded up.
        memory_mb: Megabytes of address space the child may add.
        **kwargs: Keyword arguments for ``fn``.

    Returns:
        What ``fn`` returned.

    Raises:
        PermanentError: The child ran out of time (code ``timeout``), out of memory (code
            ``out_of_memory``) or died without answering (code ``crashed``).
        ChildError: ``fn`` raised an exception that does not pickle.
        BaseException: Whatever ``fn`` raised, as the same class with the same message; the child's
            traceback is attached as a note.
    """
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError("timeout_s and memory_mb must be positive")
    address_space = _mapped_bytes() + memory_mb * 1024 * 1024
    read_fd, write_fd = os.pipe()
    # Objects the worker already holds move to the permanent generation so the child's collector never
    # finalises them (a finalised client could write to a socket the parent still uses), and so their
    # pages stay shared; the docs of gc.freeze recommend this before a fork without exec.
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # pragma: no cover - runs in the child, which leaves through os._exit
        try:
            os.close(read_fd)
            _child(write_fd, fn, args, kwargs, timeout_s, address_space)
        finally:
            os._exit(_EXIT_FAILED)
    gc.unfreeze()
    os.close(write_fd)
    reaped = False
    try:
        payload = _read_until(read_fd, time.monotonic() + timeout_s)
        if payload is None:
            _kill(pid)
            reaped = True
            raise PermanentError(f"Processing took too long and was stopped after {timeout_s:g} s.",
                                 code="timeout", details={"limit_s": timeout_s})
        _, status = os.waitpid(pid, 0)
        reaped = True
        return _outcome(payload, status, timeout_s, memory_mb)
    finally:
        os.close(read_fd)
        if not reaped:
            _kill(pid)


def _child(write_fd: int, fn: Callable[..., Any], args: tuple, kwargs: dict, timeout_s: float,
           address_space: int) -> None:  # pragma: no cover - runs in the child
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cpu_s = max(1, math.ceil(timeout_s))
    # The soft CPU limit delivers SIGXCPU; the hard one a SIGKILL a second later if that is ignored.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        address_space = min(address_space, hard)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        message: tuple = (_OK, fn(*args, **kwargs))
    except MemoryError:
        message = (_OUT_OF_MEMORY,)
    except BaseException as exc:  # every exception is reported to the parent, which re-raises it
        message = (_RAISED, exc, traceback.format_exc())
    try:
        blob = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        os._exit(_EXIT_OUT_OF_MEMORY)
    except Exception:  # the result or the exception does not pickle: send what can be said about it
        if message[0] == _RAISED:
            exc = message[1]
            blob = pickle.dumps((_UNPICKLABLE, type(exc).__qualname__, str(exc), message[2]))
        else:
            blob = pickle.dumps((_RAISED, TypeError(f"the result of {fn!r} cannot be pickled"), ""))
    view = memoryview(blob)
    while view:
        written = os.write(write_fd, view)
        view = view[written:]
    os.close(write_fd)
    os._exit(0)


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to ``fd`` until end of file, or None when the deadline passes first."""
    chunks: list[bytes] = []
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if not poller.poll(max(1, math.ceil(remaining * 1000))):
            continue
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _outcome(payload: bytes, status: int, timeout_s: float, memory_mb: int) -> Any:
    if not payload:
        raise _died(status, timeout_s, memory_mb)
    message = pickle.loads(payload)
    kind = message[0]
    if kind == _OK:
        return message[1]
    if kind == _OUT_OF_MEMORY:
        raise _out_of_memory(memory_mb)
    if kind == _UNPICKLABLE:
        _, type_name, text, child_traceback = message
        error = ChildError(type_name, text)
        error.add_note(f"In the sandboxed child:\n{child_traceback}")
        raise error
    exc, child_traceback = message[1], message[2]
    if child_traceback:
        exc.add_note(f"In the sandboxed child:\n{child_traceback}")
    raise exc


def _died(status: int, timeout_s: float, memory_mb: int) -> PermanentError:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:  # the soft RLIMIT_CPU
            return PermanentError(f"Processing took too long and was stopped after {timeout_s:g} s of CPU time.",
                                  code="timeout", details={"limit_s": timeout_s})
        if sig == signal.SIGKILL:
            # Nothing here sends SIGKILL before the child has answered except the kernel: the hard
            # RLIMIT_CPU (only reached if SIGXCPU is ignored) or, far more often, the out-of-memory killer
            # of the instance's memory cgroup.
            return _out_of_memory(memory_mb)
        return PermanentError(f"Processing crashed ({signal.Signals(sig).name}).", code="crashed")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _EXIT_OUT_OF_MEMORY:
        return _out_of_memory(memory_mb)
    return PermanentError("Processing stopped without an answer.", code="crashed")


def _out_of_memory(memory_mb: int) -> PermanentError:
    return PermanentError(f"Processing needed too much memory and was stopped (limit {memory_mb} MB).",
                          code="out_of_memory", details={"limit_mb": memory_mb})


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _mapped_bytes() -> int:
    """The virtual size of this process: the floor under any RLIMIT_AS a forked child can live with."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()
