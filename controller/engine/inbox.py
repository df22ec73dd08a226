"""The engine's inbox of webhook deliveries: journaled, pending, then applied.

Made by core.Engine. accept() runs on the engine's loop (handed over by
sink.EngineSink from an HTTP thread): it journals the delivery (fsync, in a
worker thread), which is when the forge may be answered 2xx, keeps it pending
and wakes the loop, so a pass runs now rather than at the next tick; a push to
the fleet repository's branch also asks for a fetch at once. Each pass takes
the pending deliveries as facts; once its status commit is made, applied()
drops them from the journal. At start-up load() reads back what a previous
process journaled and never applied.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping

from controller.engine.facts import facts_for, is_fleet_push
from controller.engine.journal import Journal, key_of
from controller.events import WebhookDelivery
from controller.model import ForgeFact, Task

log = logging.getLogger("fleet")
APPLIED_KEEP = 10_000       # applied delivery keys remembered, so a replay is a no-op


class Inbox:
    def __init__(self, journal: Journal, fleet_source: str, fleet_branch: str,
                 reviewers: frozenset[str] | None = None) -> None:
        self.journal = journal
        self.reviewers = reviewers
        self._source = fleet_source
        self._branch = fleet_branch
        self._pending: dict[str, WebhookDelivery] = {}
        self._applied: OrderedDict[str, None] = OrderedDict()
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._loaded = False
        self.sync_wanted = False            # a push to the fleet repo: fetch before the next pass

    async def load(self) -> None:
        """Read back the journal's unapplied entries (once; later calls do nothing)."""
        if self._loaded:
            return
        self._loaded = True
        for d in await asyncio.to_thread(self.journal.read):
            self._pending.setdefault(key_of(d), d)
        if self._pending:
            log.info("%d webhook deliveries from the journal to apply", len(self._pending))

    async def accept(self, delivery: WebhookDelivery) -> None:
        """Put `delivery` on record and wake the loop; a delivery already on record is a no-op."""
        await self.load()
        key = key_of(delivery)
        if key in self._pending or key in self._applied:
            return
        await asyncio.to_thread(self.journal.append, delivery)
        self._pending[key] = delivery
        if is_fleet_push(delivery, self._source, self._branch):
            log.info("webhook %s: push to the fleet repository; reconciling now",
                     delivery.delivery_id)
            self.sync_wanted = True
        self._event().set()

    def take(self, tasks: Mapping[str, Task]) -> tuple[list[str], dict[str, tuple[ForgeFact, ...]]]:
        """The keys of the deliveries pending now, and their facts for `tasks`."""
        keys = list(self._pending)
        return keys, facts_for((self._pending[k] for k in keys), tasks, self.reviewers)

    async def applied(self, keys: list[str]) -> None:
        """The pass that took `keys` is on record: forget them, here and in the journal."""
        if not keys:
            return
        for key in keys:
            self._pending.pop(key, None)
            self._applied[key] = None
        while len(self._applied) > APPLIED_KEEP:
            self._applied.popitem(last=False)
        try:
            await asyncio.to_thread(self.journal.drop, set(keys))
        except OSError as e:
            # They stay in the file and are applied again after a restart: harmless.
            log.error("could not truncate the webhook journal %s: %s", self.journal.path, e)

    async def wait(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, or until a delivery arrives."""
        wake = self._event()
        try:
            await asyncio.wait_for(wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        wake.clear()

    def _event(self) -> asyncio.Event:
        """The wake-up event of the running loop (tests run one engine in several loops)."""
        loop = asyncio.get_running_loop()
        if self._wake is None or self._wake[0] is not loop:
            self._wake = (loop, asyncio.Event())
        return self._wake[1]
