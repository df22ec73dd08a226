"""GET /metrics: Telemetry's numbers, served by the admin app in the Prometheus text format.

Telemetry is fed as the engine will feed it; the admin app is served by
waitress on 127.0.0.1 and scraped over a real socket; the text is parsed back
with prometheus_client's own parser, so the escaping of hostile label values is
checked by a reader, not by string matching. The webhook app, given the same
Telemetry, counts its answers by result, and no scrape ever holds the webhook
secret, a signature or a delivery id.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import math
import threading
from pathlib import Path
from typing import Iterator

import prometheus_client
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller.events import Forge
from controller.http.admin import make_admin_app
from controller.http.server import Listener, Server
from controller.http.signatures import signature_header
from controller.telemetry import (
    PASS_DURATION_BUCKETS, PR_CALL_RESULTS, WEBHOOK_RESULTS, Telemetry)
from tests.httpkit import SECRET, deps, fixture, post_webhook, request, served

OPENAPI = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
HOSTILE = ['a"b', "back\\slash", "new\nline", "brace}{=,", "ünïcödé ✓", "\\n literally", ""]


@contextlib.contextmanager
def admin(telemetry: Telemetry) -> Iterator[tuple[str, int]]:
    server = Server([Listener("admin_listen", "127.0.0.1:0", make_admin_app(telemetry))])
    server.start()
    try:
        yield server.addresses()["admin_listen"]
    finally:
        server.close()


def get(addr: tuple[str, int], path: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode("utf-8")
    finally:
        conn.close()


def scrape(telemetry: Telemetry) -> str:
    with admin(telemetry) as addr:
        status, content_type, text = get(addr, "/metrics")
    assert status == 200, text
    assert content_type == prometheus_client.CONTENT_TYPE_LATEST
    return text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, read back by prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def test_a_fresh_controller_reports_zeros_for_every_known_result():
    text = scrape(Telemetry())
    for result in WEBHOOK_RESULTS:
        assert value(text, "fleet_webhook_deliveries_total", result=result) == 0
    for result in PR_CALL_RESULTS:
        assert value(text, "fleet_pr_calls_total", result=result) == 0
    assert value(text, "fleet_passes_total", result="ok") == 0
    assert value(text, "fleet_status_push_retries_total") == 0
    assert value(text, "fleet_hosts") == 0 and value(text, "fleet_hosts_up") == 0
    assert value(text, "fleet_pass_duration_seconds_count") == 0
    assert value(text, "fleet_pass_duration_seconds_bucket", le="+Inf") == 0


def test_the_scrape_reports_what_the_engine_counted():
    t = Telemetry()
    t.tasks_by_state({"queued": 3, "running": 1, "completed": 0})
    for duration, ok in [(0.2, True), (0.7, True), (45.0, False)]:
        t.pass_done(duration, ok)
    t.dispatch_latency(4.0)
    t.dispatch_latency(400.0)
    t.status_push_retry()
    t.status_push_retry()
    t.hosts_up({"gpu-1": True, "gpu-2": False, "cpu-1": True})
    t.pr_call("ok")
    t.pr_call("transient")
    t.pr_call("ok")
    text = scrape(t)

    assert value(text, "fleet_tasks", state="queued") == 3
    assert value(text, "fleet_tasks", state="running") == 1
    assert value(text, "fleet_tasks", state="completed") == 0
    assert value(text, "fleet_passes_total", result="ok") == 2
    assert value(text, "fleet_passes_total", result="failed") == 1
    assert value(text, "fleet_pass_duration_seconds_count") == 3
    assert value(text, "fleet_pass_duration_seconds_sum") == pytest.approx(45.9)
    assert value(text, "fleet_pass_duration_seconds_bucket", le="0.25") == 1
    assert value(text, "fleet_pass_duration_seconds_bucket", le="1.0") == 2
    assert value(text, "fleet_pass_duration_seconds_bucket", le="30.0") == 2
    assert value(text, "fleet_pass_duration_seconds_bucket", le="60.0") == 3
    assert value(text, "fleet_dispatch_latency_seconds_bucket", le="5.0") == 1
    assert value(text, "fleet_dispatch_latency_seconds_bucket", le="300.0") == 1
    assert value(text, "fleet_dispatch_latency_seconds_bucket", le="600.0") == 2
    assert value(text, "fleet_dispatch_latency_seconds_bucket", le="+Inf") == 2
    assert value(text, "fleet_status_push_retries_total") == 2
    assert value(text, "fleet_host_up", host="gpu-2") == 0
    assert value(text, "fleet_host_up", host="cpu-1") == 1
    assert value(text, "fleet_hosts_up") == 2 and value(text, "fleet_hosts") == 3
    assert value(text, "fleet_pr_calls_total", result="ok") == 2
    assert value(text, "fleet_pr_calls_total", result="transient") == 1
    assert value(text, "fleet_pr_calls_total", result="permanent") == 0


def test_the_text_declares_each_family_with_its_type():
    t = Telemetry()
    t.tasks_by_state({"queued": 1})
    t.hosts_up({"h": True})
    types = {f.name: f.type for f in text_string_to_metric_families(scrape(t))}
    assert types["fleet_tasks"] == "gauge"
    assert types["fleet_passes"] == "counter"           # exposed as fleet_passes_total
    assert types["fleet_pass_duration_seconds"] == "histogram"
    assert types["fleet_dispatch_latency_seconds"] == "histogram"
    assert types["fleet_webhook_deliveries"] == "counter"
    assert types["fleet_status_push_retries"] == "counter"
    assert types["fleet_host_up"] == types["fleet_hosts_up"] == types["fleet_hosts"] == "gauge"
    assert types["fleet_pr_calls"] == "counter"
    assert "process_cpu_seconds" in types               # the process collector, on our registry


def test_a_state_that_empties_is_replaced_not_kept_by_the_next_snapshot():
    t = Telemetry()
    t.tasks_by_state({"queued": 2, "running": 1})
    t.tasks_by_state({"running": 2})
    text = scrape(t)
    assert value(text, "fleet_tasks", state="running") == 2
    assert ("fleet_tasks", (("state", "queued"),)) not in samples(text)


def test_hostile_label_values_are_escaped_and_read_back_intact():
    t = Telemetry()
    t.tasks_by_state({name: i for i, name in enumerate(HOSTILE)})
    t.hosts_up({name: True for name in HOSTILE})
    text = scrape(t)
    for i, name in enumerate(HOSTILE):
        assert value(text, "fleet_tasks", state=name) == i
        assert value(text, "fleet_host_up", host=name) == 1
    # one sample per line: a newline in a value never starts a line of its own
    tasks_lines = [line for line in text.splitlines() if line.startswith("fleet_tasks{")]
    assert len(tasks_lines) == len(HOSTILE)
    assert r'state="new\nline"' in text and r'state="a\"b"' in text
    assert r'state="back\\slash"' in text


def test_bucket_bounds_are_inclusive_and_bad_observations_do_not_poison_the_sum():
    t = Telemetry()
    t.pass_done(PASS_DURATION_BUCKETS[0], True)    # exactly on a bound: in that bucket (le)
    t.pass_done(-3.0, True)                        # a clock step backwards: counted as 0
    t.pass_done(math.nan, True)                    # not observed, the pass still counted
    t.pass_done(math.inf, True)
    snap = t.snapshot()
    assert snap.passes["ok"] == 4
    assert snap.pass_duration.cumulative[0] == 2
    assert snap.pass_duration.count == 2
    assert snap.pass_duration.sum == PASS_DURATION_BUCKETS[0]


def test_bounds_must_increase():
    with pytest.raises(ValueError, match="strictly increasing"):
        Telemetry(pass_buckets=(1.0, 0.5))


def test_counts_from_many_threads_are_exact_and_a_snapshot_is_one_moment():
    t = Telemetry()
    stop = threading.Event()
    torn: list[str] = []

    def scrape_loop() -> None:
        while not stop.is_set():
            snap = t.snapshot()
            if snap.pass_duration.count != sum(snap.passes.values()):
                torn.append(f"{snap.pass_duration.count} != {dict(snap.passes)}")

    def work() -> None:
        for i in range(2000):
            t.pass_done(0.01 * (i % 50), i % 3 != 0)
            t.webhook_delivery("accepted")
            t.status_push_retry()

    reader = threading.Thread(target=scrape_loop)
    reader.start()
    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    reader.join()
    snap = t.snapshot()
    assert sum(snap.passes.values()) == snap.pass_duration.count == 8000
    assert snap.webhook_deliveries["accepted"] == snap.status_push_retries == 8000
    assert torn == []


def test_each_admin_app_has_its_own_registry_and_none_uses_the_global_one():
    a, b = Telemetry(), Telemetry()
    a.status_push_retry()
    assert value(scrape(a), "fleet_status_push_retries_total") == 1
    assert value(scrape(b), "fleet_status_push_retries_total") == 0
    make_admin_app(a)
    make_admin_app(a)                                # twice: no duplicate-series error
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "fleet_" not in default


def test_the_admin_app_serves_only_metrics_and_answers_errors_as_json():
    with admin(Telemetry()) as addr:
        missing = request(addr, "GET", "/api/v1/webhooks/github")
        wrong = request(addr, "POST", "/metrics")
        head_status = _head(addr, "/metrics")
    assert missing.status == 404 and "error" in missing.body
    assert "x-request-id" in missing.headers
    assert wrong.status == 405 and "error" in wrong.body
    assert head_status == 200


def _head(addr: tuple[str, int], path: str) -> int:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("HEAD", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_the_main_app_does_not_serve_metrics(tmp_path):
    with served(deps(tmp_path, telemetry=Telemetry())) as addr:
        assert request(addr, "GET", "/metrics").status == 404


def test_the_documented_media_type_is_what_metrics_answers():
    doc = yaml.safe_load(OPENAPI.read_text())
    media = next(iter(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]))
    assert prometheus_client.CONTENT_TYPE_LATEST.split(";")[0] == media


def _deliver_one_of_each(tmp_path: Path, telemetry: Telemetry) -> list[int]:
    """Real webhook posts, one per answer the app can give (but 409 and 500)."""
    doc = fixture("github-webhooks/pull_request.opened.json", "task/fix-login")
    statuses = []
    with served(deps(tmp_path / "nosecret", secret=None, telemetry=telemetry)) as addr:
        statuses.append(post_webhook(addr, Forge.GITHUB, "pull_request", "n1", doc).status)
    app_deps = deps(tmp_path, telemetry=telemetry, webhook_body_limit=100_000)
    hook = "/api/v1/webhooks/github"
    with served(app_deps, max_body=1_000_000) as addr:
        statuses += [
            post_webhook(addr, Forge.GITHUB, "pull_request", "d-accepted-1", doc).status,
            post_webhook(addr, Forge.GITHUB, "pull_request", "d-accepted-1", doc).status,
            post_webhook(addr, Forge.GITHUB, "ping", "d-ping", fixture("github-webhooks/ping.json")).status,
            post_webhook(addr, Forge.GITHUB, "pull_request", "d-bad-sig", doc, secret="nope").status,
            request(addr, "POST", hook, b"[]", _signed(b"[]", "d-bad-body")).status,
            request(addr, "POST", hook, b"x", _signed(b"x", "d-csv", "text/csv")).status,
            request(addr, "POST", hook, b"x" * 200_000, _signed(b"x" * 200_000, "d-big")).status,
        ]
        app_deps.sink.refuse = RuntimeError("journal full")
        statuses.append(post_webhook(addr, Forge.GITHUB, "pull_request", "d-refused", doc).status)
    return statuses


def _signed(body: bytes, delivery: str, content_type: str = "application/json") -> dict[str, str]:
    name, sig = signature_header(Forge.GITHUB, SECRET, body)
    return {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery,
            "Content-Type": content_type, name: sig}


def test_webhook_answers_are_counted_by_result(tmp_path):
    t = Telemetry()
    statuses = _deliver_one_of_each(tmp_path, t)
    assert statuses == [403, 200, 200, 200, 401, 400, 415, 413, 503]
    text = scrape(t)
    expected = {"no_secret": 1, "accepted": 1, "duplicate": 1, "ignored": 1, "bad_signature": 1,
                "bad_request": 1, "unsupported_media": 1, "too_large": 1, "refused": 1,
                "busy": 0, "error": 0}
    assert {r: value(text, "fleet_webhook_deliveries_total", result=r) for r in WEBHOOK_RESULTS} \
        == expected


def test_without_a_telemetry_the_webhook_app_counts_nothing_and_still_answers(tmp_path):
    doc = fixture("github-webhooks/pull_request.opened.json", "task/fix-login")
    with served(deps(tmp_path)) as addr:
        assert post_webhook(addr, Forge.GITHUB, "pull_request", "x1", doc).status == 200


def test_no_metric_carries_a_secret_a_signature_or_a_delivery_id(tmp_path):
    t = Telemetry()
    _deliver_one_of_each(tmp_path, t)
    t.tasks_by_state({"queued": 1})
    t.hosts_up({"gpu-1": True})
    text = scrape(t)
    doc = fixture("github-webhooks/pull_request.opened.json", "task/fix-login")
    _, signature = signature_header(Forge.GITHUB, SECRET, json.dumps(doc).encode())
    for secret in (SECRET, signature, signature.removeprefix("sha256="), "d-accepted-1",
                   "fix-login", "nope"):
        assert secret not in text
    allowed = {"state": {"queued"}, "host": {"gpu-1"}, "result": {*WEBHOOK_RESULTS, "ok", "failed",
                                                                    *PR_CALL_RESULTS}}
    for (name, labels), _ in samples(text).items():
        for key, label_value in labels:
            if key != "le":
                assert label_value in allowed[key], (name, key, label_value)
