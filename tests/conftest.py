"""Shared fixtures: real git repositories in tmp_path, driven by the real `git`.

`git(*args, cwd=...)` runs git as a person would, with a fixed identity and no
global or system config, so tests do not depend on the machine's settings.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

# Every test fails when it leaks an asyncio task (see leaks.py): a fixture and a
# hook, defined there, found by pytest here.
from .leaks import no_leaked_tasks, pytest_runtest_call  # noqa: F401

pytest_plugins = ["pytester"]   # test_leaks.py runs an inner session

# Under CI=true a skip is a failure: a test that cannot run on CI's machine hides
# a broken machine or a missing file. Only a test marked `opt_in` (documented in
# pyproject.toml's markers: it runs when asked for) may skip there.
CI = bool(os.environ.get("CI"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped and item.get_closest_marker("opt_in") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"

PERSON_ENV = {
    "GIT_AUTHOR_NAME": "Pat Person", "GIT_AUTHOR_EMAIL": "pat@example.com",
    "GIT_COMMITTER_NAME": "Pat Person", "GIT_COMMITTER_EMAIL": "pat@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
}


def git(*args: str, cwd: Path | str) -> str:
    """Run git in `cwd`; return stdout, stripped. Fails the test on a non-zero exit."""
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **PERSON_ENV},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}:\n{proc.stderr}")
    return proc.stdout.strip()


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """An empty bare repository whose default branch is main: the source of truth."""
    path = tmp_path / "fleet.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path), cwd=tmp_path)
    return path


@pytest.fixture
def person(bare_repo: Path, tmp_path: Path) -> Path:
    """A person's working clone of bare_repo (commit there, then `git push`)."""
    path = tmp_path / "person"
    git("clone", "--quiet", str(bare_repo), str(path), cwd=tmp_path)
    git("checkout", "--quiet", "-B", "main", cwd=path)
    return path
