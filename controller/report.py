"""What `fleet status` and `fleet plan` print: tables for people, JSON for scripts.

Both read through the engine (sync, then observe), and neither writes anything:
`plan` shows the actions the next pass would take without taking them.
"""
from __future__ import annotations

import json
from collections import Counter

from .engine import Engine
from .model import ACTIVE, DeleteStatus, SetStatus, StartRun, StopRun, Status
from .planner import plan


async def print_plan(engine: Engine) -> int:
    await engine.sync()
    await engine.check_hosts()      # reads only: where could runs go now
    observed = await engine.observe()
    actions = plan(engine.desired, observed, engine.clock(),
                   focus=engine.focus | engine.book.unfinished)
    if not actions:
        print("nothing to do")
    for a in actions:
        if isinstance(a, SetStatus):
            for reason in a.reasons:
                print(f"{a.status.task}: {reason}")
        elif isinstance(a, DeleteStatus):
            print(f"{a.task}: remove status ({a.reason})")
        elif isinstance(a, StartRun):
            kind = "revision run" if a.from_branch else "run"
            print(f"{a.task}: start {kind} {a.run_id} on {a.host} (attempt {a.attempt})")
        elif isinstance(a, StopRun):
            print(f"{a.task}: stop run {a.run_id} on {a.host} ({a.reason})")
    return 0


async def print_status(engine: Engine, as_json: bool = False) -> int:
    await engine.sync()
    desired = engine.desired
    ids = sorted(set(desired.tasks) | set(desired.invalid) | set(engine.book))
    rows = [_row(t, engine.book.get(t)) for t in ids]
    load = Counter(st.host for st in engine.book.in_states(*ACTIVE) if st.host)
    health = engine.watch.load_health()     # written by the running controller's checks
    hosts = [{"name": h.name, "address": h.address, "load": load[h.name],
              "max_concurrent": h.max_concurrent, "capabilities": sorted(h.capabilities),
              "health": health.get(h.name)}
             for h in sorted(desired.hosts.values(), key=lambda h: h.name)]
    if as_json:
        print(json.dumps({"commit": engine.commit, "tasks": rows, "hosts": hosts}, indent=2))
        return 0
    _table(["TASK", "STATE", "ATTEMPT", "HOST", "MESSAGE"],
           [[r["task"], r["state"], str(r["attempt"]), r["host"] or "-", r["message"]] for r in rows])
    print()
    _table(["HOST", "ADDRESS", "LOAD", "CAPABILITIES", "HEALTH"],
           [[h["name"], h["address"], f"{h['load']}/{h['max_concurrent']}",
             ",".join(h["capabilities"]), _health(h)] for h in hosts])
    return 0


def _row(task_id: str, st: Status | None) -> dict:
    if st is None:
        return {"task": task_id, "state": "-", "attempt": 0, "host": None,
                "message": "not reconciled yet", "review_count": 0}
    result = st.result
    return {"task": task_id, "state": st.state.value, "attempt": st.attempt, "host": st.host,
            "message": st.message, "review_count": st.review_count, "run_id": st.run_id,
            "outcome": result.outcome if result else None,
            "summary": result.summary if result else None}


def _health(host: dict) -> str:
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


def _table(header: list[str], rows: list[list[str]]) -> None:
    cells = [header] + [[c.replace("\n", " ") for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header) - 1)]
    for r in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths))
        print(f"{line}  {r[-1]}".rstrip())
