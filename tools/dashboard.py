"""The Grafana dashboard's main panels drawn from a run's own metrics, without Grafana: a
`Recorder` scrapes every process's `/metrics` once a second while the engine runs, and `draw`
plots what the dashboard (`deploy/grafana/paystream.json`) shows from the same metric names:
throughput, decisions by outcome, alerts by rule, dead letters by reason, consumer lag and
commit latency. `paystream demo` ends with this picture (`.paystream/dashboard.png`).

>>> recorder = Recorder("127.0.0.1", 9, processes=1, interval=1.0)  # port 9: nothing answers
>>> recorder.sample(); recorder.samples
[]
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tools.status import Samples, by_label, look_all, merged, quantile, total


class Recorder:
    """Scrapes the processes on `port`, `port + 1`... every `interval` seconds, in a thread."""

    def __init__(self, host: str, port: int, processes: int, interval: float = 1.0) -> None:
        self.host, self.port, self.processes, self.interval = host, port, processes, interval
        self.samples: list[tuple[float, Samples]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard", daemon=True)
        self._started = time.monotonic()

    def sample(self) -> None:
        views = look_all(self.host, self.port, self.processes)
        if views:
            self.samples.append((time.monotonic() - self._started, merged(views)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _rates(samples: list[tuple[float, Samples]], name: str, label: str | None
           ) -> tuple[list[float], dict[str, list[float]]]:
    """Per-second rates of counter `name` between consecutive samples, by `label` (or in all)."""
    times: list[float] = []
    series: dict[str, list[float]] = {}
    for (t0, before), (t1, after) in zip(samples, samples[1:], strict=False):
        times.append(t1)
        now = by_label(after, name, label) if label else {"all": total(after, name)}
        then = by_label(before, name, label) if label else {"all": total(before, name)}
        for key in set(now) | set(series):
            rate = max(0.0, now.get(key, 0.0) - then.get(key, 0.0)) / max(t1 - t0, 1e-9)
            series.setdefault(key, [0.0] * (len(times) - 1)).append(rate)
    return times, series


def _difference(before: Samples, after: Samples, name: str) -> Samples:
    """`after - before` for the series of `name` (a histogram's buckets over one interval)."""
    then = before.get(name, {})
    return {name: {labels: value - then.get(labels, 0.0) for labels, value in after.get(name, {}).items()}}


def draw(samples: list[tuple[float, Samples]], path: Path, title: str = "paystream") -> Path | None:
    """The six panels as one PNG at `path` (None with fewer than two samples)."""
    if len(samples) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tools.figures import save

    figure, axes = plt.subplots(2, 3, figsize=(16, 8))
    panels = [("input records/s", "paystream_input_records_total", "topic"),
              ("decisions/s by outcome", "paystream_decisions_total", "outcome"),
              ("alerts/s by rule", "paystream_alerts_total", "rule"),
              ("dead letters/s by reason", "paystream_dead_letters_total", "reason")]
    for axis, (heading, name, label) in zip(axes.flat, panels, strict=False):
        times, series = _rates(samples, name, label)
        for key, values in sorted(series.items()):
            axis.plot(times, values, label=key)
        axis.set_title(heading)
        if series:
            axis.legend(fontsize=7, loc="upper right")
    lag_axis, commit_axis = axes.flat[4], axes.flat[5]
    times = [t for t, _ in samples]
    lag_axis.plot(times, [total(s, "paystream_consumer_lag") for _, s in samples])
    lag_axis.set_title("consumer lag (records)")
    windows = [(t1, _difference(before, after, "paystream_commit_seconds_bucket"))
               for (_, before), (t1, after) in zip(samples, samples[1:], strict=False)]
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        values = [quantile(window, "paystream_commit_seconds", q) for _, window in windows]
        commit_axis.plot([t for t, _ in windows],
                         [1000 * v if v not in (None, float("inf")) else float("nan") for v in values], label=label)
    commit_axis.set_title("commit latency per interval (ms, bucket upper bounds)")
    commit_axis.legend(fontsize=7)
    for axis in axes.flat:
        axis.set_xlabel("seconds")
    return save(figure, path, f"{title}: the dashboard's panels from the engine's own /metrics", dpi=90)
