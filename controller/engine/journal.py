"""The webhook journal: deliveries on record in the state dir until a pass applied them.

Used by engine.inbox.Inbox, from worker threads (asyncio.to_thread). One JSON
line per delivery, appended and fsynced before the forge is answered 2xx: that
is "on record". After the status commit of the pass that applied some entries,
drop() rewrites the file without them (a temporary file, fsync, rename, fsync
of the directory), so a crash leaves either the old or the new journal, never
half of one. A crash between the commit and the drop re-applies those entries
at the next start, which the planner's decisions make harmless (they are
idempotent). A torn last line (a crash mid-append, before the answer) is
skipped: its forge was never answered 2xx, so it delivers again.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Collection

from controller.events import (Forge, Observation, PrAction, Push, PullRequestEvent, RepoRef,
                               Review, ReviewKind, WebhookDelivery)

log = logging.getLogger("fleet")
FILE_NAME = "webhook-journal.jsonl"

_KINDS: dict[str, type[Observation]] = {"push": Push, "pull_request": PullRequestEvent,
                                        "review": Review}
_NAMES = {kind: name for name, kind in _KINDS.items()}
# Fields that are not JSON scalars, and how they come back.
_FIELDS: dict[str, Callable[[Any], Any]] = {
    "repo": lambda d: RepoRef(**d), "action": PrAction, "kind": ReviewKind}


def key_of(delivery: WebhookDelivery) -> str:
    """A delivery's identity: the forge family and its delivery id."""
    return f"{delivery.forge.value}:{delivery.delivery_id}"


def encode(delivery: WebhookDelivery) -> str:
    event = dataclasses.asdict(delivery.event)
    return json.dumps({"key": key_of(delivery), "forge": delivery.forge.value,
                       "delivery_id": delivery.delivery_id, "event_name": delivery.event_name,
                       "received_at": delivery.received_at.isoformat(),
                       "type": _NAMES[type(delivery.event)], "event": event},
                      default=str, separators=(",", ":"))


def decode(line: str) -> WebhookDelivery:
    """One journal line back into a delivery; ValueError (or KeyError) when it is not one."""
    doc = json.loads(line)
    kind = _KINDS[doc["type"]]
    names = {f.name for f in dataclasses.fields(kind)}
    values = {k: _FIELDS[k](v) if k in _FIELDS and v is not None else v
              for k, v in doc["event"].items() if k in names}
    return WebhookDelivery(forge=Forge(doc["forge"]), delivery_id=str(doc["delivery_id"]),
                           event_name=str(doc["event_name"]),
                           received_at=datetime.fromisoformat(doc["received_at"]),
                           event=kind(**values))


class Journal:
    """The journal file of one state dir; safe to call from several threads."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._lock = threading.Lock()

    def append(self, delivery: WebhookDelivery) -> None:
        """Add one delivery and fsync: once this returns it survives a crash."""
        line = encode(delivery) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())

    def read(self) -> list[WebhookDelivery]:
        """Every entry not yet dropped, oldest first (a torn or foreign line is skipped)."""
        with self._lock:
            lines = self._lines()
        out = []
        for n, line in enumerate(lines, 1):
            try:
                out.append(decode(line))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("%s:%d: skipping an unreadable journal entry (%s)", self.path, n, e)
        return out

    def drop(self, keys: Collection[str]) -> None:
        """Rewrite the journal without the entries of `keys` (applied), atomically;
        a torn line goes too."""
        if not keys:
            return
        with self._lock:
            kept = [ln for ln in self._lines() if (k := _key(ln)) is not None and k not in keys]
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as out:
                out.writelines(line + "\n" for line in kept)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]


def _key(line: str) -> str | None:
    try:
        key = json.loads(line).get("key")
    except (ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None
