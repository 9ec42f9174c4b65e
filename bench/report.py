"""The results of a bench run as a terminal table, a JSON file and a PNG plot.

`bench/results/<run_id>.json` and `latest.json` hold the same document; `latest.png` shows the
throughput bars (annotated with the ratio to paystream, or to the exactly-once raw loop when
paystream did not run) beside the end-to-end latency CDFs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def baseline(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row ratios are taken against: paystream if it ran, else the exactly-once raw loop."""
    for name in ("paystream", "raw-eos"):
        for row in rows:
            if row["system"] == name and row.get("status") == "ok":
                return row
    return None


def row_name(row: dict[str, Any], several_intervals: bool) -> str:
    return f"{row['system']}@{row['commit_ms']}ms" if several_intervals else row["system"]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[str, Any]) -> str:
    """A fixed-width table of every row, the ratio column against the baseline."""
    rows = results["systems"]
    several = len(results["commit_ms"]) > 1
    base = baseline(rows)
    head = f"{'system':<20} {'guarantee':<16} {'items/s':>9} {'steady/s':>9} {'start s':>7} {'CPU %':>6} {'RSS MiB':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}  status"
    lines = [head, "-" * len(head)]
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"{row_name(row, several):<20} {row['guarantee']:<16} {'':>78}  {row.get('status')}")
            continue
        latency = row.get("latency") or {}
        ratio = row["items_per_s"] / base["items_per_s"] if base else None
        check = "ok" if row["missing"] == 0 and row["duplicates"] == 0 else f"missing {row['missing']}, duplicates {row['duplicates']}"
        lines.append(
            f"{row_name(row, several):<20} {row['guarantee']:<16} {row['items_per_s']:>9,.0f} "
            f"{_fmt(row['steady_items_per_s'], ',.0f'):>9} {_fmt(row['startup_s'], '.1f'):>7} {row['cpu_percent']:>6.0f} "
            f"{row['peak_rss_mib']:>8.0f} {_fmt(latency.get('p50_ms'), '.0f'):>8} {_fmt(latency.get('p99_ms'), '.0f'):>8} "
            f"{_fmt(ratio, '.2f'):>6}  {check}")
    if base:
        lines.append(f"ratio = items/s relative to {base['system']}; items/s counts from process start (startup included)")
    lines.append(results["note"])
    return "\n".join(lines)


def write_json(results: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Write `<run_id>.json` and `latest.json`; returns the former."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    path = directory / f"{results['run_id']}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def plot(results: dict[str, Any], path: Path = RESULTS / "latest.png") -> Path:
    """Throughput bars with ratios, and latency CDFs, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in results["systems"] if row.get("status") == "ok"]
    several = len(results["commit_ms"]) > 1
    base = baseline(rows)
    figure, (bars, cdfs) = plt.subplots(1, 2, figsize=(14, 5.5))
    names = [row_name(row, several) for row in rows]
    rates = [row["items_per_s"] for row in rows]
    drawn = bars.bar(range(len(rows)), rates, color=["#d62728" if row["system"] == "paystream" else "#1f77b4" for row in rows])
    for bar, row in zip(drawn, rows):
        note = f"{row['items_per_s'] / base['items_per_s']:.2f}×" if base else ""
        bars.annotate(f"{row['items_per_s']:,.0f}/s\n{note}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=8)
    bars.set_xticks(range(len(rows)), [f"{n}\n{row['guarantee']}" for n, row in zip(names, rows)], rotation=30, ha="right", fontsize=8)
    bars.set_ylabel("payments/s (process start → N committed decisions)")
    ratio_to = f"; ratio to {base['system']}" if base else ""
    bars.set_title(f"throughput, {results['payments']:,} payments, {results['accounts']:,} accounts{ratio_to}", fontsize=10)
    if rates:
        bars.set_ylim(0, max(rates) * 1.25)
    for name, row in zip(names, rows):
        latency = row.get("latency") or {}
        cdf = latency.get("cdf_ms") or []
        if cdf:
            from bench.measure import CDF_POINTS

            cdfs.plot([max(value, 0.1) for value in cdf], [p / 100 for p in CDF_POINTS[:len(cdf)]],
                      label=f"{name} @ {latency['rate']:,.0f}/s")
    cdfs.set_xscale("log")
    cdfs.set_xlabel("end-to-end latency, ms (produce → visible to read_committed)")
    cdfs.set_ylabel("fraction of decisions")
    cdfs.set_title("latency CDF at half of each system's own throughput", fontsize=10)
    cdfs.grid(True, which="both", alpha=0.3)
    if any((row.get("latency") or {}).get("cdf_ms") for row in rows):
        cdfs.legend(fontsize=8, loc="lower right")
    figure.suptitle(f"paystream bench {results['run_id']} — {results['note']}", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
