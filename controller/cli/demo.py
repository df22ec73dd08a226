"""`fleet demo`: the whole loop on one box, in a temporary directory, in seconds.

It plays every part: a person pushes tasks to a fresh fleet repository, the
controller runs them on the local host with the deterministic demo agent (one
task fails its first attempt and is retried, one waits for another through
depends_on), a reviewer merges one branch and asks for a revision of another,
the controller reconciles again, and the status table and the status history
in git are printed. Uses the real `git` command for the people's part.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from controller.app import build_engine
from controller.config import Config
from controller.cli.init import init_repo
from controller.cli.output import print_status

PERSON = ["-c", "user.name=Alice (demo)", "-c", "user.email=alice@example.invalid"]

TASKS = {
    "add-greeting": """id: add-greeting
title: Add a greeting to the project notes
agent: demo
goal: Write a friendly greeting into NOTES.md.
validation: [test -f NOTES.md]
repo: {target}
priority: 2
""",
    "write-changelog": """id: write-changelog
title: Start a changelog entry for the greeting
agent: demo
goal: Record in NOTES.md that a greeting was added.
repo: {target}
depends_on: [add-greeting]
""",
    "flaky-docs": """id: flaky-docs
title: Document how to run the project
agent: demo-flaky
goal: Explain in NOTES.md how to run the project.
constraints: [Keep it to three lines.]
repo: {target}
""",
}
FLAKY_AGENT = """name: demo-flaky
command: [fleet-demo-agent, --fail-first]
output: claude-json
requires: [demo]
"""


def run_demo(keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="fleet-demo-"))
    started = time.monotonic()
    try:
        return asyncio.run(_tour(root, started))
    finally:
        if keep:
            print(f"\n(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def _tour(root: Path, started: float) -> int:
    fleet_repo = init_repo(root / "fleet.git")
    target = _target_repo(root)
    person = root / "alice"
    _git("clone", "-q", str(fleet_repo), str(person))
    _seed(person, root, target)
    _say(f"1. Alice pushed 3 tasks to {fleet_repo}")
    engine = build_engine(Config(), str(fleet_repo), state=root / "state")   # defaults, not your config

    _say("2. fleet run --once: the controller reconciles until nothing more can start")
    await engine.run(once=True, tick=0.2)

    _say("3. A reviewer merges task/add-greeting and asks flaky-docs for a revision")
    _merge(root, target, "task/add-greeting")
    _append(person / "tasks" / "flaky-docs.yaml", "feedback:\n  - Also say where the tests live.\n")
    _git("-C", str(person), "commit", "-qam", "flaky-docs: ask for a revision")
    _git("-C", str(person), "pull", "-q", "--rebase")   # the controller pushed status commits
    _git("-C", str(person), "push", "-q")

    _say("4. fleet run --once again: merge noticed, dependency unblocked, revision run")
    await engine.run(once=True, tick=0.2)

    _say("5. fleet status")
    await print_status(engine)
    _say("6. The audit log: git log -- status/ in the fleet repository")
    print(_git("-C", str(fleet_repo), "log", "--reverse", "--format=%h %s%n%b", "--", "status/"))
    _say("7. The life of one task: git log -p status/flaky-docs.yaml (last change)")
    print(_git("-C", str(fleet_repo), "log", "-1", "-p", "--format=%h %s", "--", "status/flaky-docs.yaml"))
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0


def _target_repo(root: Path) -> Path:
    """A bare target repository with one commit on main, like a real project."""
    target = root / "target.git"
    _git("init", "-q", "--bare", "--initial-branch=main", str(target))
    work = root / "target-seed"
    _git("init", "-q", "--initial-branch=main", str(work))
    (work / "README.md").write_text("# Demo project\n")
    _git("-C", str(work), "add", "-A")
    _git("-C", str(work), *PERSON, "commit", "-qm", "initial commit")
    _git("-C", str(work), "push", "-q", str(target), "HEAD:refs/heads/main")
    return target


def _seed(person: Path, root: Path, target: Path) -> None:
    (person / "tasks" / "hello.yaml").unlink()
    (person / "hosts" / "local.yaml").write_text(
        f"name: local\naddress: local\ncapabilities: [demo]\nmax_concurrent: 2\n"
        f"workdir: {root / 'host-local'}\n")
    _append(person / "fleet.yaml", "")
    text = (person / "fleet.yaml").read_text()
    text = text.replace("base: 10s", "base: 1s").replace("max: 5m", "max: 2s")
    (person / "fleet.yaml").write_text(text)
    (person / "agents" / "demo-flaky.yaml").write_text(FLAKY_AGENT)
    for task_id, body in TASKS.items():
        (person / "tasks" / f"{task_id}.yaml").write_text(body.format(target=target))
    _git("-C", str(person), "add", "-A")
    _git("-C", str(person), *PERSON, "commit", "-qm", "Add three demo tasks")
    _git("-C", str(person), "push", "-q")


def _merge(root: Path, target: Path, branch: str) -> None:
    work = root / "reviewer"
    if not work.exists():
        _git("clone", "-q", str(target), str(work))
    _git("-C", str(work), "fetch", "-q")
    _git("-C", str(work), "checkout", "-q", "main")
    _git("-C", str(work), "pull", "-q", "--ff-only")
    _git("-C", str(work), *PERSON, "merge", "-q", "--no-ff", "-m", f"Merge {branch}", f"origin/{branch}")
    _git("-C", str(work), "push", "-q", "origin", "main")


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _git(*args: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "Alice (demo)",
           "GIT_AUTHOR_EMAIL": "alice@example.invalid", "GIT_COMMITTER_NAME": "Alice (demo)",
           "GIT_COMMITTER_EMAIL": "alice@example.invalid"}
    proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"fleet demo: git {' '.join(args[:3])} failed: {proc.stderr.strip()}")
    return proc.stdout
