"""The payment application on the test driver: commits, credits between tasks, and crashes."""

from __future__ import annotations

import json
from typing import Any

from connectors.driver import Driver
from flows.payments import PAYMENTS
from paystream.partitioning import partition_for
from paystream.settings import load
from tests.operators.builders import customer

SETTINGS = load(environ={}, kafka={"partitions": 4})
CUSTOMERS = {name: customer(name) for name in ("A", "B", "C")}


def driver() -> Driver:
    return Driver(PAYMENTS, SETTINGS, {"customers": CUSTOMERS})


def pipe(driver: Driver, **body: Any) -> None:
    fields = {"v": 1, "currency": "EUR", "ts": 1_000, **body}
    driver.pipe("payments", fields["account"].encode(), json.dumps(fields).encode())


def decisions(driver: Driver) -> list[tuple[str, str]]:
    return [(body["payment_id"], body["decision"])
            for body in (json.loads(value or b"") for _, value, _ in driver.output("payment-decisions"))]


def posted(driver: Driver, account: str) -> int:
    return [json.loads(value or b"")["posted"] for key, value, _ in driver.output("balances")
            if key == account.encode()][-1]


def test_nothing_is_visible_before_the_epoch_commits() -> None:
    bank = driver()
    pipe(bank, type="deposit", payment_id="d1", account="A", amount=500)
    bank.process()
    assert bank.output("payment-decisions") == [] and bank.changelog(partition_for(b"A", 4)) == []
    bank.commit()
    assert decisions(bank) == [("d1", "approved")]
    assert bank.store("A").get("A").posted == 500


def test_a_transfer_credits_its_recipient_in_another_task_after_the_senders_commit() -> None:
    assert partition_for(b"A", 4) != partition_for(b"C", 4)  # two tasks
    bank = driver()
    pipe(bank, type="deposit", payment_id="d1", account="A", amount=500)
    pipe(bank, type="transfer", payment_id="t1", account="A", amount=200, to_account="C")
    bank.process()
    bank.commit()
    assert "C" not in bank.store("C")  # the credit is committed, not yet read by C's task
    bank.step()
    assert (posted(bank, "A"), posted(bank, "C")) == (300, 200)


def test_a_crash_before_the_commit_loses_the_epoch_and_it_is_decided_again_exactly_once() -> None:
    bank = driver()
    pipe(bank, type="deposit", payment_id="d1", account="A", amount=500)
    bank.step()
    pipe(bank, type="transfer", payment_id="t1", account="A", amount=200, to_account="C")
    pipe(bank, type="deposit", payment_id="d2", account="B", amount=70)
    bank.process()
    bank.crash()  # kill -9 inside the epoch: its outputs, state and credit are gone
    assert bank.store("A").get("A").posted == 500 and "B" not in bank.store("B")
    bank.step()
    assert sorted(decisions(bank)) == [("d1", "approved"), ("d2", "approved"), ("t1", "approved")]
    assert (posted(bank, "A"), posted(bank, "B"), posted(bank, "C")) == (300, 70, 200)


def test_a_crash_after_the_commit_changes_nothing_and_a_resent_command_stays_a_duplicate() -> None:
    bank = driver()
    pipe(bank, type="deposit", payment_id="d1", account="A", amount=500)
    bank.step()
    before = {account: bank.store(account).get(account) for account in ("A",)}
    bank.crash()  # restored from the changelog alone
    assert {account: bank.store(account).get(account) for account in ("A",)} == before
    pipe(bank, type="deposit", payment_id="d1", account="A", amount=500)  # re-sent
    bank.step()
    assert decisions(bank) == [("d1", "approved")] and bank.store("A").get("A").posted == 500


def test_a_published_rules_change_applies_to_the_commands_after_it_and_each_decision_records_its_version() -> None:
    from state.rules_table import RuleVersions

    rules = RuleVersions(SETTINGS.rules)
    bank = Driver(PAYMENTS, SETTINGS, {"customers": CUSTOMERS, "rules": rules})
    pipe(bank, type="deposit", payment_id="d1", account="A", amount=5_000)
    pipe(bank, type="authorize", payment_id="a1", account="A", amount=900, auth_id="x1", merchant="m",
         country="FR")
    bank.step()
    rules.apply(b"rules", json.dumps({"v": 1, "version": 1, "rules": {"single_limit": {"max_amount": 500}}}).encode())
    pipe(bank, type="authorize", payment_id="a2", account="A", amount=900, auth_id="x2", merchant="m",
         country="FR", ts=2_000)
    bank.step()
    made = {body["payment_id"]: (body["decision"], body["reasons"], body["rules_version"])
            for body in (json.loads(value or b"") for _, value, _ in bank.output("payment-decisions"))}
    assert made == {"d1": ("approved", [], 0), "a1": ("approved", [], 0),
                    "a2": ("declined", ["single_limit_exceeded"], 1)}
