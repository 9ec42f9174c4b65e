"""`paystream chaos`: kill workers (and the partition-leader broker) mid-run, then audit.

Runs on fresh, unique topics and app id, so it never touches another run's data. Exits 0 iff
the independent auditor (`paystream verify`) finds every invariant intact. By default the kills
fire at committed progress, spread evenly over the payments (`--trigger progress`); the random
waits of `--trigger time --wait MIN MAX` remain for runs that want kills at arbitrary moments.
`--rescale 1,2,3,2,1` changes the number of Bytewax processes over the run: it starts with the
first count and the restarts after the kills move through the list evenly.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_WAIT = (0.3, 3.0)  # --trigger time: seconds
TRIGGERS = ("progress", "time")  # tools.chaos.TRIGGERS, not imported: parsing the command line stays light


def process_counts(text: str) -> tuple[int, ...]:
    """`1,2,3,2,1` -> (1, 2, 3, 2, 1): positive whole numbers, comma-separated."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError(f"expected comma-separated process counts >= 1 (e.g. 1,2,3,2,1), got {text!r}")
    return counts


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chaos", help="kill -9 workers (and brokers) mid-run, then verify exactly-once",
        description="Produce --payments of generated traffic to fresh topics, run the payment flow, kill -9 a "
                    "random worker --kills times (restarting it each time) with the commit-path fault points "
                    "armed, optionally kill the broker leading payments[0] --broker-kills times (needs "
                    "--brokers 3), wait until everything is committed and audit the outputs. With --trigger "
                    "progress (the default) kill k fires once the group has committed k/(kills+1) of the "
                    "payments, and the payments are let into the topic step by step (until a kill fires, "
                    "those up to halfway to the next one), so every kill lands at its point of the run while "
                    "work remains; with --trigger time each worker kill follows a random --wait. "
                    "Exit code 0 iff the audit is green.")
    parser.add_argument("--kills", type=int, default=20, help="worker kills, each of a random process (default 20)")
    parser.add_argument("--payments", type=int, default=50_000, help="payments to produce (default 50,000)")
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (default 10,000)")
    parser.add_argument("--processes", type=int, default=None, help="Bytewax processes (default 1)")
    parser.add_argument("--rescale", type=process_counts, default=None, metavar="N,N,...",
                        help="process counts to move through over the run, e.g. 1,2,3,2,1: it starts with the "
                             "first, and the restarts after the kills move through the list evenly (each count for "
                             "about 1/len of the kills); a restart with a new count kills every process and starts "
                             "a fresh cluster of that size (needs --kills >= len - 1)")
    parser.add_argument("--partitions", type=int, default=None, help="partitions per topic (default: the settings')")
    parser.add_argument("--brokers", type=int, choices=(1, 3), default=1,
                        help="1: use the running cluster of the settings; "
                             "3: a local 3-broker cluster (started if none runs)")
    parser.add_argument("--broker-kills", type=int, default=0,
                        help="kills of the payments[0] leader broker (needs --brokers 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the traffic and of the kill schedule (default 7)")
    parser.add_argument("--fault-chance", type=float, default=None, metavar="P",
                        help="probability of each commit-path fault point per commit "
                             "(default: mid 0.01, before/after 0.005)")
    parser.add_argument("--trigger", choices=TRIGGERS, default="progress",
                        help="progress: kills at evenly spread counts of committed payments (default); "
                             "time: after a random --wait")
    parser.add_argument("--wait", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="--trigger time: random seconds between new committed progress after a restart and "
                             f"the next kill (default {DEFAULT_WAIT[0]:g} {DEFAULT_WAIT[1]:g})")
    parser.add_argument("--report", metavar="FILE.json", help="write the JSON report to FILE")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the run's topics afterwards")
    parser.set_defaults(func=handler)


def _bootstrap_for_brokers(args: argparse.Namespace) -> str | None:
    """The bootstrap servers of the cluster to use; raises ClusterError with a clear message."""
    if args.brokers == 1:
        return None
    from deploy.local import cluster

    running = [row for row in cluster.status() if row.alive]
    if running and len(cluster.status()) != 3:
        raise cluster.ClusterError(
            f"a {len(cluster.status())}-broker local Kafka cluster is running; --brokers 3 needs a 3-broker one: "
            "stop it with `paystream kafka down` first (other runs on it will lose their data)")
    return cluster.up(3).bootstrap_servers


def handler(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from deploy.local.cluster import ClusterError
    from paystream import faults
    from tools import chaos
    from tools.topics import TopicError, delete_topics, topic_specs

    if args.broker_kills and args.brokers != 3:
        print("paystream chaos: --broker-kills needs --brokers 3 (replication factor 3, min.insync 2)", file=sys.stderr)
        return 2
    if args.rescale is not None and args.processes is not None and args.processes != args.rescale[0]:
        print(f"paystream chaos: --processes {args.processes} contradicts --rescale, which starts with "
              f"{args.rescale[0]} (leave --processes out)", file=sys.stderr)
        return 2
    processes = args.rescale[0] if args.rescale else (1 if args.processes is None else args.processes)
    if args.kills < 0 or args.payments < 1 or processes < 1 or args.accounts < 2:
        print("paystream chaos: need --kills >= 0, --payments >= 1, --processes >= 1, --accounts >= 2", file=sys.stderr)
        return 2
    if args.wait is not None and args.trigger != "time":
        print("paystream chaos: --wait applies to --trigger time only (progress kills wait for committed payments)",
              file=sys.stderr)
        return 2
    wait = tuple(args.wait) if args.wait is not None else DEFAULT_WAIT
    chances = dict(chaos.DEFAULT_FAULT_CHANCES) if args.fault_chance is None else \
        {point: args.fault_chance for point in faults.POINTS}
    plan = chaos.ChaosPlan(kills=args.kills, payments=args.payments, accounts=args.accounts, processes=processes,
                           broker_kills=args.broker_kills, brokers=args.brokers, seed=args.seed, fault_chances=chances,
                           trigger=args.trigger, wait_s=(min(wait), max(wait)),
                           process_schedule=args.rescale or ())
    if plan.problems():  # before a three-broker cluster is started for nothing
        print(f"paystream chaos: {'; '.join(plan.problems())}", file=sys.stderr)
        return 2
    try:
        bootstrap = _bootstrap_for_brokers(args)
    except ClusterError as error:
        print(f"paystream chaos: {error}", file=sys.stderr)
        return 2
    settings = chaos.fresh_settings(args.settings, bootstrap_servers=bootstrap, partitions=args.partitions)
    log_dir = f"{settings.engine.snapshot_dir.rsplit('/', 1)[0]}/logs"
    try:
        result = chaos.ChaosRun(settings, plan, log_dir, say=lambda line: print(line, flush=True), progress=True).run()
    except (chaos.ChaosError, KafkaException, TopicError, ClusterError) as error:
        print(f"paystream chaos: {error}", file=sys.stderr)
        return 2
    finally:
        if not args.keep_topics:
            try:
                delete_topics(settings, [spec.name for spec in topic_specs(settings)], wait=False)
            except (KafkaException, TopicError):
                pass  # a cluster that is gone has no topics to clean up
    print()
    print(result.verify_table)
    for line in chaos.summary_lines(result.report):
        if line:
            print(line)
    print(f"worker logs in {log_dir}")
    if args.report:
        with open(args.report, "w") as out:
            json.dump(result.report, out, indent=2)
        print(f"report written to {args.report}")
    return 0 if result.ok else 1
