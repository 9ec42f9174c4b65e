"""The Quix Streams 3.28.1 peer: the simple payment variant with exactly-once and RocksDB state.

Runs in its own virtual environment (bench/.venvs/quix, pinned by bench/requirements-quix.txt)
because quixstreams 3.28.1 needs confluent-kafka<2.13. Imports only `bench.simple_rule` from
the project, which is stdlib-only.

    bench/.venvs/quix/bin/python -m bench.quix_runner --bootstrap H:P --input P \
        --decisions D --balances B --group G --commit-ms 1000 --state-dir DIR [--topology linear]

`--topology linear` (the default, the peer the benchmark reports as `quix`) is one linear
pipeline: a stateful `apply(..., expand=True)` turns each payment into its two output records
and a single `to_topic` with a topic callable sends each to `decisions` or `balances`.
`--topology branched` (the `quix-branched` row, kept to measure the difference) is the earlier
form: one stateful `apply` whose result branches into two `apply(...).to_topic(...)`; Quix
clones the value at every branch point with pickle (its branching guide, "Data Cloning"),
which the linear form does not pay. Both write the same records to the same topics.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from quixstreams import Application, State
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import Topic

from bench.simple_rule import OPENING_BALANCE, decide, decision_record

Outcome = tuple[dict[str, Any], dict[str, Any]]  # (decision, new balance) of one payment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("bootstrap", "input", "decisions", "balances", "group", "state-dir"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--commit-ms", type=int, default=1_000)
    parser.add_argument("--topology", choices=("linear", "branched"), default="linear")
    return parser.parse_args(argv)


def decide_payment(payment: dict[str, Any], state: State) -> Outcome:
    """Decide one payment against the account's balance kept in Quix state (keyed by account)."""
    balance = state.get("balance", OPENING_BALANCE)
    decision, reason, balance = decide(balance, payment["amount"])
    state.set("balance", balance)
    return decision_record(payment, decision, reason, balance), {"account": payment["account"], "balance": balance}


def build(app: Application, args: argparse.Namespace) -> StreamingDataFrame:
    """The payments dataframe with its outputs, in the shape `args.topology` names."""
    payments = app.topic(args.input, key_deserializer="str", value_deserializer="json")
    decisions = app.topic(args.decisions, key_serializer="str", value_serializer="json")
    balances = app.topic(args.balances, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(payments)
    if args.topology == "branched":
        outcomes = sdf.apply(decide_payment, stateful=True)
        outcomes.apply(lambda outcome: outcome[0]).to_topic(decisions)
        outcomes.apply(lambda outcome: outcome[1]).to_topic(balances)
        return sdf

    def destination(value: dict[str, Any], _key: Any, _timestamp: int, _headers: Any) -> Topic:
        return decisions if "decision" in value else balances  # a balance record has no "decision"

    # no branch, so no clone: each payment's two records go on as two values to one sink
    return sdf.apply(decide_payment, stateful=True, expand=True).to_topic(destination)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",  # the inputs are preloaded before the app starts
        commit_interval=args.commit_ms / 1000,  # the run's interval, as for every system
        processing_guarantee="exactly-once",
        state_dir=args.state_dir,
        # the same librdkafka tweak every Python peer gets (paystream/clients.py: Quix's own
        # default is 100 ms, librdkafka's 1,000 ms; 0 doubles a Python consumer's throughput)
        consumer_extra_config={"fetch.queue.backoff.ms": 0},
        loglevel="WARNING",
    )
    build(app, args)
    print("RUNNING", flush=True)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
