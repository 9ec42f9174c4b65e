"""The process's HTTP endpoints without a broker: readiness from task states, counts as declared
metrics, the server's answers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connectors import health
from connectors.application import Application, CountMetric
from connectors.health import TaskCollector, ready
from paystream.settings import load


class FakeTask:
    def __init__(self, partition: int, problem: str | None = None) -> None:
        self.partition = partition
        self.problem = problem
        self.input_counts = Counter({"payments": 10 * (partition + 1)})
        self.commits = 3
        self.stores: dict[str, Any] = {}
        self.restored_records = 0
        self.opened_in_seconds = 0.5
        self.processor = type("P", (), {"counts": Counter({("decision", "approved"): 4, ("novel", "x", "y"): 1})})()
        self.context = type("C", (), {"counts": Counter({("dlq", "malformed"): 2})})()

    def unhealthy(self, bound_s: float) -> str | None:
        return self.problem

    def lag(self) -> dict[str, int]:
        return {"payments": 7}


class FakeRegistry:
    app = Application("fake", processor=lambda context: None,  # type: ignore[arg-type, return-value]
                      counts={"decision": CountMetric("paystream_decisions", "by outcome", ("outcome",))})

    def __init__(self, tasks: dict[str, Any]) -> None:
        self._tasks = tasks

    def tasks(self) -> dict[str, Any]:
        return self._tasks

    def tables_loaded(self) -> bool:
        return True

    def tables(self) -> dict[str, Any]:
        return {"customers": {"A": 1, "B": 2}}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_ready_only_when_every_task_is_open_and_committing() -> None:
    assert ready([FakeRegistry({"payments-0": FakeTask(0), "payments-1": FakeTask(1)})], 30) == (
        True, {"payments-0": "ok", "payments-1": "ok"})
    ok, states = ready([FakeRegistry({"payments-0": FakeTask(0), "payments-1": None})], 30)  # type: ignore[list-item]
    assert not ok and states["payments-1"] == "opening"
    ok, states = ready([FakeRegistry({"payments-0": RuntimeError("fenced")})], 30)  # type: ignore[list-item]
    assert not ok and states["payments-0"] == "failed: RuntimeError"
    ok, states = ready([FakeRegistry({"payments-0": FakeTask(0, problem="nothing committed for 40 s")})], 30)  # type: ignore[list-item]
    assert not ok and "40 s" in states["payments-0"]
    assert ready([], 30) == (False, {})  # no task yet: not ready


def test_the_collector_exports_task_figures_and_the_declared_counts() -> None:
    registry = CollectorRegistry()
    registry.register(TaskCollector(lambda: [FakeRegistry({"payments-0": FakeTask(0), "payments-1": FakeTask(1),
                                                           "payments-2": None})]))  # type: ignore[list-item]
    found = samples(registry)
    assert found[("paystream_tasks", (("state", "open"),))] == 2
    assert found[("paystream_tasks", (("state", "opening"),))] == 1
    assert found[("paystream_input_records_total", (("partition", "1"), ("topic", "payments")))] == 20
    assert found[("paystream_consumer_lag", (("partition", "0"), ("topic", "payments")))] == 7
    assert found[("paystream_decisions_total", (("outcome", "approved"),))] == 8  # 4 per task, summed
    assert found[("paystream_dead_letters_total", (("reason", "malformed"),))] == 4  # the context's, built in
    assert found[("paystream_app_events_total", (("detail", "x/y"), ("event", "novel")))] == 2  # undeclared
    assert found[("paystream_table_keys", (("table", "customers"),))] == 2


def test_the_server_answers_metrics_live_ready_and_a_clear_404(unused_port: int) -> None:
    import threading

    import paystream.metrics  # noqa: F401 - the event metrics /metrics serves

    settings = load(environ={}, engine={"http_port": unused_port})
    tasks: dict[str, Any] = {"payments-0": None}
    # a server of its own: the process's one (`health.serve`) may belong to another test's flow
    server = health.Server(("127.0.0.1", unused_port), lambda: [FakeRegistry(tasks)], settings)  # type: ignore[list-item]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{unused_port}"
    try:
        answers(base, tasks)
    finally:
        server.shutdown()
        server.server_close()


def answers(base: str, tasks: dict[str, Any]) -> None:
    """What the server at `base` answers while `tasks` change."""

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    status, body = get("/metrics")
    assert status == 200 and b"paystream_commit_seconds_bucket" in body
    status, body = get("/health/ready")
    assert status == 503 and json.loads(body)["tasks"] == {"payments-0": "opening"}
    tasks["payments-0"] = FakeTask(0)
    status, body = get("/health/ready")
    assert status == 200 and json.loads(body) == {"ready": True, "tasks": {"payments-0": "ok"}}
    health.beat()
    status, body = get("/health/live")
    assert status == 200 and json.loads(body)["live"] is True
    status, body = get("/nowhere")
    assert status == 404 and "/health/ready" in json.loads(body)["paths"]


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
