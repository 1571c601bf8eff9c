"""Build one deployable zip per function: ``build/bundles/<module>.zip``.

Each zip holds what Cloud Functions needs at its root: the function's own folder (``main.py`` first of
all), the ``shared/`` library and ``requirements.txt``. The archive is deterministic — entries sorted,
fixed timestamps and permissions, no caches — so its SHA-256 changes exactly when its content does.
Terraform names the source object after that hash (``terraform/modules/function``), so an unchanged
function is not redeployed.

Usage::

    python terraform/build_bundles.py [--root DIR] [--out DIR] [--require-all] [module ...]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# 1980-01-01 is the earliest time a zip entry can carry.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644 << 16
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def function_modules(root: Path) -> list[str]:
    """Modules under ``functions/`` that have a ``main.py`` (the deployable functions present)."""
    base = root / "functions"
    if not base.is_dir():
        return []
    return sorted(p.parent.name for p in base.glob("*/main.py") if p.parent.name not in SKIP_DIRS)


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_dir() or any(part in SKIP_DIRS for part in path.relative_to(folder).parts):
            continue
        if path.suffix in SKIP_SUFFIXES:
            continue
        yield path


def bundle_entries(root: Path, module: str) -> list[tuple[str, Path]]:
    """(name in the archive, file on disk) for one function, sorted by name."""
    entries: dict[str, Path] = {}
    fn_dir = root / "functions" / module
    if not (fn_dir / "main.py").is_file():
        raise FileNotFoundError(f"functions/{module}/main.py does not exist")
    for path in _files(fn_dir):
        entries[path.relative_to(fn_dir).as_posix()] = path
    for path in _files(root / "shared"):
        entries[(Path("shared") / path.relative_to(root / "shared")).as_posix()] = path
    entries["requirements.txt"] = root / "requirements.txt"
    return sorted(entries.items())


def build_bundle(root: Path, module: str, out_dir: Path) -> Path:
    """Write ``out_dir/<module>.zip`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{module}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name, path in bundle_entries(root, module):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever machine builds it
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    tmp.replace(target)
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_topology(root: Path):
    """``shared/topology.py`` of ``root``, loaded from its file (not whatever ``shared`` is imported)."""
    spec = importlib.util.spec_from_file_location("_bundle_topology", root / "shared" / "topology.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to build (default: every functions/<m>/main.py)")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <root>/build/bundles)")
    parser.add_argument("--require-all", action="store_true",
                        help="fail unless every function of shared/topology.FUNCTIONS has a folder")
    args = parser.parse_args(list(argv) if argv is not None else None)

    root = args.root.resolve()
    out = (args.out or root / "build" / "bundles").resolve()
    modules = args.modules or function_modules(root)
    if args.require_all:
        topology = _load_topology(root)
        missing = sorted(set(map(topology.module_name, topology.FUNCTIONS)) - set(modules))
        if missing:
            print("no functions/<m>/main.py for: " + ", ".join(missing), file=sys.stderr)
            return 1
    for module in modules:
        path = build_bundle(root, module, out)
        print(f"{path}  {sha256(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
