"""How the runs are read: every host polled side by side, within a budget.

`RunPoller` is made by the observer (observer.Observer) with the executor
lookup, a host lookup and the host watch. A pass waits at most `budget`
seconds for one host; a slower host keeps its last reports for that pass and
is read in a later one, so one slow host does not slow the fleet. A host that
cannot be reached has its runs held for the lost grace (health.HostWatch),
then reported lost. It reports facts only: what each host said of each run,
which runs a host that answered has no trace of, and which hosts are slow.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from controller.executors.base import Executor, HostUnreachable
from controller.model import Host, Outcome, Phase, Result, RunReport
from controller.observe.health import HostWatch

log = logging.getLogger("fleet")
POLL_BUDGET = 3.0           # seconds a pass waits for one host's poll
ExecutorFor = Callable[[Host], Executor | None]
HostOf = Callable[[str], Host | None]


@dataclass(frozen=True, slots=True)
class Answer:
    """One host's answer to one poll."""
    reports: tuple[RunReport, ...] = ()
    absent: frozenset[str] = frozenset()    # run ids it has no trace of
    took: float = 0.0                       # seconds


@dataclass(frozen=True, slots=True)
class Polled:
    """What one pass learnt of the runs."""
    runs: dict[str, RunReport]
    slow: dict[str, str]                    # host -> why its runs have no report yet
    absent: frozenset[str]


class RunPoller:
    def __init__(self, executor_for: ExecutorFor, host_of: HostOf, watch: HostWatch,
                 budget: float = POLL_BUDGET):
        self._executor_for = executor_for
        self._host_of = host_of
        self._watch = watch
        self.budget = budget
        self._polls: dict[str, asyncio.Task[Answer]] = {}   # host -> its poll still running
        self._answers: dict[str, Answer] = {}               # host -> its last answer
        self._slow: set[str] = set()                        # hosts whose polls exceed the budget

    async def poll(self, by_host: Mapping[str, Sequence[str]], starting: Collection[str],
                   failures: Mapping[str, RunReport]) -> Polled:
        """The runs' reports, polled per host side by side. `starting`: run ids
        whose start is still going; `failures`: runs whose start failed, by why."""
        jobs = self._jobs(by_host, failures)
        waited = [job for host, job in jobs.items() if host not in self._slow]
        if waited:
            await asyncio.wait(waited, timeout=self.budget)
        runs: dict[str, RunReport] = {}
        slow: dict[str, str] = {}
        absent: set[str] = set()
        for host, job in jobs.items():
            self._collect(host, job)
            if host in self._slow and host not in self._answers:
                # No report at all yet (a restart): its runs must wait, not vanish.
                slow[host] = f"slow to answer: a poll takes more than {self.budget:g} s"
            answer = self._answers.get(host, Answer())
            runs.update((r.run_id, r) for r in answer.reports)
            absent |= answer.absent
        for host, run_ids in by_host.items():
            answer = self._answers.get(host, Answer())
            for run_id in run_ids:
                if run_id in starting and run_id not in runs:
                    # Its start is still going: a stop or a plan must not take the
                    # absence of its run dir for "gone".
                    runs[run_id] = RunReport(run_id, Phase.STARTING)
            unread = [r for r in run_ids if r not in runs and r not in answer.absent]
            if unread and host not in slow:
                # The last answer says nothing of these runs: it was held while the
                # host was down (the lost grace), or it is older than they are, and
                # the poll since is still going. Only a host that answered "no trace"
                # makes a run gone; until then they wait, with no new run placed there.
                slow[host] = f"no fresh report yet of its runs {', '.join(sorted(unread))}"
        self._answers = {h: a for h, a in self._answers.items() if h in by_host}
        self._slow &= set(by_host)
        return Polled(runs, slow, frozenset(absent - set(runs)))

    def cancel(self) -> None:
        """Stop waiting for the polls still going (the engine is shutting down)."""
        for job in self._polls.values():
            job.cancel()

    def _jobs(self, by_host: Mapping[str, Sequence[str]], failures: Mapping[str, RunReport]
              ) -> dict[str, asyncio.Task[Answer]]:
        loop = asyncio.get_running_loop()
        for host in set(self._polls) - set(by_host):
            # It has nothing to poll now: a late answer about old runs must not be
            # taken later for the state of runs it never asked about.
            self._polls.pop(host).cancel()
        for host, run_ids in by_host.items():
            if host not in self._polls:
                self._polls[host] = loop.create_task(self._timed_poll(host, run_ids, failures))
        return {host: self._polls[host] for host in by_host}

    def _collect(self, host: str, job: asyncio.Task[Answer]) -> None:
        if not job.done():
            self._slow.add(host)    # not waited for again until a poll is quick
            return
        del self._polls[host]
        answer = self._answers[host] = job.result()
        if answer.took > self.budget:
            self._slow.add(host)
        else:
            self._slow.discard(host)

    async def _timed_poll(self, host: str, run_ids: Sequence[str],
                          failures: Mapping[str, RunReport]) -> Answer:
        started = asyncio.get_running_loop().time()
        known = [failures[r] for r in run_ids if r in failures]
        todo = [r for r in run_ids if r not in failures]
        reports, absent = await self._poll(host, todo) if todo else ([], frozenset[str]())
        took = asyncio.get_running_loop().time() - started
        return Answer(tuple(known + reports), absent, took)

    async def _poll(self, host_name: str, todo: list[str]
                    ) -> tuple[list[RunReport], frozenset[str]]:
        host = self._host_of(host_name)
        executor = self._executor_for(host) if host else None
        if host is None:
            # No host file ever named it: nothing can be read there, and nothing
            # will be, so its runs are not held for it (they count as gone).
            return [], frozenset(todo)
        if executor is None:
            return [], frozenset()      # the observer reports it down: its runs wait
        if host_name in self._watch.unreachable:
            # The health checks notice its return; until then its runs wait, then are lost.
            return self._lost(host_name, todo, self._watch.down.get(host_name, "")), frozenset()
        try:
            found = await _read(executor, host, todo)
        except HostUnreachable as e:
            self._watch.mark_down(host_name, str(e))
            return self._lost(host_name, todo, str(e)), frozenset()
        except Exception as e:      # one bad run dir must not stop every other task
            log.exception("cannot read the runs %s on %s", todo, host_name)
            return self._unreadable(host, todo, f"{type(e).__name__}: {e}"), frozenset()
        for run_id in todo:
            self._watch.seen(run_id)
        absent = frozenset(r for r, rep in found.items() if rep is None)
        return [r for r in found.values() if r is not None], absent

    def _unreadable(self, host: Host, todo: list[str], why: str) -> list[RunReport]:
        if not host.is_local:
            # Over SSH the run may well be alive: treat the host as lost
            # (grace, then abandon and kill), never as a finished run.
            self._watch.mark_down(host.name, why)
            return self._lost(host.name, todo, why)
        why = f"cannot read the run's result: {why}"
        return [RunReport(r, Phase.EXITED, error=why, result=Result(outcome=Outcome.FAILURE, summary=why))
                for r in todo]

    def _lost(self, host: str, run_ids: list[str], why: str) -> list[RunReport]:
        reports = (self._watch.lost(r, host, why) for r in run_ids)
        return [r for r in reports if r is not None]


async def _read(executor: Executor, host: Host, run_ids: list[str]) -> dict[str, RunReport | None]:
    many = getattr(executor, "poll_many", None)    # one remote command per host
    if many is not None:
        found: dict[str, RunReport | None] = await many(host, run_ids)
        return found
    return {r: await executor.poll(host, r) for r in run_ids}
