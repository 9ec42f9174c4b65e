"""The Quix Streams 3.28.1 peer: the simple payment variant with exactly-once and RocksDB state.

Runs in its own virtual environment (bench/.venvs/quix, pinned by bench/requirements-quix.txt)
because quixstreams 3.28.1 needs confluent-kafka<2.13. Imports only `bench.simple_rule` from
the project, which is stdlib-only.

    bench/.venvs/quix/bin/python -m bench.quix_runner --bootstrap H:P --input P \
        --decisions D --balances B --group G --commit-ms 1000 --state-dir DIR
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from quixstreams import Application, State

from bench.simple_rule import OPENING_BALANCE, decide, decision_record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("bootstrap", "input", "decisions", "balances", "group", "state-dir"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--commit-ms", type=int, default=1_000)
    return parser.parse_args(argv)


def decide_payment(payment: dict[str, Any], state: State) -> dict[str, Any]:
    """Decide one payment against the account's balance kept in Quix state."""
    balance = state.get("balance", OPENING_BALANCE)
    decision, reason, balance = decide(balance, payment["amount"])
    state.set("balance", balance)
    return {
        "decision": decision_record(payment, decision, reason, balance),
        "balance": {"account": payment["account"], "balance": balance},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_ms / 1000,
        processing_guarantee="exactly-once",
        state_dir=args.state_dir,
        # the same librdkafka tweak every Python peer gets (KAFKA.md: it doubles Python consumers)
        consumer_extra_config={"fetch.queue.backoff.ms": 0},
        loglevel="WARNING",
    )
    payments = app.topic(args.input, key_deserializer="str", value_deserializer="json")
    decisions = app.topic(args.decisions, key_serializer="str", value_serializer="json")
    balances = app.topic(args.balances, key_serializer="str", value_serializer="json")
    outcomes = app.dataframe(payments).apply(decide_payment, stateful=True)
    outcomes.apply(lambda outcome: outcome["decision"]).to_topic(decisions)
    outcomes.apply(lambda outcome: outcome["balance"]).to_topic(balances)
    print("RUNNING", flush=True)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
