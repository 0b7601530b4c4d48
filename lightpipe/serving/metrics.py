"""Counters and histograms for ``GET /metrics``, written in the Prometheus text format (0.0.4).

Every update happens on the event loop's thread, so no lock is needed. Gauges (queue depth,
requests in flight) are read from the batchers when the page is rendered.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

Labels = tuple[tuple[str, str], ...]


class Histogram:
    def __init__(self, buckets: Iterable[float]):
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """The server's numbers. ``gauges`` are callables returning {labels: value}."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self.histograms: dict[str, dict[Labels, Histogram]] = defaultdict(dict)
        self.gauges: dict[str, Callable[[], dict[Labels, float]]] = {}
        self.help: dict[str, str] = {}

    def describe(self, name: str, text: str) -> None:
        self.help[name] = text

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters[name][_labels(labels)] += amount

    def observe(self, name: str, value: float, buckets: Iterable[float], **labels: str) -> None:
        key = _labels(labels)
        series = self.histograms[name]
        if key not in series:
            series[key] = Histogram(buckets)
        series[key].observe(value)

    def render(self) -> str:
        lines: list[str] = []
        for name, series in sorted(self.counters.items()):
            _header(lines, name, "counter", self.help.get(name))
            lines += [f"{name}{_format(labels)} {_number(value)}" for labels, value in sorted(series.items())]
        for name, read in sorted(self.gauges.items()):
            _header(lines, name, "gauge", self.help.get(name))
            lines += [f"{name}{_format(labels)} {_number(value)}" for labels, value in sorted(read().items())]
        for name, series in sorted(self.histograms.items()):
            _header(lines, name, "histogram", self.help.get(name))
            for labels, histogram in sorted(series.items()):
                running = 0
                for bound, count in zip(histogram.bounds + (float("inf"),), histogram.counts):
                    running += count
                    le = "+Inf" if bound == float("inf") else _number(bound)
                    lines.append(f"{name}_bucket{_format(labels + (('le', le),))} {running}")
                lines.append(f"{name}_sum{_format(labels)} {_number(histogram.sum)}")
                lines.append(f"{name}_count{_format(labels)} {histogram.count}")
        return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted((key, str(value)) for key, value in labels.items()))


def _header(lines: list[str], name: str, kind: str, text: str | None) -> None:
    if text:
        lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} {kind}")


def _format(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for _, value in labels)
    return "{" + ",".join(f'{key}="{value}"' for (key, _), value in zip(labels, escaped)) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
