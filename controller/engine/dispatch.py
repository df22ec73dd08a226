"""How the engine carries out the planner's StartRun and StopRun actions.

A mixin of engine.Engine. Starts run in the background, one per run id at a
time; a start that cannot reach its host is recorded as UNREACHABLE for the
planner (no attempt spent) and the run is marked abandoned in case it began.
Stops run in the background too and are retried when their host returns.
A finished task's workspace is removed from its host, best effort.
"""
from __future__ import annotations

import asyncio
import logging

from controller.executors.base import Executor, HostUnreachable, RunSpec
from controller.model import TERMINAL, Host, Phase, Result, RunReport, StartRun, Status, StopRun
from controller.plan.runspec import make_spec

log = logging.getLogger("fleet")


class Dispatch:
    async def _start(self, action: StartRun) -> None:
        host = self.desired.hosts.get(action.host)
        executor = self._executor_for(host) if host else None
        if executor is None:
            self._unreachable(action, f"host {action.host} has no executor")
            return
        cleaning = self._cleaning.get(action.task)
        if cleaning is not None:
            await cleaning      # a rerun right after the end: its old workspace goes first
        try:
            await executor.start(self._spec(action, host))
        except HostUnreachable as e:
            self.watch.mark_down(action.host, str(e))
            # It may have started before the connection broke: kill it when the host returns.
            self.watch.abandon(action.host, action.run_id)
            self._unreachable(action, str(e))
        except ValueError as e:
            # The executor refused the spec (bad env name, NUL byte, ...): a
            # failed attempt whose message says what to fix, not a crash.
            self.start_failures[action.run_id] = RunReport(
                action.run_id, Phase.EXITED, result=Result(outcome="failure", summary=str(e)),
                error=f"cannot start the run: {e}")

    def _unreachable(self, action: StartRun, why: str) -> None:
        self.start_failures[action.run_id] = RunReport(action.run_id, Phase.UNREACHABLE, error=why)

    def _spec(self, a: StartRun, host: Host) -> RunSpec:
        # A task whose file turned invalid after its assignment runs on its last valid spec.
        task = self.desired.tasks.get(a.task) or self._stale[a.task]
        agent = self.desired.agents.get(task.agent)
        if agent is None:
            raise ValueError(f"agent {task.agent} is not (or no longer) a valid profile")
        return make_spec(task, agent, host, a, self.book.get(a.task),
                         self.desired.settings.prompt_template)

    def _stop(self, action: StopRun) -> None:
        host = self._host(action.host)
        executor = self._executor_for(host) if host else None
        if executor is None or action.run_id in self._stopping_runs:
            return
        job = asyncio.get_running_loop().create_task(self._stop_run(executor, host, action.run_id))
        self._stopping_runs.add(action.run_id)
        self.stopping.add(job)
        job.add_done_callback(self.stopping.discard)

    async def _stop_run(self, executor: Executor, host: Host, run_id: str) -> None:
        starting = self._starting.get(run_id)
        if starting is not None:
            await asyncio.wait([starting])   # stop what it starts, not a run dir not there yet
        try:
            await executor.stop(host, run_id, self.desired.settings.cancel_grace)
        except HostUnreachable as e:
            self.watch.mark_down(host.name, str(e))
            self.watch.abandon(host.name, run_id)     # stopped when the host returns
        except Exception:
            log.exception("stopping run %s on %s failed; will try again", run_id, host.name)
            self.watch.abandon(host.name, run_id)
        else:
            self.watch.forget(run_id)
        finally:
            self._stopping_runs.discard(run_id)

    def _clean_if_done(self, st: Status) -> None:
        """A finished task's workspace (a whole clone) is removed from its host,
        once no run of it is left; best effort, in the background."""
        host = self._host(st.host or "")
        executor = self._executor_for(host) if host else None
        cleanup = getattr(executor, "cleanup", None)
        if st.state not in TERMINAL or st.stopping is not None or cleanup is None:
            return

        async def clean() -> None:
            try:
                await cleanup(host, st.task)
            except Exception as e:      # a host that is down keeps the clone; no harm
                log.warning("could not remove the workspace of %s on %s: %s", st.task, host.name, e)
        job = asyncio.get_running_loop().create_task(clean())
        self.stopping.add(job)          # awaited like stops before --once exits
        self._cleaning[st.task] = job
        job.add_done_callback(self.stopping.discard)
        job.add_done_callback(lambda done, task=st.task: self._cleaning.get(task) is done
                              and self._cleaning.pop(task))

