"""A fake executor at our own Protocol, for engine tests that need only see decisions carried out.

`FakeExecutor` implements `controller.executors.base.Executor` in memory: no
process, no run dir, no sleep. A test scripts what the host would report:
a start makes a run that is RUNNING until the test says it produced output,
exited with a Result, or was lost; or the test scripts, per task, how the next
start's run ends, so an engine driven by `run(once=True)` needs no help.

It follows the local executor's semantics where a test could tell them apart:
- `start` is idempotent by run id (on one host): a second start of a known run
  does nothing, whether that run still runs or has ended;
- `poll` answers None for a run the host never heard of;
- `stop` of a run that still runs ends it as the run wrapper does when it is
  TERMed (EXITED, outcome "interrupted", error "cancelled: ..."); of an ended
  or unknown run it changes nothing;
- `cleanup` removes a task's workspace, best effort: here it is only recorded.
A host told `unreachable` raises HostUnreachable from every method, as the
SSH executor does when it cannot connect; its runs go on meanwhile.

Every call is recorded (`starts`, `polls`, `stops`, `cleanups`) so a test can
assert what the engine asked for, in order.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime

from controller.executors.base import HostUnreachable
from controller.model import Host, Phase, Result, RunReport, RunSpec

SUCCESS = Result(outcome="success", exit_code=0, summary="did it")
FAILURE = Result(outcome="failure", exit_code=1, summary="it broke")


@dataclass(frozen=True)
class Exit:
    """A scripted end for the next run of a task: it exits at its first poll."""
    result: Result = SUCCESS
    changes: bool = True        # the run pushed commits beyond base
    error: str = ""


@dataclass
class FakeRun:
    spec: RunSpec
    report: RunReport
    polls: int = 0
    script: Exit | None = None  # applied at the run's first poll


class FakeExecutor:
    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], FakeRun] = {}   # (host name, run id) -> run
        self.starts: list[RunSpec] = []                   # every start asked for, repeats too
        self.polls: list[tuple[str, str]] = []            # (host name, run id)
        self.stops: list[tuple[str, str, float]] = []     # (host name, run id, grace)
        self.cleanups: list[tuple[str, str]] = []         # (host name, task id)
        self.unreachable: dict[str, str] = {}             # host name -> why
        self._scripts: dict[str, list[Exit]] = {}         # task id -> ends of its next runs

    # ---- what the test says about the world ---------------------------------------
    def script(self, task_id: str, *ends: Exit) -> None:
        """The next runs of `task_id` end like this, one per start, in order."""
        self._scripts.setdefault(task_id, []).extend(ends)

    def set_unreachable(self, host: str, why: str = "connection refused") -> None:
        self.unreachable[host] = why

    def set_reachable(self, host: str) -> None:
        self.unreachable.pop(host, None)

    def run(self, run_id: str) -> FakeRun:
        """The run with this id, on whichever host it was started."""
        found = [r for (_, rid), r in self.runs.items() if rid == run_id]
        if len(found) != 1:
            raise KeyError(f"{len(found)} runs with id {run_id}")
        return found[0]

    def output(self, run_id: str, at: datetime) -> None:
        """The run printed something at `at` (what the stall check looks at)."""
        self._set(run_id, last_output_at=at)

    def exit(self, run_id: str, result: Result = SUCCESS, changes: bool = True,
             error: str = "") -> None:
        """The run ended: its wrapper wrote this result."""
        self._set(run_id, phase=Phase.EXITED, result=result, changes=changes, error=error)

    def lose(self, run_id: str, error: str = "the run wrapper is gone and left no result") -> None:
        self._set(run_id, phase=Phase.LOST, error=error)

    def live(self, host: str | None = None) -> list[str]:
        """Run ids still starting or running (on `host`, or anywhere)."""
        return [rid for (h, rid), r in self.runs.items()
                if r.report.phase in (Phase.STARTING, Phase.RUNNING) and host in (None, h)]

    def _set(self, run_id: str, **fields) -> None:
        run = self.run(run_id)
        run.report = replace(run.report, **fields)
        run.script = None       # what the test says now wins over what it scripted

    def _reach(self, host: Host) -> None:
        if host.name in self.unreachable:
            raise HostUnreachable(f"{host.name}: {self.unreachable[host.name]}")

    # ---- the Executor protocol ------------------------------------------------------
    async def start(self, spec: RunSpec) -> None:
        await asyncio.sleep(0)      # a real start awaits IO: let other tasks in
        self.starts.append(spec)
        self._reach(spec.host)
        key = (spec.host.name, spec.run_id)
        if key in self.runs:
            return                  # a reattach: the run exists, started or finished
        queue = self._scripts.get(spec.task_id)
        self.runs[key] = FakeRun(spec, RunReport(spec.run_id, Phase.RUNNING),
                                 script=queue.pop(0) if queue else None)

    async def poll(self, host: Host, run_id: str) -> RunReport | None:
        await asyncio.sleep(0)
        self.polls.append((host.name, run_id))
        self._reach(host)
        run = self.runs.get((host.name, run_id))
        if run is None:
            return None
        run.polls += 1
        if run.script is not None:
            end, run.script = run.script, None
            run.report = replace(run.report, phase=Phase.EXITED, result=end.result,
                                 changes=end.changes, error=end.error)
        return run.report

    async def stop(self, host: Host, run_id: str, grace: float) -> None:
        await asyncio.sleep(0)
        self.stops.append((host.name, run_id, grace))
        self._reach(host)
        run = self.runs.get((host.name, run_id))
        if run is None or run.report.phase not in (Phase.STARTING, Phase.RUNNING):
            return
        run.script = None
        run.report = replace(run.report, phase=Phase.EXITED, changes=False,
                             result=Result(outcome="interrupted", exit_code=143),
                             error="cancelled: stopped by the controller")

    async def cleanup(self, host: Host, task_id: str) -> None:
        await asyncio.sleep(0)
        self.cleanups.append((host.name, task_id))
        self._reach(host)
