"""SSH hosts that go away mid-run: sshd killed, a host lost for good, a network cut.

The runs themselves keep going on their host (they are detached); what is
tested is the controller's side: waiting for a host within `lost_grace` and
reattaching, giving the run up after it and killing it when the host returns,
and noticing a silent network cut through keepalives.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess

import pytest

from controller.observe.polling import POLL_BUDGET

from .sshd import Sshd
from .sshkit import SSHWorld, group_alive, run_once, run_while, state_of, until


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.kill()


def test_sshd_killed_mid_run_and_restarted_reattaches(tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd)
    w.agent_script("slow", body="sleep 3\n")
    w.task("survivor", agent="slow")
    w.push()
    engine = w.engine()
    seen_down = []

    async def outage():
        await until(lambda: state_of(w, "survivor") == "running")
        await asyncio.to_thread(sshd.kill)         # every connection dies with it
        await until(lambda: "ssh-1" in engine.watch.down)
        seen_down.append(engine.watch.down["ssh-1"])
        await asyncio.to_thread(sshd.start)
    asyncio.run(run_while(engine, outage))
    st = w.status("survivor")
    assert st["state"] == "review_pending", st["message"]
    assert [h["to"] for h in st["history"]] == ["created", "assigned", "running", "review_pending"]
    assert st["attempt"] == 1 and len(w.invocations()) == 1
    assert "ssh-1" in seen_down[0]
    assert "ssh-1" not in engine.watch.down        # the health check saw it come back


def test_a_host_lost_past_the_grace_period_costs_an_attempt_and_its_run_is_killed_later(
        tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd, max_concurrent=1)
    w.write("hosts/ssh-1.yaml", sshd.host("ssh-1", w.remote_dir("ssh-1"), max_concurrent=1,
                                          env={"SLEEP": "60"}))
    # A second, local host, named to sort after ssh-1 so the first attempt goes over SSH.
    w.write("hosts/z-local.yaml", {"name": "z-local", "address": "local", "capabilities": ["demo"],
                                   "max_concurrent": 1, "workdir": str(tmp_path / "local")})
    w.agent_script("sleepy", body='sleep "${SLEEP:-0}"\n')
    w.task("moved", agent="sleepy")
    w.push()
    engine = w.engine(lost_grace=1)

    async def lose_host():
        await until(lambda: state_of(w, "moved") == "running")
        await asyncio.to_thread(sshd.kill)
    asyncio.run(run_while(engine, lose_host))
    st = w.status("moved")
    assert st["state"] == "review_pending" and st["host"] == "z-local" and st["attempt"] == 2
    lost = next(h["reason"] for h in st["history"] if h["to"] == "retrying")
    assert "host ssh-1 unreachable" in lost
    [first_run] = [p for p in (w.remote_dir("ssh-1") / "runs").iterdir() if p.is_dir()]
    pid = int((first_run / "pid").read_text())
    assert group_alive(pid)                       # the abandoned run still runs over there
    abandoned = w.root / "state"
    assert any(first_run.name in p.read_text() for p in abandoned.rglob("abandoned.json"))

    sshd.start()                                  # the old host returns ...
    run_once(w.engine(lost_grace=1))              # ... and a controller kills what it left there
    assert not group_alive(pid)
    assert "cancelled" in (first_run / "result").read_text()
    assert all(json.loads(p.read_text()) == {} for p in abandoned.rglob("abandoned.json"))
    assert sorted(line.split()[0] for line in w.invocations()) == ["moved", "moved"]


# ---- a host in its own network namespace, cut off and reconnected -------------------

def _netns_unavailable() -> str | None:
    if os.getuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2 to create a network namespace"
    probe = f"fleet-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not allowed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _free_subnet() -> int:
    """N such that no interface here uses 10.213.N.x yet (tests may run side by side)."""
    used = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
    for _ in range(50):
        net = secrets.randbelow(250) + 1
        if f" 10.213.{net}." not in used:
            return net
    raise RuntimeError("no free 10.213.N.0/30 subnet for the test namespace")


class Netns:
    """A namespace joined to ours by one veth pair: 10.213.N.1 here, 10.213.N.2 there."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.name, self.here, self.there = f"fleet-{tag}", f"fvh{tag}", f"fvn{tag}"
        net = _free_subnet()
        self.local_ip, self.remote_ip = f"10.213.{net}.1", f"10.213.{net}.2"
        for cmd in (["ip", "netns", "add", self.name],
                    ["ip", "link", "add", self.here, "type", "veth", "peer", "name", self.there],
                    ["ip", "link", "set", self.there, "netns", self.name],
                    ["ip", "addr", "add", f"{self.local_ip}/30", "dev", self.here],
                    ["ip", "link", "set", self.here, "up"],
                    *self._inside(["ip", "addr", "add", f"{self.remote_ip}/30", "dev", self.there],
                                  ["ip", "link", "set", self.there, "up"],
                                  ["ip", "link", "set", "lo", "up"])):
            subprocess.run(cmd, check=True, capture_output=True)

    def _inside(self, *cmds):
        return [["ip", "netns", "exec", self.name, *c] for c in cmds]

    def cut(self, up: bool = False) -> None:
        """Down (or up) the far end: packets vanish silently, no reset reaches either side."""
        for cmd in self._inside(["ip", "link", "set", self.there, "up" if up else "down"]):
            subprocess.run(cmd, check=True, capture_output=True)

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.here], capture_output=True)


@pytest.fixture
def netns():
    why = _netns_unavailable()
    if why:
        pytest.skip(why)
    ns = Netns()
    yield ns
    ns.delete()


def test_a_host_cut_off_by_the_network_and_reconnected(tmp_path, netns):
    server = Sshd(tmp_path / "sshd", address=netns.remote_ip, netns=netns.name).start()
    try:
        w = SSHWorld(tmp_path, server)
        w.agent_script("slow", body="sleep 4\n")
        w.task("cut", agent="slow")
        w.push()
        engine = w.engine(keepalive_interval=0.5, keepalive_count_max=2, connect_timeout=1,
                          command_timeout=2)

        async def partition():
            await until(lambda: state_of(w, "cut") == "running")
            await asyncio.to_thread(netns.cut)
            await until(lambda: "ssh-1" in engine.watch.down)   # keepalives or a timeout
            await asyncio.to_thread(netns.cut, True)
        asyncio.run(run_while(engine, partition, timeout=90))
        st = w.status("cut")
        assert st["state"] == "review_pending", st["message"]
        assert st["attempt"] == 1 and len(w.invocations()) == 1
    finally:
        server.kill()


def test_a_slow_host_does_not_slow_the_passes_for_the_others(tmp_path):
    """Once ssh-2 answers every command in 4 s (its shell startup sleeps, more than a
    pass's poll budget), a task on ssh-1 must still go through in about the time it
    takes on its own. ssh-2 turns slow only once its run is going: a slow setup would
    cost a test some 20 s and show nothing more."""
    fast, slow = Sshd(tmp_path / "sshd1").start(), Sshd(tmp_path / "sshd2")
    shutil.copy(fast.root / "authorized_keys", slow.root / "authorized_keys")
    slowness, slowed = tmp_path / "slow.sh", tmp_path / "slowed.log"
    slowness.write_text("")
    config = slow.root / "sshd_config"
    config.write_text(config.read_text().replace(
        "SetEnv SHLVL=1", f"SetEnv SHLVL=1 BASH_ENV={slowness}"))
    slow.start()
    try:
        fast.known_hosts.write_text(fast.known_hosts_line() + slow.known_hosts_line())
        w = SSHWorld(tmp_path / "w", fast, hosts=1, max_concurrent=2)
        w.write("hosts/ssh-1.yaml", fast.host("ssh-1", w.remote_dir("ssh-1"), capabilities=["demo", "one"]))
        w.write("hosts/ssh-2.yaml", slow.host("ssh-2", w.remote_dir("ssh-2"), capabilities=["demo", "two"]))
        w.agent_script("sleepy", body="sleep 120\n")
        w.task("long", agent="sleepy", requires=["two"])
        w.push()
        engine = w.engine(command_timeout=20)
        took = []

        async def scenario():
            await until(lambda: state_of(w, "long") == "running", 120)
            slowness.write_text(f"echo slow >> {slowed}; sleep 4\n")
            # The first slow poll holds one pass for the whole budget; after it ssh-2
            # is known slow and no pass waits for it (the case under test).
            await until(slowed.exists, 30)
            await asyncio.sleep(POLL_BUDGET + 0.5)
            w.task("quick", agent="count", requires=["one"])
            started = asyncio.get_running_loop().time()
            await asyncio.to_thread(w.push, "quick")
            await until(lambda: state_of(w, "quick") == "review_pending", 60)
            took.append(asyncio.get_running_loop().time() - started)
            slowness.write_text("")
            w.task("long", agent="sleepy", requires=["two"], cancel=True)
            await asyncio.to_thread(w.push, "cancel long")   # --once then ends
        asyncio.run(run_while(engine, scenario))
        assert took[0] < 4, f"a task on the fast host waited {took[0]:.1f} s for the slow one"
        assert state_of(w, "long") == "cancelled"
    finally:
        fast.kill()
        slow.kill()


def test_a_login_shell_that_prints_a_greeting_does_not_break_polls(tmp_path):
    server = Sshd(tmp_path / "sshd")
    (tmp_path / "greet.sh").write_text("echo 'Welcome to build-1!'\n")
    config = server.root / "sshd_config"
    config.write_text(config.read_text().replace(
        "SetEnv SHLVL=1", f"SetEnv SHLVL=1 BASH_ENV={tmp_path / 'greet.sh'}"))
    server.start()
    try:
        w = SSHWorld(tmp_path / "w", server)
        w.task("greeted", agent="count")
        w.push()
        run_once(w.engine())
        st = w.status("greeted")
        assert st["state"] == "review_pending", st["message"]
    finally:
        server.kill()


def test_the_lost_grace_clock_survives_a_controller_restart(tmp_path):
    from datetime import datetime, timedelta, timezone
    from controller.observe.health import HostWatch
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    first = HostWatch(tmp_path, lost_grace=60, clock=lambda: now[0])
    assert first.lost("r1", "ssh-1", "no route") is None
    now[0] += timedelta(seconds=50)
    restarted = HostWatch(tmp_path, lost_grace=60, clock=lambda: now[0])
    assert restarted.lost("r1", "ssh-1", "no route") is None
    now[0] += timedelta(seconds=20)                     # 70 s since first lost, across the restart
    report = restarted.lost("r1", "ssh-1", "no route")
    assert report is not None and "unreachable for 70 s" in report.error
    assert restarted.abandoned == {"r1": "ssh-1"}       # killed when the host returns
    assert HostWatch(tmp_path, lost_grace=60, clock=lambda: now[0]).lost_since == {}
