"""The admin app: make_admin_app(telemetry) builds what `admin_listen` serves.

GET /metrics answers the Prometheus text format (metrics.py); the read-only
dashboard of a later issue joins it here. It shares the main app's hooks (a
request id, one access line on "fleet.http", JSON errors, a 500 that never
leaks a traceback) but no route: the webhooks are never served on the admin
address, and the metrics never on the public one.
"""
from __future__ import annotations

import bottle

from controller.http import metrics
from controller.http.app import bare_app
from controller.telemetry import Telemetry


def make_admin_app(telemetry: Telemetry) -> bottle.Bottle:
    """A new Bottle app with GET /metrics reporting `telemetry`, with a registry of its own."""
    app = bare_app()
    registry = metrics.make_registry(telemetry)

    def scrape() -> bytes:
        bottle.response.content_type = metrics.CONTENT_TYPE
        return metrics.render(registry)
    app.route("/metrics", method="GET", callback=scrape, name="metrics")
    return app
