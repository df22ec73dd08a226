"""Runs over SSH end to end: the real engine, real git, a real OpenSSH sshd on 127.0.0.1."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from controller.cli.main import main as fleet

from .sshd import Sshd
from .sshkit import SSHWorld, group_alive, run_once, run_while, state_of, until


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.kill()


def test_a_task_runs_over_ssh_to_review_pending(tmp_path, sshd, capsys):
    w = SSHWorld(tmp_path, sshd)
    w.task("over-ssh", agent="count", validation=["test -f work-over-ssh.txt"])
    w.push()
    run_once(w.engine())
    st = w.status("over-ssh")
    assert st["state"] == "review_pending", st["message"]
    assert st["host"] == "ssh-1" and st["result"]["outcome"] == "success"
    assert w.target_file("task/over-ssh", "work-over-ssh.txt") == "work of over-ssh\n"
    assert [h["to"] for h in st["history"]] == ["created", "assigned", "running", "review_pending"]
    assert (w.run_dir("over-ssh") / "result").exists()         # the run dir is on the host
    assert len(w.invocations()) == 1
    # fleet status shows what the health checks found: git and the agent's version.
    assert fleet(["status", "--repo", str(w.fleet), "--json",
                  "--config", str(w.config_file())]) == 0
    hosts = {h["name"]: h for h in json.loads(capsys.readouterr().out)["hosts"]}
    health = hosts["ssh-1"]["health"]
    assert health["ok"] and health["versions"] == {"count": "count-agent 1.0"}
    assert health["git"].startswith("git version")


def test_an_unknown_host_key_keeps_the_host_out_until_scanned(tmp_path, sshd, capsys):
    sshd.distrust()
    w = SSHWorld(tmp_path, sshd)
    w.task("careful", agent="count")
    w.push()
    run_once(w.engine())
    st = w.status("careful")
    assert st["state"] == "blocked"
    assert "not in" in st["message"] and "fleet hosts scan ssh-1" in st["message"]
    assert w.invocations() == []
    config = str(w.config_file())
    capsys.readouterr()
    assert fleet(["hosts", "scan", "ssh-1", "--repo", str(w.fleet), "--config", config]) == 0
    out, err = capsys.readouterr()
    assert out == sshd.known_hosts_line() and "SHA256:" in err
    sshd.known_hosts.write_text(out)
    run_once(w.engine())
    assert state_of(w, "careful") == "review_pending"


def test_a_changed_host_key_is_called_changed(tmp_path, sshd):
    other = Sshd(tmp_path / "other")          # only for its key: never started
    line = sshd.known_hosts_line().split()
    sshd.known_hosts.write_text(f"{line[0]} {other.known_hosts_line().split(maxsplit=1)[1]}")
    w = SSHWorld(tmp_path, sshd)
    w.task("spoofed", agent="count")
    w.push()
    run_once(w.engine())
    assert "CHANGED" in w.status("spoofed")["message"]


def test_several_host_entries_on_one_sshd_share_the_work(tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd, hosts=3, max_concurrent=1)
    w.agent_script("slow", body="sleep 1\n")
    for name in ("a", "b", "c"):
        w.task(name, agent="slow")
    w.push()
    run_once(w.engine())
    statuses = [w.status(n) for n in "abc"]
    assert [s["state"] for s in statuses] == ["review_pending"] * 3
    assert sorted(s["host"] for s in statuses) == ["ssh-1", "ssh-2", "ssh-3"]
    assert len(w.invocations()) == 3


def test_a_1mb_prompt_arrives_whole(tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd)
    w.agent_script("measure", body='wc -c > "$FLEET_RUN_DIR/../prompt-size" < "$FLEET_PROMPT_FILE"\n')
    # A task file may hold 1 MiB: a goal just over 1 MB (10^6 bytes) fits, as a block scalar.
    lines = [f"line {i:04d}: " + " ".join(["make it so, ünïcödé ✓"] * 14) for i in range(2_500)]
    goal = "\n".join(lines) + "\n"
    assert 1_000_000 < len(goal.encode()) < 1_020_000
    w.write("tasks/big.yaml", f"id: big\ntitle: Big\nagent: measure\nrepo: {w.target}\n"
            "goal: |\n" + "".join(f"  {line}\n" for line in lines))
    w.push()
    run_once(w.engine())
    assert state_of(w, "big") == "review_pending", w.status("big")["message"]
    size = int((w.remote_dir("ssh-1") / "runs" / "prompt-size").read_text())
    assert size > 1_000_000
    assert goal in (w.run_dir("big") / "prompt").read_text()


def test_cancel_kills_the_run_on_the_host(tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd)
    w.agent_script("sleepy", body="sleep 60\n")
    w.task("doomed", agent="sleepy")
    w.push()
    engine = w.engine()

    async def cancel():
        await until(lambda: state_of(w, "doomed") == "running" and (w.run_dir("doomed") / "pid").exists())
        w.task("doomed", agent="sleepy", cancel=True)
        await asyncio.to_thread(w.push, "cancel doomed")
    asyncio.run(run_while(engine, cancel, timeout=60))
    st = w.status("doomed")
    assert st["state"] == "cancelled", st["message"]
    pid = int((w.run_dir("doomed") / "pid").read_text())
    assert not group_alive(pid)
    assert "cancelled" in (w.run_dir("doomed") / "result").read_text()
    assert "stopping" not in st
    workspace = w.remote_dir(st["host"]) / "work" / "doomed"
    assert not workspace.exists()       # finished: the clone is removed on the host


def test_timeout_stops_the_run_and_fails_the_attempt(tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd)
    w.agent_script("sleepy", body="sleep 60\n")
    w.task("slow", agent="sleepy", timeout="2s", max_attempts=1)
    w.push()
    run_once(w.engine())
    st = w.status("slow")
    assert st["state"] == "failed" and "timed out after 2s" in st["message"]
    pid = int((w.run_dir("slow") / "pid").read_text())
    assert not group_alive(pid)


def test_the_controller_killed_mid_run_reattaches_without_a_second_start(tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd, max_concurrent=2)
    w.agent_script("slow", body="sleep 2\n")
    w.task("one", agent="slow")
    w.task("two", agent="slow")
    w.push()
    config = w.config_file()
    config.write_text(config.read_text() + "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n")
    cmd = [sys.executable, "-m", "controller", "run", "--repo", str(w.fleet), "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from .fleetkit import wait_for
        wait_for(lambda: len(w.invocations()) == 2, timeout=30)
        assert {state_of(w, "one"), state_of(w, "two")} <= {"assigned", "running"}
    finally:
        proc.kill()
        proc.wait(timeout=10)
    done = subprocess.run(cmd + ["--once"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [state_of(w, t) for t in ("one", "two")] == ["review_pending"] * 2
    assert sorted(line.split()[0] for line in w.invocations()) == ["one", "two"]


def test_runs_survive_the_ssh_connection_closing(tmp_path, sshd):
    """The wrapper outlives the session that started it: no SIGHUP, no tie to the channel."""
    w = SSHWorld(tmp_path, sshd)
    w.agent_script("slow", body="sleep 1\n")
    w.task("detached", agent="slow")
    w.push()
    engine = w.engine()

    async def drop_connections():
        await until(lambda: state_of(w, "detached") == "running")
        await engine._ssh.close()            # every connection to the host closed mid-run
    asyncio.run(run_while(engine, drop_connections))
    assert state_of(w, "detached") == "review_pending"
    assert len(w.invocations()) == 1
    assert os.path.exists(w.run_dir("detached") / "result")
