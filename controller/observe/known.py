"""What we last knew of the tasks in flight: their hosts and their last valid specs.

A host file removed, or a task file broken, while a run is going must not lose
the run: it is still polled, stopped and followed to its end on what was valid
when it was assigned. The engine updates one `LastKnown` at the start of each
observation; the observer reads the stale specs from it (they reach the
planner as Observed.stale), and the engine's host lookup falls back on it.
"""
from __future__ import annotations

from collections.abc import Iterable

from controller.model import Desired, Host, Status, Task


class LastKnown:
    def __init__(self) -> None:
        self._hosts: dict[str, Host] = {}
        self._specs: dict[str, Task] = {}

    def update(self, desired: Desired, flight: Iterable[Status]) -> None:
        """Remember the hosts and specs of these statuses (tasks in flight or in
        review), as `desired` has them or, failing that, as they were last known."""
        hosts: dict[str, Host] = {}
        specs: dict[str, Task] = {}
        for st in flight:
            for name in (st.host, st.stopping.host if st.stopping else None):
                if name is not None and (h := self.host(desired, name)) is not None:
                    hosts[name] = h
            if (t := desired.tasks.get(st.task) or self._specs.get(st.task)) is not None:
                specs[st.task] = t
        self._hosts, self._specs = hosts, specs

    def host(self, desired: Desired, name: str) -> Host | None:
        """The host by name; one removed from the repo while it has runs is still known."""
        return desired.hosts.get(name) or self._hosts.get(name)

    def stale(self, desired: Desired) -> dict[str, Task]:
        """The last valid spec of each remembered task whose file is now invalid."""
        return {t: self._specs[t] for t in desired.invalid if t in self._specs}
