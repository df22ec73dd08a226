"""Serve WSGI apps with waitress in threads of the controller process: Server.start()/close().

Called by the composition root (and tests): one Listener per config key
(`listen` for make_app()'s app, `admin_listen` for the admin app of a later
issue), each a waitress server with its own socket map, worker threads and a
thread running its event loop. start() binds every address first, so a port in
use is a ListenError naming the address and the key before anything serves.
close() stops them from inside their own loops and joins, bounded.

waitress itself refuses a body over `max_body` from its Content-Length, before
reading it, and answers it (and any request it cannot parse) with the same
`{"error": "..."}` JSON as the app.
"""
from __future__ import annotations

import errno
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import waitress
from waitress.channel import HTTPChannel
from waitress import wasyncore
from waitress.task import ErrorTask

from controller.http.deps import WEBHOOK_BODY_LIMIT

log = logging.getLogger("fleet.http")

JOIN_TIMEOUT_S = 5.0


class ListenError(RuntimeError):
    """An address the controller cannot serve on; the message says which key to change."""


@dataclass(frozen=True)
class Listener:
    """One address to serve `app` on; key is the config key it came from."""
    key: str
    address: str
    app: Any                       # a WSGI callable, e.g. make_app(deps)
    max_body: int = WEBHOOK_BODY_LIMIT
    threads: int = 4


def parse_address(address: str, key: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); port 0 picks a free one."""
    host, sep, port_text = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ListenError(f"{key}: {address!r} is not host:port (for example 127.0.0.1:8080)")
    return host, int(port_text)


class _JsonErrorTask(ErrorTask):  # type: ignore[misc]
    """waitress's own error answers (413 over max_body, 400 unparsable) as our JSON."""

    def execute(self) -> None:
        error = self.request.error
        message = f"{error.reason}: {error.body}"
        if error.code == 413:
            limit = self.channel.server.adj.max_request_body_size - 1
            message = f"body is over the limit of {limit} bytes"
        body = json.dumps({"error": message}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):  # type: ignore[misc]
    error_task_class = _JsonErrorTask


class _Running:
    """One listener's waitress server and the thread running its loop."""

    def __init__(self, listener: Listener) -> None:
        host, port = parse_address(listener.address, listener.key)
        self.listener = listener
        try:
            self.server = waitress.create_server(
                listener.app, host=host, port=port, threads=listener.threads,
                max_request_body_size=listener.max_body + 1, ident="fleet",
                clear_untrusted_proxy_headers=True)
        except OSError as exc:
            raise ListenError(_bind_message(listener, exc)) from None
        self.server.channel_class = _Channel
        self.thread = threading.Thread(target=self.server.run, daemon=True,
                                       name=f"fleet-http-{listener.key}")

    @property
    def address(self) -> tuple[str, int]:
        return str(self.server.effective_host), int(self.server.effective_port)

    def stop(self) -> None:
        """Stop accepting, let the workers finish (bounded), then close the rest in the loop.

        The order matters: a worker that finishes a response wakes the loop
        through the trigger, so the trigger may close only once the workers are
        gone; and sockets are closed from inside the loop, their only owner.
        """
        self._in_loop(lambda: wasyncore.dispatcher.close(self.server))
        self.server.task_dispatcher.shutdown(timeout=JOIN_TIMEOUT_S)
        socket_map = self.server._map

        def close_all() -> None:
            for dispatcher in list(socket_map.values()):
                dispatcher.close()
            self.server.trigger.close()
        self._in_loop(close_all)
        if self.thread.ident is None:       # bound but never started: nothing to join
            return
        self.thread.join(JOIN_TIMEOUT_S)
        if self.thread.is_alive():
            log.warning("%s: the HTTP loop did not stop within %ss", self.listener.key,
                        JOIN_TIMEOUT_S)

    def _in_loop(self, thunk: Callable[[], None]) -> None:
        """Run `thunk` in the loop's thread, or here when the loop is not running."""
        if not self.thread.is_alive():
            thunk()
            return
        done = threading.Event()

        def run() -> None:
            try:
                thunk()
            finally:
                done.set()
        self.server.trigger.pull_trigger(run)
        if not done.wait(JOIN_TIMEOUT_S):
            log.warning("%s: the HTTP loop did not answer within %ss", self.listener.key,
                        JOIN_TIMEOUT_S)


def _bind_message(listener: Listener, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use (is another fleet controller running?)"
    else:
        why = exc.strerror or str(exc)
    return (f"cannot listen on {listener.address} ({listener.key}): {why}; "
            f"set `{listener.key}:` in the controller config to a free address")


class Server:
    """The controller's HTTP listeners, started and closed together."""

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self._listeners = tuple(listeners)
        self._running: list[_Running] = []

    def start(self) -> None:
        """Bind every address (ListenError if one fails, nothing left open), then serve."""
        try:
            for listener in self._listeners:
                self._running.append(_Running(listener))
        except ListenError:
            self.close()
            raise
        for running in self._running:
            running.thread.start()
            log.info("serving %s on http://%s:%d", running.listener.key, *running.address)

    def addresses(self) -> dict[str, tuple[str, int]]:
        """Config key -> the (host, port) really bound (port 0 resolved)."""
        return {r.listener.key: r.address for r in self._running}

    def close(self) -> None:
        """Stop serving and join every thread, each bounded by JOIN_TIMEOUT_S."""
        running, self._running = self._running, []
        for one in running:
            one.stop()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
