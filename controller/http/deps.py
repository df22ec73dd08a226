"""What the HTTP app needs from the rest of the controller, spelled out: AppDeps and Sink.

The composition root builds one AppDeps and passes it to make_app(); nothing in
controller/http/ reaches for a global. The engine implements Sink (journal the
delivery, hand it to its asyncio loop with run_coroutine_threadsafe, wait for the
answer) and a health() callable; tests implement both in-process. This module
imports no outside library, so the engine may read it without importing bottle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

from controller.events import WebhookDelivery
from controller.telemetry import Telemetry

MIB = 1024 * 1024
API_BODY_LIMIT = 1 * MIB
WEBHOOK_BODY_LIMIT = 25 * MIB
HEALTHY_POLL_INTERVALS = 3          # /healthz is 503 after this many intervals without a good pass
SECRET_ENV = "FLEET_WEBHOOK_SECRET"
SECRET_KEY = "webhook_secret"


class Sink(Protocol):
    """Where webhook observations go; called from an HTTP worker thread, never the loop.

    record() returns only once the delivery's effect is on record (journaled in
    the state dir or committed), so that the 2xx the forge then gets is a promise
    kept across a crash. It raises to refuse (the loop is down, the journal could
    not be written, it timed out): the forge is answered 503, the delivery is not
    marked seen, and a redelivery is applied. It may be called again with the
    same delivery_id after a crash between record() and the seen mark, so the
    engine should treat a journaled delivery_id as already applied.
    """

    def record(self, delivery: WebhookDelivery) -> None: ...


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The engine's answer to "are you reconciling?", for GET /healthz."""
    last_pass_age_s: float | None        # seconds since the last good pass; None: none yet
    poll_interval_s: float

    @property
    def healthy(self) -> bool:
        if self.last_pass_age_s is None:
            return False
        return self.last_pass_age_s <= HEALTHY_POLL_INTERVALS * self.poll_interval_s


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class AppDeps:
    """Everything make_app() uses. webhook_secret None: every webhook answers 403.

    state_dir holds the seen-deliveries file (webhook-deliveries). The body limits
    are bytes; a Content-Length above them is answered 413 unread.
    """
    sink: Sink
    health: Callable[[], HealthReport]
    state_dir: Path
    webhook_secret: str | None = field(default=None, repr=False)
    api_body_limit: int = API_BODY_LIMIT
    webhook_body_limit: int = WEBHOOK_BODY_LIMIT
    clock: Callable[[], datetime] = utc_now
    duplicate_wait_s: float = 10.0       # how long a twin delivery waits for the one in flight
    seen_keep: int = 10_000              # delivery ids remembered
    telemetry: Telemetry | None = None

    @property
    def max_body(self) -> int:
        """The largest body any route accepts: the server refuses more before reading it."""
        return max(self.api_body_limit, self.webhook_body_limit)
