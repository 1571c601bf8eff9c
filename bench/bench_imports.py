"""Cold import time and peak memory of each function module against bare functions-framework + flask.

Each sample is a fresh interpreter (no shared import cache), timed from inside so interpreter start-up
is excluded; the median of REPEATS samples is kept and each function is reported as a ratio to the
baseline measured in the same run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 7

_PROBE = r"""
import json, sys, time
sys.path.insert(0, {root!r})

def hwm_kib():
    # VmHWM belongs to this process image; ru_maxrss would carry over the parent's peak through fork+exec.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

before = hwm_kib()
t = time.perf_counter()
{body}
elapsed = time.perf_counter() - t
print(json.dumps({{"seconds": elapsed, "peak_kib": hwm_kib(), "start_kib": before}}))
"""

BASELINE = "import functions_framework, flask"


def _function_import(main: Path) -> str:
    # Loaded the way functions-framework loads a source file, so the measurement matches a cold start.
    return ("import importlib.util, functions_framework, flask\n"
            f"spec = importlib.util.spec_from_file_location('main', {str(main)!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "sys.modules['main'] = module\n"
            "spec.loader.exec_module(module)")


def _sample(body: str) -> dict:
    code = _PROBE.format(root=str(ROOT), body=body)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(samples: list[dict]) -> dict:
    return {"seconds": statistics.median(s["seconds"] for s in samples),
            "peak_mib": statistics.median(s["peak_kib"] for s in samples) / 1024}


def targets() -> dict[str, str]:
    found = {}
    for main in sorted((ROOT / "functions").glob("*/main.py")):
        found[main.parent.name] = _function_import(main)
    # The shared core every function imports: measured even before any function exists.
    found["shared_core"] = "import functions_framework, flask\nimport shared.bootstrap, shared.web, shared.logs"
    return found


def run() -> dict:
    bodies = {"baseline": BASELINE, **targets()}
    samples: dict[str, list[dict]] = {name: [] for name in bodies}
    for _ in range(REPEATS):  # interleaved: load on the machine falls on every target alike
        for name, body in bodies.items():
            samples[name].append(_sample(body))
    measured = {name: _summary(values) for name, values in samples.items()}
    baseline = measured.pop("baseline")
    figures = {"baseline": {"import_ms": round(baseline["seconds"] * 1000, 1),
                            "peak_mib": round(baseline["peak_mib"], 1)},
               "repeats": REPEATS}
    for name, m in measured.items():
        figures[name] = {
            "import_ms": round(m["seconds"] * 1000, 1),
            "import_ratio": round(m["seconds"] / baseline["seconds"], 2),
            "peak_mib": round(m["peak_mib"], 1),
            "peak_ratio": round(m["peak_mib"] / baseline["peak_mib"], 2),
        }
    return figures
