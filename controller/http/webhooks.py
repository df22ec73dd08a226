"""POST /api/v1/webhooks/{forgejo,gitea,github}: authenticate, dedupe, parse, record.

Installed by app.make_app(). The order of the checks is the contract: size
(413, from Content-Length, unread), a secret configured (403), the signature over
the raw body (401), the event and delivery headers (400), a delivery already
applied (200 `{"duplicate": true}`, the Sink not called), the body (400 naming the
field, 415 for another media type), then the Sink. Only once the Sink returns is
the delivery marked seen and answered 200; a Sink that raises gets the forge a
503, and its redelivery is applied. Ping and events that change no task are
answered 200 `{"ignored": true}` without reaching the Sink. With a Telemetry in
AppDeps each answer is counted by result (accepted, duplicate, ignored, or the
error's kind); a 413 that waitress refuses before the app never reaches it.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable

import bottle

from controller.events import Forge, Ignored, Ping, WebhookDelivery, WebhookEvent
from controller.http import parse_gitea, parse_github
from controller.http.deliveries import Claim, Deliveries, DeliveryBusy
from controller.http.deps import SECRET_ENV, SECRET_KEY, AppDeps
from controller.http.payload import BadPayload, UnsupportedMediaType, decode
from controller.http.signatures import FAMILIES, check
from controller.http.web import fail, header, read_body, request_id
from controller.telemetry import Telemetry, WebhookResult

log = logging.getLogger("fleet.http")

EVENT_RE = re.compile(r"^[a-z][a-z_]{0,63}\Z")
DELIVERY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
NO_SECRET = (f"no webhook secret is configured: set `{SECRET_KEY}` in the controller config "
             f"or the {SECRET_ENV} environment variable, and the same secret in the forge's webhook")

Answer = dict[str, Any]


def install(app: bottle.Bottle, deps: AppDeps, deliveries: Deliveries) -> None:
    """Add one POST route per forge family to `app`."""
    for forge in Forge:
        app.route(f"/api/v1/webhooks/{forge.value}", method="POST",
                  callback=_route(forge, deps, deliveries), name=f"webhook-{forge.value}")


def _route(forge: Forge, deps: AppDeps, deliveries: Deliveries) -> Callable[[], Answer]:
    def receive() -> Answer:
        if deps.telemetry is None:
            return _receive(forge, deps, deliveries)
        return _counted(deps.telemetry, lambda: _receive(forge, deps, deliveries))
    return receive


def _counted(telemetry: Telemetry, receive: Callable[[], Answer]) -> Answer:
    """`receive()`, its answer counted in `telemetry` by result, errors included."""
    try:
        answer = receive()
    except bottle.HTTPResponse as error:
        telemetry.webhook_delivery(_FAILED.get(error.status_code, "error"))
        raise
    except Exception:
        telemetry.webhook_delivery("error")
        raise
    result: WebhookResult = ("duplicate" if answer.get("duplicate")
                             else "ignored" if answer.get("ignored") else "accepted")
    telemetry.webhook_delivery(result)
    return answer


_FAILED: dict[int, WebhookResult] = {
    400: "bad_request", 401: "bad_signature", 403: "no_secret", 409: "busy", 413: "too_large",
    415: "unsupported_media", 503: "refused"}


def _receive(forge: Forge, deps: AppDeps, deliveries: Deliveries) -> Answer:
    raw = read_body(deps.webhook_body_limit)
    if deps.webhook_secret is None:
        fail(403, NO_SECRET)
    family = FAMILIES[forge]
    problem = check(forge, deps.webhook_secret, raw, header(family.signature))
    if problem is not None:
        fail(401, problem)
    event_name = _header(family.event, EVENT_RE, "an event name")
    delivery_id = _header(family.delivery, DELIVERY_RE,
                          "a delivery id (letters, digits, . _ : -; at most 128)")
    try:
        with deliveries.claim(f"{forge.value}:{delivery_id}", deps.duplicate_wait_s) as claim:
            return _once(forge, deps, claim, event_name, delivery_id, raw)
    except DeliveryBusy:
        fail(409, f"delivery {delivery_id} is still being applied by another request; retry later")


def _header(name: str, pattern: re.Pattern[str], what: str) -> str:
    value = header(name)
    if value is None:
        fail(400, f"missing {name} header")
    if not pattern.match(value):
        fail(400, f"{name}: not {what}")
    return str(value)


def _once(forge: Forge, deps: AppDeps, claim: Claim, event_name: str,
          delivery_id: str, raw: bytes) -> Answer:
    """The delivery's effect, applied by the one request holding its claim."""
    where = f"{request_id()} {forge} delivery {delivery_id} ({event_name})"
    if claim.seen:
        log.info("%s: duplicate, already applied", where)
        return {"duplicate": True}
    event = _parse(forge, event_name, raw)
    if isinstance(event, (Ping, Ignored)):
        reason = "ping: the hook works" if isinstance(event, Ping) else event.reason
        log.info("%s: ignored: %s", where, reason)
        claim.mark()
        return {"ignored": True, "reason": reason}
    delivery = WebhookDelivery(forge, delivery_id, event_name, deps.clock(), event)
    try:
        deps.sink.record(delivery)
    except Exception as exc:    # the Sink's refusal, whatever its kind: the forge retries
        log.warning("%s: not recorded, answered 503: %s: %s", where, type(exc).__name__, exc)
        fail(503, "the event could not be recorded now; the forge should redeliver it")
    claim.mark()
    log.info("%s: recorded %s for task %s", where, type(event).__name__, _task(delivery))
    return {"accepted": True, "task": _task(delivery)}


def _parse(forge: Forge, event_name: str, raw: bytes) -> WebhookEvent:
    try:
        doc = decode(raw, bottle.request.content_type)
        if forge is Forge.GITHUB:
            return parse_github.parse(event_name, doc)
        return parse_gitea.parse(forge, event_name, doc)
    except UnsupportedMediaType as exc:
        fail(415, str(exc))
    except BadPayload as exc:
        fail(400, str(exc))


def _task(delivery: WebhookDelivery) -> str | None:
    task_id: str | None = delivery.event.task_id
    return task_id
