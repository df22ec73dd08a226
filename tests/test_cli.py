"""The commands as a user runs them: the README's walk-through, in a subprocess each."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

from controller.cli.main import _parser

from .fleetkit import git

FLEET = [sys.executable, "-m", "controller"]


def fleet(*args, cwd=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run([*FLEET, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def make_target(root: Path) -> Path:
    target = root / "target.git"
    git("init", "-q", "--bare", "--initial-branch=main", target)
    seed = root / "seed"
    git("clone", "-q", target, seed)
    (seed / "README.md").write_text("hi\n")
    git("add", ".", cwd=seed)
    git("commit", "-qm", "init", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    return target


def test_readme_walkthrough(tmp_path):
    config = tmp_path / "controller.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    env = {"FLEET_CONFIG": str(config)}
    assert fleet("init", tmp_path / "fleet.git").returncode == 0
    clone = tmp_path / "fleet-state"
    git("clone", "-q", tmp_path / "fleet.git", clone)
    target = make_target(tmp_path)
    hello = yaml.safe_load((clone / "tasks" / "hello.yaml").read_text())
    hello.update(repo=str(target), suspend=False)
    (clone / "tasks" / "hello.yaml").write_text(yaml.safe_dump(hello))
    host = yaml.safe_load((clone / "hosts" / "local.yaml").read_text())
    host["workdir"] = str(tmp_path / "host")
    (clone / "hosts" / "local.yaml").write_text(yaml.safe_dump(host))

    checked = fleet("validate", cwd=clone)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    git("commit", "-qam", "hello: ready", cwd=clone)
    git("push", "-q", cwd=clone)

    planned = fleet("plan", "--repo", tmp_path / "fleet.git", env=env)
    assert planned.returncode == 0, planned.stderr
    assert "hello: start run on local (attempt 1)" in planned.stdout   # its id: drawn by run

    ran = fleet("run", "--repo", tmp_path / "fleet.git", "--once", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "hello: running -> review_pending" in ran.stderr

    status = json.loads(fleet("status", "--repo", tmp_path / "fleet.git", "--json", env=env).stdout)
    row = next(t for t in status["tasks"] if t["task"] == "hello")
    assert row["state"] == "review_pending" and row["outcome"] == "success"
    assert status["hosts"][0]["name"] == "local"

    git("pull", "-q", cwd=clone)
    life = git("log", "-p", "status/hello.yaml", cwd=clone)
    assert "+state: review_pending" in life and "+state: assigned" in life


def test_validate_reports_each_problem_with_path_and_line(tmp_path):
    fleet("init", tmp_path / "fleet.git")
    clone = tmp_path / "c"
    git("clone", "-q", tmp_path / "fleet.git", clone)
    (clone / "tasks" / "hello.yaml").write_text(
        (clone / "tasks" / "hello.yaml").read_text() + "priorty: 3\n")
    (clone / "tasks" / "loop.yaml").write_text(
        "id: loop\ntitle: t\nagent: nobody\ngoal: g\nrepo: /r\ndepends_on: [loop]\n")
    out = fleet("validate", cwd=clone)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert any(line.startswith("tasks/hello.yaml:") and "priorty" in line for line in lines)
    assert any(line.startswith("tasks/loop.yaml:") and "nobody" in line for line in lines)
    assert "Traceback" not in out.stderr
    assert fleet("validate", cwd=clone / "tasks").stdout == out.stdout   # from a subfolder too
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "bad", cwd=clone)
    git("push", "-q", cwd=clone)
    bare = fleet("validate", "--repo", tmp_path / "fleet.git")
    assert bare.returncode == 1 and bare.stdout == out.stdout


def test_clear_errors_not_tracebacks(tmp_path):
    out = fleet("run", "--once")
    assert out.returncode == 2 and "pass --repo" in out.stderr
    out = fleet("status", "--repo", tmp_path / "nowhere.git", env={"FLEET_CONFIG": ""})
    assert out.returncode == 2 and "nowhere.git" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "c.yaml"
    bad.write_text("repo: /x\npol_interval: 5s\n")
    out = fleet("run", "--config", bad, "--once")
    assert out.returncode == 2 and "unknown key 'pol_interval'" in out.stderr
    out = fleet("init", tmp_path)     # not empty: pytest put nothing there yet? make sure it is not
    (tmp_path / "x").write_text("")
    out = fleet("init", tmp_path)
    assert out.returncode == 2 and "not empty" in out.stderr


def test_a_badly_typed_config_value_is_exit_2_not_a_traceback(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("repo: /x\npull_agents: 5\n")
    out = fleet("run", "--config", bad, "--once")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{bad}: pull_agents: must be a list of agents" in out.stderr


def test_demo_runs_in_under_a_minute():
    started = time.monotonic()
    out = fleet("demo", timeout=90)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert elapsed < 60
    assert "add-greeting: review_pending -> completed" in out.stdout + out.stderr
    assert "flaky-docs: review_pending -> revising" in out.stdout + out.stderr
    assert "running -> retrying" in out.stdout + out.stderr


def test_status_and_plan_in_a_clone_read_its_origin(tmp_path):
    config = tmp_path / "controller.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    env = {"FLEET_CONFIG": str(config)}
    fleet("init", tmp_path / "fleet.git")
    clone = tmp_path / "fleet-state"
    git("clone", "-q", tmp_path / "fleet.git", clone)
    status = fleet("status", "--json", cwd=clone / "tasks", env=env)
    assert status.returncode == 0, status.stderr
    assert any(t["task"] == "hello" for t in json.loads(status.stdout)["tasks"])
    planned = fleet("plan", cwd=clone, env=env)
    assert planned.returncode == 0, planned.stderr
    assert "origin remote" in fleet("status", "--help").stdout
    git("remote", "set-url", "origin", "../fleet.git", cwd=clone)   # git reads it from the top
    assert fleet("status", cwd=clone / "tasks", env=env).returncode == 0
    git("remote", "remove", "origin", cwd=clone)
    lost = fleet("status", cwd=clone, env=env)
    assert lost.returncode == 2 and "origin" in lost.stderr and "pass --repo" in lost.stderr
    assert "Traceback" not in lost.stderr
    elsewhere = fleet("plan", cwd=tmp_path, env=env)
    assert elsewhere.returncode == 2 and "pass --repo" in elsewhere.stderr


def _parsers(parser: argparse.ArgumentParser, name: str = "fleet"):
    """(name, parser) of fleet and every subcommand, nested ones too."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_help_describes_every_command_and_argument():
    for name, parser in _parsers(_parser()):
        for action in parser._actions:
            if not action.option_strings:
                assert action.help, f"{name}: positional {action.dest} has no help"
        if name != "fleet":
            shown = fleet(*name.split()[1:], "--help")
            assert shown.returncode == 0, shown.stderr
            assert parser.description in shown.stdout
            example = shown.stdout.partition("\nexample:\n  ")[2]
            assert "fleet " + name.split()[1] in example, f"{name}: no example in --help"
    scan = fleet("hosts", "scan", "--help").stdout
    assert "known_hosts" in scan and "NAME" in scan and "--repo" in scan


def test_version_and_bare_fleet():
    version = fleet("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"fleet {metadata.version('fleet')}"
    bare = fleet()
    assert bare.returncode == 2 and "usage: fleet" in bare.stderr and "Traceback" not in bare.stderr
    assert "validate" in bare.stderr and "demo" in bare.stderr
    hosts = fleet("hosts")
    assert hosts.returncode == 2 and "scan" in hosts.stderr and "Traceback" not in hosts.stderr


def test_status_fits_the_terminal_and_json_keeps_whole_messages(tmp_path):
    config = tmp_path / "controller.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    fleet("init", tmp_path / "fleet.git")
    clone = tmp_path / "fleet-state"
    git("clone", "-q", tmp_path / "fleet.git", clone)
    (clone / "tasks" / "lost.yaml").write_text(
        "id: lost\ntitle: t\nagent: nobody-by-this-rather-long-name\ngoal: g\nrepo: /r\n")
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "a task naming no agent", cwd=clone)
    git("push", "-q", cwd=clone)
    env = {"FLEET_CONFIG": str(config), "COLUMNS": "80"}
    assert fleet("run", "--once", cwd=clone, env=env).returncode == 0
    table = fleet("status", cwd=clone, env=env).stdout
    assert max(map(len, table.splitlines())) <= 80, table
    lost = next(line for line in table.splitlines() if line.startswith("lost "))
    assert lost.endswith("…") and "invalid spec" in lost
    rows = json.loads(fleet("status", "--json", cwd=clone, env=env).stdout)["tasks"]
    message = next(r["message"] for r in rows if r["task"] == "lost")
    assert len(message) > 80 and "nobody-by-this-rather-long-name" in message
    wide = fleet("status", cwd=clone, env={**env, "COLUMNS": "400"}).stdout
    assert message in wide


def test_validate_says_what_it_skips_and_refuses_symlinks(tmp_path):
    fleet("init", tmp_path / "fleet.git")
    clone = tmp_path / "c"
    git("clone", "-q", tmp_path / "fleet.git", clone)
    (clone / "tasks" / ".draft.yaml").write_text("id: draft\n")
    (clone / "hosts" / "old").mkdir()
    (clone / "hosts" / "old" / "local.yaml").write_text("name: local\n")
    (clone / "tasks" / "again.yaml").symlink_to("hello.yaml")
    warnings = ["tasks/.draft.yaml: skipped: a hidden file", "hosts/old: skipped: a folder"]

    linked = fleet("validate", cwd=clone)
    assert linked.returncode == 1
    assert linked.stdout.startswith("tasks/again.yaml:1: a symlink") and "git" in linked.stdout
    assert all(w in linked.stderr for w in warnings)
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "odd files", cwd=clone)
    git("push", "-q", cwd=clone)
    bare = fleet("validate", "--repo", tmp_path / "fleet.git")
    assert (bare.returncode, bare.stdout) == (1, linked.stdout)
    assert all(w in bare.stderr for w in warnings)

    (clone / "tasks" / "again.yaml").unlink()
    skipped = fleet("validate", cwd=clone)
    assert skipped.returncode == 0 and skipped.stdout == ""
    assert all(w in skipped.stderr for w in warnings)


def test_validate_summary_counts_in_proper_plurals(tmp_path):
    fleet("init", tmp_path / "fleet.git")
    clone = tmp_path / "c"
    git("clone", "-q", tmp_path / "fleet.git", clone)
    (clone / "hosts" / "ssh-example.yaml").unlink()
    for name in ("claude-code", "codex", "raw-example"):
        (clone / "agents" / f"{name}.yaml").unlink()
    out = fleet("validate", cwd=clone)
    assert out.stderr.splitlines()[-1] == "0 problems in 1 task, 1 host, 1 agent"
    (clone / "tasks" / "hello.yaml").write_text(
        (clone / "tasks" / "hello.yaml").read_text() + "priorty: 3\n")
    out = fleet("validate", cwd=clone)
    assert out.stderr.splitlines()[-1].startswith("1 problem in 1 task,")
