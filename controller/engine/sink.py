"""The engine's side of http.deps.Sink: hand a delivery from an HTTP thread to the loop.

Built by the composition root (app.py) once the engine's loop runs. record()
is called from a waitress worker thread; it schedules Inbox.accept on the loop
with asyncio.run_coroutine_threadsafe and waits, bounded, for the delivery to
be journaled, so the forge is answered 2xx only once it is on record. It raises
(the HTTP app answers 503, and the forge delivers again) when the loop is gone,
the journal could not be written, or the loop did not answer in time.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Awaitable, Callable

from controller.events import WebhookDelivery

RECORD_TIMEOUT_S = 10.0


class EngineSink:
    def __init__(self, accept: Callable[[WebhookDelivery], Awaitable[None]],
                 loop: asyncio.AbstractEventLoop, timeout: float = RECORD_TIMEOUT_S) -> None:
        self._accept = accept
        self._loop = loop
        self._timeout = timeout

    def record(self, delivery: WebhookDelivery) -> None:
        if self._loop.is_closed() or not self._loop.is_running():
            raise RuntimeError("the controller's loop is not running")

        async def accept() -> None:
            await self._accept(delivery)
        future = asyncio.run_coroutine_threadsafe(accept(), self._loop)
        try:
            future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise RuntimeError(f"the controller did not record the delivery within "
                               f"{self._timeout:g}s") from None
