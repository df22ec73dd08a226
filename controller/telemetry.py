"""What the controller counts for GET /metrics: Telemetry, plain numbers behind one lock.

The engine and the webhook routes call Telemetry's methods as things happen (a
pass done, a run dispatched, a delivery answered, a status push retried, a PR
call made); controller/http/metrics.py reads snapshot() when Prometheus
scrapes, from an HTTP worker thread. Every method takes the one lock for a few
additions, so callers on any thread need no lock of their own, and a scrape
sees one consistent moment. Histograms keep counts per fixed bucket here, so
the HTTP side only reports them.

Nothing here does IO or imports an outside library: it is vocabulary, usable
by the engine without pulling in prometheus_client. No method takes a secret,
a URL or a body: label values are task states, host names and fixed result
words, so no metric can carry a credential.
"""
from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass
from typing import Literal, Mapping

# Bucket upper bounds in seconds (a +Inf bucket is implied). A pass fetches the
# fleet repo, plans and writes status: sub-second to a minute. Dispatch latency
# is a push seen to its run started: a pass interval (10 s by default) plus
# host start-up, so up to several minutes.
PASS_DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
DISPATCH_LATENCY_BUCKETS: tuple[float, ...] = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

PassResult = Literal["ok", "failed"]
WebhookResult = Literal[
    "accepted",             # 200, on record with the engine
    "duplicate",            # 200, this delivery was applied before
    "ignored",              # 200, ping or an event that changes no task
    "bad_request",          # 400, a bad header or body
    "bad_signature",        # 401, no signature or one that does not match
    "no_secret",            # 403, no webhook secret configured
    "busy",                 # 409, the same delivery still in flight
    "too_large",            # 413, refused by the app from Content-Length
    "unsupported_media",    # 415
    "refused",              # 503, the engine could not record it now
    "error",                # 500, a bug: the log has the traceback
]
PrCallResult = Literal["ok", "transient", "permanent"]

PASS_RESULTS: tuple[PassResult, ...] = ("ok", "failed")
WEBHOOK_RESULTS: tuple[WebhookResult, ...] = (
    "accepted", "duplicate", "ignored", "bad_request", "bad_signature", "no_secret", "busy",
    "too_large", "unsupported_media", "refused", "error")
PR_CALL_RESULTS: tuple[PrCallResult, ...] = ("ok", "transient", "permanent")


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """One histogram at a moment: cumulative counts per upper bound, as Prometheus reports."""
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]      # observations <= bounds[i]; one per bound
    count: int                       # every observation (the +Inf bucket)
    sum: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything Telemetry holds, copied under its lock: what one scrape reports."""
    tasks: Mapping[str, int]               # state -> tasks, as of the last pass that set it
    passes: Mapping[str, int]              # PassResult -> passes
    pass_duration: HistogramSnapshot
    dispatch_latency: HistogramSnapshot
    webhook_deliveries: Mapping[str, int]  # WebhookResult -> deliveries
    status_push_retries: int
    hosts: Mapping[str, bool]              # host name -> up, as last set
    pr_calls: Mapping[str, int]            # PrCallResult -> calls

    @property
    def hosts_up(self) -> int:
        return sum(1 for up in self.hosts.values() if up)


class _Histogram:
    """Counts per bucket (not cumulative), sum and count; used under Telemetry's lock."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)) or not all(math.isfinite(b) for b in bounds):
            raise ValueError(f"histogram bounds must be finite and strictly increasing: {bounds}")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)    # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return                               # NaN or inf would poison the sum for good
        value = max(0.0, value)                  # a clock step backwards is not negative time
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> HistogramSnapshot:
        cumulative, running = [], 0
        for n in self.counts[:-1]:
            running += n
            cumulative.append(running)
        return HistogramSnapshot(self.bounds, tuple(cumulative), running + self.counts[-1],
                                 self.sum)


class Telemetry:
    """The controller's counters and gauges; every method is safe from any thread.

    One instance per controller, made by the composition root and handed to the
    engine, to AppDeps (the webhook routes count their answers) and to the
    admin app (which reports it on GET /metrics).
    """

    def __init__(self, pass_buckets: tuple[float, ...] = PASS_DURATION_BUCKETS,
                 dispatch_buckets: tuple[float, ...] = DISPATCH_LATENCY_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, int] = {}
        self._passes: dict[str, int] = dict.fromkeys(PASS_RESULTS, 0)
        self._pass_duration = _Histogram(pass_buckets)
        self._dispatch_latency = _Histogram(dispatch_buckets)
        self._webhooks: dict[str, int] = dict.fromkeys(WEBHOOK_RESULTS, 0)
        self._status_push_retries = 0
        self._hosts: dict[str, bool] = {}
        self._pr_calls: dict[str, int] = dict.fromkeys(PR_CALL_RESULTS, 0)

    def pass_done(self, duration_s: float, ok: bool) -> None:
        """A reconcile pass ended after `duration_s` seconds; ok False: it raised or gave up."""
        with self._lock:
            self._passes["ok" if ok else "failed"] += 1
            self._pass_duration.observe(duration_s)

    def tasks_by_state(self, counts: Mapping[str, int]) -> None:
        """How many tasks are in each state now; replaces the last snapshot (set each pass).

        Give every state, 0 included, so a state that empties reports 0 rather
        than vanishing from the scrape.
        """
        with self._lock:
            self._tasks = {str(state): int(n) for state, n in counts.items()}

    def dispatch_latency(self, seconds: float) -> None:
        """A run started `seconds` after the push (or poll) that made its task due was seen."""
        with self._lock:
            self._dispatch_latency.observe(seconds)

    def webhook_delivery(self, result: WebhookResult) -> None:
        """A webhook delivery was answered with `result` (one of WEBHOOK_RESULTS)."""
        with self._lock:
            self._webhooks[result] = self._webhooks.get(result, 0) + 1

    def status_push_retry(self) -> None:
        """A push of the status branch was rejected (someone pushed first) and is retried."""
        with self._lock:
            self._status_push_retries += 1

    def hosts_up(self, up: Mapping[str, bool]) -> None:
        """Each host of the fleet and whether it is reachable now; replaces the last set."""
        with self._lock:
            self._hosts = {str(host): bool(is_up) for host, is_up in up.items()}

    def pr_call(self, result: PrCallResult) -> None:
        """A forge API call for a pull request ended: ok, a transient or a permanent error."""
        with self._lock:
            self._pr_calls[result] = self._pr_calls.get(result, 0) + 1

    def snapshot(self) -> Snapshot:
        """A consistent copy of everything, for one scrape."""
        with self._lock:
            return Snapshot(
                tasks=dict(self._tasks), passes=dict(self._passes),
                pass_duration=self._pass_duration.snapshot(),
                dispatch_latency=self._dispatch_latency.snapshot(),
                webhook_deliveries=dict(self._webhooks),
                status_push_retries=self._status_push_retries,
                hosts=dict(self._hosts), pr_calls=dict(self._pr_calls))
