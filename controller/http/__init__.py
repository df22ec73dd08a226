"""The HTTP side: the only package that imports bottle and waitress.

app.make_app(AppDeps) builds the Bottle app (/healthz, the webhooks); server.Server
serves apps with waitress threads on the `listen` and `admin_listen` addresses.
webhooks.py checks signatures (signatures.py), dedupes deliveries durably
(deliveries.py), parses bodies (payload.py, parse_common.py, parse_gitea.py,
parse_github.py) into controller.events types and hands them to the engine
through the Sink of deps.py. May import: the standard library, bottle, waitress,
controller.events and controller.model; nothing of the engine.
"""
