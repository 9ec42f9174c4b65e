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
    """A fixed-width table of every row, the ratio column against the baseline; then paystream's
    recovery figures and the issue's targets, met or not."""
    rows = results["systems"]
    several = len(results["commit_ms"]) > 1
    base = baseline(rows)
    head = (f"{'system':<20} {'guarantee':<16} {'items/s':>9} {'steady/s':>9} {'start s':>7} {'CPU %':>6} "
            f"{'items/CPU-s':>11} {'RSS MiB':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}  status")
    lines = [head, "-" * len(head)]
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"{row_name(row, several):<20} {row['guarantee']:<16} {'':>90}  {row.get('status')}")
            continue
        latency = row.get("latency") or {}
        ratio = row["items_per_s"] / base["items_per_s"] if base else None
        check = ("ok" if row["missing"] == 0 and row["duplicates"] == 0
                 else f"missing {row['missing']}, duplicates {row['duplicates']}")
        if row.get("workload") == "realistic":
            check += " (realistic traffic)"
        lines.append(
            f"{row_name(row, several):<20} {row['guarantee']:<16} {row['items_per_s']:>9,.0f} "
            f"{_fmt(row['steady_items_per_s'], ',.0f'):>9} {_fmt(row['startup_s'], '.1f'):>7} "
            f"{row['cpu_percent']:>6.0f} {_fmt(row.get('items_per_cpu_s'), ',.0f'):>11} "
            f"{row['peak_rss_mib']:>8.0f} {_fmt(latency.get('p50_ms'), '.0f'):>8} "
            f"{_fmt(latency.get('p99_ms'), '.0f'):>8} "
            f"{_fmt(ratio, '.2f'):>6}  {check}")
    if base:
        lines.append(f"ratio = items/s relative to {base['system']}; "
                     "items/s counts from process start (startup included)")
    lines.append(results["note"])
    lines += recovery_lines(results.get("recovery"))
    lines += recovery_lines(results.get("recovery_disk"))
    checks = results.get("targets") or targets(results)
    if checks:
        lines += ["", "issue 7 targets:"]
        for check in checks:
            verdict = {True: "MET", False: "NOT MET", None: "n/a"}[check["met"]]
            lines.append(f"  [{verdict:>7}] {check['target']}: {check['figure']}")
    later = issue14_targets(results)
    if later:
        lines += ["", "issue 14 targets:"]
        for check in later:
            verdict = {True: "MET", False: "NOT MET", None: "n/a"}[check["met"]]
            lines.append(f"  [{verdict:>7}] {check['target']}: {check['figure']}")
    return "\n".join(lines)


def recovery_lines(recovery: dict[str, Any] | None) -> list[str]:
    """paystream's kill -9 recovery and restore figures, one line per case."""
    if not recovery:
        return []
    lines = ["", f"paystream recovery after kill -9, {recovery['accounts']:,} accounts of state "
                 f"(simple workload, 1 process, {recovery.get('store', 'memory')} store, "
                 f"commit {recovery['commit_ms']} ms, "
                 f"{recovery['trickle_per_s']:,} new payments/s): "
                 f"{recovery.get('status')}"]
    if recovery.get("state_load_s") is not None:
        lines.append(f"  state built: {recovery['accounts']:,} payments committed in {recovery['state_load_s']:.1f} s")
    for case in recovery.get("cases") or []:
        lines.append(
            f"  {'with' if case['with_snapshot'] else 'without':>7} snapshot cache: kill → first commit "
            f"{_fmt(case['kill_to_first_commit_s'], '.2f')} s, → read_committed unblocked on every partition "
            f"{_fmt(case.get('kill_to_readers_unblocked_s'), '.2f')} s, → first new read_committed output "
            f"{_fmt(case['kill_to_first_visible_s'], '.2f')} s, "
            f"→ all {case['partitions_with_new_output']} partitions "
            f"{_fmt(case['kill_to_all_partitions_visible_s'], '.2f')} s; "
            f"restored {case['restored_records']:,} changelog records in {case['restore_s']:.2f} s "
            f"({_fmt(case['restore_keys_per_s'], ',.0f')} keys/s), "
            f"{case.get('snapshot_records', case.get('snapshot_accounts', 0)):,} records from snapshots, "
            f"peak RSS {case['peak_rss_mib']:.0f} MiB")
    return lines


def _row(results: dict[str, Any], system: str) -> dict[str, Any] | None:
    """The ok row of `system` at the 1 s commit interval (or the first interval measured)."""
    interval = 1000 if 1000 in results["commit_ms"] else results["commit_ms"][0]
    for row in results["systems"]:
        if row["system"] == system and row["commit_ms"] == interval and row.get("status") == "ok":
            return row
    return None


def _ratio_target(results: dict[str, Any], system: str, peer: str, at_least: float, text: str) -> dict[str, Any] | None:
    ours, theirs = _row(results, system), _row(results, peer)
    if ours is None or theirs is None:
        return None
    ratio = ours["items_per_s"] / theirs["items_per_s"]
    steady = (ours["steady_items_per_s"] / theirs["steady_items_per_s"]
              if ours.get("steady_items_per_s") and theirs.get("steady_items_per_s") else None)
    figure = (f"{ratio:.2f}× ({ours['items_per_s']:,.0f} vs {theirs['items_per_s']:,.0f} items/s"
              + (f"; steady-state {steady:.2f}×" if steady else "") + ")")
    return {"target": text, "figure": figure, "met": ratio >= at_least, "value": ratio}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that this run measured, each with its figure and whether it is met."""
    checks = [
        _ratio_target(results, "paystream", "kstreams-1", 1.0, "simple, 1 process ≥ 1.0× Kafka Streams (1 thread)"),
        _ratio_target(results, "paystream", "quix", 2.5, "simple, 1 process ≥ 2.5× Quix Streams"),
        _ratio_target(results, "paystream", "raw-eos", 0.4, "simple, 1 process ≥ 40% of the raw transactional loop"),
        _ratio_target(results, "paystream-full", "quix", 1.5, "realistic flow, 7 rules ≥ 1.5× Quix Streams (simple)"),
    ]
    ours = _row(results, "paystream")
    p99 = ((ours or {}).get("latency") or {}).get("p99_ms")
    if ours is not None and p99 is not None:
        bound = ours["commit_ms"] + 100
        checks.append({"target": f"end-to-end p99 ≤ commit interval + 100 ms = {bound} ms at half load",
                       "figure": f"p99 {p99:.0f} ms at {ours['latency']['rate']:,.0f}/s",
                       "met": p99 <= bound, "value": p99})
    two = _row(results, "paystream-2p")
    if ours is not None and two is not None and ours.get("items_per_cpu_s") and two.get("items_per_cpu_s"):
        whole = two["items_per_cpu_s"] / ours["items_per_cpu_s"]
        steady = (two["steady_items_per_cpu_s"] / ours["steady_items_per_cpu_s"]
                  if two.get("steady_items_per_cpu_s") and ours.get("steady_items_per_cpu_s") else None)
        share = steady if steady is not None else whole
        figure = (f"steady state (10%→90% of the decisions) {steady:.0%} ({two['steady_items_per_cpu_s']:,.0f} vs "
                  f"{ours['steady_items_per_cpu_s']:,.0f} records/CPU-s); " if steady is not None else "")
        figure += (f"whole run incl. startup {whole:.0%} "
                   f"({two['items_per_cpu_s']:,.0f} vs {ours['items_per_cpu_s']:,.0f}); "
                   f"wall-clock {two['items_per_s'] / ours['items_per_s']:.2f}×")
        checks.append({"target": "2 processes: records per app CPU-second ≥ 85% of 1 process's",
                       "figure": figure, "met": share >= 0.85, "value": share})
    recovery = results.get("recovery") or {}
    cases = {case["with_snapshot"]: case for case in recovery.get("cases") or []}
    if cases:
        worst = max((c["kill_to_first_commit_s"] if c["kill_to_first_commit_s"] is not None else float("inf"))
                    for c in cases.values())
        figure = "; ".join(f"{'with' if snap else 'without'} snapshots {_fmt(c['kill_to_first_commit_s'], '.2f')} s"
                           for snap, c in sorted(cases.items(), reverse=True))
        checks.append({"target": f"kill -9 → new committed progress ≤ 3 s with {recovery['accounts']:,} accounts",
                       "figure": figure, "met": worst <= 3.0, "value": worst})
        blocked = max((c.get("kill_to_readers_unblocked_s") if c.get("kill_to_readers_unblocked_s") is not None
                       else float("inf"))
                      for c in cases.values())
        checks.append({"target": "read_committed readers not blocked by the dead process's open transaction "
                                 "(every decisions partition's LSO past it within 3 s of the kill; peers: 45–68 s)",
                       "figure": "; ".join(f"{'with' if snap else 'without'} snapshots: unblocked "
                                           f"{_fmt(c.get('kill_to_readers_unblocked_s'), '.2f')} s, "
                                           "new output on all partitions "
                                           f"{_fmt(c['kill_to_all_partitions_visible_s'], '.2f')} s"
                                           for snap, c in sorted(cases.items(), reverse=True)),
                       "met": blocked <= 3.0, "value": blocked})
        full = cases.get(False)
        if full is not None and full.get("restore_keys_per_s"):
            checks.append({"target": "changelog restore ≥ 600,000 keys/s with ≤ 1 GiB RSS",
                           "figure": f"{full['restore_keys_per_s']:,.0f} keys/s "
                                     f"({full['restored_records']:,} records in "
                                     f"{full['restore_s']:.2f} s), peak RSS {full['peak_rss_mib']:.0f} MiB",
                           "met": full["restore_keys_per_s"] >= 600_000 and full["peak_rss_mib"] <= 1024,
                           "value": full["restore_keys_per_s"]})
    return [check for check in checks if check is not None]


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

    from tools.figures import save

    rows = [row for row in results["systems"] if row.get("status") == "ok"]
    several = len(results["commit_ms"]) > 1
    base = baseline(rows)
    figure, (bars, cdfs) = plt.subplots(1, 2, figsize=(14, 5.5))
    names = [row_name(row, several) for row in rows]
    rates = [row["items_per_s"] for row in rows]
    drawn = bars.bar(range(len(rows)), rates,
                     color=["#d62728" if row["system"].startswith("paystream") else "#1f77b4" for row in rows])
    for bar, row in zip(drawn, rows, strict=True):
        note = f"{row['items_per_s'] / base['items_per_s']:.2f}×" if base else ""
        bars.annotate(f"{row['items_per_s']:,.0f}/s\n{note}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=8)
    bars.set_xticks(range(len(rows)), [f"{n}\n{row['guarantee']}" for n, row in zip(names, rows, strict=True)],
                    rotation=30, ha="right", fontsize=8)
    bars.set_ylabel("payments/s (process start → N committed decisions)")
    ratio_to = f"; ratio to {base['system']}" if base else ""
    bars.set_title(f"throughput, {results['payments']:,} payments, {results['accounts']:,} accounts{ratio_to}",
                   fontsize=10)
    if rates:
        bars.set_ylim(0, max(rates) * 1.25)
    for name, row in zip(names, rows, strict=True):
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
    return save(figure, path, f"paystream bench {results['run_id']} — {results['note']}", dpi=110, title_size=8)


def issue14_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14's targets (the realistic flow at speed, in less memory, with latency inside one
    epoch) that this run measured; a target it did not measure says so (`met` None)."""
    checks: list[dict[str, Any]] = []
    full, simple, kstreams = _row(results, "paystream-full"), _row(results, "paystream"), _row(results, "kstreams-1")
    if full is not None:
        steady = full.get("steady_items_per_s") or full["items_per_s"]
        beats = kstreams is None or steady > (kstreams.get("steady_items_per_s") or kstreams["items_per_s"])
        checks.append({"target": "realistic flow ≥ 100,000 payments/s steady on 1 process, above Kafka Streams "
                                 "on the one-rule variant",
                       "figure": f"{steady:,.0f}/s steady" + (
                           f" (Kafka Streams 1 thread, one rule: {kstreams.get('steady_items_per_s') or 0:,.0f}/s)"
                           if kstreams is not None else ""),
                       "met": steady >= 100_000 and beats, "value": steady})
        if results.get("accounts") == 100_000:
            checks.append({"target": "realistic flow RSS ≤ 300 MiB at 100,000 accounts",
                           "figure": f"{full['peak_rss_mib']:,.0f} MiB", "met": full["peak_rss_mib"] <= 300,
                           "value": full["peak_rss_mib"]})
    for name, row in (("simple", simple), ("realistic", full)):
        latency = (row or {}).get("latency") or {}
        if row is not None and latency.get("p99_ms") is not None:
            bound = row["commit_ms"] + 100
            checks.append({"target": f"{name} flow: end-to-end p99 ≤ epoch + 100 ms = {bound} ms at half its rate",
                           "figure": f"p50 {latency['p50_ms']:,.0f} ms, p99 {latency['p99_ms']:,.0f} ms at "
                                     f"{latency['rate']:,.0f}/s",
                           "met": latency["p99_ms"] <= bound, "value": latency["p99_ms"]})
    checks.append({"target": "at one fixed rate every system sustains, paystream's p50 and p99 ≤ every peer's",
                   "figure": "not measured: each system's latency is taken at half its own rate", "met": None,
                   "value": None})
    cases = {case["with_snapshot"]: case for case in (results.get("recovery") or {}).get("cases") or []}
    if False in cases and cases[False].get("restore_keys_per_s"):
        rate = cases[False]["restore_keys_per_s"]
        checks.append({"target": "full changelog restore ≥ 1,000,000 keys/s", "figure": f"{rate:,.0f} keys/s",
                       "met": rate >= 1_000_000, "value": rate})
    if cases:
        worst = max((c["kill_to_first_commit_s"] if c["kill_to_first_commit_s"] is not None else float("inf"))
                    for c in cases.values())
        checks.append({"target": f"kill -9 → new committed progress ≤ 1.5 s with "
                                 f"{(results.get('recovery') or {}).get('accounts', 0):,} accounts",
                       "figure": "; ".join(f"{'with' if snap else 'without'} snapshots "
                                           f"{_fmt(c['kill_to_first_commit_s'], '.2f')} s"
                                           for snap, c in sorted(cases.items(), reverse=True)),
                       "met": worst <= 1.5, "value": worst})
    two = _row(results, "paystream-2p")
    if simple is not None and two is not None and simple.get("items_per_cpu_s") and two.get("items_per_cpu_s"):
        one_rate = simple.get("steady_items_per_cpu_s") or simple["items_per_cpu_s"]
        share = (two.get("steady_items_per_cpu_s") or two["items_per_cpu_s"]) / one_rate
        checks.append({"target": "2 processes ≥ 90% of 1 process's records per CPU-second",
                       "figure": f"{share:.0%}", "met": share >= 0.9, "value": share})
    return checks
