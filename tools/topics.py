"""Creating and inspecting paystream's topics: the public ones of the wire contract and the internal ones.

Every topic gets `settings.kafka.partitions` partitions (the credits topic must be co-partitioned
with `payments`), `replication.factor = min(3, brokers)` and `min.insync.replicas = min(2, brokers)`.
Reference data, balances and the state changelog are compacted; the immutable history is kept
for seven days. The internal credits topic keeps its records until they are consumed
(unlimited retention; each task deletes what it has committed as consumed), like Kafka
Streams' repartition topics: a credit backlog older than any retention must not vanish.

>>> create_topics(settings.load())            # doctest: +SKIP
['payments', 'customer-status', ...]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paystream.settings import DAY_MS, Settings

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

    from connectors.application import Application

RETENTION_MS = 7 * DAY_MS
UNTIL_CONSUMED = -1
WAIT_S = 30.0


class TopicError(RuntimeError):
    """A topic cannot be made to match the settings (e.g. it exists with another partition count)."""


@dataclass(frozen=True)
class TopicSpec:
    """What one topic should look like."""

    name: str
    partitions: int
    compacted: bool
    retention_ms: int = RETENTION_MS  # for a `delete` topic; -1: until consumed (internal topics)

    def config(self, brokers: int) -> dict[str, str]:
        config = {"min.insync.replicas": str(min(2, brokers))}
        if self.compacted:
            config["cleanup.policy"] = "compact"
        else:
            config["cleanup.policy"] = "delete"
            config["retention.ms"] = str(self.retention_ms)
        return config


@dataclass(frozen=True)
class TopicInfo:
    """How one topic actually is on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    min_insync_replicas: int
    cleanup_policy: str
    retention_ms: int


def topic_specs(settings: Settings, app: Application | None = None) -> list[TopicSpec]:
    """Every topic an application needs (default: the payment engine), public ones first, then its
    internal (repartition) and changelog topics."""
    if app is None:
        from flows.payments import PAYMENTS

        app = PAYMENTS
    topics = settings.topics
    partitions = settings.kafka.partitions
    internal = set(app.internal_topics(settings))
    changelogs = app.changelog_topics(settings)
    tables = app.table_topic_names(settings)  # the global tables' topics: reference data, latest value wins
    compacted = {topics.balances, *tables, *changelogs}
    public = [topic for topic in app.input_topics(settings) if topic not in internal]
    names = list(dict.fromkeys([*public, *tables, *app.output_topics(settings), *internal, *changelogs]))
    internal_last = [name for name in names if name not in internal and name not in changelogs] + [
        name for name in names if name in internal or name in changelogs]
    # one record decides the rules in force: one partition keeps its versions in order
    return [TopicSpec(name, 1 if name == topics.rules else partitions, name in compacted,
                      UNTIL_CONSUMED if name in internal else RETENTION_MS)
            for name in internal_last]


def load_application(reference: str) -> Application:
    """The `Application` named by `module:ATTRIBUTE` or `path/to/file.py:ATTRIBUTE`.

    >>> load_application("flows.simple:SIMPLE").name
    'simple'
    """
    import importlib
    import importlib.util
    from pathlib import Path

    from connectors.application import Application

    where, _, attribute = reference.rpartition(":")
    if not where or not attribute:
        raise ValueError(f"--app {reference!r}: expected module:ATTRIBUTE or path/to/file.py:ATTRIBUTE")
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(where).stem, where)
        if spec is None or spec.loader is None:
            raise ValueError(f"--app {reference!r}: cannot load {where}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    found = getattr(module, attribute, None)
    if not isinstance(found, Application):
        raise ValueError(f"--app {reference!r}: {attribute} in {where} is not an Application")
    return found


def _admin(settings: Settings) -> AdminClient:
    from confluent_kafka.admin import AdminClient

    from paystream.clients import admin_config

    return AdminClient(admin_config(settings))


def broker_count(settings: Settings) -> int:
    """How many brokers the cluster's metadata lists."""
    return len(_admin(settings).list_topics(timeout=10).brokers)


def create_topics(settings: Settings, brokers: int | None = None, app: Application | None = None) -> list[str]:
    """Create every missing topic, check existing ones' partition counts, and wait for all leaders.

    Re-running is harmless. Returns the names of all of paystream's topics.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(settings)
    metadata = admin.list_topics(timeout=10)
    brokers = brokers or len(metadata.brokers)
    specs = topic_specs(settings, app)
    for spec in specs:
        existing = metadata.topics.get(spec.name)
        if existing is not None and existing.error is None and len(existing.partitions) != spec.partitions:
            raise TopicError(f"topic {spec.name} exists with {len(existing.partitions)} partitions, "
                             f"settings want {spec.partitions}; delete it or change kafka.partitions")
    missing = [spec for spec in specs
               if spec.name not in metadata.topics or metadata.topics[spec.name].error is not None]
    if missing:
        futures = admin.create_topics(
            [NewTopic(spec.name, spec.partitions, min(3, brokers), config=spec.config(brokers)) for spec in missing],
            request_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as error:
                # another process created it between our look and our create: fine, it is checked below
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise TopicError(f"cannot create topic {name}: {error.args[0].str()}") from error
        _check_partitions(admin, specs)
    _keep_internal_records(admin, [spec for spec in specs
                                   if spec.retention_ms == UNTIL_CONSUMED and spec not in missing])
    _wait_for_leaders(admin, [spec.name for spec in specs])
    return [spec.name for spec in specs]


def _check_partitions(admin: AdminClient, specs: list[TopicSpec]) -> None:
    topics = admin.list_topics(timeout=10).topics
    for spec in specs:
        found = topics.get(spec.name)
        if found is not None and found.error is None and len(found.partitions) != spec.partitions:
            raise TopicError(f"topic {spec.name} exists with {len(found.partitions)} partitions, "
                             f"settings want {spec.partitions}")


def _keep_internal_records(admin: AdminClient, specs: list[TopicSpec]) -> None:
    """Existing internal topics made by an older release with time retention: keep records until consumed."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    if not specs:
        return
    resources = [ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=[
        ConfigEntry("retention.ms", str(spec.retention_ms), incremental_operation=AlterConfigOpType.SET)])
        for spec in specs]
    for future in admin.incremental_alter_configs(resources, request_timeout=30).values():
        future.result()


def _wait_for_leaders(admin: AdminClient, names: list[str]) -> None:
    """Wait until every partition of `names` has a leader (a just-created topic has none for a moment)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        topics = admin.list_topics(timeout=10).topics
        waiting = [
            name for name in names
            if name not in topics or topics[name].error is not None or not topics[name].partitions
            or any(p.leader < 0 or p.error is not None for p in topics[name].partitions.values())
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TopicError(f"no leader after {WAIT_S:.0f} s for partitions of: {', '.join(waiting)}")
        time.sleep(0.1)


def describe_topics(settings: Settings) -> list[TopicInfo]:
    """How each of paystream's topics is on the cluster (missing topics are left out)."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = _admin(settings)
    topics = admin.list_topics(timeout=10).topics
    names = [spec.name for spec in topic_specs(settings) if spec.name in topics and topics[spec.name].error is None]
    if not names:
        return []
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in names], request_timeout=30)
    configs = {resource.name: future.result() for resource, future in futures.items()}
    infos = []
    for name in names:
        partitions = topics[name].partitions
        config = configs[name]
        infos.append(TopicInfo(
            name=name,
            partitions=len(partitions),
            replication_factor=len(partitions[0].replicas) if 0 in partitions else 0,
            min_insync_replicas=int(config["min.insync.replicas"].value),
            cleanup_policy=config["cleanup.policy"].value,
            retention_ms=int(config["retention.ms"].value),
        ))
    return infos


def delete_topics(settings: Settings, names: list[str], wait: bool = True) -> None:
    """Delete `names` (missing ones are fine); with `wait`, until the cluster no longer lists them."""
    from confluent_kafka import KafkaError, KafkaException

    admin = _admin(settings)
    if not names:
        return
    for name, future in admin.delete_topics(list(names), request_timeout=30).items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise TopicError(f"cannot delete topic {name}: {error.args[0].str()}") from error
    if not wait:
        return
    deadline = time.monotonic() + WAIT_S
    while any(name in admin.list_topics(timeout=10).topics for name in names):
        if time.monotonic() > deadline:
            raise TopicError(f"topics still listed {WAIT_S:.0f} s after deletion: {', '.join(names)}")
        time.sleep(0.1)
