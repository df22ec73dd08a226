"""Fan-out: 100 short tasks over 20 SSH host entries, fleet against Ansible and bare asyncssh.

`python -m benchmarks.fanout [--tasks 100] [--hosts 20]`, also run by `make
bench`. OpenSSH sshd on loopback listens on 20 addresses (127.0.0.11 and up),
one per host entry, so each entry has its own connections, as separate
machines would. A task is what a fleet run does on its host: clone the target
repository, let the agent (`agent.sh`, which writes one file) work, commit,
and push branch task/<id>. Repositories are reached by file:// URLs, as a
remote would be: a plain-path clone copies object files and can trip over a
push landing at the same moment. Measured, in this order:

1. the floor: bare asyncssh `conn.run` of the 100 `sh task.sh ID ...`
   commands doing that same work, 5 at a time on each of 20 connections opened
   beforehand (fleet's are open too, from its health checks); and, for
   reference, the agent command alone;
2. Ansible ad hoc, `ansible all -m command -f 20` of the same 100 commands
   over an inventory of 100 (5 per address; its default ControlPersist reuses
   a connection per address; pipelining on, its fastest setting), with
   ansible-core installed once into .cache/bench-ansible (git-ignored), a venv
   of its own;
3. fleet: a running `fleet run` (poll_interval 0.5 s: there are no webhooks
   yet), a person pushes one commit adding the 100 task files, and the clock
   stops when all 100 status files say review_pending on the fleet repo's
   main. Fleet also commits every transition of every task to the fleet repo.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_VENV = ROOT / ".cache" / "bench-ansible"
PERSON = {"GIT_AUTHOR_NAME": "Pat", "GIT_AUTHOR_EMAIL": "pat@example.invalid",
          "GIT_COMMITTER_NAME": "Pat", "GIT_COMMITTER_EMAIL": "pat@example.invalid",
          "GIT_TERMINAL_PROMPT": "0"}
AGENT = """#!/bin/sh
# The benchmark's short task, the same under fleet, Ansible and asyncssh.
# Under fleet it runs in the task's workspace; elsewhere in SCRATCH/ID.
id=${1:-$FLEET_TASK_ID}
[ -n "${2:-}" ] && { mkdir -p "$2/$id" && cd "$2/$id" || exit 1; }
[ -n "${FLEET_TASK_ID:-}" ] && cat >/dev/null     # fleet hands it the prompt
echo "done $id" > "result-$id.txt"
echo '{"type":"result","subtype":"success","is_error":false,"result":"ok"}'
"""
TASK = """#!/bin/sh
# What a fleet run does on its host, by hand: clone, the agent, commit, push.
# Usage: sh task.sh ID SCRATCH REPO AGENT
set -e
ws=$2/$1
git clone -q --no-checkout "$3" "$ws"
cd "$ws"
git checkout -q -B "task/$1" origin/main
sh "$4" "$1" </dev/null >/dev/null
git add -A
git -c user.name=bench -c user.email=bench@localhost commit -q -m "task $1"
git push -q --force origin "HEAD:refs/heads/task/$1"
"""


def addresses(n: int) -> list[str]:
    return [f"127.0.0.{11 + i}" for i in range(n)]


def git(*args, cwd=None) -> str:
    proc = subprocess.run(["git", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **PERSON})
    if proc.returncode != 0:
        raise SystemExit(f"git {args[:2]} failed: {proc.stderr.strip()}")
    return proc.stdout


# ---- the machine: one sshd, many addresses --------------------------------------

MAX_LISTEN = 15        # OpenSSH listens on at most 16 sockets; 127.0.0.1 takes one


def start_sshd(root: Path, n_hosts: int):
    """The test suite's real sshd on 127.0.0.1 and the first addresses, plus, since one
    sshd listens on at most 16 sockets, more sshd processes with the same key and port
    for the rest. Returns (sshd, extra processes)."""
    from tests.sshd import Sshd          # the test suite's real-sshd helper
    addrs = addresses(n_hosts)
    extra = "".join(f"ListenAddress {a}\n" for a in addrs[:MAX_LISTEN])
    sshd = Sshd(root / "sshd", extra=extra).start()
    key = sshd.known_hosts_line().split(maxsplit=1)[1]
    patterns = ",".join(f"[{a}]:{sshd.port}" for a in ["127.0.0.1", *addrs])
    sshd.known_hosts.write_text(f"{patterns} {key}")
    base = [ln for ln in (sshd.root / "sshd_config").read_text().splitlines()
            if not ln.startswith(("ListenAddress", "PidFile"))]
    more = []
    for i in range(MAX_LISTEN, len(addrs), MAX_LISTEN + 1):
        group = addrs[i:i + MAX_LISTEN + 1]
        config = sshd.root / f"sshd_config.{i}"
        config.write_text("\n".join(base + [f"ListenAddress {a}" for a in group]
                                    + [f"PidFile {sshd.root / f'sshd.{i}.pid'}"]) + "\n")
        more.append(subprocess.Popen([sshd.binary, "-D", "-e", "-f", str(config)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True))
        wait_listening(group[-1], sshd.port)
    return sshd, more


def wait_listening(address: str, port: int, limit: float = 10.0) -> None:
    import socket
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"sshd did not answer on {address}:{port}")


def tasks_by_address(n_tasks: int, n_hosts: int) -> list[tuple[str, str]]:
    """(task id, address): task i goes to address i mod n_hosts."""
    hosts = addresses(n_hosts)
    return [(f"t{i:03d}", hosts[i % n_hosts]) for i in range(n_tasks)]


# ---- 1. the floor ----------------------------------------------------------------

def target_repo(path: Path) -> Path:
    """A bare target repository with one commit on main."""
    git("init", "-q", "--bare", "--initial-branch=main", path)
    seed = path.with_name(path.name + "-seed")
    git("init", "-q", "--initial-branch=main", seed)
    (seed / "README.md").write_text("# target\n")
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "initial", cwd=seed)
    git("push", "-q", path, "HEAD:refs/heads/main", cwd=seed)
    return path


def commands(root: Path, kind: str, n_tasks: int, n_hosts: int) -> list[tuple[str, str]]:
    """(address, command line) per task: the full task, or the agent command alone."""
    scratch = root / f"scratch-{kind}"
    if kind == "agent":
        return [(a, f"sh {root / 'agent.sh'} {t} {scratch}") for t, a in tasks_by_address(n_tasks, n_hosts)]
    repo = target_repo(root / f"target-{kind}.git")
    return [(a, f"sh {root / 'task.sh'} {t} {scratch} file://{repo} {root / 'agent.sh'}")
            for t, a in tasks_by_address(n_tasks, n_hosts)]


async def floor(sshd, todo: list[tuple[str, str]], n_hosts: int) -> float:
    import asyncssh
    conns = {a: await asyncssh.connect(a, port=sshd.port, username=sshd.user,
                                       known_hosts=str(sshd.known_hosts), config=[],
                                       client_keys=[str(sshd.client_key)])
             for a in addresses(n_hosts)}
    try:
        t0 = time.perf_counter()
        done = await asyncio.gather(*(conns[a].run(cmd, check=True) for a, cmd in todo))
        elapsed = time.perf_counter() - t0
    finally:
        for conn in conns.values():
            conn.close()
    assert len(done) == len(todo)
    return elapsed


# ---- 2. Ansible ------------------------------------------------------------------

def ensure_ansible() -> Path:
    ansible = ANSIBLE_VENV / "bin" / "ansible"
    if not ansible.exists():
        print(f"installing ansible-core into {ANSIBLE_VENV} (once)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "ansible-core"],
                       check=True)
    return ansible


def ansible(sshd, root: Path, n_tasks: int, n_hosts: int) -> float:
    exe = ensure_ansible()
    repo = target_repo(root / "target-ansible.git")
    task = (f"sh {root / 'task.sh'} {{{{ inventory_hostname }}}} {root / 'scratch-ansible'} "
            f"file://{repo} {root / 'agent.sh'}")
    (root / "inventory.ini").write_text("".join(
        f"{t} ansible_host={a} ansible_port={sshd.port} ansible_user={sshd.user}\n"
        for t, a in tasks_by_address(n_tasks, n_hosts)))
    (root / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = True\ninterpreter_python = /usr/bin/python3\n"
        f"inventory = {root / 'inventory.ini'}\nprivate_key_file = {sshd.client_key}\n"
        f"[ssh_connection]\npipelining = True\ncontrol_path_dir = {root / 'cp'}\n"
        "ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes "
        f"-o UserKnownHostsFile={sshd.known_hosts}\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
           "ANSIBLE_LOCAL_TEMP": str(root / "ansible-tmp")}
    cmd = [str(exe), "all", "-m", "command", "-a", task, "-f", "20"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    ok = proc.stdout.count("| CHANGED")
    if proc.returncode != 0 or ok != n_tasks:
        raise SystemExit(f"ansible: {ok} of {n_tasks} ok, exit {proc.returncode}:\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


# ---- 3. fleet --------------------------------------------------------------------

def fleet_world(root: Path, sshd, agent: Path, n_hosts: int, per_host: int) -> tuple[Path, Path]:
    """(fleet repo, person's clone) with one host entry per address and the bench agent."""
    from controller.cli.init import init_repo
    fleet = init_repo(root / "fleet.git")
    target_repo(root / "target.git")
    person = root / "pat"
    git("clone", "-q", fleet, person)
    (person / "tasks" / "hello.yaml").unlink()
    for i, address in enumerate(addresses(n_hosts)):
        body = {"name": f"h{i:02d}", "address": address, "port": sshd.port, "user": sshd.user,
                "capabilities": ["bench"], "max_concurrent": per_host,
                "workdir": str(root / "hosts" / f"h{i:02d}")}
        (person / "hosts" / f"h{i:02d}.yaml").write_text(yaml.safe_dump(body))
    (person / "agents" / "bench.yaml").write_text(yaml.safe_dump(
        {"name": "bench", "command": [str(agent)], "output": "claude-json",
         "requires": ["bench"], "version": ["sh", "-c", "echo bench-agent 1"]}))
    git("add", "-A", cwd=person)
    git("commit", "-qm", "bench hosts and agent", cwd=person)
    git("push", "-q", cwd=person)
    return fleet, person


def start_controller(root: Path, sshd, fleet: Path, n_hosts: int) -> subprocess.Popen:
    state = root / "state"
    config = root / "controller.yaml"
    config.write_text(sshd.config_text(state, health_interval=60, lost_grace=300)
                      .replace(f"state_dir: {state}", f"state_dir: {state}\npoll_interval: 0.5"))
    log = open(root / "controller.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "controller", "run", "--repo", str(fleet),
                             "--config", str(config)], stdout=log, stderr=log, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:       # ready: its first health round found every host up
        health = [json.loads(p.read_text()) for p in state.glob("repos/*/hosts.json")]
        if health and sum(h.get("ok", False) for h in health[0].values()) == n_hosts:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"the controller did not come up: {(root / 'controller.log').read_text()[-2000:]}")


def fleet_run(root: Path, sshd, agent: Path, n_tasks: int, n_hosts: int) -> float:
    per_host = -(-n_tasks // n_hosts)         # every task can start at once, as with asyncssh
    fleet, person = fleet_world(root, sshd, agent, n_hosts, per_host)
    controller = start_controller(root, sshd, fleet, n_hosts)
    try:
        for t, _ in tasks_by_address(n_tasks, n_hosts):
            (person / "tasks" / f"{t}.yaml").write_text(yaml.safe_dump(
                {"id": t, "title": f"bench {t}", "agent": "bench", "goal": f"Do {t}.",
                 "repo": f"file://{root / 'target.git'}", "timeout": "2m", "max_attempts": 1}))
        git("add", "-A", cwd=person)
        git("commit", "-qm", f"{n_tasks} tasks", cwd=person)
        t0 = time.perf_counter()
        git("push", "-q", cwd=person)
        done = wait_recorded(fleet, n_tasks, limit=300)
        elapsed = time.perf_counter() - t0
    finally:
        controller.send_signal(signal.SIGINT)
        try:
            controller.wait(timeout=20)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait()
    if done != n_tasks:
        raise SystemExit(f"fleet: only {done} of {n_tasks} tasks reached review_pending; "
                         f"see {root / 'controller.log'}")
    return elapsed


def wait_recorded(fleet: Path, n_tasks: int, limit: float) -> int:
    """Poll the fleet repo's main until every status says review_pending (bounded)."""
    deadline = time.monotonic() + limit
    done = 0
    while time.monotonic() < deadline:
        proc = subprocess.run(["git", "--git-dir", str(fleet), "grep", "-l", "^state: review_pending",
                               "main", "--", "status/"], capture_output=True, text=True)
        done = len(proc.stdout.splitlines())
        if done >= n_tasks:
            return done
        time.sleep(0.05)
    return done


# ---- all three -------------------------------------------------------------------

def measure(n_tasks: int, n_hosts: int, keep: bool = False) -> dict:
    root = Path(tempfile.mkdtemp(prefix="fleet-fanout-"))
    sshd, more = start_sshd(root, n_hosts)
    try:
        agent = root / "agent.sh"
        agent.write_text(AGENT)
        agent.chmod(0o755)
        (root / "task.sh").write_text(TASK)
        figures = {"tasks": n_tasks, "hosts": n_hosts, "cpus": os.cpu_count()}
        figures["floor_s"] = asyncio.run(floor(sshd, commands(root, "floor", n_tasks, n_hosts), n_hosts))
        figures["agent_only_s"] = asyncio.run(
            floor(sshd, commands(root, "agent", n_tasks, n_hosts), n_hosts))
        figures["ansible_s"] = ansible(sshd, root, n_tasks, n_hosts)
        figures["fleet_s"] = fleet_run(root, sshd, agent, n_tasks, n_hosts)
        return figures
    finally:
        sshd.kill()
        for proc in more:
            proc.kill()
            proc.wait()
        if not keep:
            subprocess.run(["rm", "-rf", str(root)])


def report(f: dict) -> str:
    faster = f["ansible_s"] / f["fleet_s"]
    over = f["fleet_s"] / f["floor_s"]
    mark = lambda ok: "PASS" if ok else "MISS"   # noqa: E731
    return "\n".join([
        f"fan-out: {f['tasks']} short tasks over {f['hosts']} SSH host entries on loopback "
        f"({f['cpus']} CPUs); a task: clone, agent, commit, push its branch",
        f"  fleet: push -> all {f['tasks']} statuses recorded  {f['fleet_s']:8.2f} s",
        f"  ansible all -m command -f 20          {f['ansible_s']:8.2f} s   "
        f"fleet is {faster:.1f}x faster (target >= 10x: {mark(faster >= 10)})",
        f"  bare asyncssh conn.run (the floor)    {f['floor_s']:8.2f} s   "
        f"fleet is {over:.1f}x the floor (target <= 3x: {mark(over <= 3)})",
        f"  (the floor's agent command alone, no git: {f['agent_only_s']:.2f} s)",
    ])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    from tests.sshd import sshd_path
    if sshd_path() is None:
        print("fan-out: skipped: OpenSSH sshd is not installed (apt-get install openssh-server)")
        print("{}")
        return
    figures = measure(args.tasks, args.hosts, args.keep)
    print(report(figures))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
