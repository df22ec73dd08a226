"""The HTTP side: the only package that imports bottle, waitress and prometheus_client.

app.make_app(AppDeps) builds the Bottle app (/healthz, the webhooks);
admin.make_admin_app(Telemetry) the admin app (/metrics, written by metrics.py,
the one module that imports prometheus_client); server.Server serves apps with
waitress threads on the `listen` and `admin_listen` addresses.
webhooks.py checks signatures (signatures.py), dedupes deliveries durably
(deliveries.py), parses bodies (payload.py, parse_common.py, parse_gitea.py,
parse_github.py) into controller.events types and hands them to the engine
through the Sink of deps.py, counting each answer in AppDeps.telemetry. May
import: the standard library, bottle, waitress, prometheus_client (metrics.py),
controller.events, controller.model and controller.telemetry; nothing of the engine.
"""
