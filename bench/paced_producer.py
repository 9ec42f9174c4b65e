"""A paced producer for the latency phase: payments at a fixed rate, each with `ts` = now.

Simple payments by default; with `--realistic`, the generator's wire-contract commands (every
command type and rule scenario, re-sent duplicates included, no malformed ones) for the accounts
whose customer rows the harness loaded, each stamped with `ts` = now as it is sent.

Runs as its own process so its CPU is neither the harness's nor the system's under test. Prints
the number of decisions it owes as its last line: every payment sent (simple), every distinct
payment id sent (realistic: a re-send within the horizon is a duplicate, decided once).

    python -m bench.paced_producer --bootstrap H:P --topic T --rate 50000 --seconds 10 --accounts 10000
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from confluent_kafka import Producer

from paystream.clients import producer_config
from paystream.settings import load
from tools.traffic import account_id

TICK_S = 0.002


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True, help="payments per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--prefix", default="L", help="payment_id prefix")
    parser.add_argument("--realistic", action="store_true", help="the generator's wire-contract commands")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.realistic:
        return _realistic(args)

    producer = Producer(producer_config(load(kafka={"bootstrap_servers": args.bootstrap})))
    rng = random.Random(7)
    keys = [account_id(n) for n in range(1, args.accounts + 1)]
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < args.seconds:
        due = int(args.rate * elapsed)
        now_ms = int(time.time() * 1000)
        while sent < due:
            account = keys[rng.randrange(args.accounts)]
            value = (f'{{"v":1,"type":"payment","payment_id":"{args.prefix}{sent:09d}","account":"{account}",'
                     f'"amount":{rng.randrange(1, 50_001)},"currency":"EUR","ts":{now_ms}}}')
            try:
                producer.produce(args.topic, value.encode(), account.encode())
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(TICK_S)
    producer.flush(60)
    print(sent, flush=True)
    return 0


def _realistic(args: argparse.Namespace) -> int:
    """The generator's commands, generated before the clock starts, each re-stamped `ts` = now."""
    import msgspec

    from tools.traffic import Traffic

    total = int(args.rate * args.seconds) + 1
    commands = [(key, msgspec.json.decode(value)) for kind, key, value in
                Traffic(args.accounts, total, args.seed, bad_ratio=0.0, start_ts=int(time.time() * 1000))
                if kind == "payments" and key is not None and value is not None]
    encode = msgspec.json.Encoder().encode
    producer = Producer(producer_config(load(kafka={"bootstrap_servers": args.bootstrap})))
    owed: set[tuple[bytes, str]] = set()
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < args.seconds and sent < len(commands):
        due = min(int(args.rate * elapsed), len(commands))
        now_ms = int(time.time() * 1000)
        while sent < due:
            key, body = commands[sent]
            body["ts"] = now_ms
            try:
                producer.produce(args.topic, encode(body), key)
            except BufferError:
                producer.poll(0.01)
                continue
            owed.add((key, body["payment_id"]))
            sent += 1
        producer.poll(0)
        time.sleep(TICK_S)
    producer.flush(60)
    print(len(owed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
