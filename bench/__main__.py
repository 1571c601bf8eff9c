"""`python -m bench [name ...]`: run the bench_*.py modules, write bench/results.json, print a table.

Every figure that matters is a ratio measured within one run (the thing against a bare baseline on the
same machine at the same moment), so results stay comparable on a noisy machine.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent
# Run only when named (`make soak`): minutes of load with injected faults, not a ratio for every run.
ON_DEMAND = {"bench_soak"}


def discover(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if names:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in names}
        return [n for n in found if n in wanted]
    return [n for n in found if n not in ON_DEMAND]


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


def main(argv: list[str]) -> int:
    results: dict = {"machine": {"python": platform.python_version(), "platform": platform.platform()},
                     "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "benches": {}}
    failed = []
    for name in discover(argv):
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        try:
            figures = importlib.import_module(f"bench.{name}").run()
            results["benches"][name] = figures
        except Exception:
            failed.append(name)
            results["benches"][name] = {"error": traceback.format_exc(limit=5)}
        print(f"  {name} took {time.perf_counter() - started:.1f}s", flush=True)
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    rows: dict = {}
    for name, figures in results["benches"].items():
        _flatten(name.removeprefix("bench_"), figures, rows)
    width = max((len(k) for k in rows), default=10)
    print()
    print(f"{'figure'.ljust(width)}  value")
    print(f"{'-' * width}  -----")
    for key, value in rows.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key.ljust(width)}  {shown.splitlines()[0] if shown else shown}")
    print(f"\nwritten: {HERE / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
