"""One pass's observation: the runs, the merges and the hosts, as Observed.

`Observer` is made by the engine (engine.core.Engine) with its dependencies:
the executor and host lookups, the host watch, the target-repository cache
and what we last knew of the tasks in flight. `observe()` polls the runs of
unfinished tasks, asks whether reviewed work was merged, and builds a fresh
`hosts_down` map from the facts of this pass: the watch's records, hosts with
no executor or no health check yet, slow hosts, hosts with abandoned runs.
It decides nothing; the planner does.
"""
from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Protocol

from controller.model import ACTIVE, Desired, Observed, Phase, RunReport, State, Status, Task
from controller.observe.health import HostWatch
from controller.observe.known import LastKnown
from controller.observe.merges import MergeCheck, Targets
from controller.observe.polling import ExecutorFor, HostOf, RunPoller
from controller.status.book import StatusBook


class WorkFacts(Protocol):
    """What the engine's work in flight shows the observer (engine.inflight.InFlight)."""
    @property
    def starting(self) -> Collection[str]: ...          # run ids whose start is still going
    @property
    def stopping(self) -> Collection[str]: ...          # run ids whose stop is still going
    @property
    def launched(self) -> Collection[str]: ...          # run ids this process began starting
    @property
    def start_failures(self) -> Mapping[str, RunReport]: ...


class Observer:
    def __init__(self, executor_for: ExecutorFor, host_of: HostOf, watch: HostWatch,
                 targets: Targets, known: LastKnown):
        self._executor_for = executor_for
        self._watch = watch
        self._targets = targets
        self._known = known
        self._poller = RunPoller(executor_for, host_of, watch)

    async def observe(self, desired: Desired, book: StatusBook, work: WorkFacts) -> Observed:
        by_host = _runs_by_host(book.in_flight())
        polled = await self._poller.poll(by_host, work.starting, work.start_failures)
        runs = polled.runs
        for run_id in set(work.stopping) & set(runs):
            # A stop still in its TERM grace: the run's slot stays taken until
            # the stop is done, whatever its wrapper already wrote.
            runs[run_id] = replace(runs[run_id], phase=Phase.RUNNING)
        stale = self._known.stale(desired)
        checks = _merge_checks(book.in_states(State.REVIEW_PENDING), desired, stale)
        merged = await asyncio.to_thread(self._targets.merged, checks)
        return Observed(statuses=book, runs=runs, merged=frozenset(merged),
                        hosts_down=self._hosts_down(desired, polled.slow), stale=stale,
                        launched=frozenset(work.launched), absent=polled.absent)

    def cancel(self) -> None:
        """Stop waiting for polls still going (the engine is shutting down)."""
        self._poller.cancel()

    def unchecked(self, desired: Desired) -> list[str]:
        """Hosts no health check has seen as they are now: they get no runs yet."""
        return [h.name for h in desired.hosts.values()
                if self._executor_for(h) is not None and self._watch.unchecked(h)]

    def _hosts_down(self, desired: Desired, slow: Mapping[str, str]) -> dict[str, str]:
        down = dict(self._watch.down)
        for host in desired.hosts.values():
            if self._executor_for(host) is None:
                down[host.name] = f"no executor for address {host.address!r} in this version"
            elif self._watch.unchecked(host):
                down.setdefault(host.name, "waiting for its first health check")
        for name, why in slow.items():
            down.setdefault(name, why)    # its runs wait for a first poll
        for name in set(self._watch.abandoned.values()):
            # A run left behind there is killed when the host answers again; until
            # that is done, nothing new goes there (it may share the workspace).
            down.setdefault(name, "stopping a run abandoned there")
        return down


def _runs_by_host(flight: list[Status]) -> dict[str, list[str]]:
    by_host: dict[str, list[str]] = {}
    for st in flight:
        if st.state in ACTIVE:
            by_host.setdefault(st.host or "", []).append(st.run_id or "")
        if st.stopping is not None:
            by_host.setdefault(st.stopping.host, []).append(st.stopping.run_id)
    return by_host


def _merge_checks(reviewed: list[Status], desired: Desired,
                  stale: Mapping[str, Task]) -> list[MergeCheck]:
    checks = []
    for st in reviewed:
        task = desired.tasks.get(st.task) or stale.get(st.task)
        if task and st.result and st.result.commit:
            checks.append(MergeCheck(st.task, task.repo, task.base, st.result.commit))
    return checks

