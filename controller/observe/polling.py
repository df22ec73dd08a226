"""How the engine reads its runs: every host polled side by side, within a budget.

A mixin of engine.Engine (it uses the engine's executors, host watch and start
failures). A pass waits at most POLL_BUDGET for one host; a slower host keeps
its last reports for that pass and is read in a later one, so one slow host
does not slow the fleet. A host that cannot be reached has its runs held for
the lost grace (hosts.HostWatch), then reported lost.
"""
from __future__ import annotations

import asyncio
import logging

from controller.executors.base import HostUnreachable
from controller.model import Phase, Result, RunReport

log = logging.getLogger("fleet")
POLL_BUDGET = 3.0           # seconds a pass waits for one host's poll


class Polling:
    async def _poll_hosts(self, by_host: dict[str, list[str]]
                          ) -> tuple[dict[str, RunReport], dict[str, str], frozenset[str]]:
        """The runs' reports, polled per host side by side. A pass waits at most
        POLL_BUDGET for a host: a slower one keeps its last reports for this pass
        and is answered in a later one, so one slow host does not slow them all."""
        loop = asyncio.get_running_loop()
        for host in set(self._polls) - set(by_host):
            # It has nothing to poll now: a late answer about old runs must not be
            # taken later for the state of runs it never asked about.
            self._polls.pop(host).cancel()
        jobs = {}
        for host, run_ids in by_host.items():
            if host not in self._polls:
                self._polls[host] = loop.create_task(self._timed_poll(host, run_ids))
            jobs[host] = self._polls[host]
        waited = [job for host, job in jobs.items() if host not in self._slow]
        if waited:
            await asyncio.wait(waited, timeout=POLL_BUDGET)
        runs: dict[str, RunReport] = {}
        slow: dict[str, str] = {}
        gone: set[str] = set()
        for host, job in jobs.items():
            if job.done():
                del self._polls[host]
                reports, absent, took = job.result()
                self._reports[host] = {r.run_id: r for r in reports}
                self._absent[host] = absent
                (self._slow.add if took > POLL_BUDGET else self._slow.discard)(host)
            else:
                self._slow.add(host)    # not waited for again until a poll is quick
            if host in self._slow and host not in self._reports:
                # No report at all yet (a restart): its runs must wait, not vanish.
                slow[host] = f"slow to answer: a poll takes more than {POLL_BUDGET:g} s"
            runs.update(self._reports.get(host, {}))
            gone |= self._absent.get(host, frozenset())
        for run_ids in by_host.values():
            for run_id in run_ids:
                if run_id in self._starting and run_id not in runs:
                    # Its start is still going: a stop or a plan must not take the
                    # absence of its run dir for "gone".
                    runs[run_id] = RunReport(run_id, Phase.STARTING)
        self._reports = {h: r for h, r in self._reports.items() if h in by_host}
        self._absent = {h: r for h, r in self._absent.items() if h in by_host}
        self._slow &= set(by_host)
        return runs, slow, frozenset(gone - set(runs))

    async def _timed_poll(self, host: str, run_ids: list[str]
                          ) -> tuple[list[RunReport], frozenset[str], float]:
        started = asyncio.get_running_loop().time()
        reports, absent = await self._poll(host, run_ids)
        return reports, absent, asyncio.get_running_loop().time() - started

    async def _poll(self, host_name: str, run_ids: list[str]) -> tuple[list[RunReport], frozenset[str]]:
        reports = [self.start_failures[r] for r in run_ids if r in self.start_failures]
        todo = [r for r in run_ids if r not in self.start_failures]
        host = self._host(host_name)
        executor = self._executor_for(host) if host and todo else None
        if executor is None:
            return reports, frozenset()
        if host_name in self.watch.unreachable:
            # The health checks notice its return; until then its runs wait, then are lost.
            return reports + self._lost(host_name, todo, self.hosts_down.get(host_name, "")), frozenset()
        try:
            many = getattr(executor, "poll_many", None)    # one remote command per host
            found = await many(host, todo) if many else {r: await executor.poll(host, r) for r in todo}
        except HostUnreachable as e:
            self.watch.mark_down(host_name, str(e))
            return reports + self._lost(host_name, todo, str(e)), frozenset()
        except Exception as e:      # one bad run dir must not stop every other task
            log.exception("cannot read the runs %s on %s", todo, host_name)
            why = f"{type(e).__name__}: {e}"
            if not host.is_local:
                # Over SSH the run may well be alive: treat the host as lost
                # (grace, then abandon and kill), never as a finished run.
                self.watch.mark_down(host_name, why)
                return reports + self._lost(host_name, todo, why), frozenset()
            why = f"cannot read the run's result: {why}"
            return reports + [RunReport(r, Phase.EXITED, error=why,
                                        result=Result(outcome="failure", summary=why))
                              for r in todo], frozenset()
        for run_id in todo:
            self.watch.seen(run_id)
        absent = frozenset(r for r, rep in found.items() if rep is None)
        return reports + [r for r in found.values() if r is not None], absent

    def _lost(self, host: str, run_ids: list[str], why: str) -> list[RunReport]:
        reports = (self.watch.lost(r, host, why) for r in run_ids)
        return [r for r in reports if r is not None]

