"""The engine's in-memory view of status/: every task's status, parsed on demand.

A fleet repository may hold 100k status files, nearly all of them finished. At
cold start only the unfinished ones are parsed (their state is sniffed from the
second line our own emitter writes); finished ones stay as blob ids until someone
asks for them, e.g. a task that depends on one. The book is the Mapping the
planner reads as `Observed.statuses`; the engine updates it after each commit.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Callable, Iterator, Mapping

from controller.status import statusfile
from controller.model import ACTIVE, ID_RE, TERMINAL, State, Status

log = logging.getLogger(__name__)
_STATE = re.compile(rb"^state: ([a-z_]+)$", re.M)
_TERMINAL_NAMES = frozenset(s.value.encode() for s in TERMINAL)


def _no_reader(blob: str) -> bytes:
    raise KeyError(blob)


class StatusBook(Mapping[str, Status]):
    def __init__(self) -> None:
        self._parsed: dict[str, Status] = {}
        # finished: task id -> (blob id, its state), parsed on demand
        self._dormant: dict[str, tuple[str, State]] = {}
        self._counts: Counter[State] = Counter()   # every task's state, for /metrics
        self._read: Callable[[str], bytes] = _no_reader
        self.unfinished: set[str] = set()       # not terminal, or a stop still pending

    def load(self, blobs: Mapping[str, str], read: Callable[[str], bytes]) -> None:
        """Replace everything with these status files (task id -> blob id)."""
        self._parsed.clear()
        self._dormant.clear()
        self._counts.clear()
        self.unfinished.clear()
        self._read = read
        for task_id, blob in blobs.items():
            if not ID_RE.match(task_id):
                log.warning("status/%s.yaml: not a valid task id; ignored", task_id)
                continue
            data = read(blob)
            m = _STATE.search(data, 0, 400)
            if m is not None and m.group(1) in _TERMINAL_NAMES and b"\nstopping:" not in data:
                state = State(m.group(1).decode())
                self._dormant[task_id] = (blob, state)   # the bytes are dropped: memory
                self._counts[state] += 1
            else:
                self._parse(task_id, data)

    def put(self, status: Status) -> None:
        self._forget(status.task)
        self._parsed[status.task] = status
        self._counts[status.state] += 1
        if status.state in TERMINAL and status.stopping is None:
            self.unfinished.discard(status.task)
        else:
            self.unfinished.add(status.task)

    def remove(self, task_id: str) -> None:
        self._forget(task_id)
        self.unfinished.discard(task_id)

    def _forget(self, task_id: str) -> None:
        old = self._parsed.pop(task_id, None)
        entry = self._dormant.pop(task_id, None)
        state = old.state if old is not None else entry[1] if entry is not None else None
        if state is not None:
            self._counts[state] -= 1

    def counts(self) -> dict[State, int]:
        """How many tasks are in each state (every State, 0s included)."""
        return {state: self._counts[state] for state in State}

    def _parse(self, task_id: str, data: bytes) -> Status | None:
        try:
            st = statusfile.loads(data, f"status/{task_id}.yaml")
        except ValueError as e:
            # A status file is ours; a corrupt one is treated as absent, so the
            # task starts over rather than the controller stopping.
            log.warning("%s; the task will be treated as new", e)
            return None
        self.put(st)
        return st

    # ---- Mapping ---------------------------------------------------------------
    def __getitem__(self, task_id: str) -> Status:
        st = self._parsed.get(task_id)
        if st is not None:
            return st
        entry = self._dormant.get(task_id)
        if entry is None or (st := self._parse(task_id, self._read(entry[0]))) is None:
            raise KeyError(task_id)
        return st

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._parsed or task_id in self._dormant

    def __iter__(self) -> Iterator[str]:
        yield from list(self._parsed)
        yield from list(self._dormant)

    def __len__(self) -> int:
        return len(self._parsed) + len(self._dormant)

    def in_flight(self) -> list[Status]:
        """Statuses with a run to follow: assigned, running, or a stop pending."""
        return [st for t in sorted(self.unfinished) if (st := self._parsed.get(t))
                and (st.state in ACTIVE or st.stopping is not None)]

    def in_states(self, *states: State) -> list[Status]:
        """Unfinished statuses in these states (finished ones are never asked for)."""
        return [st for t in sorted(self.unfinished) if (st := self._parsed.get(t)) and st.state in states]
