"""Suite-wide fixtures. Emulator fixtures live in tests/fixtures/, one module per system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _restore_environ():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true an emulator or browser test may not be skipped: a skip there becomes a failure."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and (item.get_closest_marker("emulator") or item.get_closest_marker("browser")):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is not allowed for emulator/browser tests: {report.longrepr}"
