"""One plain local stack for the reliability modules that need a running system but no faults (the
authentication matrix, hostile uploads, the log scan, the API fuzzing): starting one costs seconds."""

from __future__ import annotations

import pytest

from functions.localstack.emulators.base import free_port
from functions.localstack.stack import LocalStack


@pytest.fixture(scope="session")
def reliability_stack(tmp_path_factory):
    stack = LocalStack(port=free_port(), data_dir=tmp_path_factory.mktemp("reliability-stack")).start()
    yield stack
    stack.stop()
