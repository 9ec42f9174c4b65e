"""Committed offsets that Kafka forgets, on a broker that forgets them after one minute.

Kafka expires a member-less group's committed offset `offsets.retention.minutes` after its last
commit (7 days by default). This broker keeps them one minute and looks every second, so a week
of idleness fits in a test: an idle engine keeps its offsets alive by refreshing them, and an
engine stopped longer than the retention resumes from its changelog's positions, not from the
beginning of its inputs (see docs/LIFETIME.md, hazard 3).

The broker's settings differ from the shared cluster's, so this test takes that cluster down,
runs its own, and brings the shared one back; it is marked `own_cluster` and runs last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.test_lifetime import (
    assert_audit_green,
    committed_offsets,
    produce,
    run_flow,
    task_settings,
    transfers_between_partitions,
)
from tools.runner import FlowProcesses, wait_until_caught_up

pytestmark = [pytest.mark.own_cluster, pytest.mark.broker]

RETENTION_S = 60
FORGETFUL_BROKER = {"offsets.retention.minutes": "1", "offsets.retention.check.interval.ms": "1000"}


@pytest.fixture
def forgetful_broker() -> Iterator[Any]:
    """A fresh 1-broker cluster that forgets committed offsets after a minute; the shared one comes back after."""
    from deploy.local import cluster

    cluster.down()
    try:
        yield cluster.up(1, overrides=FORGETFUL_BROKER)
    finally:
        cluster.down()
        cluster.up(1)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(1)


@pytest.mark.timeout(600)
def test_offsets_kafka_forgets_are_refreshed_while_idle_and_recovered_from_the_changelog_after(
        forgetful_broker: Any, make_settings: Any, tmp_path: Path) -> None:
    settings = task_settings(make_settings, offsets_refresh_ms=10_000)
    produce(settings, transfers_between_partitions(settings, 40), customers=tuple(f"ACC{n:05d}" for n in range(50)))

    # idle for longer than the retention: the refresh keeps every owned position alive
    procs = FlowProcesses(settings, 1, log_dir=tmp_path / "first")
    procs.start()
    try:
        wait_until_caught_up(settings, 41, timeout=120, procs=procs, progress=False)
        idle_until = time.monotonic() + RETENTION_S + 15
        while time.monotonic() < idle_until:
            offsets = committed_offsets(settings)
            assert all(offset >= 0 for offset in offsets.values()), f"an idle position expired: {offsets}"
            time.sleep(5)
    finally:
        procs.stop()

    # stopped for longer than the retention: Kafka forgets every position of the group
    wait_for(lambda: all(offset < 0 for offset in committed_offsets(settings).values()),
             RETENTION_S + 90, "the stopped group's offsets expire")

    more = transfers_between_partitions(settings, 45)[41:]  # t40..t44: new transfers after the gap
    produce(settings, more, customers=())
    run_flow(settings, 46, tmp_path / "second")

    assert_audit_green(settings)  # one decision per payment, one credit per transfer, balances agree
    assert all(offset >= 0 for offset in committed_offsets(settings).values())
