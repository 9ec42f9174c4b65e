"""The Grafana dashboard in deploy/grafana: every query asks for a metric the engine exports, under
the name Prometheus stores it, and every subject an operator looks for has a panel.

The exported names come from the code that exports them, not from a list here: the task
collector (its families exist with no task at all), the payment application's declared counts
and the event metrics of `paystream/metrics.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "paystream.json"
# a metric name in PromQL: starts with paystream_ and is not followed by more name characters
METRIC = re.compile(r"\bpaystream_[a-zA-Z0-9_]*")
# the samples a family of each type exposes, by suffix (the OpenMetrics naming prometheus_client follows)
SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum",
                                                                                     "_created"),
                   "summary": ("", "_count", "_sum", "_created"), "info": ("_info",), "unknown": ("",)}
SUBJECTS = ("paystream_input_records", "paystream_decisions", "paystream_alerts", "paystream_dead_letters",
            "paystream_consumer_lag", "paystream_commit_seconds", "paystream_restore_records")

Panel = dict[str, Any]


def exported_families() -> dict[str, str]:
    """Every metric family the engine exports (name without sample suffix -> type)."""
    from connectors.health import TaskCollector
    from flows.payments import PAYMENTS
    from paystream import metrics  # noqa: F401 - registers the event metrics in the default registry

    families: dict[str, str] = {}
    registry = CollectorRegistry()
    registry.register(TaskCollector(lambda: []))
    for family in registry.collect():
        families[family.name] = family.type
    for spec in PAYMENTS.counts.values():
        families[spec.name] = "counter"  # a CountMetric is a counter (connectors.health._count_families)
    for family in REGISTRY.collect():
        if family.name.startswith(metrics.PREFIX):
            families[family.name] = family.type
    return families


def exported_samples() -> dict[str, str]:
    """Every sample name Prometheus stores for the exported families -> its family."""
    return {name + suffix: name for name, kind in exported_families().items() for suffix in SAMPLE_SUFFIXES[kind]}


def panels(dashboard: dict[str, Any]) -> Iterator[Panel]:
    """Every panel, those inside rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def metric_names(panel: Panel) -> set[str]:
    return {name for target in panel.get("targets", []) for name in METRIC.findall(target.get("expr", ""))}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_the_exported_names_are_read_from_the_code() -> None:
    """The sources above are not empty and give what docs/METRICS.md lists (a sample of each kind)."""
    families = exported_families()
    assert families["paystream_tasks"] == "gauge"  # the task collector
    assert families["paystream_input_records"] == "counter"
    assert families["paystream_decisions"] == "counter"  # the payment application
    assert families["paystream_commit_seconds"] == "histogram"  # paystream/metrics.py
    assert "paystream_commit_seconds_bucket" in exported_samples()
    assert "paystream_tasks_total" not in exported_samples()


def test_every_query_names_an_exported_sample(dashboard: dict[str, Any]) -> None:
    exported = exported_samples()
    queried: dict[str, set[str]] = {}
    for panel in panels(dashboard):
        for name in metric_names(panel):
            queried.setdefault(name, set()).add(panel["title"])
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for name in METRIC.findall(text):
            queried.setdefault(name, set()).add(f"variable {variable['name']}")
    assert queried, "no panel queries a paystream_ metric"
    unknown = {name: sorted(titles) for name, titles in queried.items() if name not in exported}
    assert not unknown, f"queried but not exported (name: panels): {unknown}"


def test_every_panel_has_a_title_and_every_query_a_datasource(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert isinstance(panel.get("title"), str) and panel["title"].strip(), panel.get("id")
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_the_datasource_is_a_variable(dashboard: dict[str, Any]) -> None:
    """Any Prometheus data source can be picked on import or provisioning: none is named in the file."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    uids = {json.dumps(p["datasource"]) for p in panels(dashboard) if "datasource" in p}
    assert uids == {json.dumps({"type": "prometheus", "uid": "${DS_PROMETHEUS}"})}


def test_the_dashboard_covers_what_operators_look_for(dashboard: dict[str, Any]) -> None:
    family_of = exported_samples()
    covered = {family_of.get(name) for panel in panels(dashboard) for name in metric_names(panel)}
    missing = sorted(set(SUBJECTS) - covered)
    assert not missing, f"no panel queries {missing}"


def test_panel_ids_are_unique_and_the_layout_is_on_the_grid(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36  # Grafana 9.4 and later, 10 included
