"""Which webhook deliveries were applied: dedupe by delivery id, durably, across threads.

Called by webhooks.py around each delivery: claim(key) makes a twin delivery
(the same id arriving twice at once) wait for the first, and tells whether the
id was already applied; Claim.mark() records it as applied, only after the Sink
confirmed the effect is on record. The seen ids live in one small file in the
state dir, one per line, appended with fsync; it is rewritten atomically
(temporary file + os.replace) with the newest `keep` ids whenever it grows to
twice that, so it stays bounded. A line cut short by a crash is dropped on load.
"""
from __future__ import annotations

import collections
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

FILE_NAME = "webhook-deliveries"
KEY_RE = re.compile(r"^[a-z]+:[A-Za-z0-9._:-]{1,128}\Z")


class DeliveryBusy(Exception):
    """A twin of this delivery is still being applied after the wait ran out."""


@dataclass(frozen=True, slots=True)
class Claim:
    """One request's hold on a delivery id. seen: it was applied before."""
    key: str
    seen: bool
    mark: Callable[[], None]


class Deliveries:
    """The seen delivery ids of one state dir; thread-safe, one instance per app."""

    def __init__(self, state_dir: Path, keep: int = 10_000) -> None:
        self._path = state_dir / FILE_NAME
        self._keep = keep
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._inflight: set[str] = set()
        self._order: collections.deque[str] = collections.deque()
        self._seen: set[str] = set()
        self._lines = 0
        state_dir.mkdir(parents=True, exist_ok=True)
        self._load()

    def __contains__(self, key: str) -> bool:
        with self._cond:
            return key in self._seen

    @contextmanager
    def claim(self, key: str, wait_s: float) -> Iterator[Claim]:
        """Hold `key` for one request; a twin waits up to wait_s, then DeliveryBusy."""
        if not KEY_RE.match(key):
            raise ValueError(f"not a delivery key: {key!r}")
        seen = self._enter(key, wait_s)
        try:
            yield Claim(key, seen, lambda: self._mark(key))
        finally:
            if not seen:
                with self._cond:
                    self._inflight.discard(key)
                    self._cond.notify_all()

    def _enter(self, key: str, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        with self._cond:
            while key in self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeliveryBusy(key)
                self._cond.wait(remaining)
            if key in self._seen:
                return True
            self._inflight.add(key)
            return False

    def _mark(self, key: str) -> None:
        with self._write_lock:
            self._append(key)
            with self._cond:
                self._remember(key)
            if self._lines >= 2 * self._keep:
                self._rewrite()

    def _remember(self, key: str) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        self._order.append(key)
        while len(self._order) > self._keep:
            self._seen.discard(self._order.popleft())

    def _load(self) -> None:
        try:
            data = self._path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return
        lines = data.split("\n")
        torn = lines.pop() != ""            # the text after the last newline: a cut write
        for line in lines:
            if KEY_RE.match(line):
                self._remember(line)
        self._lines = len(lines)
        if torn or self._lines >= 2 * self._keep:
            self._rewrite()

    def _append(self, key: str) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (key + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._lines += 1

    def _rewrite(self) -> None:
        with self._cond:
            keys = list(self._order)
        tmp = self._path.with_name(self._path.name + ".tmp")
        with open(tmp, "w", encoding="ascii") as out:
            out.write("".join(k + "\n" for k in keys))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._path)
        self._lines = len(keys)
