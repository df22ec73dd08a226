"""The work this controller process has in flight: starts, stops, cleanups.

One `InFlight` is made by the engine (core.Engine), which lends it to the
dispatcher (which adds and removes work through its methods) and shows it to
the observer as read-only facts (observe.observer.WorkFacts): which runs are
still starting or stopping, which starts failed and why, and which run ids
this process began starting. Nothing else keeps a copy.

Host polls are not here: they are the run poller's own business
(observe.polling.RunPoller), which cancels them itself.
"""
from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from controller.model import RunReport

Job = asyncio.Task[None]


@dataclass
class InFlight:
    starts: dict[str, Job] = field(default_factory=dict)      # run id -> its start still running
    stops: dict[str, Job] = field(default_factory=dict)       # run id -> its stop still running
    cleanups: dict[str, Job] = field(default_factory=dict)    # task id -> its workspace removal
    launched: set[str] = field(default_factory=set)           # every run id this process started
    start_failures: dict[str, RunReport] = field(default_factory=dict)  # run id -> why it failed

    # ---- read by the observer (WorkFacts) --------------------------------------
    @property
    def starting(self) -> Collection[str]:
        return self.starts.keys()

    @property
    def stopping(self) -> Collection[str]:
        return self.stops.keys()

    # ---- kept up to date by the dispatcher --------------------------------------
    def track_start(self, run_id: str, job: Job) -> None:
        self.starts[run_id] = job
        self.launched.add(run_id)
        job.add_done_callback(lambda _: self.starts.pop(run_id, None))

    def track_stop(self, run_id: str, job: Job) -> None:
        self.stops[run_id] = job

    def stop_done(self, run_id: str) -> None:
        """Called by the stop itself as it ends, so its run counts as stopped at once."""
        self.stops.pop(run_id, None)

    def track_cleanup(self, task_id: str, job: Job) -> None:
        self.cleanups[task_id] = job
        # A newer cleanup of the same task may have replaced this one meanwhile.
        job.add_done_callback(lambda done: self.cleanups.get(task_id) is done
                              and self.cleanups.pop(task_id))

    def start_failed(self, report: RunReport) -> None:
        self.start_failures[report.run_id] = report

    # ---- for the engine ----------------------------------------------------------
    def keep_failures(self, live: Iterable[str]) -> None:
        """Forget the start failures of runs no status names any more."""
        keep = set(live)
        for run_id in [r for r in self.start_failures if r not in keep]:
            del self.start_failures[run_id]     # in place: polls going on hold this dict

    def busy(self) -> bool:
        return bool(self.starts or self.stops or self.cleanups)

    async def drain(self) -> None:
        """Wait for every start, stop and cleanup going on (before --once exits)."""
        jobs = [*self.starts.values(), *self.stops.values(), *self.cleanups.values()]
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
