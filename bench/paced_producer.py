"""A paced producer for the latency phase: simple payments at a fixed rate, each with `ts` = now.

Runs as its own process so its CPU is neither the harness's nor the system's under test. Prints
the number of payments it sent as its last line.

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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
