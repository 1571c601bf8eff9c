"""The sandbox: results and exceptions cross the process boundary; time and memory caps hold; no child survives."""

from __future__ import annotations

import faulthandler
import gc
import os
import resource
import signal
import time

import psutil
import pytest

from shared.errors import NotFound, PermanentError
from shared.voice.sandbox import ChildError, run_limited


@pytest.fixture(autouse=True)
def no_children_left_behind():
    # Other fixtures of the session (emulators, databases) have children of their own: only the
    # children that appear during a test, alive or zombie, count against the sandbox.
    before = {child.pid for child in psutil.Process().children()}
    yield
    left = [child for child in psutil.Process().children() if child.pid not in before]
    assert left == [], f"children left behind: {[(c.pid, c.status()) for c in left]}"


def add(a, b, *, scale=1):
    return (a + b) * scale


def test_returns_the_result_and_passes_arguments():
    assert run_limited(add, 2, 3, scale=10, timeout_s=5, memory_mb=64) == 50


def test_runs_in_another_process():
    assert run_limited(os.getpid, timeout_s=5, memory_mb=64) != os.getpid()


def test_a_large_result_crosses_the_pipe_whole():
    result = run_limited(bytes, 5 * 1024 * 1024 + 3, timeout_s=10, memory_mb=256)
    assert len(result) == 5 * 1024 * 1024 + 3


def raise_not_found():
    raise NotFound("no such sample", details={"id": 7})


def test_exceptions_keep_their_class_message_and_attributes():
    with pytest.raises(NotFound) as caught:
        run_limited(raise_not_found, timeout_s=5, memory_mb=64)
    assert caught.value.message == "no such sample"
    assert caught.value.details == {"id": 7}
    assert caught.value.status == 404
    assert any("raise_not_found" in note for note in caught.value.__notes__)  # the child's traceback


def raise_value_error():
    raise ValueError("bad value 42")


def test_builtin_exceptions_cross_too():
    with pytest.raises(ValueError, match="bad value 42"):
        run_limited(raise_value_error, timeout_s=5, memory_mb=64)


class Unpicklable(Exception):
    def __init__(self, message, *, extra):  # the required keyword breaks unpickling via cls(*args)
        super().__init__(message)
        self.extra = extra

    def __reduce__(self):
        raise TypeError("not picklable")


def raise_unpicklable():
    raise Unpicklable("odd failure", extra=object())


def test_an_exception_that_does_not_pickle_arrives_as_child_error_with_its_name():
    with pytest.raises(ChildError, match="Unpicklable: odd failure") as caught:
        run_limited(raise_unpicklable, timeout_s=5, memory_mb=64)
    assert caught.value.type_name == "Unpicklable"


def return_lambda():
    return lambda: None


def test_a_result_that_does_not_pickle_is_a_type_error():
    with pytest.raises(TypeError, match="cannot be pickled"):
        run_limited(return_lambda, timeout_s=5, memory_mb=64)


def test_wall_clock_timeout_kills_a_sleeping_child():
    started = time.monotonic()
    with pytest.raises(PermanentError, match="took too long") as caught:
        run_limited(time.sleep, 30, timeout_s=0.5, memory_mb=64)
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 10  # far less than the 30 s sleep: the child was killed


def spin():
    while True:
        pass


def test_timeout_stops_a_busy_loop():
    with pytest.raises(PermanentError, match="took too long") as caught:
        run_limited(spin, timeout_s=0.5, memory_mb=64)
    assert caught.value.code == "timeout"


def allocate(megabytes):
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def test_memory_cap_turns_a_big_allocation_into_a_permanent_error():
    assert run_limited(allocate, 16, timeout_s=5, memory_mb=128) == 16 * 1024 * 1024
    with pytest.raises(PermanentError, match="too much memory") as caught:
        run_limited(allocate, 4096, timeout_s=5, memory_mb=128)
    assert caught.value.code == "out_of_memory"
    # The cap was the child's: this process can still allocate what the child could not.
    assert len(bytearray(256 * 1024 * 1024)) == 256 * 1024 * 1024


def grow_list():
    items = []
    while True:
        items.append("x" * 1000)


def test_memory_cap_stops_gradual_growth():
    with pytest.raises(PermanentError, match="too much memory"):
        run_limited(grow_list, timeout_s=20, memory_mb=64)


def crash():
    faulthandler.disable()  # pytest's fault handler would print the child's stack to the test output
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_child_killed_by_a_signal_is_reported_as_crashed():
    with pytest.raises(PermanentError, match="crashed \\(SIGSEGV\\)") as caught:
        run_limited(crash, timeout_s=5, memory_mb=64)
    assert caught.value.code == "crashed"


def test_a_child_that_exits_without_answering_is_reported():
    with pytest.raises(PermanentError, match="without an answer"):
        run_limited(os._exit, 3, timeout_s=5, memory_mb=64)


def test_limits_and_gc_state_of_the_caller_are_untouched():
    before = (resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_CPU))
    run_limited(add, 1, 1, timeout_s=5, memory_mb=64)
    with pytest.raises(PermanentError):
        run_limited(allocate, 4096, timeout_s=5, memory_mb=64)
    assert (resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_CPU)) == before
    assert gc.get_freeze_count() == 0


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        run_limited(add, 1, 2, timeout_s=0, memory_mb=64)
    with pytest.raises(ValueError):
        run_limited(add, 1, 2, timeout_s=1, memory_mb=0)
