"""Measures one repository size, in this process, through the engine's real code paths.

Run by `benchmarks.__main__` as `python -m benchmarks.scale --size N`, one fresh
process per size so the peak RSS is that size's own. It copies the cached
repository (genrepo) to a scratch source, then measures:

1. cold start: `engine.sync()` (clone, parse every file, load statuses) and the
   planning part of the first pass (observe, plan);
2. one-change reconcile: a person pushes one edited task file, then a full pass
   (`engine.sync()` + `engine.step()`: fetch, tree diff, re-parse, plan, commit, push);
3. one status commit of 1,000 transitions (`GitStore.commit_statuses`, push included);
4. peak RSS of the process after the cold start.

Only our own executor interface is faked: runs are never started. Figures go to
stdout as one JSON line; progress and profiles go to stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import resource
import shutil
import statistics
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from controller.engine import core as engine_mod
from controller.status import statusfile
from controller.engine.core import Engine
from controller.gitstore import GitStore
from controller.model import Host, Phase, RunReport, SetStatus, State, Transition

from . import genrepo
from .timing import Laps, clock

NOW = genrepo.NOW


class IdleExecutor:
    """The executor interface with nothing behind it: starts nothing, every run is alive.

    Every run id counts as known, because the generated fleet's assigned and
    running statuses name runs that, in a real fleet, would exist on their hosts."""

    def __init__(self) -> None:
        self.started: set[str] = set()

    async def start(self, spec) -> None:
        self.started.add(spec.run_id)

    async def poll(self, host: Host, run_id: str) -> RunReport | None:
        return RunReport(run_id, Phase.RUNNING, last_output_at=NOW)

    async def stop(self, host: Host, run_id: str, grace: float) -> None:
        return None


class InlineAsyncio:
    """asyncio, but to_thread runs inline: under --profile, cProfile sees one thread only."""

    def __getattr__(self, name: str):
        return getattr(asyncio, name)

    @staticmethod
    async def to_thread(func, *args, **kwargs):
        return func(*args, **kwargs)


class Bench:
    def __init__(self, size: int, work: Path, profile: str | None):
        self.size, self.profile = size, profile
        self.source = work / "source.git"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        shutil.copytree(genrepo.cached(size), self.source)   # the benchmark pushes into it
        state = work / "state"
        self.store = GitStore(str(self.source), state)
        idle = IdleExecutor()
        self.engine = Engine(self.store, state, clock=lambda: NOW, executors=lambda host: idle)
        self.laps = Laps()
        self._watch()

    def _watch(self) -> None:
        """Time the steps inside a pass, to say where a pass spends its time."""
        e, s, w = self.engine, self.store, self.laps.watch
        # fetch/push are the git subprocesses; "changes" is the tree diff (at cold
        # start, the listing of every file).
        w(s._remote, "fetch", "fetch")
        w(s._remote, "push", "push")
        w(s, "changes", "changes")
        w(s, "read_statuses", "read statuses")
        w(s, "commit_statuses", "status commit")
        w(e.builder, "apply", "parse specs")
        w(e.book, "load", "load statuses")
        w(e.targets, "merged", "merge checks")
        w(e, "observe", "observe")
        w(engine_mod, "plan", "plan")

    def _profiled(self, phase: str):
        return cProfile.Profile() if self.profile == phase else None

    # ---- 1. cold start ---------------------------------------------------------
    async def cold_start(self) -> dict:
        prof = self._profiled("cold")
        self.laps.reset()
        t0 = clock()
        with profiling(prof):
            await self.engine.sync()
            observed = await self.engine.observe()
            focus = self.engine.focus | self.engine.book.unfinished
            actions = engine_mod.plan(self.engine.desired, observed, NOW, focus=focus)
        total = clock() - t0
        _report_profile(prof, f"cold start of {self.size}")
        return {"total_s": total, "vmhwm_mb": _vmhwm_mb(), "steps_s": self.laps.totals(),
                "tasks": len(self.engine.desired.tasks), "invalid": len(self.engine.desired.invalid),
                "focus": len(focus), "actions": len(actions)}

    async def settle(self) -> list[int]:
        """Run passes until one writes nothing, so the next pass sees only the person's edit."""
        writes = []
        for _ in range(6):
            result = await self.engine.step()
            n = sum(isinstance(a, SetStatus) for a in result.actions)
            writes.append(n)
            if n == 0:
                break
        return writes

    # ---- 2. one-change reconcile ------------------------------------------------------
    async def one_change(self, k: int, prof: cProfile.Profile | None) -> dict:
        i = self._completed_task(k)
        genrepo.push_edit(self.source, f"tasks/{genrepo.task_id(i)}.yaml",
                          f"rerun: bench-{k}\n".encode(), f"rerun {genrepo.task_id(i)}")
        self.laps.reset()
        t0 = clock()
        with profiling(prof):
            moved = await self.engine.sync()
            result = await self.engine.step()
        total = clock() - t0
        if not moved or result.commit is None:
            raise SystemExit(f"pass {k} did not see the edit or commit a status: {result.lines}")
        steps = self.laps.totals()
        return {"total_ms": total * 1e3, "fetch_ms": steps.get("fetch", 0) * 1e3,
                "steps_ms": {n: v * 1e3 for n, v in steps.items()},
                "writes": len(result.lines)}

    def _completed_task(self, k: int) -> int:
        # A different task each time, spread over the repository, and never an
        # unfinished one (every 100th): a rerun of a completed task always transitions.
        i = (k * 7919) % (self.size - 1) + 1
        return i + 1 if i % 100 == 0 else i

    # ---- 3. one status commit of 1,000 transitions --------------------------------------
    def big_commit(self, k: int, prof: cProfile.Profile | None) -> dict:
        ids = [genrepo.task_id(i) for i in _spread(self.size, 1000)]
        t0 = clock()
        writes = {t: statusfile.dumps(_rerun(self.engine.book[t], k)) for t in ids}
        dumped = clock() - t0
        self.laps.reset()
        t0 = clock()
        with profiling(prof):
            commit = self.store.commit_statuses(writes, f"fleet: {len(writes)} status changes\n")
        total = clock() - t0
        if commit is None:
            raise SystemExit("the 1,000-transition commit changed nothing")
        return {"total_ms": total * 1e3, "dumps_ms": dumped * 1e3,
                "push_ms": self.laps.totals().get("push", 0) * 1e3}


@contextmanager
def profiling(prof: cProfile.Profile | None):
    """Profile the block when this phase was asked for (--profile), else nothing."""
    if prof is None:
        yield
        return
    prof.enable()
    try:
        yield
    finally:
        prof.disable()


def _rerun(st, k: int):
    """A real transition of a status, as the planner writes it for a rerun."""
    reason = f"rerun requested (bench-{k})"
    hist = (st.history + (Transition(NOW, st.state, State.CREATED, reason),))[-20:]
    return replace(st, state=State.CREATED, message=reason, history=hist, last_activity_at=NOW,
                   attempt=0, result=None, host=None, run_id=None, rerun_seen=f"bench-{k}")


def _spread(size: int, n: int) -> list[int]:
    step = max(size // n, 1)
    return list(range(1, size + 1, step))[:n]


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _report_profile(prof: cProfile.Profile | None, what: str) -> None:
    if prof is None:
        return
    # Kept for a closer look: python -m pstats .cache/bench/<what>.prof
    prof.dump_stats(genrepo.CACHE / f"{what.replace(' ', '-').replace(',', '')}.prof")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(30)
        print(f"\n==== profile of {what}, by {order} ====\n{out.getvalue()}", file=sys.stderr)


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["total_ms"])[(len(runs) - 1) // 2]


async def measure(size: int, work: Path, repeat: int, profile: str | None) -> dict:
    bench = Bench(size, work, profile)
    if profile:
        engine_mod.asyncio = InlineAsyncio()
    log = lambda msg: print(f"[{size:,}] {msg}", file=sys.stderr, flush=True)   # noqa: E731
    cold = await bench.cold_start()
    log(f"cold start {cold['total_s']:.2f} s, VmHWM {cold['vmhwm_mb']:.0f} MB")
    settle = await bench.settle()
    log(f"settled in {len(settle)} passes writing {settle} statuses")
    prof = bench._profiled("reconcile")
    passes = [await bench.one_change(k, prof) for k in range(1, repeat + 1)]
    _report_profile(prof, f"{repeat} one-change passes at {size}")
    log("one-change passes (ms): " + ", ".join(f"{p['total_ms']:.0f}" for p in passes))
    prof = bench._profiled("commit")
    commits = [bench.big_commit(k, prof) for k in range(1, repeat + 1)]
    _report_profile(prof, f"{repeat} 1000-transition commits at {size}")
    log("1k-commits (ms): " + ", ".join(f"{c['total_ms']:.0f}" for c in commits))
    shutil.rmtree(work, ignore_errors=True)
    # The pass with the median total speaks for all, so its steps add up to it.
    mid = _median_run(passes)
    return {
        "size": size, "cold": cold, "settle_writes": settle,
        "change_ms": mid["total_ms"], "change_fetch_ms": mid["fetch_ms"],
        "change_steps_ms": mid["steps_ms"], "commit_ms": _median_run(commits)["total_ms"],
        "commit_push_ms": _median_run(commits)["push_ms"],
        "dumps_ms": statistics.median(c["dumps_ms"] for c in commits),
        "rss_mb": cold["vmhwm_mb"],
        "rss_end_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", choices=("cold", "reconcile", "commit"))
    args = p.parse_args(argv)
    work = genrepo.CACHE / f"work-{args.size}"
    figures = asyncio.run(measure(args.size, work, args.repeat, args.profile))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
