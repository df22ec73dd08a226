"""`fleet init DIR`: a new bare fleet-state repository seeded with the example content.

Bare, so people clone it and push to it, and the controller uses it as its
source of truth. Built with the real `git` command in a scratch clone.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from controller.gitstore import GitError

IDENTITY = ["-c", "user.name=fleet init", "-c", "user.email=fleet@localhost"]


def example_dir() -> Path:
    """The shipped example fleet repository (fleet-state-example/ in the source tree)."""
    return Path(str(resources.files("controller") / "example"))


def init_repo(target: Path, branch: str = "main") -> Path:
    target = target.expanduser().resolve()
    if target.exists() and any(target.iterdir()):
        raise GitError(f"{target} exists and is not empty: choose a new directory")
    _git("init", "-q", "--bare", f"--initial-branch={branch}", str(target))
    with tempfile.TemporaryDirectory(prefix="fleet-init-") as scratch:
        work = Path(scratch) / "work"
        shutil.copytree(example_dir(), work, symlinks=False)
        _git("init", "-q", f"--initial-branch={branch}", str(work))
        _git("-C", str(work), "add", "-A")
        _git("-C", str(work), *IDENTITY, "commit", "-q", "-m", "fleet init: example hosts, agents and a task")
        _git("-C", str(work), "push", "-q", str(target), f"HEAD:refs/heads/{branch}")
    return target


def _git(*args: str) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed: {proc.stderr.strip()}")
