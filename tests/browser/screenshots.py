"""Refresh docs/screenshots/voice-training.png and dashboard.png from the browser tests that take them.

    .venv/bin/python tests/browser/screenshots.py

The screenshots come from the real local stack in the state those tests leave it (a dropped PDF in the
gallery; a blocked workflow, changed flags and quotas on the dashboard), so they show working pages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = [
    "tests/browser/test_voice_training.py::test_dropping_a_pdf_uploads_it_with_progress_and_it_reaches_ready",
    "tests/browser/test_dashboard.py",
]

if __name__ == "__main__":
    env = {**os.environ, "LEADVOICE_DOCS_SCREENSHOTS": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", *TESTS], cwd=ROOT, env=env, check=False)
    for name in ("voice-training", "dashboard"):
        path = ROOT / "docs" / "screenshots" / f"{name}.png"
        print(f"{path.relative_to(ROOT)}: {'written' if path.exists() else 'MISSING'}")
    sys.exit(result.returncode)
