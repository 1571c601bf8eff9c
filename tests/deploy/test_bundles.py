"""terraform/build_bundles.py: importable, deterministic function bundles."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.hcl import ROOT, TERRAFORM

sys.path.insert(0, str(TERRAFORM))
import build_bundles  # noqa: E402

EXISTING = build_bundles.function_modules(ROOT)

IMPORT_CHECK = """
import sys
bundle = sys.argv[1]
sys.path.insert(0, bundle)
import main, shared
assert main.__file__.startswith(bundle), main.__file__
assert shared.__file__.startswith(bundle), shared.__file__
"""


def _unpack(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
    return into


def _import_in_subprocess(folder: Path) -> subprocess.CompletedProcess:
    # -I: no PYTHONPATH, no user site, no current directory: only the bundle provides main and shared.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-I", "-c", IMPORT_CHECK, str(folder)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", EXISTING)
def test_bundle_of_each_function_imports(module, tmp_path):
    archive = build_bundles.build_bundle(ROOT, module, tmp_path / "out")
    names = zipfile.ZipFile(archive).namelist()
    assert "main.py" in names and "requirements.txt" in names and "shared/__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    result = _import_in_subprocess(_unpack(archive, tmp_path / "unpacked"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", EXISTING)
def test_bundles_are_byte_identical_when_built_twice(module, tmp_path):
    first = build_bundles.build_bundle(ROOT, module, tmp_path / "a").read_bytes()
    second = build_bundles.build_bundle(ROOT, module, tmp_path / "b").read_bytes()
    assert first == second


def _synthetic_root(root: Path) -> Path:
    (root / "functions" / "demo").mkdir(parents=True)
    (root / "functions" / "demo" / "main.py").write_text("from shared.greeting import hello\n\ndef demo(request):\n    return hello()\n")
    (root / "shared" / "__pycache__").mkdir(parents=True)
    (root / "shared" / "__init__.py").write_text("")
    (root / "shared" / "greeting.py").write_text("def hello():\n    return 'hello'\n")
    (root / "shared" / "__pycache__" / "greeting.cpython-311.pyc").write_bytes(b"stale")
    (root / "requirements.txt").write_text("functions-framework\n")
    return root


def test_synthetic_bundle_has_main_at_root_and_imports(tmp_path):
    root = _synthetic_root(tmp_path / "repo")
    first = build_bundles.build_bundle(root, "demo", tmp_path / "a")
    for path in root.rglob("*"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
    second = build_bundles.build_bundle(root, "demo", tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        assert zf.namelist() == sorted(zf.namelist())
        assert set(zf.namelist()) == {"main.py", "requirements.txt", "shared/__init__.py", "shared/greeting.py"}
        assert all(info.date_time == build_bundles.FIXED_TIME for info in zf.infolist())
    result = _import_in_subprocess(_unpack(first, tmp_path / "unpacked"))
    assert result.returncode == 0, result.stderr
    # A content change changes the hash, so Terraform uploads a new object and redeploys.
    (root / "shared" / "greeting.py").write_text("def hello():\n    return 'hi'\n")
    third = build_bundles.build_bundle(root, "demo", tmp_path / "c")
    assert build_bundles.sha256(third) != build_bundles.sha256(first)


def test_require_all_fails_when_a_function_has_no_folder(tmp_path, capsys):
    root = _synthetic_root(tmp_path / "repo")
    (root / "shared" / "topology.py").write_text(
        "FUNCTIONS = ('demo', 'other-one')\n\ndef module_name(f):\n    return f.replace('-', '_')\n")
    code = build_bundles.main(["--root", str(root), "--out", str(tmp_path / "out"), "--require-all"])
    assert code == 1
    assert "other_one" in capsys.readouterr().err


def test_missing_function_is_an_error(tmp_path):
    root = _synthetic_root(tmp_path / "repo")
    with pytest.raises(FileNotFoundError):
        build_bundles.build_bundle(root, "nope", tmp_path / "out")
