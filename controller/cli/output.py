"""What `fleet status` and `fleet plan` print: tables for people, JSON for scripts.

Both read through the engine, and neither writes anything: `status` syncs and
reads the records, `plan` uses a read-only engine (cli.py) that checks hosts
without creating anything there and shows the actions the next pass would
take without taking them.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from typing import Any, Iterable, NotRequired, TypedDict

from controller.engine.core import Engine
from controller.model import (ACTIVE, Action, CommentPR, DeleteStatus, Desired, Host, OpenPR, Outcome,
                              SetStatus, StartRun, StopRun,
                              Status)
from controller.plan.planner import plan
from controller.status.book import StatusBook


class _TaskRow(TypedDict):
    """One task in `fleet status --json` (and its table); a task never
    reconciled has no run_id, outcome or summary keys."""
    task: str
    state: str
    attempt: int
    host: str | None
    message: str
    review_count: int
    run_id: NotRequired[str | None]
    outcome: NotRequired[Outcome | None]
    summary: NotRequired[str | None]


class _HostRow(TypedDict):
    name: str
    address: str
    load: int
    max_concurrent: int
    capabilities: list[str]
    health: dict[str, Any] | None    # the running controller's record in hosts.json: JSON as it wrote it


async def _synced(engine: Engine) -> Desired:
    """Sync, and the desired state it read (sync raises when it cannot read one)."""
    await engine.sync()
    if engine.desired is None:
        raise RuntimeError("the engine has no desired state after a sync")
    return engine.desired


async def print_plan(engine: Engine) -> int:
    try:
        desired = await _synced(engine)
        await engine.check_hosts()      # read-only: where could runs go now
        observed = await engine.observe()
        actions = plan(desired, observed, engine.clock(),
                       focus=engine.focus | engine.book.unfinished)
        lines = plan_lines(actions, engine.book, engine.watch.to_stop(desired))
    finally:
        await engine.close()
    print("\n".join(lines) if lines else "nothing to do")
    return 0


def plan_lines(actions: Iterable[Action], book: StatusBook,
               abandoned: Iterable[tuple[Host, str]] = ()) -> list[str]:
    """One line per thing the next pass would do; `abandoned`: runs it would stop first."""
    lines = [f"host {h.name}: stop abandoned run {run_id} (its task moved on)"
             for h, run_id in abandoned]
    for a in actions:
        if isinstance(a, SetStatus):
            lines += [f"{a.status.task}: {reason}" for reason in a.reasons]
        elif isinstance(a, DeleteStatus):
            lines.append(f"{a.task}: remove status ({a.reason})")
        elif isinstance(a, StartRun):
            kind = "revision run" if a.from_branch else "run"
            lines.append(f"{a.task}: start {kind}{_recorded(a, book)} on {a.host} "
                         f"(attempt {a.attempt})")
        elif isinstance(a, StopRun):
            lines.append(f"{a.task}: stop run {a.run_id} on {a.host} ({a.reason})")
        elif isinstance(a, OpenPR):
            lines.append(f"{a.task}: open a pull request from {a.head} into {a.base}")
        elif isinstance(a, CommentPR):
            lines.append(f"{a.task}: comment revision {a.revision} on pull request #{a.number}")
    return lines


def _recorded(start: StartRun, book: StatusBook) -> str:
    """` RUN_ID` when the status already records it (an assignment not yet started),
    which is the id the next `fleet run` uses; a new id comes from that pass's
    clock, so plan cannot know it and prints none."""
    st = book.get(start.task)
    return f" {start.run_id}" if st is not None and st.run_id == start.run_id else ""


async def print_status(engine: Engine, as_json: bool = False) -> int:
    desired = await _synced(engine)
    ids = sorted(set(desired.tasks) | set(desired.invalid) | set(engine.book))
    rows = [_row(t, engine.book.get(t)) for t in ids]
    load = Counter(st.host for st in engine.book.in_states(*ACTIVE) if st.host)
    health = engine.watch.load_health()     # written by the running controller's checks
    hosts: list[_HostRow] = [
        {"name": h.name, "address": h.address, "load": load[h.name],
         "max_concurrent": h.max_concurrent, "capabilities": sorted(h.capabilities),
         "health": health.get(h.name)}
        for h in sorted(desired.hosts.values(), key=lambda h: h.name)]
    if as_json:
        print(json.dumps({"commit": engine.commit, "tasks": rows, "hosts": hosts}, indent=2))
        return 0
    width = shutil.get_terminal_size().columns      # honours $COLUMNS
    _table(["TASK", "STATE", "ATTEMPT", "HOST", "MESSAGE"],
           [[r["task"], r["state"], str(r["attempt"]), r["host"] or "-", r["message"]] for r in rows],
           width, cut=(4,))
    print()
    # Capabilities are cut before health: they are in hosts/*.yaml, and health says why a host is down.
    _table(["HOST", "ADDRESS", "LOAD", "CAPABILITIES", "HEALTH"],
           [[h["name"], h["address"], f"{h['load']}/{h['max_concurrent']}",
             ",".join(h["capabilities"]), _health(h)] for h in hosts],
           width, cut=(3, 4))
    return 0


def _row(task_id: str, st: Status | None) -> _TaskRow:
    if st is None:
        return {"task": task_id, "state": "-", "attempt": 0, "host": None,
                "message": "not reconciled yet", "review_count": 0}
    result = st.result
    return {"task": task_id, "state": st.state.value, "attempt": st.attempt, "host": st.host,
            "message": st.message, "review_count": st.review_count, "run_id": st.run_id,
            "outcome": result.outcome if result else None,
            "summary": result.summary if result else None}


def _health(host: _HostRow) -> str:
    """`ok (codex 0.58.0, ...)`, `DOWN: why`, or why there is nothing to show."""
    h = host["health"]
    if host["address"] == "local":
        return "local"
    if not h:
        return "not checked yet" if host["max_concurrent"] else "drained: not checked"
    if not h.get("ok"):
        return f"DOWN at {h.get('checked_at', '?')}: {h.get('error', '')}"
    versions = ", ".join(f"{a} {v}" for a, v in sorted(h.get("versions", {}).items()))
    return f"ok at {h.get('checked_at', '?')}" + (f" ({versions})" if versions else "")


def _table(header: list[str], rows: list[list[str]], width: int,
           cut: tuple[int, ...] = ()) -> None:
    """Print aligned columns in `width` characters, cutting the columns in `cut`
    (free text: messages, health) with an ellipsis; names and states stay whole,
    since people copy them into commands. --json has every message in full."""
    cells = [header] + [[c.replace("\n", " ") for c in r] for r in rows]
    widths = _fit([max(len(r[i]) for r in cells) for i in range(len(header))],
                  [len(h) for h in header], width, cut)
    for r in cells:
        line = "  ".join(_cut(c, w).ljust(w) for c, w in zip(r, widths))
        print(line.rstrip())


MIN_CUT = 12      # a cut column keeps at least this much (or its header), however narrow


def _fit(widths: list[int], headers: list[int], width: int, cut: tuple[int, ...]) -> list[int]:
    """Column widths that add up (with two spaces between) to at most `width`,
    narrowing the columns in `cut`, in that order of preference."""
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for i in cut:
        if excess <= 0:
            break
        floor = min(widths[i], max(MIN_CUT, headers[i]))
        take = min(excess, widths[i] - floor)
        widths[i] -= take
        excess -= take
    return widths


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)].rstrip() + "…"
