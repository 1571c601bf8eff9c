"""checkov passes on terraform/, run through .ci/checkov (which builds its own virtualenv on first use)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.deploy.hcl import ROOT


@pytest.mark.slow
def test_checkov_passes():
    started = time.monotonic()
    result = subprocess.run(["bash", str(ROOT / ".ci" / "checkov")], cwd=ROOT, capture_output=True, text=True,
                            timeout=1200)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    counts = re.search(r"Passed checks: (\d+), Failed checks: (\d+)", output)
    assert counts, output[-2000:]
    assert int(counts.group(1)) > 50 and int(counts.group(2)) == 0
    print(f"checkov: {counts.group(0)} in {elapsed:.1f}s")
