"""Host placement for the planner: dependencies, capabilities, health and load.

Pure like the planner that calls it. `blocker()` answers why a task cannot run at
all for now (the task goes to `blocked` with that sentence); `choose()` picks the
least-loaded eligible host with a free slot, or says why it waits.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

from controller.model import (ACTIVE, TERMINAL, Desired, Host, Observed, State, Status, Task,
                              TaskMode)
from controller.repos import allowed


class Placement:
    def __init__(self, desired: Desired, observed: Observed, statuses: Iterable[Status | None]):
        self.desired = desired
        self.observed = observed
        self.load: Counter[str] = Counter()
        for st in statuses:
            if st is None:
                continue
            if st.state in ACTIVE and st.host:
                self.load[st.host] += 1
            if st.stopping is not None:     # a run still stopping holds its slot
                self.load[st.stopping.host] += 1

    def blocker(self, task: Task, status_of: Callable[[str], Status | None]) -> str | None:
        """A sentence saying what must change before the task can start, or None."""
        if not allowed(task.repo, self.desired.allowed_repos):
            return not_allowed(task.repo, self.desired.allowed_repos)
        unmet = []
        for dep in task.depends_on:
            st = status_of(dep)
            if st is None:
                unmet.append(f"{dep} (no status yet)")
            elif st.state in TERMINAL and st.state != State.COMPLETED:
                unmet.append(f"{dep} ({st.state}: rerun it or drop it from depends_on)")
            elif st.state == State.REVIEW_PENDING:
                # Finished but unmerged: only a person's merge moves it on, so say so.
                unmet.append(f"{dep} (review_pending: it must be merged first: "
                             f"{self._merge_of(dep, st)})")
            elif st.state != State.COMPLETED:
                # The dependency's live state is left out on purpose: it would
                # rewrite this status (and make a commit) at each of its steps.
                unmet.append(dep)
        if unmet:
            return "waiting for depends_on: " + ", ".join(unmet)
        if task.mode == TaskMode.PULL:
            return None
        agent = self.desired.agents.get(task.agent)
        if agent is None:
            return f"agent {task.agent} not found: add agents/{task.agent}.yaml"
        need = agent.requires | task.requires
        capable = [h for h in self._hosts() if need <= h.capabilities]
        if not capable:
            return (f"no eligible host: none has capabilities [{', '.join(sorted(need))}]; "
                    "add them to a host's capabilities or change requires")
        capable = [h for h in capable if h.max_concurrent > 0]
        if not capable:
            return ("no eligible host: every host with the capabilities is drained "
                    "(max_concurrent: 0)")
        down = self.observed.hosts_down
        if all(h.name in down for h in capable):
            return "no eligible host is up: " + "; ".join(
                f"{h.name}: {down[h.name]}" for h in capable)
        return None

    def choose(self, task: Task) -> tuple[str | None, str]:
        """(host, "") or (None, why it waits). Call only when blocker() is None."""
        if task.mode == TaskMode.PULL:
            return None, "waiting for a pull agent to dequeue it"
        agent = self.desired.agents[task.agent]
        need = agent.requires | task.requires
        free = [h for h in self._hosts()
                if need <= h.capabilities and h.name not in self.observed.hosts_down
                and self.load[h.name] < h.max_concurrent]
        if not free:
            return None, "waiting for a free slot on an eligible host"
        # Least loaded by fraction of its slots, then by runs, then by name, so the
        # same inputs always give the same host.
        best = min(free, key=lambda h: (self.load[h.name] / h.max_concurrent,
                                        self.load[h.name], h.name))
        return best.name, ""

    def _merge_of(self, dep: str, st: Status) -> str:
        """How a person moves a review_pending dependency on to completed."""
        task = self.desired.tasks.get(dep)
        if task is None:
            return f"merge {st.branch or f'task/{dep}'} into its base"
        return f"merge {task.branch} into {task.base}"

    def take(self, host: str) -> None:
        self.load[host] += 1

    def _hosts(self) -> Iterable[Host]:
        return self.desired.hosts.values()


def not_allowed(repo: str, patterns: tuple[str, ...]) -> str:
    """Why a task whose repo matches no allowed_repos pattern is blocked, and what to change."""
    shown = ", ".join(patterns[:3]) + (f" and {len(patterns) - 3} more" if len(patterns) > 3 else "")
    return (f"repo {repo} is not allowed: it matches none of allowed_repos ({shown}) in the "
            "controller config; add a pattern for it there, or change the task's repo")
