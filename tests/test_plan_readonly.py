"""`fleet plan` changes nothing: not the state dir, not the fleet repo, not a host.

DESIGN.md says `fleet plan` prints what the next reconcile would do and
"changes nothing". These tests run the real command in a subprocess next to a
state dir a `fleet run` left behind (a run in flight, a run it abandoned, a
task in review whose target repo it fetches), and compare every path, byte
and mtime of the state dir, the fleet repository and the hosts' workdirs
before and after. Over SSH, a host that is health-checked must not be written to.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from controller.app import build_engine as cli_engine
from controller.config import load_config
from controller.executors.local import LocalExecutor
from controller.model import Host, RunSpec, StartRun, State, Status
from controller.cli.output import plan_lines
from controller.status.book import StatusBook

from .fleetkit import World, wait_for
from .sshd import Sshd
from .sshkit import SSHWorld
from .test_cli import FLEET, fleet


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: its mode, mtime and bytes (a link's target), so any write shows."""
    if not root.exists():
        return {}
    out: dict[str, tuple] = {".": (root.stat().st_mode, root.stat().st_mtime_ns, None)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if path.is_symlink():
                data: bytes | str | None = os.readlink(path)
            elif path.is_file():
                data = path.read_bytes()
            else:
                data = None
            out[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, data)
    return out


def assert_unchanged(before: dict[str, tuple], after: dict[str, tuple], what: str) -> None:
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"fleet plan changed {what}: {changed[:20]}"


def sleeper(world: World, marks: Path) -> None:
    """Agent `sleepy`: leaves a mark outside any workspace, then sleeps silently."""
    world.agent("sleepy", ["sh", "-c", f'touch "{marks}/$FLEET_RUN_ID"; exec sleep 300'],
                output="raw")


def run_pid(workdir: Path, run_id: str) -> int:
    return int((workdir / "runs" / run_id / "pid").read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_in_flight(world: World, config: Path, marks: Path) -> str:
    """`fleet run` until task busy is running, then SIGKILL it: the run goes on detached."""
    world.task("busy", agent="sleepy")
    world.push("add busy")
    cmd = [*FLEET, "run", "--repo", str(world.fleet), "--config", str(config)]
    env = {**os.environ, "PATH": f"{Path(FLEET[0]).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        st = wait_for(lambda: (s := world.status("busy")) and s["state"] == "running" and s)
        wait_for(lambda: (marks / st["run_id"]).exists())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    return st["run_id"]


def start_abandoned(world: World, config: Path, marks: Path) -> str:
    """A run the controller gave up on (its task moved on), still alive on the local host,
    recorded in the state dir exactly as the controller records one."""
    engine = cli_engine(load_config(str(config)), str(world.fleet))
    asyncio.run(engine.sync())
    run_id = "gone-20250101000000-1"
    spec = RunSpec(run_id=run_id, task_id="gone", host=engine.desired.hosts["local"],
                   command=("sh", "-c", f'touch "{marks}/$FLEET_RUN_ID"; exec sleep 300'),
                   prompt="", prompt_mode="stdin", output_format="raw", repo=str(world.target),
                   base="main", branch="task/gone", from_branch=False)
    asyncio.run(LocalExecutor().start(spec))
    wait_for(lambda: (marks / run_id).exists())
    engine.watch.abandon("local", run_id)
    return run_id


def test_plan_leaves_state_dir_fleet_repo_and_local_host_untouched(tmp_path):
    w = World(tmp_path, max_concurrent=4)
    marks = tmp_path / "marks"
    marks.mkdir()
    sleeper(w, marks)
    state = tmp_path / "state"
    config = tmp_path / "controller.yaml"
    config.write_text(f"state_dir: {state}\npoll_interval: 1s\n"
                      "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n")
    w.task("reviewed")
    w.push("add reviewed")
    done = fleet("run", "--repo", w.fleet, "--config", config, "--once")
    assert done.returncode == 0, done.stderr
    assert w.status("reviewed")["state"] == "review_pending"   # plan checks its merge
    busy = start_in_flight(w, config, marks)
    gone = start_abandoned(w, config, marks)
    pids = [run_pid(w.workdir, busy), run_pid(w.workdir, gone)]
    try:
        w.task("fresh")
        w.push("add fresh")
        before = [snapshot(state), snapshot(w.fleet), snapshot(w.workdir)]
        planned = fleet("plan", "--repo", w.fleet, "--config", config)
        after = [snapshot(state), snapshot(w.fleet), snapshot(w.workdir)]
        assert planned.returncode == 0, planned.stderr
        for b, a, what in zip(before, after, ("the state dir", "the fleet repo", "the host's workdir")):
            assert_unchanged(b, a, what)
        assert all(alive(p) for p in pids), "fleet plan stopped a run"
        # It says what the next pass would do, without acting on it.
        assert f"stop abandoned run {gone}" in planned.stdout, planned.stdout
        assert "fresh:" in planned.stdout
        # A run id fleet run would draw afresh is not one plan can know: none is printed.
        assert not re.search(r"fresh-\d{14}", planned.stdout), planned.stdout
    finally:
        for pid in pids:
            kill_group(pid)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.kill()


def test_plan_looks_at_an_ssh_host_without_writing_to_it(tmp_path, sshd):
    w = SSHWorld(tmp_path, sshd)
    w.task("one", agent="count")
    w.push()
    config = w.config_file()
    state, remote = tmp_path / "state", w.remote_dir("ssh-1")
    before = [snapshot(w.fleet), snapshot(w.root / "pat")]
    planned = fleet("plan", "--repo", w.fleet, "--config", config)
    assert planned.returncode == 0, planned.stderr
    # The host was checked (healthy, so the task is placed there) ...
    assert "one: start run on ssh-1 (attempt 1)" in planned.stdout, planned.stdout + planned.stderr
    # ... and nothing was created: no workdir there, no state dir here.
    assert not remote.exists(), sorted(str(p) for p in remote.rglob("*"))
    assert not state.exists(), sorted(str(p) for p in state.rglob("*"))
    assert_unchanged(before[0], snapshot(w.fleet), "the fleet repo")
    assert_unchanged(before[1], snapshot(w.root / "pat"), "the person's clone")


def test_plan_prints_a_run_id_only_when_the_next_run_will_use_it():
    """A new run's id is drawn from the clock of the pass that assigns it, so plan
    cannot know it; an assignment already on record keeps its id."""
    book = StatusBook()
    book.put(Status(task="resumed", state=State.ASSIGNED, host="h", run_id="resumed-20250101000000-1"))
    book.put(Status(task="again", state=State.RETRYING, host="h", run_id="again-20250101000000-1"))
    lines = plan_lines([StartRun("resumed", "h", "resumed-20250101000000-1", 1, False),
                        StartRun("again", "h", "again-20250102000000-2", 2, False),
                        StartRun("new", "h", "new-20250102000000-1", 1, False)],
                       book, [(Host(name="h"), "old-20240101000000-1")])
    assert lines == ["host h: stop abandoned run old-20240101000000-1 (its task moved on)",
                     "resumed: start run resumed-20250101000000-1 on h (attempt 1)",
                     "again: start run on h (attempt 2)",
                     "new: start run on h (attempt 1)"]
