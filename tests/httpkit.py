"""Test helpers for the HTTP side: a real in-process Sink, a served app, signed posts.

JournalSink is a real Sink (it appends each delivery to a JSON-lines journal
with fsync before returning, as the engine's will), which a test can make
refuse or hold. `served()` runs make_app() under waitress on 127.0.0.1 port 0;
`post()` talks to it with http.client over that real socket.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import http.client
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from controller.events import Forge, WebhookDelivery
from controller.http.app import make_app
from controller.http.deps import AppDeps, HealthReport
from controller.http.server import Listener, Server
from controller.http.signatures import FAMILIES, signature_header

FIXTURES = Path(__file__).parent / "data" / "fixtures"
SECRET = "test-secret-5d1f"


class JournalSink:
    """Appends every delivery to `journal` (fsynced) before returning; the test's engine."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.deliveries: list[WebhookDelivery] = []
        self.refuse: Exception | None = None
        self.hold: threading.Event | None = None     # when set, record() waits for it
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def record(self, delivery: WebhookDelivery) -> None:
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(10)
        if self.refuse is not None:
            raise self.refuse
        line = json.dumps({"forge": str(delivery.forge), "delivery": delivery.delivery_id,
                           "event": type(delivery.event).__name__,
                           "fields": _plain(dataclasses.asdict(delivery.event))})
        with self._lock:
            with open(self.journal, "a", encoding="utf-8") as out:
                out.write(line + "\n")
                out.flush()
                os.fsync(out.fileno())
            self.deliveries.append(delivery)

    def events(self) -> list[Any]:
        with self._lock:
            return [d.event for d in self.deliveries]


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def deps(tmp_path: Path, secret: str | None = SECRET, **overrides: Any) -> AppDeps:
    sink = overrides.pop("sink", None) or JournalSink(tmp_path / "journal.jsonl")
    health = overrides.pop("health", lambda: HealthReport(2.0, 10.0))
    return AppDeps(sink=sink, health=health, state_dir=tmp_path / "state",
                   webhook_secret=secret, **overrides)


@contextlib.contextmanager
def served(app_deps: AppDeps, max_body: int | None = None) -> Iterator[tuple[str, int]]:
    """(host, port) of make_app(app_deps) served by waitress until the block ends."""
    listener = Listener("listen", "127.0.0.1:0", make_app(app_deps),
                        max_body=max_body or app_deps.max_body)
    server = Server([listener])
    server.start()
    try:
        yield server.addresses()["listen"]
    finally:
        server.close()


@dataclasses.dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def request(addr: tuple[str, int], method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        parsed = json.loads(data) if data else None
        return Reply(resp.status, parsed, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def fixture(name: str, head_ref: str | None = None) -> dict[str, Any]:
    """A real body from tests/data/fixtures, its PR head ref rewritten when asked."""
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    if head_ref is not None:
        doc["pull_request"]["head"]["ref"] = head_ref
        if "label" in doc["pull_request"]["head"]:
            doc["pull_request"]["head"]["label"] = head_ref
    return doc


def webhook_headers(forge: Forge, event: str, delivery: str, body: bytes,
                    secret: str | None = SECRET, form: bool = False) -> dict[str, str]:
    family = FAMILIES[forge]
    headers = {family.event: event, family.delivery: delivery,
               "Content-Type": "application/x-www-form-urlencoded" if form else "application/json"}
    if secret is not None:
        name, value = signature_header(forge, secret, body)
        headers[name] = value
    return headers


def post_webhook(addr: tuple[str, int], forge: Forge, event: str, delivery: str,
                 doc: dict[str, Any], form: bool = False, secret: str | None = SECRET) -> Reply:
    """POST `doc` as the forge would: JSON or `payload=`, signed over the exact bytes."""
    text = json.dumps(doc)
    if form:
        from urllib.parse import urlencode
        body = urlencode({"payload": text}).encode("ascii")
    else:
        body = text.encode("utf-8")
    headers = webhook_headers(forge, event, delivery, body, secret, form)
    return request(addr, "POST", f"/api/v1/webhooks/{forge.value}", body, headers)
