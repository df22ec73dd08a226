"""The HTTP app and its server over a real socket: health, errors, limits, the access log.

Also the Server itself: two listeners, a port already in use, and a close that
really stops every thread.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

from controller.events import Forge
from controller.http.app import make_app
from controller.http.deps import HealthReport
from controller.http.server import Listener, ListenError, Server, parse_address
from controller.http.signatures import sign
from tests.httpkit import SECRET, deps, fixture, post_webhook, request, served, webhook_headers

GH = Forge.GITHUB
BRANCH = "task/fix-login"
HOOK = "/api/v1/webhooks/github"


@pytest.mark.parametrize("age,status", [(0.5, 200), (29.9, 200), (30.1, 503), (None, 503)])
def test_healthz_is_503_without_a_good_pass_in_three_poll_intervals(tmp_path, age, status):
    app_deps = deps(tmp_path, health=lambda: HealthReport(age, 10.0))
    with served(app_deps) as addr:
        reply = request(addr, "GET", "/healthz")
    assert reply.status == status
    assert reply.body["ok"] is (status == 200) and reply.body["last_pass_age_s"] == age
    if status == 503:
        assert "pass" in reply.body["error"]


def test_unknown_routes_and_methods_are_json(tmp_path):
    with served(deps(tmp_path)) as addr:
        missing = request(addr, "GET", "/nope?token=abc")
        wrong = request(addr, "DELETE", "/healthz")
    assert missing.status == 404 and missing.body == {"error": "no such route: /nope"}
    assert missing.headers["content-type"].startswith("application/json")
    assert wrong.status == 405 and "GET" in wrong.body["error"]


def test_no_secret_is_403_and_says_how_to_set_it(tmp_path):
    with served(deps(tmp_path, secret=None)) as addr:
        reply = post_webhook(addr, GH, "ping", "p1", fixture("github-webhooks/ping.json"))
    assert reply.status == 403
    assert "webhook_secret" in reply.body["error"] and "FLEET_WEBHOOK_SECRET" in reply.body["error"]


@pytest.mark.parametrize("forge", list(Forge))
def test_a_missing_or_wrong_signature_is_401(tmp_path, forge):
    doc = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        unsigned = post_webhook(addr, forge, "pull_request", "u1", doc, secret=None)
        wrong = post_webhook(addr, forge, "pull_request", "u2", doc, secret="not-the-secret")
    assert (unsigned.status, wrong.status) == (401, 401)
    assert "missing" in unsigned.body["error"] and "does not match" in wrong.body["error"]
    assert app_deps.sink.events() == []


def test_a_github_signature_without_its_prefix_is_401(tmp_path):
    body = b"{}"
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "x1",
               "X-Hub-Signature-256": sign(SECRET, body), "Content-Type": "application/json"}
    with served(deps(tmp_path)) as addr:
        assert request(addr, "POST", HOOK, body, headers).status == 401


def signed(body: bytes, event: str = "pull_request", delivery: str = "b1",
           content_type: str = "application/json") -> dict[str, str]:
    headers = webhook_headers(GH, event, delivery, body)
    headers["Content-Type"] = content_type
    return headers


def _without(path: str) -> bytes:
    doc = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    *parents, last = path.split(".")
    node = doc
    for step in parents:
        node = node[step]
    del node[last]
    return json.dumps(doc).encode()


BAD_BODIES = [
    (b"not json", "application/json", "body: not valid JSON"),
    (b"[1, 2]", "application/json", "body: expected a JSON object"),
    (b"\xff\xfe", "application/json", "body: not valid JSON"),
    (b"[" * 100_000, "application/json", "body: not valid JSON"),
    (b"other=1", "application/x-www-form-urlencoded", "payload: missing"),
    (b"payload=%7Bnope", "application/x-www-form-urlencoded", "payload: not valid JSON"),
    (_without("pull_request.head.ref"), "application/json", "pull_request.head.ref: missing"),
    (_without("repository"), "application/json", "repository.full_name: missing"),
    (json.dumps({"action": "opened", "pull_request": []}).encode(), "application/json",
     "pull_request: expected an object"),
    (json.dumps({"action": 5}).encode(), "application/json", "action: expected a string"),
]


@pytest.mark.parametrize("body,content_type,message", BAD_BODIES,
                         ids=[m for _, _, m in BAD_BODIES])
def test_a_bad_body_is_400_naming_the_field(tmp_path, body, content_type, message):
    with served(deps(tmp_path)) as addr:
        reply = request(addr, "POST", HOOK, body, signed(body, content_type=content_type))
    assert reply.status == 400 and reply.body["error"].startswith(message), reply.body


def test_a_bad_body_is_not_marked_seen(tmp_path):
    good = json.dumps(fixture("github-webhooks/pull_request.opened.json", BRANCH)).encode()
    with served(deps(tmp_path)) as addr:
        assert request(addr, "POST", HOOK, b"nope", signed(b"nope", delivery="s1")).status == 400
        assert request(addr, "POST", HOOK, good, signed(good, delivery="s1")).status == 200


def test_another_media_type_is_415(tmp_path):
    with served(deps(tmp_path)) as addr:
        reply = request(addr, "POST", HOOK, b"<xml/>", signed(b"<xml/>", content_type="text/xml"))
    assert reply.status == 415 and "application/json" in reply.body["error"]


@pytest.mark.parametrize("drop,value,message", [
    ("X-GitHub-Event", None, "missing X-GitHub-Event header"),
    ("X-GitHub-Delivery", None, "missing X-GitHub-Delivery header"),
    ("X-GitHub-Delivery", "a b\tc", "X-GitHub-Delivery: not a delivery id"),
    ("X-GitHub-Event", "Pull Request", "X-GitHub-Event: not an event name"),
])
def test_bad_event_or_delivery_headers_are_400(tmp_path, drop, value, message):
    body = b"{}"
    headers = signed(body)
    del headers[drop]
    if value is not None:
        headers[drop] = value
    with served(deps(tmp_path)) as addr:
        reply = request(addr, "POST", HOOK, body, headers)
    assert reply.status == 400 and reply.body["error"].startswith(message)


def _raw_exchange(addr, head: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send only `head` (headers, no body) and read the answer; (answer, seconds)."""
    started = time.monotonic()
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks), time.monotonic() - started


def test_a_body_over_the_limit_is_413_before_it_is_sent(tmp_path):
    app_deps = deps(tmp_path, webhook_body_limit=4096, api_body_limit=1024)
    head = (f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * 1024 ** 3}\r\n\r\n").encode()
    with served(app_deps) as addr:
        answer, seconds = _raw_exchange(addr, head)
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413"), answer[:200]
    assert seconds < 4            # answered from the headers: the 10 GiB never had to arrive
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1]) == {
        "error": "body is over the limit of 4096 bytes"}


def test_the_apps_own_limit_is_413_too(tmp_path):
    """Served by a server with a larger cap, the app still refuses from Content-Length."""
    app_deps = deps(tmp_path, webhook_body_limit=100)
    body = b"x" * 101
    with served(app_deps, max_body=10_000) as addr:
        reply = request(addr, "POST", HOOK, body, signed(body))
    assert reply.status == 413 and "limit of 100 bytes" in reply.body["error"]


def test_the_access_log_has_one_line_per_request_and_no_secret(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="fleet.http")
    doc = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    body = json.dumps(doc).encode()
    headers = signed(body, delivery="log-1")
    with served(deps(tmp_path)) as addr:
        ok = request(addr, "POST", HOOK + "?secret=" + SECRET, body, headers)
        bad = post_webhook(addr, GH, "pull_request", "log-2", doc, secret="wrong-secret")
    messages = [r.getMessage() for r in caplog.records if r.name == "fleet.http"]
    for reply, status in ((ok, 200), (bad, 401)):
        rid = reply.headers["x-request-id"]
        access = [m for m in messages if m.startswith(rid + " POST ")]
        assert len(access) == 1, messages
        assert access[0].startswith(f"{rid} POST {HOOK} {status} ") and access[0].endswith("ms")
    everything = "\n".join(r.getMessage() for r in caplog.records) + repr(deps(tmp_path))
    for secret in (SECRET, "wrong-secret", headers["X-Hub-Signature-256"],
                   headers["X-Hub-Signature-256"].removeprefix("sha256="), "Hello-World"):
        assert secret not in everything


def test_parse_address():
    assert parse_address("127.0.0.1:8080", "listen") == ("127.0.0.1", 8080)
    assert parse_address("[::1]:0", "listen") == ("::1", 0)
    for bad in ("8080", "localhost", ":80", "host:http", "h:70000"):
        with pytest.raises(ListenError, match="listen"):
            parse_address(bad, "listen")


def test_a_port_in_use_is_a_clear_error_naming_the_address_and_key(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    app = make_app(deps(tmp_path))
    free = Listener("listen", "127.0.0.1:0", app)
    taken = Listener("admin_listen", f"127.0.0.1:{port}", app)
    server = Server([free, taken])
    try:
        with pytest.raises(ListenError) as caught:
            server.start()
    finally:
        holder.close()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "admin_listen" in message
    assert "already in use" in message
    assert server.addresses() == {}          # the listener that did bind was closed again


def test_two_listeners_serve_two_apps_and_close_stops_every_thread(tmp_path):
    def admin(environ, start_response):      # any WSGI app: the admin app comes later
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fleet_up 1\n"]
    before = set(threading.enumerate())
    server = Server([Listener("listen", "127.0.0.1:0", make_app(deps(tmp_path))),
                     Listener("admin_listen", "127.0.0.1:0", admin)])
    server.start()
    addrs = server.addresses()
    assert request(addrs["listen"], "GET", "/healthz").status == 200
    answer, _ = _raw_exchange(addrs["admin_listen"], b"GET /metrics HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"fleet_up 1\n")
    idle = socket.create_connection(addrs["listen"])      # an open keep-alive connection
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 5
    idle.close()
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == []
    for addr in addrs.values():
        with pytest.raises(OSError):
            socket.create_connection(addr, timeout=1).close()
