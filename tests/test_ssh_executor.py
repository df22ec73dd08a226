"""The SSH executor below the engine: quoting through a real remote shell, the
connection pool's channel cap, jump hosts, host health, and the remote poll
script checked against the local executor's own reading of a run dir."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from controller.executors.ssh import remote
from controller.executors import rundir
from controller.config import ConfigError, SSHConfig, load_config
from controller.executors.base import HostUnreachable
from controller.executors.local import LocalExecutor
from controller.model import Host, Phase, RunSpec
from controller.executors.ssh.executor import SSHExecutor
from controller.executors.ssh.pool import CHANNELS_PER_CONN, MAX_CONNS

from .sshd import Sshd, descendants
from .sshkit import SSHWorld, run_once, settings, state_of
from .fleetkit import World
from .test_shell import CANARY, HOSTILE


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.kill()


def host_of(sshd: Sshd, name: str = "h", workdir: str = "/tmp/fleet-ssh-test", **fields) -> Host:
    return Host(name=name, address=sshd.address, port=sshd.port, user=sshd.user,
                workdir=workdir, **fields)


async def with_executor(sshd: Sshd, body, resolve=None, **overrides):
    ex = SSHExecutor(settings(sshd, **overrides), resolve=resolve)
    try:
        return await body(ex)
    finally:
        await ex.close()


@pytest.fixture
def no_canary():
    if os.path.exists(CANARY):
        os.unlink(CANARY)
    yield
    assert not os.path.exists(CANARY), "a quoted value was executed by the remote shell"


def test_hostile_strings_arrive_byte_identical_through_the_remote_shell(sshd, no_canary):
    async def body(ex):
        h = host_of(sshd)
        # Concurrently: more commands than one connection may carry at once.
        return await asyncio.gather(*(ex.run(h, remote.sh('printf %s "$1"', v)) for v in HOSTILE))
    answers = asyncio.run(with_executor(sshd, body))
    assert [out for _, out, _ in answers] == [v.encode() for v in HOSTILE]


def test_a_hostile_workdir_runs_end_to_end(tmp_path, sshd, no_canary):
    w = SSHWorld(tmp_path, sshd)
    hostile = tmp_path / f"w it's $(touch {CANARY}) `touch {CANARY}`; & | ü ✓ *? $HOME"
    w.write("hosts/ssh-1.yaml", sshd.host("ssh-1", hostile))
    w.task("quoted", agent="count")
    w.push()
    run_once(w.engine())
    assert state_of(w, "quoted") == "review_pending", w.status("quoted")["message"]
    assert (hostile / "runs" / w.status("quoted")["run_id"] / "result").exists()


def test_the_pool_caps_sessions_per_connection_and_opens_more(sshd):
    peak: list[list[int]] = []

    async def body(ex):
        h = host_of(sshd)

        async def watch():
            for _ in range(200):                # bounded: 200 x 10 ms
                peak.append(ex.connections(h))
                await asyncio.sleep(0.01)
        watcher = asyncio.create_task(watch())
        answers = await asyncio.gather(*(ex.run(h, "sleep 0.3; echo ok") for _ in range(20)))
        watcher.cancel()
        return answers, ex.connections(h)
    answers, final = asyncio.run(with_executor(sshd, body))
    assert all(out == b"ok\n" for _, out, _ in answers)
    assert max(max(sample, default=0) for sample in peak) <= CHANNELS_PER_CONN
    assert 2 <= len(final) <= MAX_CONNS            # 20 at once needed more than one connection
    assert sum(final) == 0                          # every session was given back


def test_connections_are_reused(sshd):
    async def body(ex):
        h = host_of(sshd)
        for _ in range(5):
            await ex.run(h, "true")
        return ex.connections(h)
    assert asyncio.run(with_executor(sshd, body)) == [0]


def test_a_jump_host_carries_the_connection(tmp_path, sshd):
    bastion = Sshd(tmp_path / "bastion").start()
    try:
        both = tmp_path / "known_hosts"
        both.write_text(sshd.known_hosts_line() + bastion.known_hosts_line())
        hosts = {"bastion": host_of(bastion, "bastion"),
                 "inner": host_of(sshd, "inner", jump="bastion")}

        async def body(ex):
            first = await ex.run(hosts["inner"], "echo inside")
            bastion.kill()                       # the only way in is gone ...
            await ex.close()
            try:
                await ex.run(hosts["inner"], "echo inside")
            except HostUnreachable as e:
                return first, str(e)             # ... though the inner sshd is still up
            return first, None
        keys = (str(sshd.client_key), str(bastion.client_key))
        first, error = asyncio.run(with_executor(sshd, body, resolve=hosts.get,
                                                 known_hosts=str(both), client_keys=keys))
        assert first[1] == b"inside\n"
        assert error and "jump host" in error and "bastion" in error
    finally:
        bastion.kill()


def test_a_slow_command_times_out_and_the_connection_lives_on(sshd):
    async def body(ex):
        h = host_of(sshd)
        slow = await ex.run(h, "echo started; sleep 5", timeout=0.5)
        return slow, await ex.run(h, "echo still here"), ex.connections(h)
    slow, after, conns = asyncio.run(with_executor(sshd, body))
    assert slow == (None, b"started\n", b"timed out after 0.5 s")
    assert after[1] == b"still here\n" and conns == [0]


def test_jump_loops_are_refused(sshd):
    hosts = {"a": host_of(sshd, "a", jump="b"), "b": host_of(sshd, "b", jump="a")}

    async def body(ex):
        with pytest.raises(HostUnreachable, match="jump hosts loop: a -> b -> a"):
            await ex.run(hosts["a"], "true")
    asyncio.run(with_executor(sshd, body, resolve=hosts.get))


def test_an_unreachable_port_is_host_unreachable_quickly(sshd):
    closed = Host(name="gone", address="127.0.0.1", port=1, workdir="/tmp")

    async def body(ex):
        t0 = time.monotonic()
        with pytest.raises(HostUnreachable, match="gone: cannot connect"):
            await ex.run(closed, "true")
        return time.monotonic() - t0
    assert asyncio.run(with_executor(sshd, body)) < 3


def test_a_missing_agent_cli_makes_the_host_unhealthy(tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd)
    w.agent_script("absent", version="exec no-such-agent-cli --version")
    w.task("nowhere", agent="absent")
    w.push()
    run_once(w.engine())
    st = w.status("nowhere")
    assert st["state"] == "blocked"
    assert "agent absent" in st["message"] and "exit 127" in st["message"]
    assert w.invocations() == []


def test_workdir_under_home_is_resolved_on_the_host(sshd):
    async def body(ex):
        return await ex.workdir(host_of(sshd, workdir="~/fleet-work"))
    assert asyncio.run(with_executor(sshd, body)) == os.path.join(Path.home(), "fleet-work")


# ---- the remote scripts, run by a local sh, agree with the local executor --------

def _remote_poll(path: str):
    command, boundary = remote.poll([path, path + "-missing"])
    out = subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout
    return remote.parse_poll(out, boundary, time.time())


@pytest.mark.parametrize("agent", [["sh", "-c", "echo '{\"type\":\"result\",\"subtype\":\"success\","
                                    "\"is_error\":false,\"result\":\"ok\"}'; echo oops >&2; exit 3"],
                                   ["sh", "-c", "sleep 30"]])
def test_the_remote_poll_reads_a_run_dir_as_the_local_executor_does(tmp_path, agent):
    local = LocalExecutor()
    host = Host(name="local", address="local", workdir=str(tmp_path / "wd"))
    target = World(tmp_path).target
    spec = RunSpec(run_id="r-1", task_id="t", host=host, command=tuple(agent), prompt="p\n",
                   prompt_mode="stdin", output_format="claude-json", repo=str(target),
                   base="main", branch="task/t", from_branch=False)
    asyncio.run(local.start(spec))
    path = rundir.run_dir(str(tmp_path / "wd"), spec.run_id)
    try:
        for _ in range(100):
            report = asyncio.run(local.poll(host, spec.run_id))
            if report.phase in (Phase.EXITED, Phase.RUNNING) and os.path.exists(path + "/output"):
                break
            time.sleep(0.1)
        seen = _remote_poll(path)
        assert seen[path + "-missing"] is None
        snap, alive = seen[path]
        theirs = rundir.report(spec.run_id, snap, alive)
        ours = asyncio.run(local.poll(host, spec.run_id))
        assert (theirs.phase, theirs.result, theirs.error) == (ours.phase, ours.result, ours.error)
        assert abs(theirs.last_output_at - ours.last_output_at).total_seconds() <= 2
    finally:
        asyncio.run(local.stop(host, spec.run_id, 1))


# ---- the controller config's ssh section ------------------------------------------

def test_ssh_config_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ssh:\n  known_hosts: /k\n  client_keys: [/a, /b]\n  lost_grace: 2m\n")
    ssh = load_config(str(path)).ssh
    assert (ssh.known_hosts, ssh.client_keys, ssh.lost_grace) == ("/k", ("/a", "/b"), 120.0)
    assert load_config(None).ssh == SSHConfig()
    path.write_text("ssh:\n  known_host: /k\n")
    with pytest.raises(ConfigError, match="unknown key 'known_host'"):
        load_config(str(path))


def test_timed_out_commands_do_not_leak_sessions(sshd):
    """asyncssh leaves a timed-out command's channel open; ten of them used to
    make the server refuse every new session on the connection."""
    async def body(ex):
        h = host_of(sshd)
        for _ in range(12):
            assert (await ex.run(h, "sleep 30", timeout=0.2))[0] is None
        return await ex.run(h, "echo alive")
    assert asyncio.run(with_executor(sshd, body))[1] == b"alive\n"


def _spec(host: Host, run_id: str) -> RunSpec:
    return RunSpec(run_id=run_id, task_id="t", host=host, command=("sh", "-c", "sleep 1"),
                   prompt="hi", prompt_mode="stdin", output_format="raw", repo="/nonexistent",
                   base="main", branch="task/t", from_branch=False)


def test_a_hung_sftp_server_makes_the_start_fail_in_bounded_time(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    stopped: list[int] = []
    try:
        async def body(ex):
            h = host_of(server, workdir=str(tmp_path / "wd"))
            await ex.start(_spec(h, "r1"))           # opens the SFTP channel
            for pid in descendants(server.proc.pid):
                if b"sftp" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            started = time.monotonic()
            with pytest.raises(HostUnreachable, match="uploading run r2 took longer"):
                await asyncio.wait_for(ex.start(_spec(h, "r2")), 30)
            return time.monotonic() - started
        took = asyncio.run(with_executor(server, body, command_timeout=1, connect_timeout=1))
        assert stopped and took < 10
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        server.kill()


def test_an_unreadable_known_hosts_file_is_the_host_being_unreachable(tmp_path, sshd):
    bad = tmp_path / "known_hosts"
    bad.write_text("[build-9.internal]:2222\n")       # a half-pasted line
    async def body(ex):
        with pytest.raises(HostUnreachable, match="cannot read ssh.known_hosts"):
            await ex.run(host_of(sshd), "true")
    asyncio.run(with_executor(sshd, body, known_hosts=str(bad)))
