"""The package as pip builds it: silent, and with the data `fleet init` seeds from.

Built from a copy of the source tree (symlinks kept, as git checks them out),
with the same build isolation `make demo`'s `pip install` uses.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", ".cache", "build", "*.egg-info", "__pycache__",
                              ".pytest_cache", "tests", "benchmarks", "node_modules")


def test_wheel_builds_without_warnings_and_ships_the_data(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=SKIP)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps",
                          "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "is absent from the `packages` configuration" not in log
    assert "_Warning" not in log and "BuildBackendWarning" not in log
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("fleet-*.whl"))).namelist())
    assert "controller/executors/runwrapper.sh" in names
    for schema in ("task", "host", "agent", "fleet", "status"):
        assert f"controller/schemas/{schema}.schema.json" in names
    shipped = {n for n in names if n.startswith("controller/example/")}
    in_tree = {f"controller/example/{p.relative_to(ROOT / 'fleet-state-example').as_posix()}"
               for p in (ROOT / "fleet-state-example").rglob("*") if p.is_file()}
    in_tree |= {f"controller/example/schemas/{p.name}" for p in (ROOT / "controller/schemas").glob("*.json")}
    assert in_tree <= shipped and "controller/example/tasks/hello.yaml" in shipped
    assert not any(n.startswith(("tests/", "tools/", "benchmarks/")) for n in names)
