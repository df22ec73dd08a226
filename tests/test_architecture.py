"""The architecture of DESIGN.md holds: the import-linter contracts in pyproject.toml pass.

The layers (cli above engine above the middle packages above the vocabulary),
the pure planner and "each outside library has one owner" are written as
`[tool.importlinter]` contracts; this runs `lint-imports` on them, and shows
on a copy of the code that a contract really catches a forbidden import.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(code_root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with pyproject.toml's contracts on the `controller` package under `code_root`."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=code_root, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, f"lint-imports failed:\n{run.stdout}{run.stderr}"
    assert "0 broken" in run.stdout, run.stdout


def test_a_forbidden_import_breaks_its_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "controller", tmp_path / "controller",
                    ignore=shutil.ignore_patterns("__pycache__"))
    planner = tmp_path / "controller" / "plan" / "planner.py"
    planner.write_text(planner.read_text() + "\nimport pygit2  # noqa: E402\n")
    run = lint_imports(tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "pygit2 only in the git store BROKEN" in out, out
    assert "plan is pure: no IO, no clock, no process BROKEN" in out, out
    assert "controller.plan.planner -> pygit2" in out, out


def test_importing_every_module_changes_no_global_setting() -> None:
    # Settings of other libraries (asyncssh's log level, libgit2's cache) are
    # made by the constructors that need them, never as a side effect of import.
    code = ("import importlib, logging, pkgutil, controller\n"
            "for m in pkgutil.walk_packages(controller.__path__, 'controller.'):\n"
            "    if m.name != 'controller.__main__': importlib.import_module(m.name)\n"
            "assert logging.getLogger('asyncssh').level == logging.NOTSET, 'asyncssh log level set at import'\n"
            "assert not logging.getLogger().handlers, 'a log handler installed at import'\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
