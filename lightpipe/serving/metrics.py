"""``GET /metrics``: the server's counters, histograms and gauges through ``prometheus_client``
(the Prometheus project's own library: exposition format, escaping, process metrics), one
registry per server. Metrics are declared on first use, their label names from that call.

Besides requests and batches: prompt and generated token counters, time to first token and
queue time histograms, and the process collector's CPU, memory and open files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily

prometheus_client.disable_created_metrics()  # no *_created gauge beside every counter

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """The server's numbers. ``gauges`` are callables returning {labels: value}, read when
    the page is rendered."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.gauges: dict[str, Callable[[], dict[Labels, float]]] = {}
        self.help: dict[str, str] = {}
        self._metrics: dict[str, object] = {}
        self.registry.register(_Gauges(self))

    def describe(self, name: str, text: str) -> None:
        self.help[name] = text

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        counter = self._metric(name, Counter, labels)
        (counter.labels(**_strings(labels)) if labels else counter).inc(amount)

    def observe(self, name: str, value: float, buckets: Iterable[float], **labels: str) -> None:
        histogram = self._metric(name, Histogram, labels, buckets=tuple(buckets))
        (histogram.labels(**_strings(labels)) if labels else histogram).observe(value)

    def value(self, name: str, **labels: str) -> float | None:
        """A counter's value (a histogram's count), for tests and health pages."""
        sample = "_total" if not name.endswith("_total") else ""
        for family in self.registry.collect():
            for item in family.samples:
                if item.name in (name + sample, name, name + "_count") and item.labels == _strings(labels):
                    return item.value
        return None

    def render(self) -> str:
        return generate_latest(self.registry).decode("utf-8")

    def _metric(self, name: str, kind: type, labels: dict, **extra: object):
        metric = self._metrics.get(name)
        if metric is None:
            base = name[:-len("_total")] if kind is Counter and name.endswith("_total") else name
            metric = kind(base, self.help.get(name, name.replace("_", " ")), sorted(labels),
                          registry=self.registry, **extra)
            self._metrics[name] = metric
        return metric


class _Gauges:
    """A collector reading ``Metrics.gauges`` at scrape time."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self):
        for name, read in sorted(self.metrics.gauges.items()):
            series = read()
            names = sorted({key for labels in series for key, _ in labels})
            family = GaugeMetricFamily(name, self.metrics.help.get(name, name.replace("_", " ")),
                                       labels=names)
            for labels, value in sorted(series.items()):
                given = dict(labels)
                family.add_metric([str(given.get(key, "")) for key in names], float(value))
            yield family


def _strings(labels: dict) -> dict[str, str]:
    return {key: str(value) for key, value in labels.items()}
