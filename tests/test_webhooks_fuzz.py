"""1,000 random deliveries, signed and unsigned, over a real socket: never a 5xx, no traceback.

The bodies are real fixtures with random values put at random paths (so the
parsers' every field reader is reached), random JSON, and random bytes; the
headers mix real event names with junk. Every log record of every logger is
kept and checked: none may carry an exception or a traceback.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from controller.events import Forge
from controller.http.signatures import FAMILIES, signature_header
from tests.httpkit import FIXTURES, SECRET, deps, request, served

DOCS = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*-webhooks/*.json"))]
EVENTS = ["push", "pull_request", "pull_request_review", "pull_request_rejected",
          "pull_request_approved", "pull_request_comment", "pull_request_sync", "ping",
          "issues", "pull_request_review_rejected"]
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_characters="\x7f"), max_size=40)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["task/fix-login", "task/../x", "refs/heads/task/a", "closed", "opened",
                       "synchronize", "changes_requested", "submitted", "Codertocat/Hello-World"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    return found


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    doc = json.loads(json.dumps(draw(st.sampled_from(DOCS))))
    paths = _paths(doc)
    for _ in range(draw(st.integers(0, 6))):
        path = draw(st.sampled_from(paths))
        node = doc
        for step in path[:-1]:
            node = node.get(step) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[path[-1]] = draw(json_values)
    return json.dumps(doc).encode()


bodies = st.one_of(mutated_fixture(), mutated_fixture(),
                   json_values.map(lambda v: json.dumps(v).encode()),
                   st.binary(max_size=300))


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[Forge, bytes, dict[str, str]]:
    forge = draw(st.sampled_from(list(Forge)))
    body = draw(bodies)
    family = FAMILIES[forge]
    headers = {family.event: draw(st.sampled_from(EVENTS) | HEADER_TEXT),
               family.delivery: draw(st.uuids().map(str) | HEADER_TEXT),
               "Content-Type": draw(st.sampled_from(
                   ["application/json", "application/x-www-form-urlencoded", "text/plain",
                    "application/json; charset=utf-8"]) | HEADER_TEXT)}
    if headers["Content-Type"].startswith("application/x-www-form") and draw(st.booleans()):
        from urllib.parse import urlencode
        body = urlencode({"payload": body.decode("latin-1")}).encode()
    signing = draw(st.sampled_from(["good", "none", "bad"]))
    if signing != "none":
        name, value = signature_header(forge, SECRET if signing == "good" else "x", body)
        headers[name] = value
    for name in draw(st.lists(st.sampled_from(sorted(headers)), max_size=2)):
        headers.pop(name, None)
    return forge, body, headers


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_random_deliveries_never_answer_5xx_nor_log_a_traceback(tmp_path: Path) -> None:
    keep = Keep()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    statuses: list[int] = []
    try:
        with served(deps(tmp_path)) as addr:
            @settings(max_examples=1000, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(deliveries())
            def post(delivery: tuple[Forge, bytes, dict[str, str]]) -> None:
                forge, body, headers = delivery
                reply = request(addr, "POST", f"/api/v1/webhooks/{forge.value}", body, headers)
                statuses.append(reply.status)
                assert reply.status < 500, (reply.status, reply.body, headers)
                assert isinstance(reply.body, dict)
                assert set(reply.body) & {"error", "accepted", "ignored", "duplicate"}
            post()
    finally:
        root.removeHandler(keep)
        root.setLevel(old_level)
    assert len(statuses) >= 1000
    assert {200, 400, 401}.issubset(set(statuses))
    bad = [r for r in keep.records
           if r.exc_info or "Traceback" in r.getMessage() or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad[:5]]
