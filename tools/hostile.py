"""Hostile `payments` records: what an attacker, a broken producer or a bad migration puts on the
command topic. Every one is invalid and must land in `payments-dlq` exactly once with a reason,
without stopping its partition or the valid traffic around it.

Pure and deterministic (a seed), like `tools.traffic`. Each record is `(kind, key, value,
headers, timestamp)`; `kind` names the attack (`KINDS`), the timestamp is the record's Kafka
timestamp (event time is bounded by it).

>>> records = list(hostile_records(300, accounts=["ACC1", "ACC2"], seed=3, now_ms=1_800_000_000_000))
>>> len(records), len({kind for kind, *_ in records}) == len(KINDS)
(300, True)
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from typing import Any, Final

Headers = list[tuple[str, bytes]]
Hostile = tuple[str, bytes | None, bytes | None, Headers, int]

KINDS: Final = (
    "truncated", "oversized", "deep_array", "deep_object", "wrong_type", "float_amount", "huge_amount",
    "negative_zero", "nan_amount", "utf16", "latin1", "bom", "confusable_account", "null_key", "null_value",
    "empty_value", "far_future_ts", "far_past_ts", "negative_ts", "huge_ts", "junk_only", "array_body",
    "unknown_type", "control_chars_id", "overlong_id",
)
OVERSIZED_BYTES: Final = 300_000  # well above any real command, well below the broker's 1 MiB
DAY_MS: Final = 86_400_000


def _command(account: str, payment_id: str, ts: int) -> dict[str, Any]:
    return {"v": 1, "type": "authorize", "payment_id": payment_id, "account": account, "amount": 1_234,
            "currency": "EUR", "ts": ts, "country": "FR"}


def _junk_headers(rng: random.Random) -> Headers:
    """Headers full of junk: the engine must not care (and must not copy them blindly)."""
    return [(rng.choice(("x-junk", "dlq.reason", "", "\u202etxt")), bytes(rng.randrange(256) for _ in range(20)))
            for _ in range(rng.randrange(0, 4))]


def hostile_records(count: int, accounts: Sequence[str], seed: int, now_ms: int,
                    oversized_every: int = 1) -> Iterator[Hostile]:
    """`count` hostile records over `accounts`, every kind in turn, timestamped around `now_ms`;
    only one in `oversized_every` of the oversized turns is oversized (they weigh 300 kB each),
    the others are truncated."""
    rng = random.Random(seed)
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        if kind == "oversized" and (n // len(KINDS)) % oversized_every:
            kind = "truncated"
        account = accounts[rng.randrange(len(accounts))]
        key: bytes | None = account.encode()
        ts = now_ms - rng.randrange(60_000)
        body = _command(account, f"H{seed:04x}-{n:08d}", ts)
        value: bytes | None = None
        text = json.dumps(body)
        if kind == "truncated":
            value = text.encode()[: rng.randrange(1, len(text) - 1)]
        elif kind == "oversized":
            value = b'{"v":1,"type":"authorize","junk":"' + b"A" * OVERSIZED_BYTES  # unterminated, and huge
        elif kind == "deep_array":
            depth = rng.choice((64, 1_000, 20_000))
            value = b"[" * depth + b"]" * depth
        elif kind == "deep_object":
            nested: Any = 1
            for _ in range(rng.choice((50, 500))):
                nested = {"a": nested}
            body["amount"] = nested
            value = json.dumps(body).encode()
        elif kind == "wrong_type":
            field = rng.choice(("amount", "ts", "v", "payment_id", "currency", "account"))
            body[field] = rng.choice(([1], {"x": 1}, True, None, 12.5, 7 if field in ("payment_id", "currency",
                                                                                    "account") else "12"))
            value = json.dumps(body).encode()
        elif kind == "float_amount":
            value = text.replace('"amount": 1234', '"amount": 12.34').encode()
        elif kind == "huge_amount":
            value = text.replace('"amount": 1234', f'"amount": {rng.choice(("1" + "0" * 30, "18446744073709551617"))}'
                                 ).encode()
        elif kind == "negative_zero":
            value = text.replace('"amount": 1234', '"amount": -0').encode()
        elif kind == "nan_amount":
            value = text.replace('"amount": 1234', f'"amount": {rng.choice(("NaN", "Infinity", "-Infinity"))}').encode()
        elif kind == "utf16":
            value = text.encode("utf-16")
        elif kind == "latin1":
            value = text.replace(body["payment_id"], body["payment_id"] + "\u00e9").encode("latin-1")
        elif kind == "bom":
            value = b"\xef\xbb\xbf" + text.encode()
        elif kind == "confusable_account":  # the key says one account, the body a look-alike
            body["account"] = account.replace("0", "\uff10").replace("A", "\u0410")
            value = json.dumps(body, ensure_ascii=False).encode()
            if body["account"] == account:
                body["account"] = account + "\u200b"  # zero-width space
                value = json.dumps(body, ensure_ascii=False).encode()
        elif kind == "null_key":
            key, value = None, text.encode()
        elif kind == "null_value":
            value = None
        elif kind == "empty_value":
            value = b""
        elif kind == "far_future_ts":
            body["ts"] = ts + rng.choice((DAY_MS, 365 * DAY_MS, 10**12))
            value = json.dumps(body).encode()
        elif kind == "far_past_ts":
            body["ts"] = max(0, ts - rng.choice((2 * DAY_MS, 365 * DAY_MS, ts)))
            value = json.dumps(body).encode()
        elif kind == "negative_ts":
            body["ts"] = -rng.randrange(1, 10**6)
            value = json.dumps(body).encode()
        elif kind == "huge_ts":
            body["ts"] = rng.choice((2**63, 2**64 + 5, 10**40))
            value = json.dumps(body).encode()
        elif kind == "junk_only":
            value = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif kind == "array_body":
            value = json.dumps([body]).encode()
        elif kind == "unknown_type":
            body["type"] = rng.choice(("payout", "AUTHORIZE", "authorize\u0000", "chargeback"))
            value = json.dumps(body).encode()
        elif kind == "control_chars_id":
            body["payment_id"] = ""
            value = json.dumps(body).encode()
        elif kind == "overlong_id":
            body["payment_id"] = "P" * rng.choice((129, 5_000))
            value = json.dumps(body).encode()
        yield kind, key, value, _junk_headers(rng), ts
