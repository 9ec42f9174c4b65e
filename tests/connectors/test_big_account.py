"""Hazard (issue 10, #6) on the real broker: one busy account must not grow a changelog record
past the producer's maximum message size.

Before the change the account's whole state was one changelog record per commit: 2.3 MB for
100,000 commands, so the transaction's produce failed (`MSG_SIZE_TOO_LARGE`), the task stopped,
and every restart replayed the same records into the same failure. Now every record is bounded
(sealed pages of at most 32 KiB), the commits go through, and the task restores exactly.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import msgspec
from confluent_kafka import Producer

from connectors.tasks import TaskRuntime, task_id_of
from flows.payments import PAYMENTS
from operators.account_codec import MAX_RECORD_BYTES, PAGE_SEPARATOR
from paystream import clients
from paystream.settings import Settings
from tests.connectors.test_recovery import read_committed
from tests.operators.test_account_codec import BIG_CUSTOMERS, busy_account

COMMANDS = 100_000


def produce_commands(settings: Settings, start_ts: int) -> int:
    """One merchant's commands (see `busy_account`), each stamped with its own event time."""
    producer = Producer(clients.producer_config(settings))
    records = busy_account(COMMANDS, seed=5, start=start_ts)
    for record in records:
        value = record.value()
        producer.produce(settings.topics.payments, value, record.key(), timestamp=msgspec.json.decode(value)["ts"])
        producer.poll(0)
    assert producer.flush(60) == 0
    return len(records)


def run_epochs(task: TaskRuntime, total: int, per_epoch: int = 5_000, timeout: float = 120.0) -> None:
    """Process every record, committing every `per_epoch` records, then the credits it owes itself."""
    seen, pending = 0, 0
    deadline = time.monotonic() + timeout
    while seen < total and time.monotonic() < deadline:
        records = task.poll(2_000)
        if not records:
            time.sleep(0.01)
            continue
        task.process(records)
        seen += len(records)
        pending += len(records)
        if pending >= per_epoch:
            task.commit(wait=True)
            pending = 0
    task.commit(wait=True)
    assert seen == total
    quiet = time.monotonic()
    while time.monotonic() - quiet < 2.0:  # the transfers' credits, readable once committed
        records = task.poll(2_000)
        if records:
            task.process(records)
            task.commit(wait=True)
            quiet = time.monotonic()
        else:
            time.sleep(0.05)


def test_a_busy_account_commits_bounded_records_and_restores(make_settings: Any) -> None:
    settings = make_settings(partitions=1, engine={"snapshot_every_epochs": 7},
                             rules={"velocity": {"max_authorizations": 1_000_000_000}})
    start_ts = int(time.time() * 1000) - 4 * 86_400_000  # ~3 days of commands, ending about a day ago
    total = produce_commands(settings, start_ts)

    task = TaskRuntime(settings, task_id_of(settings, 0), {"customers": BIG_CUSTOMERS}, app=PAYMENTS).open()
    run_epochs(task, total)
    account = task.accounts["M"]
    assert account.spill is not None and len(account.spill.sealed_ids) > 50_000  # the horizon holds them all

    changelog = read_committed(settings, settings.changelog_topic)
    sizes = [len(message.key()) + len(message.value() or b"") for message in changelog]
    assert max(sizes) <= MAX_RECORD_BYTES
    assert sum(1 for message in changelog if PAGE_SEPARATOR in message.key()) > 10  # the account's pages

    with_snapshot = TaskRuntime(settings, task_id_of(settings, 0), {"customers": BIG_CUSTOMERS}, app=PAYMENTS).open()
    assert with_snapshot.accounts == task.accounts
    shutil.rmtree(settings.engine.snapshot_dir)  # a full restore from the changelog alone
    from_changelog = TaskRuntime(settings, task_id_of(settings, 0), {"customers": BIG_CUSTOMERS}, app=PAYMENTS).open()
    assert from_changelog.accounts == task.accounts
    assert from_changelog.changelog_end >= len(changelog)
