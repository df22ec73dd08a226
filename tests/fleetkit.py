"""Test helpers that play the people around fleet, with real git repositories.

A fleet repository made by `fleet init`, a target repository with one commit,
and a person's clone of the fleet repo to edit tasks in and push from.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import yaml

from controller.cli.init import init_repo

PERSON_ENV = {"GIT_AUTHOR_NAME": "Pat", "GIT_AUTHOR_EMAIL": "pat@example.invalid",
              "GIT_COMMITTER_NAME": "Pat", "GIT_COMMITTER_EMAIL": "pat@example.invalid",
              "GIT_TERMINAL_PROMPT": "0"}


def git(*args, cwd=None, check=True) -> str:
    proc = subprocess.run(["git", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **PERSON_ENV})
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr}")
    return proc.stdout


class World:
    """A fleet repo, a target repo, and Pat's clone of the fleet repo."""

    def __init__(self, root: Path, max_concurrent: int = 2):
        self.root = root
        self.fleet = init_repo(root / "fleet.git")
        self.target = root / "target.git"
        self._make_target()
        self.person = root / "pat"
        git("clone", "-q", self.fleet, self.person)
        (self.person / "tasks" / "hello.yaml").unlink()
        self.workdir = root / "host-local"
        self.write("hosts/local.yaml", {"name": "local", "address": "local",
                                        "capabilities": ["demo"], "max_concurrent": max_concurrent,
                                        "workdir": str(self.workdir)})
        fleet_yaml = yaml.safe_load((self.person / "fleet.yaml").read_text())
        fleet_yaml["backoff"] = {"base": "1s", "max": "1s"}
        self.write("fleet.yaml", fleet_yaml)

    def _make_target(self) -> None:
        git("init", "-q", "--bare", "--initial-branch=main", self.target)
        seed = self.root / "target-seed"
        git("init", "-q", "--initial-branch=main", seed)
        (seed / "README.md").write_text("# target\n")
        git("add", "-A", cwd=seed)
        git("commit", "-qm", "initial", cwd=seed)
        git("push", "-q", self.target, "HEAD:refs/heads/main", cwd=seed)

    def write(self, rel: str, data) -> None:
        path = self.person / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))

    def task(self, task_id: str, **fields) -> None:
        body = {"id": task_id, "title": f"Task {task_id}", "agent": "demo",
                "goal": f"Do {task_id}.", "repo": str(self.target)}
        body.update(fields)
        self.write(f"tasks/{task_id}.yaml", body)

    def agent(self, name: str, command: list[str], output: str = "claude-json") -> None:
        self.write(f"agents/{name}.yaml", {"name": name, "command": command, "output": output,
                                           "requires": ["demo"]})

    def push(self, message: str = "edit tasks") -> None:
        git("add", "-A", cwd=self.person)
        git("commit", "-qm", message, cwd=self.person)
        git("pull", "-q", "--rebase", cwd=self.person)   # the controller pushes status commits
        git("push", "-q", cwd=self.person)

    def status(self, task_id: str) -> dict | None:
        """status/<id>.yaml as the fleet repo's main has it now."""
        proc = subprocess.run(["git", "-C", str(self.fleet), "show", f"main:status/{task_id}.yaml"],
                              capture_output=True, text=True)
        return yaml.safe_load(proc.stdout) if proc.returncode == 0 else None

    def target_file(self, branch: str, path: str) -> str | None:
        proc = subprocess.run(["git", "-C", str(self.target), "show", f"{branch}:{path}"],
                              capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else None

    def merge(self, branch: str) -> None:
        work = self.root / "reviewer"
        if not work.exists():
            git("clone", "-q", self.target, work)
        git("fetch", "-q", cwd=work)
        git("merge", "-q", "--no-ff", "-m", f"merge {branch}", f"origin/{branch}", cwd=work)
        git("push", "-q", "origin", "HEAD:main", cwd=work)


def wait_for(predicate, timeout: float = 30.0, step: float = 0.1):
    """Poll until predicate() is truthy; bounded, so a broken run fails instead of hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")
