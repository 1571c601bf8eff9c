"""Load terraform/ with python-hcl2, with the quotes it keeps around strings and keys taken off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"


def unquote(value: Any) -> Any:
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items()}
    return value


def tf_files(folder: Path = TERRAFORM) -> list[Path]:
    return sorted(folder.rglob("*.tf"))


def load(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return unquote(hcl2.load(fh))


def load_dir(folder: Path = TERRAFORM) -> dict[str, Any]:
    """Blocks of the .tf files directly in ``folder`` (one module), merged by block type."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(folder.glob("*.tf")):
        for kind, blocks in load(path).items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(module: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every resource block."""
    out = []
    for block in module.get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                out.append((rtype, name, body))
    return out


def resource(module: dict[str, Any], rtype: str, name: str) -> dict[str, Any]:
    for t, n, body in resources(module):
        if (t, n) == (rtype, name):
            return body
    raise KeyError(f"{rtype}.{name}")


def locals_(module: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in module.get("locals", []):
        out.update(block)
    return out


def variable(module: dict[str, Any], name: str) -> dict[str, Any]:
    for block in module.get("variable", []):
        if name in block:
            return block[name]
    raise KeyError(name)


def module_call(module: dict[str, Any], name: str) -> dict[str, Any]:
    calls = [block[name] for block in module.get("module", []) if name in block]
    assert len(calls) == 1, f"module {name} is called {len(calls)} times"
    return calls[0]
