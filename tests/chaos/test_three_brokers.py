"""Chaos on a three-broker cluster: the leader of `payments` partition 0 is killed mid-run (and
started again) while workers are killed too; replication factor 3 and min.insync.replicas 2
must keep every committed transaction, and the audit must stay green.

Every kill, of a broker or of a worker, is triggered by committed progress (at 1/3 and 2/3 of
the payments for the brokers, at 1/5 .. 4/5 for the workers), and until a kill has fired the
topic holds only the payments up to halfway to the next threshold: each kill lands while work
remains by construction, not by timing.

The session's 1-broker cluster listens on the same ports, so this test takes it down, runs three
brokers, and brings the 1-broker cluster back afterwards. It is marked `own_cluster` and runs
last, in its own pytest invocation (`pytest -m own_cluster`, see `./dev test`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paystream.settings import load
from tools.chaos import ChaosPlan, ChaosRun, fresh_settings

pytestmark = [pytest.mark.own_cluster, pytest.mark.chaos]


@pytest.fixture
def three_brokers() -> Iterator[Any]:
    """A fresh local 3-broker cluster; the 1-broker cluster is back when the test ends."""
    from deploy.local import cluster

    cluster.down()
    try:
        yield cluster.up(3)
    finally:
        cluster.down()
        cluster.up(1)


@pytest.mark.timeout(900)
def test_killing_the_partition_leader_broker_and_workers_loses_and_duplicates_nothing(
        three_brokers: Any, tmp_path: Path) -> None:
    from tools.topics import describe_topics

    settings = fresh_settings(load(environ={}), bootstrap_servers=three_brokers.bootstrap_servers, partitions=4,
                              snapshot_root=tmp_path)
    assert len(settings.kafka.bootstrap_servers.split(",")) == 3
    # a worker whose commit got stuck in the Kafka client while a coordinator was down ends itself
    # after 2 x commit timeout + 20 s (60 s) and restarts: recovery may take that long, plus a restart
    plan = ChaosPlan(kills=4, payments=150_000, accounts=5_000, broker_kills=2, brokers=3, seed=21,
                     recovery_timeout_s=180.0)

    result = ChaosRun(settings, plan, tmp_path / "logs", say=lambda line: print(line, flush=True)).run()
    print(result.verify_table)
    print(json.dumps({k: v for k, v in result.report.items() if k not in ("verify",)}, indent=1))

    report = result.report
    assert result.ok, result.verify_table
    assert report["trigger"] == "progress"
    assert report["broker_kills"] == 2
    assert report["kills"] == 4
    broker_kills = [i for i in report["incidents"] if i["kind"] == "broker_kill"]
    assert {i["target"] for i in broker_kills} <= {1, 2, 3}
    assert [i["threshold"] for i in broker_kills] == plan.broker_thresholds() == [50_000, 100_000]
    worker_kills = [i for i in report["incidents"] if i["kind"] == "worker_kill"]
    assert [i["threshold"] for i in worker_kills] == plan.thresholds()
    # every kill waited for its threshold, and came while the topic held no more than `limit` payments
    for incident in broker_kills + worker_kills:
        assert incident["threshold"] <= incident["committed_before"] <= incident["limit"] < plan.payments, incident
    # so the leaders died while the engine still had payments to commit; it recovered: the run
    # only ends once every payment is committed, and the audit found each applied exactly once
    assert report["verify"]["counts"]["payments"] == 150_000
    for topic in describe_topics(settings):
        assert (topic.replication_factor, topic.min_insync_replicas) == (3, 2), topic
