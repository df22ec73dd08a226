"""How the engine carries out the planner's StartRun and StopRun actions.

`Dispatcher` is made by core.Engine with what it needs and nothing more: the
executor lookup, a host lookup (hosts removed from the repo while they have
runs are still known), the host watch and the engine's work in flight.
Starts run in the background, one per run id at a time; a start that cannot
reach its host is recorded as UNREACHABLE for the planner (no attempt spent)
and the run is marked abandoned in case it began. Stops run in the background
too and are retried when their host returns. A finished task's workspace is
removed from its host, best effort.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from controller.engine.inflight import InFlight
from controller.executors.base import Executor, HostUnreachable
from controller.model import (TERMINAL, Desired, Host, Outcome, Phase, Result, RunReport, RunSpec,
                              StartRun, Status, StopRun, Task)
from controller.observe.health import HostWatch
from controller.plan.runspec import make_spec

log = logging.getLogger("fleet")
ExecutorFor = Callable[[Host], Executor | None]
HostOf = Callable[[str], Host | None]


class Dispatcher:
    def __init__(self, executor_for: ExecutorFor, host_of: HostOf, watch: HostWatch,
                 work: InFlight, on_started: Callable[[str], None] = lambda task_id: None):
        self._executor_for = executor_for
        self._host_of = host_of
        self._watch = watch
        self._work = work
        self._on_started = on_started     # task id: its run is started (for telemetry)

    # ---- starts ---------------------------------------------------------------------
    def start(self, action: StartRun, desired: Desired, task: Task | None,
              status: Status | None) -> bool:
        """Begin the start in the background; False when one of that run id is still going.

        `task` is the spec to run: the task's file, or its last valid spec when
        the file turned invalid after the assignment."""
        if action.run_id in self._work.starts:
            return False
        job = asyncio.get_running_loop().create_task(self._start(action, desired, task, status))
        self._work.track_start(action.run_id, job)
        return True

    async def _start(self, action: StartRun, desired: Desired, task: Task | None,
                     status: Status | None) -> None:
        host = desired.hosts.get(action.host)
        executor = self._executor_for(host) if host else None
        if host is None or executor is None:
            self._unreachable(action, f"host {action.host} has no executor")
            return
        cleaning = self._work.cleanups.get(action.task)
        if cleaning is not None:
            await cleaning      # a rerun right after the end: its old workspace goes first
        try:
            await executor.start(_spec(action, host, desired, task, status))
            self._on_started(action.task)
        except HostUnreachable as e:
            self._watch.mark_down(action.host, str(e))
            # It may have started before the connection broke: kill it when the host returns.
            self._watch.abandon(action.host, action.run_id)
            self._unreachable(action, str(e))
        except ValueError as e:
            # The executor refused the spec (bad env name, NUL byte, ...): a
            # failed attempt whose message says what to fix, not a crash.
            self._work.start_failed(RunReport(
                action.run_id, Phase.EXITED, result=Result(outcome=Outcome.FAILURE, summary=str(e)),
                error=f"cannot start the run: {e}"))

    def _unreachable(self, action: StartRun, why: str) -> None:
        self._work.start_failed(RunReport(action.run_id, Phase.UNREACHABLE, error=why))

    # ---- stops ----------------------------------------------------------------------
    def stop(self, action: StopRun, grace: float) -> None:
        """Stop the run in the background (TERM, then KILL after `grace` seconds)."""
        host = self._host_of(action.host)
        executor = self._executor_for(host) if host else None
        if host is None or executor is None or action.run_id in self._work.stops:
            return
        job = asyncio.get_running_loop().create_task(
            self.stop_run(executor, host, action.run_id, grace))
        self._work.track_stop(action.run_id, job)

    async def stop_run(self, executor: Executor, host: Host, run_id: str, grace: float) -> None:
        starting = self._work.starts.get(run_id)
        if starting is not None:
            await asyncio.wait([starting])   # stop what it starts, not a run dir not there yet
        try:
            await executor.stop(host, run_id, grace)
        except HostUnreachable as e:
            self._watch.mark_down(host.name, str(e))
            self._watch.abandon(host.name, run_id)     # stopped when the host returns
        except Exception:
            log.exception("stopping run %s on %s failed; will try again", run_id, host.name)
            self._watch.abandon(host.name, run_id)
        else:
            self._watch.forget(run_id)
        finally:
            self._work.stop_done(run_id)

    # ---- cleanups -------------------------------------------------------------------
    def clean_if_done(self, st: Status) -> None:
        """A finished task's workspace (a whole clone) is removed from its host,
        once no run of it is left; best effort, in the background."""
        host = self._host_of(st.host or "")
        executor = self._executor_for(host) if host else None
        # Test doubles of the executor need not implement cleanup.
        cleanup = getattr(executor, "cleanup", None)
        if st.state not in TERMINAL or st.stopping is not None or cleanup is None or host is None:
            return

        async def clean(host: Host) -> None:
            try:
                await cleanup(host, st.task)
            except Exception as e:      # a host that is down keeps the clone; no harm
                log.warning("could not remove the workspace of %s on %s: %s", st.task, host.name, e)
        self._work.track_cleanup(st.task, asyncio.get_running_loop().create_task(clean(host)))


def _spec(a: StartRun, host: Host, desired: Desired, task: Task | None,
          status: Status | None) -> RunSpec:
    if task is None:
        raise ValueError(f"task {a.task} has no valid spec")
    agent = desired.agents.get(task.agent)
    if agent is None:
        raise ValueError(f"agent {task.agent} is not (or no longer) a valid profile")
    return make_spec(task, agent, host, a, status, desired.settings.prompt_template)
