"""The HTTP app: make_app(deps) builds the Bottle app the controller serves on `listen`.

Called by the composition root (and tests), which then hands the app to
server.Server. A factory, not bottle's default app: every dependency comes in
AppDeps and nothing is global, so two apps (or two tests) never share state.
Every answer is JSON; every error is `{"error": "..."}` with its status; each
request logs one access line on "fleet.http" with its request id (also sent as
X-Request-Id), method, path without the query string, status and duration, and
never a header or a body, so no secret, token or signature reaches the log.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any, Callable

import bottle

from controller.http import webhooks
from controller.http.deliveries import Deliveries
from controller.http.deps import HEALTHY_POLL_INTERVALS, AppDeps
from controller.http.web import REQUEST_ID, STARTED, fail, loggable, request_id

log = logging.getLogger("fleet.http")

Callback = Callable[..., Any]


def make_app(deps: AppDeps) -> bottle.Bottle:
    """A new Bottle app with /healthz and the webhook routes."""
    app = bare_app()
    app.route("/healthz", method="GET", callback=lambda: _healthz(deps), name="healthz")
    webhooks.install(app, deps, Deliveries(deps.state_dir, deps.seen_keep))
    return app


def bare_app() -> bottle.Bottle:
    """A Bottle app with no route yet and the hooks every fleet app has.

    A request id, one access line, JSON errors and the guard that turns an
    unexpected exception into a logged JSON 500; admin.py builds on it too.
    """
    app = bottle.Bottle(catchall=True, autojson=True)
    app.default_error_handler = _json_error
    app.add_hook("before_request", _begin)
    app.add_hook("after_request", _access_log)
    app.install(_guard)
    return app


def _begin() -> None:
    environ = bottle.request.environ
    environ[REQUEST_ID] = secrets.token_hex(8)
    environ[STARTED] = time.perf_counter()


def _access_log() -> None:
    environ = bottle.request.environ
    rid = request_id()
    bottle.response.set_header("X-Request-Id", rid)
    elapsed_ms = (time.perf_counter() - environ.get(STARTED, time.perf_counter())) * 1000
    log.info("%s %s %s %d %.1fms", rid, loggable(bottle.request.method, 16),
             loggable(bottle.request.path), bottle.response.status_code, elapsed_ms)


def _json_error(error: Any) -> str:
    """Every error status, bottle's own 404/405 included, as `{"error": "..."}`."""
    bottle.response.content_type = "application/json"
    bottle.response.set_header("X-Request-Id", request_id())
    return json.dumps({"error": _message(error)})


def _message(error: Any) -> str:
    status = int(error.status_code)
    if status == 404 and not getattr(error, "fleet_message", False):
        return f"no such route: {loggable(bottle.request.path)}"
    if status == 405:
        allowed = error.headers.get("Allow", "")
        return f"method {loggable(bottle.request.method, 16)} not allowed here; allowed: {allowed}"
    if status >= 500 and not isinstance(error.body, str):
        return "internal error"
    body = error.body
    return body if isinstance(body, str) and body else f"HTTP {status}"


def _guard(callback: Callback) -> Callback:
    """Route plugin: an unexpected exception is logged (with its request id) and a JSON 500."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except bottle.HTTPResponse as answer:
            if isinstance(answer, bottle.HTTPError) and answer.status_code == 404:
                answer.fleet_message = True      # a route's own 404 keeps its message
            raise
        except Exception:
            log.exception("%s %s %s failed", request_id(), bottle.request.method,
                          loggable(bottle.request.path))
            fail(500, f"internal error; the controller log has the details (request {request_id()})")
    return wrapper


def _healthz(deps: AppDeps) -> dict[str, Any]:
    """200 while a pass succeeded within 3 poll intervals; 503 before the first or after."""
    report = deps.health()
    body: dict[str, Any] = {"ok": report.healthy, "last_pass_age_s": report.last_pass_age_s,
                            "poll_interval_s": report.poll_interval_s}
    if not report.healthy:
        bottle.response.status = 503
        window = HEALTHY_POLL_INTERVALS * report.poll_interval_s
        body["error"] = ("no reconcile pass has succeeded yet" if report.last_pass_age_s is None
                         else f"no reconcile pass succeeded in the last {window:g}s "
                              f"({HEALTHY_POLL_INTERVALS} poll intervals)")
    return body
