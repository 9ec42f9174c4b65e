"""paystream on a secured broker: SASL_SSL (SCRAM-SHA-512 over TLS from the project's own CA),
the StandardAuthorizer, and least-privilege ACLs per principal (deploy/local/secure.py). The
flow, a kill -9 and the audit stay exactly-once; what a principal is not granted is denied; a
wrong password, a wrong CA or a plaintext client gets one clear line."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from deploy.local import secure
from paystream import clients
from paystream.settings import Settings, TopicSettings, load
from tools.cli.generate import produce_traffic
from tools.runner import FlowProcesses, LagProbe, wait_until_caught_up
from tools.topics import create_topics
from verify.audit import audit
from verify.geo import distance_km
from verify.readback import read_snapshot

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]

As = Callable[..., Settings]


@pytest.fixture(scope="module")
def secured() -> Iterator[secure.SecureCluster]:
    yield secure.up()
    secure.down()


@pytest.fixture
def deployment(secured: secure.SecureCluster, tmp_path: Path) -> As:
    """`deployment(principal)`: one deployment's settings (fresh topics and app id) as `principal`;
    its topics are created and its ACLs granted by the admin."""
    run = uuid.uuid4().hex[:8]
    tree = {"topics": {f: f"{name}-{run}" for f, name in msgspec.structs.asdict(TopicSettings()).items()},
            "engine": {"app_id": f"secure-{run}", "http_port": 0, "snapshot_dir": str(tmp_path / "snapshots")}}

    def as_principal(principal: str, **client: str) -> Settings:
        return load(environ={}, kafka={"bootstrap_servers": secured.bootstrap_servers, "partitions": 3,
                                       "client": {**secured.client(principal), **client}}, **tree)

    admin = as_principal("admin")
    create_topics(admin, brokers=1)
    secure.grant(secured, admin)
    return as_principal


def test_the_flow_a_kill_and_the_audit_stay_exactly_once_over_sasl_ssl(deployment: As, tmp_path: Path) -> None:
    summary = produce_traffic(deployment("producer"), accounts=200, payments=4_000, seed=51, bad_ratio=0.01,
                              progress=False)
    assert not summary.delivery_errors
    engine = deployment("paystream")
    procs = FlowProcesses(engine, 1, log_dir=tmp_path / "logs")
    procs.start()
    probe = LagProbe(engine)
    try:
        deadline = time.monotonic() + 120
        while probe.payments_committed() < 1:  # kill once the engine has committed something
            assert time.monotonic() < deadline, "no commit over SASL_SSL"
            time.sleep(0.1)
        procs.kill(0)
        procs.start()
        wait_until_caught_up(engine, 4_000, timeout=300, procs=procs, progress=False)
    finally:
        probe.close()
        procs.stop()
    result = audit(read_snapshot(deployment("auditor")), engine.rules, distance_km)
    assert result.ok, result.table()
    assert result.counts["decisions"] > 3_500


def test_a_principal_without_acls_reads_and_writes_nothing(deployment: As) -> None:
    intruder = deployment("intruder")
    reader = Consumer(clients.consumer_config(intruder, f"intruder-{uuid.uuid4().hex[:6]}"))
    try:
        reader.assign([TopicPartition(intruder.topics.balances, 0, 0)])
        codes: set[int] = set()
        read = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for message in reader.consume(10, timeout=1.0):
                if message.error() is None:
                    read += 1
                else:
                    codes.add(message.error().code())
        # nothing read: refused its group (it was granted none) or the topic itself
        assert read == 0 and codes and codes <= {KafkaError.GROUP_AUTHORIZATION_FAILED,
                                                 KafkaError.TOPIC_AUTHORIZATION_FAILED}, codes
        # and the topic is not even visible to it
        described = reader.list_topics(intruder.topics.balances, timeout=10).topics[intruder.topics.balances]
        assert described.error is not None and described.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        reader.close()
    failures: list[Any] = []
    writer = Producer(clients.producer_config(intruder))
    writer.produce(intruder.topics.decisions, b"{}", b"ACC1", on_delivery=lambda error, _m: failures.append(error))
    writer.flush(30)
    assert failures and failures[0] is not None and failures[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_transactional_id_outside_the_principals_prefix_is_denied(deployment: As) -> None:
    engine, producer = deployment("paystream"), deployment("producer")
    for settings, transactional_id in ((engine, f"another-app-{uuid.uuid4().hex[:6]}"),
                                       (producer, f"{engine.engine.app_id}-payments-0")):
        client = Producer(clients.producer_config(settings, **{"transactional.id": transactional_id}))
        with pytest.raises(KafkaException) as denied:
            client.init_transactions(30)
        assert denied.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_a_wrong_password_a_wrong_ca_and_a_plaintext_client_get_one_clear_line(deployment: As,
                                                                            tmp_path: Path) -> None:
    def refusal(settings: Settings) -> str:
        with pytest.raises(clients.SetupError) as refused:
            clients.require_kafka(settings)
        return str(refused.value)

    assert "authentication failed" in refusal(deployment("paystream", **{"sasl.password": "wrong"}))
    other_ca, _ = secure.certificates(tmp_path / "another-ca")  # a CA that did not sign the broker
    assert "TLS failed" in refusal(deployment("paystream", **{"ssl.ca.location": str(other_ca)}))
    assert "check kafka.client" in refusal(deployment("paystream", **{"ssl.ca.location": "/dev/null"}))
    plaintext = msgspec.structs.replace(deployment("paystream"), kafka=msgspec.structs.replace(
        deployment("paystream").kafka, client={}))
    assert "no Kafka answers" in refusal(plaintext) and "security.protocol" in refusal(plaintext)
