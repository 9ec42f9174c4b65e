"""The global customer table on the real broker: bad records never stop it, and a dead follower is loud.

Bad records (keys that are not UTF-8, values that are not customers, rows under another key)
are skipped and counted both while loading at start-up and while following; the good records
around them are applied. If the follower thread dies, `check()` says so and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from paystream import clients
from paystream.settings import Settings
from state.customers import GlobalCustomerTable
from tests.operators.builders import customer_row

Record = tuple[bytes, bytes | None]
DEADLINE_S = 30.0


def produce(settings: Settings, records: list[Record]) -> None:
    producer = Producer(clients.producer_config(settings))
    for key, value in records:
        producer.produce(settings.topics.customers, value, key)
        producer.poll(0)
    assert producer.flush(30) == 0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail after `DEADLINE_S` (the sleep only paces the polling)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_bad_records_are_skipped_at_load_and_while_following(make_settings: Any) -> None:
    settings = make_settings(partitions=2)
    produce(settings, [
        (b"A", customer_row("A")),
        (b"\xff\xfeA", None),  # the reproduced hazard: a tombstone whose key is not UTF-8
        (b"\xffB", customer_row("B")),
        (b"C", b"not json"),
        (b"D", customer_row("E")),
        (b"GONE", customer_row("GONE")),
        (b"GONE", None),
        (b"B", customer_row("B", kyc="pending")),
    ])
    table = GlobalCustomerTable(settings)
    try:
        assert sorted(table) == ["A", "B"] and table["B"].kyc == "pending"
        assert dict(table.skipped) == {"bad_key": 2, "not_json": 1, "key_mismatch": 1}
        table.check()
        loaded_at = table.last_applied

        produce(settings, [(b"\x80", None), (b"A", b"{"), (b"LATE", customer_row("LATE")),
                           (b"A", customer_row("A", blocked=True))])
        wait_for(lambda: "LATE" in table and table["A"].blocked and sum(table.skipped.values()) == 6,
                 "the follower to apply the later rows and skip the bad ones")
        assert dict(table.skipped) == {"bad_key": 3, "not_json": 2, "key_mismatch": 1}
        table.check()  # the follower is still alive
        assert table.last_applied > loaded_at and table.age_seconds() >= 0
    finally:
        table.close()


def test_check_raises_with_the_cause_once_the_follower_died(make_settings: Any) -> None:
    settings = make_settings(partitions=2)
    produce(settings, [(b"A", customer_row("A"))])
    table = GlobalCustomerTable(settings)
    try:
        table.check()

        def fatal(timeout: float) -> list[Any]:
            raise KafkaException(KafkaError(KafkaError._FATAL, "injected fatal error", fatal=True))

        table._consume = fatal  # type: ignore[method-assign]
        wait_for(lambda: not table.follower_alive(), "the follower thread to stop")
        try:
            table.check()
        except RuntimeError as error:
            assert str(error).startswith("customer table follower stopped: ")
            assert "injected fatal error" in str(error)
        else:
            raise AssertionError("check() passed on a table whose follower died")
        assert table["A"].kyc == "verified"  # what was loaded is still readable, but no longer trusted
    finally:
        table.close()


def test_a_non_fatal_consume_error_is_logged_and_the_follower_goes_on(make_settings: Any) -> None:
    settings = make_settings(partitions=2)
    table = GlobalCustomerTable(settings)
    try:
        real = table._consume
        failures: list[int] = []

        def flaky(timeout: float) -> list[Any]:
            if not failures:
                failures.append(1)
                raise KafkaException(KafkaError(KafkaError._TRANSPORT, "injected transient error"))
            return real(timeout)

        table._consume = flaky  # type: ignore[method-assign]
        wait_for(lambda: bool(failures), "the injected error to be raised")
        produce(settings, [(b"AFTER", customer_row("AFTER"))])
        wait_for(lambda: "AFTER" in table, "the follower to apply a row after a transient error")
        table.check()
    finally:
        table.close()
