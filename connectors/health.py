"""What a process tells its operators over HTTP: Prometheus metrics, liveness and readiness.

    GET /metrics        the engine's metrics, as Prometheus text (`docs/METRICS.md`)
    GET /health/live    200 while the dataflow loop runs: a source asked for records lately
    GET /health/ready   200 when every task this process owns is open and committing; 503 and why
    GET /{query}/{key}  an interactive query, e.g. /accounts/ACC-1 (`connectors/queries.py`)

The server runs in a daemon thread on `engine.http_host`:`engine.http_port` (0: none), started
with the Kafka source and sink. Most metrics are read from the tasks when scraped
(`TaskCollector`): the hot path only keeps the counters it keeps anyway. Labels are topics,
partitions, stores, tables and the applications' bounded count families, never ids.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> registry.register(TaskCollector(lambda: []))
>>> b"paystream_tasks" in generate_latest(registry)
True
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connectors import queries
from connectors.application import CountMetric
from paystream import logs, metrics  # noqa: F401 - registers the event metrics served here
from paystream.settings import Settings
from state import codec

if TYPE_CHECKING:
    from connectors.tasks import TaskRegistry

DEAD_LETTERS: Final = CountMetric("paystream_dead_letters", "Records sent to the dead-letter topic, by reason",
                                  ("reason",))
# a dataflow loop that has not asked its sources for records for this long is not alive
LIVE_S: Final = 30.0

_started = time.monotonic()
_last_beat = 0.0


def beat() -> None:
    """The dataflow loop runs (the sources call this each time Bytewax asks them for records)."""
    global _last_beat
    _last_beat = time.monotonic()


def live() -> tuple[bool, str]:
    """Whether the process's dataflow loop runs: it asked for records in the last `LIVE_S` seconds
    (or has not started yet: tables still loading, within a grace of 5 minutes)."""
    now = time.monotonic()
    if _last_beat == 0.0:
        return now - _started < 300, "starting"
    waited = now - _last_beat
    return waited < LIVE_S, f"the dataflow loop last ran {waited:.1f} s ago"


def ready(registries: Iterable[TaskRegistry], bound_s: float) -> tuple[bool, dict[str, str]]:
    """Whether every task this process owns is open and committing within `bound_s`; each task's state."""
    states: dict[str, str] = {}
    for registry in registries:
        for task_id, task in registry.tasks().items():
            if task is None:
                states[task_id] = "opening"
            elif isinstance(task, BaseException):
                states[task_id] = f"failed: {type(task).__name__}"
            else:
                states[task_id] = task.unhealthy(bound_s) or "ok"
    return bool(states) and all(state == "ok" for state in states.values()), states


class TaskCollector:
    """The engine's metrics read from the process's tasks at each scrape."""

    def __init__(self, registries: Callable[[], Iterable[TaskRegistry]]) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("paystream_tasks", "Tasks this process owns, by state", labels=["state"])
        inputs = CounterMetricFamily("paystream_input_records", "Input records processed",
                                     labels=["topic", "partition"])
        lag = GaugeMetricFamily("paystream_consumer_lag", "Input records in Kafka not processed yet",
                                labels=["topic", "partition"])
        commits = CounterMetricFamily("paystream_commits", "Transactions committed", labels=["partition"])
        keys = GaugeMetricFamily("paystream_store_keys", "Keys in a task's store", labels=["store", "partition"])
        restored = GaugeMetricFamily("paystream_task_restored_records",
                                     "Changelog records a task read when it opened", labels=["partition"])
        opened = GaugeMetricFamily("paystream_task_open_seconds",
                                   "Seconds a task took to open (fence, restore, resume)", labels=["partition"])
        table_keys = GaugeMetricFamily("paystream_table_keys", "Rows in a global table", labels=["table"])
        table_age = GaugeMetricFamily("paystream_table_age_seconds",
                                      "Seconds since a global table last applied a change", labels=["table"])
        table_version = GaugeMetricFamily("paystream_table_version",
                                          "The version in force of a versioned table (the rules)", labels=["table"])
        states: Counter[str] = Counter()
        counts: Counter[tuple[str, ...]] = Counter()
        families: dict[str, CountMetric] = {"dlq": DEAD_LETTERS}
        tables: dict[str, Mapping[str, Any]] = {}
        for registry in self._registries():
            families.update(registry.app.counts)
            if registry.tables_loaded():
                tables.update(registry.tables())
            for task in registry.tasks().values():
                if task is None:
                    states["opening"] += 1
                    continue
                if isinstance(task, BaseException):
                    states["failed"] += 1
                    continue
                states["open"] += 1
                partition = str(task.partition)
                # copies made in one C call each: the worker thread adds keys while a scrape reads
                for topic, count in dict(task.input_counts).items():
                    inputs.add_metric([topic, partition], count)
                for topic, behind in task.lag().items():
                    lag.add_metric([topic, partition], behind)
                commits.add_metric([partition], task.commits)
                for name, store in task.stores.items():
                    keys.add_metric([name, partition], len(store.store))  # len(): atomic
                restored.add_metric([partition], task.restored_records)
                opened.add_metric([partition], task.opened_in_seconds)
                if task.processor is not None:
                    counts.update(dict(task.processor.counts))
                if task.context is not None:
                    counts.update(dict(task.context.counts))
        for state in ("opening", "open", "failed"):
            tasks.add_metric([state], states[state])
        for name, table in tables.items():
            table_keys.add_metric([name], len(table))
            age = getattr(table, "age_seconds", None)
            if age is not None:
                table_age.add_metric([name], age())
            version = getattr(table, "version", None)
            if isinstance(version, int):
                table_version.add_metric([name], version)
        yield from (tasks, inputs, lag, commits, keys, restored, opened, table_keys, table_age, table_version)
        yield from _count_families(counts, families)
        largest = GaugeMetricFamily("paystream_changelog_record_max_bytes",
                                    "The largest changelog record value this process wrote")
        largest.add_metric([], codec.stats.largest_record_bytes)
        yield largest


def _count_families(counts: Counter[tuple[str, ...]], families: Mapping[str, CountMetric]) -> Iterator[Metric]:
    """The processors' counts as the counters their application declared (see `CountMetric`)."""
    built: dict[str, CounterMetricFamily] = {}
    for spec in families.values():
        if spec.name not in built:
            built[spec.name] = CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    other = CounterMetricFamily("paystream_app_events", "Application counts no metric declares",
                                labels=["event", "detail"])
    for key, count in sorted(counts.items()):
        family, values = key[0], key[1:]
        declared = families.get(family)
        if declared is not None and len(values) == len(declared.labels):
            built[declared.name].add_metric(list(values), count)
        else:
            other.add_metric([family, "/".join(values)], count)
    yield from built.values()
    yield other


class _Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/health/live":
            ok, why = live()
            self._json(200 if ok else 503, {"live": ok, "detail": why})
        elif path == "/health/ready":
            ok, states = ready(self.server.registries(), self.server.ready_bound_s)
            self._json(200 if ok else 503, {"ready": ok, "tasks": states})
        elif path.count("/") == 2:  # /{query}/{key}: an interactive query
            name, key = (urllib.parse.unquote(part) for part in path[1:].split("/"))
            status, body = queries.answer(self.server.registries(), self.server.settings, name, key,
                                          forwarded=self.headers.get(queries.FORWARDED) is not None)
            self._json(status, body)
        else:
            self._json(404, {"error": f"no such path: {path or '/'}",
                             "paths": ["/metrics", "/health/live", "/health/ready", "/{query}/{key}"]})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._answer(status, json.dumps(body, sort_keys=True).encode(), "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return None  # scrapes every few seconds would flood the logs


class Server(ThreadingHTTPServer):
    """The endpoints above for `registries`, served by `serve_forever` (a thread per request)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], registries: Callable[[], Iterable[TaskRegistry]],
                 settings: Settings) -> None:
        super().__init__(address, _Handler)
        self.registries = registries
        self.settings = settings
        self.ready_bound_s = settings.engine.ready_commit_bound_ms / 1000


_server: Server | None = None
_lock = threading.Lock()


def serve(settings: Settings, registries: Callable[[], Iterable[TaskRegistry]]) -> int | None:
    """Start this process's HTTP server once (metrics and health); the port it listens on, or None.

    A port already in use is logged, not fatal: the engine's work matters more than its metrics.
    """
    global _server
    engine = settings.engine
    with _lock:
        if _server is not None:
            return _server.server_address[1]
        if engine.http_port <= 0:
            return None
        try:
            server = Server((engine.http_host, engine.http_port), registries, settings)
        except OSError as error:
            logs.get("http").warning("metrics and health are off: cannot listen", host=engine.http_host,
                                     port=engine.http_port, error=str(error))
            return None
        REGISTRY.register(TaskCollector(registries))
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        _server = server
        port = server.server_address[1]
        logs.get("http").info("serving metrics and health", url=f"http://{engine.http_host}:{port}/metrics")
        return port
