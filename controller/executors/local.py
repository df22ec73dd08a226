"""The local executor: runs agents as detached subprocesses on the controller's box.

Implements `executor.Executor` for hosts whose address is `local`. Called by
the engine, through that interface only. A run is `sh runwrapper.sh RUN_DIR`
in its own session and process group, with everything it needs and everything
it produces in its run dir (see `rundir`), so it outlives the controller: a
restarted controller, or a new LocalExecutor, finds it again by its run id.

No decision here reads the clock; the planner decides when a run timed out or
stalled. `stop` waits in bounded steps of asyncio.sleep, never blocking the loop.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from controller.executors import rundir, runenv
from controller.executors.base import HostUnreachable
from controller.model import Host, RunReport, RunSpec

STEP = 0.05                 # seconds between checks while waiting for a group to die
KILL_WAIT = 5.0             # how long to wait for KILLed processes to disappear

# Wrappers started by this process, by pid, with their run dirs. Kept only to
# reap them: a zombie still answers kill(pid, 0). Module-wide, so that any
# LocalExecutor instance reaps what another one started.
_CHILDREN: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}


def workdir(host: Host) -> str:
    return os.path.abspath(os.path.expanduser(host.workdir))


def _own_bin_first(spec: RunSpec) -> RunSpec:
    """Local runs see the controller's own bin directory first on PATH (unless
    the host or agent sets PATH), so agents installed next to fleet (like the
    demo agent) are found. Read here, not in plan/: it is this process's
    environment, and plan/ reads none."""
    if any(k == "PATH" for k, _ in spec.env):
        return spec
    bindir = str(Path(sys.executable).parent)
    path = ("PATH", f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return replace(spec, env=spec.env + (path,))


class LocalExecutor:
    """`withhold`: names of the controller's secrets (beyond FLEET_*) that no run
    gets even when a host or agent lists them in pass_env (the forge token_env)."""

    def __init__(self, shell: str = "/bin/sh", withhold: Iterable[str] = ()) -> None:
        self.shell = shell
        self.withhold = frozenset(withhold)

    async def start(self, spec: RunSpec) -> None:
        await asyncio.to_thread(self._start, spec)

    async def poll(self, host: Host, run_id: str) -> RunReport | None:
        return await asyncio.to_thread(self._poll, host, run_id)

    async def cleanup(self, host: Host, task_id: str) -> None:
        """Remove a finished task's workspace (a whole clone); run dirs stay for the record."""
        path = rundir.workspace(workdir(host), task_id)
        await asyncio.to_thread(shutil.rmtree, path, True)

    async def stop(self, host: Host, run_id: str, grace: float) -> None:
        path = rundir.run_dir(workdir(host), run_id)
        if not os.path.isdir(path):
            return
        pid = await self._pid_of(path)
        if pid is None:
            return
        # A stale pid (the run long over, the box rebooted) may now name someone
        # else's processes: signal the group only while it is this run's.
        if _owns_group(pid, path):
            _signal_group(pid, signal.SIGTERM)
            if not await _wait_gone(pid, grace):
                _signal_group(pid, signal.SIGKILL)
                await _wait_gone(pid, KILL_WAIT)
        # A KILLed wrapper could not write its result; say why it ended.
        if not os.path.exists(os.path.join(path, "result")):
            _write_result(path, "stopped; the run wrapper left no result")

    # ---- start ----------------------------------------------------------------

    def _start(self, spec: RunSpec) -> None:
        if not spec.host.is_local:
            raise ValueError(f"host {spec.host.name} is not local")
        spec = _own_bin_first(spec)
        where = rundir.paths(workdir(spec.host), spec.task_id, spec.run_id)
        if os.path.isdir(where.run_dir):
            if _claimed(where.run_dir):
                return          # a reattach: the run exists, started or finished
            # Renamed into place complete, but the wrapper was never started
            # (the controller died in between): start it now.
        else:
            files = rundir.render(spec, where)
            try:
                if not _create(where.run_dir, files):
                    return      # another start of this run id won the race
            except OSError as e:
                raise HostUnreachable(f"cannot write run dir {where.run_dir}: {e}") from e
        self._launch(where.run_dir, spec)

    def _launch(self, path: str, spec: RunSpec) -> None:
        # An allow-listed environment, never the controller's own (its secrets):
        # the base and pass_env from os.environ; the rest comes from run.env.
        env = runenv.local_environ(os.environ, spec.pass_env, self.withhold, spec.run_id)
        try:
            with open(os.path.join(path, "wrapper.out"), "ab") as out:
                proc = subprocess.Popen(
                    [self.shell, os.path.join(path, rundir.WRAPPER), path],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=path, env=env, start_new_session=True, close_fds=True)
        except OSError as e:
            raise HostUnreachable(f"cannot start {self.shell}: {e}") from e
        _CHILDREN[proc.pid] = (path, proc)

    # ---- poll and stop --------------------------------------------------------

    def _poll(self, host: Host, run_id: str) -> RunReport | None:
        _reap()
        path = rundir.run_dir(workdir(host), run_id)
        snap = rundir.read_snapshot(path)
        if snap is None:
            return None
        alive = snap.pid is not None and _alive(snap.pid)
        if snap.result is None and snap.pid is not None and not alive:
            # It may have written its result just before dying: look once more.
            snap = rundir.read_snapshot(path) or snap
        return rundir.report(run_id, snap, alive)

    async def _pid_of(self, path: str) -> int | None:
        """The wrapper's pid; claims a never-started run so it can no longer start."""
        for _ in range(20):     # a claimed run writes its pid right after the claim
            pid = _read_pid(path)
            if pid is not None:
                return pid
            if os.path.exists(os.path.join(path, "result")):
                return None     # stopped before it started: nothing runs
            try:
                os.mkdir(os.path.join(path, "lock"))
            except FileExistsError:
                await asyncio.sleep(STEP)   # a wrapper holds it: its pid comes next
                continue
            _write_result(path, "stopped before the run started")
            return None
        # Claimed, yet no pid file: fall back on a wrapper we started ourselves.
        _reap()
        return next((pid for pid, (p, _) in _CHILDREN.items() if p == path), None)


def _create(path: str, files: dict[str, bytes]) -> bool:
    """Write the run dir in a temp dir and rename it into place: never seen half-written."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        os.rename(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.isdir(path):
            return False
        raise
    return True


def _claimed(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, n)) for n in ("lock", "pid", "result"))


def _read_pid(path: str) -> int | None:
    try:
        with open(os.path.join(path, "pid"), "rb") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _write_result(path: str, why: str) -> None:
    tmp = os.path.join(path, "result.tmp")
    with open(tmp, "w") as f:
        f.write(f"step_failed=cancelled\nerror={why}\npushed=0\nchanges=0\n")
    os.replace(tmp, os.path.join(path, "result"))


def _reap() -> None:
    for pid, (_, proc) in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a live process, from /proc; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = data[data.rindex(b")") + 2:].split()
        return fields[0].decode(), int(fields[2])
    except (OSError, ValueError, IndexError):   # gone while we looked
        return None


def _owns_group(pgid: int, path: str) -> bool:
    """Some live member of group `pgid` is this run's wrapper or one of its children.

    The wrapper's command line names the run dir; everything it starts inherits
    FLEET_RUN_DIR from run.env. Without /proc, the pid file is all we have.
    """
    if not os.path.isdir("/proc/self"):
        return bool(group_members(pgid))
    # Whole NUL-delimited entries only: /a/runs/x must not match /b/a/runs/x.
    marks = (b"\0" + os.fsencode(path) + b"\0",
             b"\0FLEET_RUN_DIR=" + os.fsencode(path) + b"\0")
    for pid in group_members(pgid):
        for name, mark in zip(("cmdline", "environ"), marks):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    if mark in b"\0" + f.read() + b"\0":
                        return True
            except OSError:
                continue
    return False


def _alive(pid: int) -> bool:
    """The wrapper still runs: not a zombie, and still leading its own group."""
    if os.path.isdir("/proc/self"):
        stat = _proc_stat(pid)
        return stat is not None and stat[0] != "Z" and stat[1] == pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """The pids of processes in group `pgid` that still run (zombies excluded)."""
    _reap()
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _proc_stat(int(name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                members.append(int(name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _wait_gone(pgid: int, seconds: float) -> bool:
    """Wait, in bounded steps, until no process of the group runs; True when none does."""
    for _ in range(max(1, int(seconds / STEP) + 1)):
        if not group_members(pgid):
            return True
        await asyncio.sleep(STEP)
    return not group_members(pgid)
