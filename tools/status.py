"""What running engine processes say about themselves: their metrics pages and health probes,
summed into one terminal table (`paystream status`, the end of `paystream demo`).

>>> text = '''# TYPE paystream_decisions counter
... paystream_decisions_total{outcome="approved"} 7.0
... paystream_decisions_total{outcome="declined"} 2.0
... '''
>>> samples = parse(text)
>>> total(samples, "paystream_decisions_total")
9.0
>>> by_label(samples, "paystream_decisions_total", "outcome")
{'approved': 7.0, 'declined': 2.0}
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]


def parse(text: str) -> Samples:
    """Prometheus text as samples by name, then by their sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(samples: Samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for labels, value in samples.get(name, {}).items():
        key = dict(labels).get(label, "")
        totals[key] = totals.get(key, 0.0) + value
    return dict(sorted(totals.items()))


def get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """(HTTP status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


@dataclass
class ProcessView:
    """One process's metrics and readiness, as scraped."""

    url: str
    samples: Samples = field(default_factory=dict)
    ready: bool = False
    tasks: dict[str, str] = field(default_factory=dict)
    scraped_at: float = 0.0


def look(host: str, port: int) -> ProcessView | None:
    """Scrape one process (None if nothing answers there)."""
    base = f"http://{host}:{port}"
    status, body = get(base + "/metrics")
    if status != 200:
        return None
    view = ProcessView(base, parse(body.decode()), scraped_at=time.monotonic())
    status, body = get(base + "/health/ready")
    if status in (200, 503):
        answer = json.loads(body)
        view.ready, view.tasks = bool(answer.get("ready")), dict(answer.get("tasks", {}))
    return view


def look_all(host: str, first_port: int, processes: int | None = None) -> list[ProcessView]:
    """Processes on consecutive ports from `first_port` (as `paystream run` gives them); with
    `processes` None, until a port does not answer."""
    views = []
    for index in range(processes if processes is not None else 64):
        view = look(host, first_port + index)
        if view is None:
            if processes is None:
                break
            continue
        views.append(view)
    return views


def merged(views: list[ProcessView]) -> Samples:
    """Every process's samples summed by name and labels."""
    out: Samples = {}
    for view in views:
        for name, series in view.samples.items():
            into = out.setdefault(name, {})
            for labels, value in series.items():
                into[labels] = into.get(labels, 0.0) + value
    return out


def rate(before: Samples, after: Samples, name: str, seconds: float) -> float:
    return max(0.0, total(after, name) - total(before, name)) / seconds if seconds > 0 else 0.0


def quantile(samples: Samples, name: str, q: float) -> float | None:
    """The `q` quantile of histogram `name` (its `_bucket` samples), as Prometheus estimates it
    (the upper bound of the bucket it falls in)."""
    buckets: dict[float, float] = {}
    for labels, value in samples.get(f"{name}_bucket", {}).items():
        bound = float(dict(labels)["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    if not buckets or buckets.get(float("inf"), 0.0) == 0:
        return None
    wanted = q * buckets[float("inf")]
    for bound in sorted(buckets):
        if buckets[bound] >= wanted:
            return bound
    return None


def table(views: list[ProcessView], rates: Mapping[str, float] | None = None) -> str:
    """The engine's state at a glance, over all `views`."""
    samples = merged(views)
    lines = [f"processes       {len(views)} ({sum(view.ready for view in views)} ready)"]
    tasks = by_label(samples, "paystream_tasks", "state")
    lines.append("tasks           " + (", ".join(f"{state} {int(count)}" for state, count in tasks.items() if count)
                                   or "none yet"))
    lines.append(f"input records   {int(total(samples, 'paystream_input_records_total')):,}")
    lines.append(f"consumer lag    {int(total(samples, 'paystream_consumer_lag')):,}")
    decisions = by_label(samples, "paystream_decisions_total", "outcome")
    lines.append("decisions       " + (", ".join(f"{k} {int(v):,}" for k, v in decisions.items()) or "none"))
    alerts = by_label(samples, "paystream_alerts_total", "rule")
    lines.append("alerts          " + (", ".join(f"{k} {int(v):,}" for k, v in alerts.items()) or "none"))
    dead = by_label(samples, "paystream_dead_letters_total", "reason")
    lines.append("dead letters    " + (", ".join(f"{k} {int(v):,}" for k, v in dead.items()) or "none"))
    lines.append(f"commits         {int(total(samples, 'paystream_commits_total')):,}, p99 "
                 f"{_ms(quantile(samples, 'paystream_commit_seconds', 0.99))}, aborted "
                 f"{int(total(samples, 'paystream_transactions_aborted_total'))}")
    stores = by_label(samples, "paystream_store_keys", "store")
    lines.append("state           " + (", ".join(f"{k} {int(v):,} keys" for k, v in stores.items()) or "none"))
    ages = by_label(samples, "paystream_table_age_seconds", "table")
    if ages:
        lines.append("tables          " + ", ".join(f"{k} updated {v:.0f} s ago" for k, v in ages.items()))
    for name, value in (rates or {}).items():
        lines.append(f"{name:<16}{value:,.0f}/s")
    for view in views:
        unwell = {task: state for task, state in view.tasks.items() if state != "ok"}
        if unwell:
            lines.append(f"{view.url}: " + ", ".join(f"{task} {state}" for task, state in sorted(unwell.items())))
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "> 30 s" if seconds == float("inf") else f"<= {seconds * 1000:,.0f} ms"


def status_text(host: str, port: int, processes: int | None, interval: float) -> tuple[str, bool]:
    """The table for every process answering, with rates over `interval` seconds; and whether
    every one was ready."""
    first = look_all(host, port, processes)
    if not first:
        return (f"no paystream process answers at http://{host}:{port}/metrics: is the engine running "
                f"(`paystream run`) with `engine.http_port` = {port}?"), False
    if interval <= 0:
        return table(first), all(view.ready for view in first)
    time.sleep(interval)
    second = look_all(host, port, processes)
    before, after = merged(first), merged(second)
    seconds = (max(v.scraped_at for v in second) - max(v.scraped_at for v in first)) if second else 0.0
    rates = {"input rate": rate(before, after, "paystream_input_records_total", seconds),
             "decision rate": rate(before, after, "paystream_decisions_total", seconds),
             "alert rate": rate(before, after, "paystream_alerts_total", seconds)}
    return table(second, rates), all(view.ready for view in second)


def as_json(views: list[ProcessView]) -> dict[str, Any]:
    """The merged samples, for scripts (`paystream status --json`)."""
    return {name: {",".join(f"{k}={v}" for k, v in labels): value for labels, value in series.items()}
            for name, series in merged(views).items()}
