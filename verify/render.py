"""The reference model's outputs as wire-contract records: what a correct engine would write.

Used by `paystream model --json` and by tests that need correct output topics without running
the engine (then break them on purpose and watch the auditor name the broken invariant).
"""

from __future__ import annotations

from typing import Any

import msgspec

from verify.model import ModelOutputs
from verify.validation import payment_partition

OutputRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers

_encode = msgspec.json.Encoder().encode


def _body(record: msgspec.Struct) -> dict[str, Any]:
    body: dict[str, Any] = {"v": 1, **msgspec.structs.asdict(record)}
    if "source" in body:
        source = body["source"]
        body["source"] = {"topic": source.topic, "partition": source.partition, "offset": source.offset}
    if "reasons" in body:
        body["reasons"] = list(body["reasons"])
    return body


def output_bodies(outputs: ModelOutputs) -> dict[str, list[dict[str, Any]]]:
    """Every computed output as the JSON object the wire contract puts on its topic."""
    return {
        "decisions": [_body(d) for d in outputs.decisions],
        "ledger": [_body(e) for e in outputs.ledger],
        "balances": [_body(b) for b in outputs.balances],
        "alerts": [_body(a) for a in outputs.alerts],
        "completed": [_body(c) for c in outputs.completed],
        "dlq": [{"topic": i.record.topic, "partition": i.record.partition, "offset": i.record.offset,
                 "problems": list(i.problems), "reason": i.reason} for i in outputs.dead_letters],
    }


OUTPUT_ROLES = ("decisions", "ledger", "balances", "alerts", "completed", "dlq")


def output_records(outputs: ModelOutputs, topics: Any) -> dict[str, list[OutputRecord]]:
    """The records a correct engine writes, per output topic name, keyed by account.

    `topics`: the topic names by role, as a mapping or any Struct of that shape (the settings' `topics`)."""
    names: dict[str, str] = topics if isinstance(topics, dict) else msgspec.to_builtins(topics)
    records: dict[str, list[OutputRecord]] = {names[role]: [] for role in OUTPUT_ROLES}
    bodies = output_bodies(outputs)
    for role in OUTPUT_ROLES[:-1]:
        records[names[role]] = [(body["account"].encode(), _encode(body), []) for body in bodies[role]]
    for invalid in outputs.dead_letters:
        source = invalid.record
        headers = [("dlq.reason", (invalid.reason or invalid.problems[0]).encode()),
                   ("dlq.error", b"rejected by the reference model"),
                   ("dlq.topic", source.topic.encode()), ("dlq.partition", str(source.partition).encode()),
                   ("dlq.offset", str(source.offset).encode())]
        records[names["dlq"]].append((source.key, source.value, headers))
    return records


def partition_of(key: bytes | None, partitions: int) -> int:
    """Where Kafka's default partitioner puts `key` (records without a key go to partition 0 here)."""
    return payment_partition(key, partitions) if key is not None else 0
