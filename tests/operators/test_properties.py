"""Properties of the domain core over random command streams (hypothesis).

Conservation of money, `0 <= held` and `available >= 0` at every step, balances equal to the
fold of the ledger, and idempotency under re-sent commands.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operators.accounts import encode_account
from operators.task import TaskProcessor
from paystream.records import InboundRecord, OutboundRecord
from paystream.settings import Settings, load
from tests.operators.builders import customer

ACCOUNTS = ("A", "B", "C", "E", "Z")  # C is blocked, E pays in USD, Z is unknown
CUSTOMERS = {
    "A": customer("A", single_limit=400, daily_limit=2_000),
    "B": customer("B", single_limit=1_000, daily_limit=5_000),
    "C": customer("C", blocked=True),
    "E": customer("E", currency="USD"),
}
SETTINGS = load(environ={}, kafka={"partitions": 1})


@st.composite
def commands(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A stream of plausible commands: mostly valid, with duplicates, out-of-order times and bad references."""
    count = draw(st.integers(1, 60))
    ts = 0
    stream: list[dict[str, Any]] = [  # opening balances, so that most debits can be approved
        {"v": 1, "type": "deposit", "payment_id": f"{name}-open", "account": name, "amount": 5_000, "currency": "EUR",
         "ts": ts}
        for name in draw(st.sampled_from([(), ("A",), ("A", "B")]))
    ]
    authorizations: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for _ in range(count):
        ts = max(0, ts + draw(st.integers(-120_000, 300_000)))
        kind = draw(st.sampled_from(["deposit", "deposit", "authorize", "authorize", "capture", "void", "refund",
                                     "transfer", "transfer"]))
        account = draw(st.sampled_from(("A", "A", "A", "A", "B", "B", "B") + ACCOUNTS))
        home_currency = "USD" if account == "E" else "EUR"
        body: dict[str, Any] = {
            "v": 1, "type": kind, "payment_id": f"{account}-p{draw(st.integers(0, 80))}", "account": account,
            "amount": draw(st.integers(1, 3_000 if kind == "deposit" else 300)),
            "currency": draw(st.sampled_from([home_currency] * 9 + ["GBP"])), "ts": ts,
        }
        if kind == "authorize":
            body["country"] = draw(st.sampled_from(["FR", "FR", "FR", "DE", "JP", "US", "ZZ"]))
            authorizations[account].append((body["payment_id"], body["amount"]))
        elif kind in ("capture", "void", "refund"):
            known = authorizations[account]
            if known and draw(st.integers(0, 4)) > 0:
                body["auth_id"], held = draw(st.sampled_from(known))
                body["amount"] = draw(st.integers(1, held + 5))  # sometimes more than held or captured
            else:
                body["auth_id"] = f"{account}-p{draw(st.integers(0, 80))}"
        elif kind == "transfer":
            body["to_account"] = draw(st.sampled_from(("A", "B") + ACCOUNTS))
        stream.append(body)
    return stream


def record(offset: int, body: dict[str, Any]) -> InboundRecord:
    return InboundRecord("payments", 0, offset, body["account"].encode(), json.dumps(body).encode())


def run(task: TaskProcessor, records: list[InboundRecord], check: Any = None) -> list[OutboundRecord]:
    """Process records one at a time, applying each transfer's credit right after it."""
    out: list[OutboundRecord] = []
    for inbound in records:
        produced = task.process([inbound])
        credits = [InboundRecord(topic, 0, 0, key, value) for topic, key, value, _ in produced
                   if topic == SETTINGS.credits_topic]
        produced += task.process(credits)
        out += produced
        if check is not None:
            check(task)
    return out


def fresh(settings: Settings = SETTINGS) -> TaskProcessor:
    return TaskProcessor(settings, CUSTOMERS, {})


def state(task: TaskProcessor) -> dict[str, bytes]:
    return {name: encode_account(account) for name, account in task.accounts.items()}


def no_negative_balances(task: TaskProcessor) -> None:
    for name, account in task.accounts.items():
        assert account.held >= 0, name
        assert account.posted - account.held >= 0, name


@hypothesis_settings(max_examples=150, deadline=None)
@given(commands())
def test_money_is_conserved_and_never_negative(stream: list[dict[str, Any]]) -> None:
    task = fresh()
    out = run(task, [record(n, body) for n, body in enumerate(stream)], check=no_negative_balances)
    external = 0
    ledger: dict[str, int] = defaultdict(int)
    last_balance: dict[str, dict[str, Any]] = {}
    transfers: dict[str, list[str]] = defaultdict(list)
    for topic, _, value, _ in out:
        body = msgspec.json.decode(value) if value is not None else None
        if topic == "payment-decisions" and body["decision"] == "approved":
            sign = {"deposit": 1, "refund": 1, "capture": -1}.get(body["type"], 0)
            external += sign * body["amount"]
        elif topic == "ledger":
            ledger[body["account"]] += body["amount"] if body["direction"] == "credit" else -body["amount"]
            transfers[body["payment_id"]].append(body["direction"])
        elif topic == "balances":
            last_balance[body["account"]] = body
    assert sum(account.posted for account in task.accounts.values()) == external
    for name, account in task.accounts.items():
        assert ledger[name] == account.posted  # balances are the fold of the ledger
        if name in last_balance:
            assert last_balance[name]["posted"] == account.posted
            assert last_balance[name]["available"] == account.posted - account.held
    for directions in transfers.values():
        assert sorted(directions) in (["credit"], ["debit"], ["credit", "debit"])


@hypothesis_settings(max_examples=150, deadline=None)
@given(commands(), st.data())
def test_re_sending_a_prefix_changes_no_output_and_no_state(stream: list[dict[str, Any]], data: st.DataObject) -> None:
    records = [record(n, body) for n, body in enumerate(stream)]
    cut = data.draw(st.integers(0, len(records)))
    once = fresh()
    expected = run(once, records)

    twice = fresh()
    first = run(twice, records[:cut])
    snapshot = state(twice)
    assert run(twice, records[:cut]) == []  # the re-sent prefix: nothing at all
    assert state(twice) == snapshot
    rest = run(twice, records[cut:])
    assert first + rest == expected
    assert state(twice) == state(once)
    assert run(twice, records) == []


@hypothesis_settings(max_examples=100, deadline=None)
@given(commands())
def test_the_account_state_survives_a_changelog_round_trip(stream: list[dict[str, Any]]) -> None:
    records = [record(n, body) for n, body in enumerate(stream)]
    cut = len(records) // 2
    task = fresh()
    run(task, records[:cut])
    from operators.accounts import decode_account

    restored = TaskProcessor(SETTINGS, CUSTOMERS, {name: decode_account(blob) for name, blob in state(task).items()})
    assert run(restored, records[cut:]) == run(task, records[cut:])
