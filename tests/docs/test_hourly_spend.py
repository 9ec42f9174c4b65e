"""The example application of docs/ENGINE.md, on the test driver: windows, late commands, crashes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from connectors.driver import Driver
from paystream.settings import load

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "hourly_spend.py"
HOUR = 3_600_000


def example() -> Any:
    spec = importlib.util.spec_from_file_location("hourly_spend", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hourly_spend"] = module
    spec.loader.exec_module(module)
    return module


hourly_spend = example()


def driver() -> Driver:
    return Driver(hourly_spend.HOURLY_SPEND, load(environ={}, kafka={"partitions": 4}))


def authorize(driver: Driver, account: str, amount: int, ts: int) -> None:
    body = {"v": 1, "type": "authorize", "payment_id": f"p{ts}", "account": account, "amount": amount,
            "currency": "EUR", "ts": ts, "country": "FR"}
    driver.pipe("payments", account.encode(), json.dumps(body).encode())


def written(driver: Driver) -> list[tuple[str, int, int, int]]:
    return [(row["account"], row["hour_start"], row["total"], row["count"])
            for row in (json.loads(value or b"") for _, value, _ in driver.output("hourly-spend"))]


def test_an_hour_is_written_once_the_accounts_next_hour_begins() -> None:
    app = driver()
    authorize(app, "A", 100, 10 * HOUR + 5)
    authorize(app, "A", 50, 10 * HOUR + 900_000)
    authorize(app, "B", 7, 10 * HOUR + 1)
    app.step()
    assert written(app) == []  # both hours still open
    authorize(app, "A", 20, 11 * HOUR + 3)
    authorize(app, "A", 99, 10 * HOUR + 7)  # late: its hour was written already
    app.step()
    assert written(app) == [("A", 10 * HOUR, 150, 2)]
    assert app.store("A").get("A") == hourly_spend.Window(11 * HOUR, 20, 1)


def test_malformed_commands_are_dead_lettered_and_other_types_not_counted() -> None:
    app = driver()
    app.pipe("payments", b"A", b"{not json")
    app.pipe("payments", b"A", json.dumps({"type": "deposit", "account": "A", "amount": 5, "ts": 1}).encode())
    app.process()
    assert app.output("payments-dlq") == []  # not before its epoch commits
    app.step()
    assert "A" not in app.store("A")
    [(key, value, headers)] = app.output("payments-dlq")
    assert (key, value) == (b"A", b"{not json") and dict(headers or [])["dlq.reason"] == b"malformed"


def test_each_window_is_written_exactly_once_whatever_crashes() -> None:
    app = driver()
    for hour in range(5):
        authorize(app, "A", 10 + hour, hour * HOUR + 1)
        app.process()
        if hour % 2:
            app.crash()  # kill -9 inside the epoch: read again from the last commit
        else:
            app.commit()
    app.step()
    assert written(app) == [("A", hour * HOUR, 10 + hour, 1) for hour in range(4)]
