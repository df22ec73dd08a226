"""GET /metrics in the Prometheus text format: a collector that reports a Telemetry.

make_registry(telemetry) builds a CollectorRegistry of its own (never
prometheus_client's process-global default registry, so two apps or two tests
never share a series) holding TelemetryCollector and the process collector.
At each scrape the collector takes one Telemetry.snapshot() and turns it into
metric families; prometheus_client writes the format, its escaping of label
values and HELP text, and the cumulative histogram series. render() is what
admin.py's route answers. The only module that imports prometheus_client.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric)
from prometheus_client.utils import floatToGoString

from controller.telemetry import HistogramSnapshot, Snapshot, Telemetry

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The `le` label of a bucket bound, written as prometheus_client's own
# histograms write it (1.0, 0.05, +Inf); the function has no annotations.
_le: Callable[[float], str] = floatToGoString


class TelemetryCollector:
    """A prometheus_client custom collector: reads the Telemetry at scrape time."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterable[Metric]:
        return families(self._telemetry.snapshot())

    def describe(self) -> Iterable[Metric]:
        """The families' names, for the registry's duplicate check."""
        return families(Telemetry().snapshot())


def families(snap: Snapshot) -> list[Metric]:
    """One scrape's metric families, from one snapshot."""
    return [
        _labelled(GaugeMetricFamily, "fleet_tasks",
                  "Tasks in each state, as of the last reconcile pass", "state", snap.tasks),
        _labelled(CounterMetricFamily, "fleet_passes",
                  "Reconcile passes, by result (ok or failed)", "result", snap.passes),
        _histogram("fleet_pass_duration_seconds", "How long a reconcile pass took",
                   snap.pass_duration),
        _histogram("fleet_dispatch_latency_seconds",
                   "From the push or poll that made a task due to its run started",
                   snap.dispatch_latency),
        _labelled(CounterMetricFamily, "fleet_webhook_deliveries",
                  "Webhook deliveries, by the answer they got", "result",
                  snap.webhook_deliveries),
        CounterMetricFamily("fleet_status_push_retries",
                            "Status branch pushes rejected (someone pushed first) and retried",
                            value=snap.status_push_retries),
        _labelled(GaugeMetricFamily, "fleet_host_up",
                  "1 when the host was reachable at its last check, else 0", "host",
                  {host: int(up) for host, up in snap.hosts.items()}),
        GaugeMetricFamily("fleet_hosts_up", "Hosts reachable at their last check",
                          value=snap.hosts_up),
        GaugeMetricFamily("fleet_hosts", "Hosts in the fleet", value=len(snap.hosts)),
        _labelled(CounterMetricFamily, "fleet_pr_calls",
                  "Forge API calls for pull requests, by result (ok, transient, permanent)",
                  "result", snap.pr_calls),
    ]


def _labelled(kind: type[CounterMetricFamily] | type[GaugeMetricFamily], name: str, doc: str,
              label: str, values: Mapping[str, int]) -> Metric:
    family = kind(name, doc, labels=[label])
    for value, n in sorted(values.items()):
        family.add_metric([value], n)
    return family


def _histogram(name: str, doc: str, hist: HistogramSnapshot) -> Metric:
    buckets = [(_le(bound), float(n)) for bound, n in zip(hist.bounds, hist.cumulative)]
    buckets.append(("+Inf", float(hist.count)))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum)


def make_registry(telemetry: Telemetry) -> CollectorRegistry:
    """A new registry reporting `telemetry` and this process (CPU, memory, open files)."""
    registry = CollectorRegistry()
    registry.register(TelemetryCollector(telemetry))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the text format (CONTENT_TYPE)."""
    return generate_latest(registry)
