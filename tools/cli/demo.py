"""`paystream demo`: the main job, end to end, on this machine.

Starts a local Kafka, (re)creates the topics, generates realistic payments, runs the dataflow
until every payment and credit is committed, and prints what happened, checked against the
independent reference model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="local Kafka + topics + generated payments + the dataflow + a report")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--payments", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bad-ratio", type=float, default=0.01)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--keep-topics", action="store_true", help="do not wipe the topics of an earlier demo")
    parser.set_defaults(func=run)


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    from deploy.local import cluster
    from tools import dashboard, runner, status, topics
    from tools.cli.generate import produce_traffic, summary_table
    from tools.report import report

    settings = args.settings
    _step("local Kafka")
    started = cluster.up(1)
    print(f"broker at {started.bootstrap_servers}")
    _step("topics")
    if not args.keep_topics:
        existing = [t.name for t in topics.describe_topics(settings)]
        if existing:
            topics.delete_topics(settings, existing)
    names = topics.create_topics(settings)
    print(f"{len(names)} topics, {settings.kafka.partitions} partitions each")
    _step(f"generating {args.payments:,} payments over {args.accounts:,} accounts")
    summary = produce_traffic(settings, args.accounts, args.payments, args.seed, args.bad_ratio)
    print(summary_table(summary))
    if summary.delivery_errors:
        print(f"paystream: delivery errors while generating: {dict(summary.delivery_errors)}")
        return 1
    _step(f"running flows.payments:flow ({args.processes} process(es), epoch {settings.engine.epoch_interval_ms} ms)")
    procs = runner.FlowProcesses(settings, args.processes, log_dir=".paystream/logs")
    clock = time.monotonic()
    procs.start()
    port = procs.http_port(0)
    recorder = dashboard.Recorder("127.0.0.1", port, args.processes).start() if port else None
    try:
        runner.wait_until_caught_up(settings, args.payments, timeout=3600, procs=procs)
        seconds = time.monotonic() - clock
        if recorder is not None:
            recorder.sample()
            recorder.stop()
            _step(f"what the engine says about itself (http://127.0.0.1:{port}/metrics, /health/ready)")
            print(status.status_text("127.0.0.1", port, args.processes, interval=0)[0])
            picture = dashboard.draw(recorder.samples, Path(".paystream/dashboard.png"))
            if picture is not None:
                print(f"the dashboard's panels over the run: {picture}")
    finally:
        procs.stop()
    print(f"{args.payments:,} payments committed in {seconds:.1f} s = {args.payments / seconds:,.0f} payments/s "
          f"(process start, task fencing and restore included); worker logs in .paystream/logs/")
    _step("what happened")
    text, ok = report(settings)
    print(text)
    print("\nstop the broker with: paystream kafka down" if ok else "\nVIOLATIONS FOUND: see the table above")
    return 0 if ok else 1
