"""The pure task adapter: raw records in, raw records out, DLQ and routing included."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from operators.task import TaskProcessor
from paystream.partitioning import partition_for
from paystream.records import InboundRecord
from paystream.settings import Settings, load
from paystream.wire import Credit
from tests.operators.builders import customer

PARTITIONS = 12


def settings() -> Settings:
    return load(environ={}, kafka={"partitions": PARTITIONS})


def home(account: str) -> int:
    return partition_for(account.encode(), PARTITIONS)


def command_record(offset: int, **body: Any) -> InboundRecord:
    fields = {"v": 1, "currency": "EUR", "ts": 1_000, **body}
    account = fields["account"]
    return InboundRecord("payments", home(account), offset, account.encode(), json.dumps(fields).encode())


def processor(**customers: Any) -> TaskProcessor:
    rows = {name: customer(name) for name in ("A", "B")} | customers
    return TaskProcessor(settings(), rows, {})


def by_topic(out: list[Any]) -> dict[str, list[tuple[bytes | None, Any]]]:
    topics: dict[str, list[tuple[bytes | None, Any]]] = {}
    for topic, key, value, headers in out:
        topics.setdefault(topic, []).append(
            (key, json.loads(value) if topic != "payments-dlq" else (value, dict(headers))))
    return topics


def test_a_transfer_writes_decision_ledger_balance_completed_and_a_credit_for_the_recipient() -> None:
    task = processor()
    task.process([command_record(0, type="deposit", payment_id="d1", account="A", amount=1_000)])
    out = by_topic(task.process([command_record(1, type="transfer", payment_id="t1", account="A", amount=300,
                                                to_account="B")]))
    decision = out["payment-decisions"][0]
    assert decision[0] == b"A"
    assert decision[1] | {} == {
        "v": 1, "payment_id": "t1", "account": "A", "type": "transfer", "amount": 300, "currency": "EUR",
        "ts": 1_000, "decision": "approved", "reasons": [],
        "source": {"topic": "payments", "partition": home("A"), "offset": 1},
        "seq": 2, "rules_version": 0,
    }
    assert [(key, entry["entry_id"]) for key, entry in out["ledger"]] == [(b"A", "t1:debit"), (b"B", "t1:credit")]
    assert [(key, b["posted"], b["cause"]) for key, b in out["balances"]] == [(b"A", 700, "t1")]
    assert out["payment-completed"][0][0] == b"A"
    [(credit_key, credit)] = out["paystream-credits"]
    assert credit_key == b"B" and credit["transfer_id"] == "t1" and credit["amount"] == 300
    assert task.changed == {"A"}
    assert task.counts[("decision", "approved")] == 2


def test_a_credit_record_updates_the_recipient_balance() -> None:
    task = processor()
    credit = msgspec.json.encode(Credit(transfer_id="t1", account="B", from_account="A", amount=300, currency="EUR",
                                        ts=5))
    out = by_topic(task.process([InboundRecord("paystream-credits", home("B"), 0, b"B", credit)]))
    [(key, balance)] = out["balances"]
    assert key == b"B" and (balance["posted"], balance["seq"], balance["cause"], balance["ts"]) == (300, 1, "t1", 5)
    assert task.changed == {"B"} and task.counts[("credit",)] == 1


def test_a_malformed_command_goes_to_the_dlq_with_its_original_bytes_and_headers() -> None:
    task = processor()
    raw = (b'{"v":1,"type":"authorize","payment_id":"p1","account":"A","amount":"ten",'
           b'"currency":"EUR","ts":1,"country":"FR"}')
    out = task.process([InboundRecord("payments", home("A"), 42, b"A", raw)])
    [(topic, key, value, headers)] = out
    assert (topic, key, value) == ("payments-dlq", b"A", raw)
    assert headers is not None
    header = dict(headers)
    assert header["dlq.reason"] == b"wrong_type"
    assert header["dlq.topic"] == b"payments"
    assert header["dlq.partition"] == str(home("A")).encode()
    assert header["dlq.offset"] == b"42"
    assert b"amount" in header["dlq.error"]
    assert [name for name, _ in headers] == ["dlq.reason", "dlq.error", "dlq.topic", "dlq.partition", "dlq.offset"]
    assert task.counts[("dlq", "wrong_type")] == 1 and task.changed == set() and task.accounts == {}


def test_a_dead_lettered_value_never_carries_a_full_card_number() -> None:
    task = processor()
    raw = (b'{"v":1,"type":"authorize","payment_id":"p1","account":"A","amount":-5,'
           b'"currency":"EUR","ts":1,"country":"FR","pan":"4111111111111111"}')
    [(topic, key, value, headers)] = task.process([InboundRecord("payments", home("A"), 0, b"A", raw)])
    assert topic == "payments-dlq" and value is not None
    assert b"4111111111111111" not in value and b'"pan":"411111******1111"' in value
    assert value.replace(b"411111******1111", b"4111111111111111") == raw  # everything else byte for byte
    assert dict(headers or [])["dlq.reason"] == b"non_positive_amount"


def test_not_json_and_tombstones_are_dead_lettered() -> None:
    task = processor()
    out = task.process([
        InboundRecord("payments", home("A"), 0, b"A", b"\xff not json"),
        InboundRecord("payments", home("A"), 1, b"A", None),
    ])
    assert [(value, dict(headers or [])["dlq.reason"]) for _, _, value, headers in out] == [
        (b"\xff not json", b"not_json"), (None, b"empty_value")]


def test_a_record_on_the_wrong_partition_is_misrouted() -> None:
    task = processor()
    wrong = (home("A") + 1) % PARTITIONS
    raw = b'{"v":1,"type":"deposit","payment_id":"d1","account":"A","amount":5,"currency":"EUR","ts":1}'
    out = task.process([InboundRecord("payments", wrong, 3, b"A", raw), InboundRecord("payments", wrong, 4, b"A", raw)])
    assert [(topic, key, value, dict(headers or [])["dlq.reason"]) for topic, key, value, headers in out] == [
        ("payments-dlq", b"A", raw, b"misrouted")
    ] * 2
    assert task.accounts == {} and task.counts[("dlq", "misrouted")] == 2
    # the same account on its own partition is decided
    assert task.process([InboundRecord("payments", home("A"), 5, b"A", raw)])[0][0] == "payment-decisions"


def test_a_duplicate_writes_nothing_and_is_counted() -> None:
    task = processor()
    record = command_record(0, type="deposit", payment_id="d1", account="A", amount=5)
    assert task.process([record])
    task.changed.clear()
    assert task.process([InboundRecord(record.topic(), record.partition(), 1, record.key(), record.value())]) == []
    assert task.changed == set() and task.counts[("duplicate",)] == 1


def test_declines_reasons_and_alerts_are_counted() -> None:
    task = processor(A=customer("A", single_limit=10))
    out = by_topic(task.process([
        command_record(0, type="authorize", payment_id="a1", account="A", amount=20, country="FR"),
        command_record(1, type="deposit", payment_id="d1", account="A", amount=100),
        command_record(2, type="authorize", payment_id="a2", account="A", amount=5, country="FR", ts=1_000),
        command_record(3, type="authorize", payment_id="a3", account="A", amount=5, country="JP", ts=1_001),
    ]))
    assert task.counts[("reason", "single_limit_exceeded")] == 1
    assert task.counts[("reason", "insufficient_funds")] == 1
    assert task.counts[("decision", "review")] == 1 and task.counts[("alert", "impossible_travel")] == 1
    [(key, alert)] = out["fraud-alerts"]
    assert key == b"A" and alert["alert_id"] == "a3:impossible_travel"


def test_the_masked_pan_is_all_that_reaches_the_outputs() -> None:
    task = processor()
    out = task.process([
        command_record(0, type="deposit", payment_id="d1", account="A", amount=100),
        command_record(1, type="authorize", payment_id="a1", account="A", amount=5, country="FR",
                       pan="4111111111111111"),
    ])
    assert all(b"4111111111111111" not in (value or b"") for _, _, value, _ in out)


def stamped(offset: int, timestamp: int, **body: Any) -> InboundRecord:
    record = command_record(offset, **body)
    return InboundRecord(record.topic(), record.partition(), offset, record.key(), record.value(), timestamp)


def test_a_ts_far_from_the_records_kafka_timestamp_is_dead_lettered_and_moves_no_clock() -> None:
    """Hazard: one command in microseconds moved the account's event time years ahead, so every
    remembered id looked past the duplicate horizon and a re-sent deposit was approved twice."""
    now = 1_767_225_600_000
    task = processor()
    deposit = {"type": "deposit", "payment_id": "d1", "account": "A", "amount": 500}
    assert by_topic(task.process([stamped(0, now, **deposit, ts=now)]))["payment-decisions"]
    out = by_topic(task.process([
        stamped(1, now + 1, type="deposit", payment_id="future", account="A", amount=7, ts=now * 1000),
        stamped(2, now + 2, type="deposit", payment_id="past", account="A", amount=7, ts=now - 2 * 86_400_000),
        stamped(3, now + 3, **deposit, ts=now),  # the re-send: still a duplicate
    ]))
    assert list(out) == ["payments-dlq"]
    assert [headers["dlq.reason"] for _, (_, headers) in out["payments-dlq"]] == [b"ts_out_of_range"] * 2
    account = task.accounts["A"]
    assert (account.posted, account.newest_ts) == (500, now)
    # inside the bounds: a few minutes of skew, a day of lateness
    ok = task.process([stamped(4, now, type="deposit", payment_id="d2", account="A", amount=1, ts=now + 299_000)])
    assert by_topic(ok)["payment-decisions"][0][1]["decision"] == "approved"


def test_a_rule_that_raises_declines_its_command_dead_letters_a_copy_and_the_partition_goes_on(
        monkeypatch: Any) -> None:
    """Fail closed: the command is declined `rule_error`, its copy goes to the DLQ with the error
    (card digits masked), the account changes only as for any decline at that stage, and the
    commands after it are decided as if it had been declined."""
    import operators.payments as payments
    from operators.rules import velocity_alert

    def velocity_that_raises(command: Any, *args: Any) -> Any:
        if command.payment_id == "boom":
            raise ValueError(f"cannot score card 4111111111111111 of {command.account}")
        return velocity_alert(command, *args)

    monkeypatch.setattr(payments, "velocity_alert", velocity_that_raises)
    task = processor()
    task.process([command_record(0, type="deposit", payment_id="d1", account="A", amount=1_000)])
    out = by_topic(task.process([
        command_record(1, type="authorize", payment_id="boom", account="A", amount=300, country="FR"),
        command_record(2, type="authorize", payment_id="a2", account="A", amount=200, country="FR"),
    ]))
    decisions = [value for _, value in out["payment-decisions"]]
    assert [(d["payment_id"], d["decision"], d["reasons"], d["seq"]) for d in decisions] == [
        ("boom", "declined", ["rule_error"], 2), ("a2", "approved", [], 3)]
    [(key, (value, headers))] = out["payments-dlq"]
    assert key == b"A" and json.loads(value)["payment_id"] == "boom"
    assert headers["dlq.reason"] == b"rule_error" and headers["dlq.offset"] == b"1"
    error = headers["dlq.error"].decode()
    assert error.startswith("ValueError in velocity_that_raises: cannot score card ")
    assert "4111111111111111" not in error
    account = task.accounts["A"]
    assert account.held == 200 and account.posted == 1_000  # only a2 holds money
    assert "boom" in account.payment_ids  # remembered: a re-send is a duplicate, not a second try
    assert account.auth_times == [1_000] and account.auth_base == 0  # boom was not counted as a card use
    assert task.counts[("dlq", "rule_error")] == 1 and task.counts[("reason", "rule_error")] == 1
    again = task.process([command_record(3, type="authorize", payment_id="boom", account="A", amount=300,
                                        country="FR")])
    assert again == [] and task.counts[("duplicate",)] == 1


def test_a_raise_outside_the_rules_still_stops_the_worker(monkeypatch: Any) -> None:
    """The books and the state are not rules: what they left half done is unknown, so they stop."""
    import operators.payments as payments

    def broken(*args: Any) -> None:
        raise RuntimeError("state is broken")

    monkeypatch.setattr(payments, "record_debit", broken)
    task = processor()
    task.process([command_record(0, type="deposit", payment_id="d1", account="A", amount=1_000)])
    try:
        task.process([command_record(1, type="authorize", payment_id="a1", account="A", amount=300, country="FR")])
    except RuntimeError as error:
        assert str(error) == "state is broken"
    else:
        raise AssertionError("a raise in the effects must stop the worker")
