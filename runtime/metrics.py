"""Prometheus metrics of Satchel, aggregated across `satchel serve`'s worker processes.

With several workers, `satchel serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before they start (prometheus-client's multiprocess mode: each worker writes its own files,
`/metrics` merges them). Labels take only values from small fixed sets: routes, status
classes, outcomes, operations, storage roles. Never a package name, a key, a token or a URL.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "satchel_http_requests_total", "HTTP requests answered.", ["route", "status"]
)
HTTP_LATENCY = Histogram(
    "satchel_http_request_duration_seconds",
    "Time to answer an HTTP request, until its last byte was handed to the server.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CACHE_OUTCOMES = Counter(
    "satchel_cache_outcomes_total",
    "How requests were served: hot, stored, miss, refreshed, revalidated, stale, absent, "
    "down, private.",
    ["outcome"],
)
STORAGE_REQUESTS = Counter(
    "satchel_storage_requests_total", "Storage (bucket) operations.", ["storage", "operation"]
)
STORAGE_ERRORS = Counter(
    "satchel_storage_errors_total",
    "Failed storage operations (not found excluded), by kind.",
    ["storage", "operation", "kind"],
)
UPSTREAM_REQUESTS = Counter(
    "satchel_upstream_requests_total", "Requests to upstream repositories.", ["kind"]
)
UPSTREAM_ERRORS = Counter(
    "satchel_upstream_errors_total", "Upstream requests that failed (after retries).", ["kind"]
)
UPSTREAM_BYTES = Counter(
    "satchel_upstream_bytes_total", "Bytes received from upstream repositories.", ["kind"]
)
SINGLE_FLIGHT_WAITS = Counter(
    "satchel_single_flight_waits_total",
    "Requests that waited for a fill another request or worker had started.",
    ["where"],
)
CREDENTIAL_REFRESHES = Counter(
    "satchel_credential_refreshes_total", "Temporary credential refreshes.", ["result"]
)
CREDENTIAL_EXPIRY = Gauge(
    "satchel_credential_expiry_timestamp_seconds",
    "When the current temporary credentials expire (Unix time).",
    multiprocess_mode="mostrecent",  # the last refresh of any worker
)
LOCAL_CACHE_EVICTIONS = Counter(
    "satchel_local_cache_evicted_bytes_total", "Bytes evicted from the local caches.", ["cache"]
)
PUBLISHES = Counter(
    "satchel_publishes_total",
    "Uploads of private packages: created, identical, conflict, invalid, too_large.",
    ["result"],
)
AUTH_FAILURES = Counter(
    "satchel_auth_failures_total", "Requests refused for their token.", ["reason"]
)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


LATENCY_BOUNDS = (*HTTP_LATENCY._upper_bounds,)  # the buckets, +Inf last


class _RequestTally:
    """The per-request metrics, added up in plain Python and handed to prometheus-client
    once per event-loop turn. In multiprocess mode every `inc()` takes a lock and writes
    an mmap (4 per request: ~15 µs, a fifth of a warm request's whole cost); under load one
    turn answers many requests, so this is a few dict updates per request instead."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, tuple[list[int], list[float]]] = {}  # per bucket, sum
        self.outcomes: dict[str, int] = {}
        self.scheduled = False
        self.children: dict[tuple[str, ...], Any] = {}  # `labels()` costs ~5 µs a call

    def child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found

    def add(self, route: str, status: int, seconds: float, cache: str) -> None:
        key = (route, status // 100)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = ([0] * len(LATENCY_BOUNDS), [0.0])
        histogram[0][bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1  # first bound >= it
        histogram[1][0] += seconds
        if cache != "-":
            for outcome in cache.split(","):  # packages.json: one per upstream
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if not self.scheduled:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
                self.scheduled = True
            except RuntimeError:  # no loop (a synchronous caller): count now
                self.flush()

    def flush(self) -> None:
        self.scheduled = False
        requests, self.requests = self.requests, {}
        latency, self.latency = self.latency, {}
        outcomes, self.outcomes = self.outcomes, {}
        for (route, klass), count in requests.items():
            self.child(HTTP_REQUESTS, route, status_class(klass * 100)).inc(count)
        for route, (buckets, total) in latency.items():
            child = self.child(HTTP_LATENCY, route)
            # Histogram.observe() one value at a time, in bulk: the same two value stores
            # it writes (prometheus-client 0.26, pinned).
            child._sum.inc(total[0])
            for index, count in enumerate(buckets):
                if count:
                    child._buckets[index].inc(count)
        for outcome, count in outcomes.items():
            self.child(CACHE_OUTCOMES, outcome).inc(count)


_tally = _RequestTally()


def observe_request(route: str, status: int, seconds: float, cache: str) -> None:
    """One answered request: its route and status class, latency and cache outcome(s)
    (counted by the end of this event-loop turn)."""
    _tally.add(route, status, seconds, cache)


def flush_requests() -> None:
    """Count what this turn answered now (before a scrape, at shutdown)."""
    _tally.flush()


def prepare_multiprocess(directory: Path | None = None) -> Path:
    """An empty directory for the workers' metric files, set in the environment before
    they start (an emptyDir outlives container restarts: old files would add up)."""
    target = directory or Path(tempfile.gettempdir()) / "satchel-metrics"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_VAR] = str(target)
    return target


class _Gauges(Collector):
    """Gauges read at scrape time from what the process can see (the local caches)."""

    def __init__(self, sample: Callable[[], Iterable[tuple[str, float]]]) -> None:
        self._sample = sample

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "satchel_local_cache_bytes",
            "Bytes a local cache holds or has reserved, for all processes using its directory.",
            labels=["cache"],
        )
        for cache, value in self._sample():
            family.add_metric([cache], value)
        yield family


def exposition(local_caches: Callable[[], Iterable[tuple[str, float]]]) -> bytes:
    """The text format of every metric: merged over the workers in multiprocess mode."""
    registry = CollectorRegistry()
    if MULTIPROC_VAR in os.environ:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Proxy(REGISTRY))
    registry.register(_Gauges(local_caches))
    return generate_latest(registry)


class _Proxy(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()
