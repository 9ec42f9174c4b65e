"""The topics a task reads and writes, checked before any task opens.

A task is partition p of `payments`, of the internal credits topic and of the changelog: all
three must have exactly `kafka.partitions` partitions. Someone adding partitions to one of them
would send credits where no task reads, or state into the wrong task, while the engine kept
running; so a mismatch stops the process with one line naming the topic and both counts.

The changelog topic's id (a UUID Kafka gives each topic at creation) labels local snapshots:
a snapshot directory reused after the topics were recreated never loads stale state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from paystream import clients
from paystream.settings import Settings


class TopologyError(RuntimeError):
    """The topics do not match the settings; the message says which and how to fix it."""


@dataclass
class Topology:
    """What `check_topology` found, and the admin client the tasks share for topic maintenance."""

    partitions: int
    changelog_id: str
    admin: Any = None

    def delete_consumed(self, consumed: list[TopicPartition], log: Any) -> None:
        """Delete records below committed offsets (`DeleteRecords`), in the background; a failure
        is logged only: the records are deleted at the next attempt."""
        if self.admin is None:
            return
        try:
            futures = self.admin.delete_records(consumed, request_timeout=10)
        except KafkaException as error:
            log.warning("deleting consumed credits failed", error=str(error))
            return
        for tp, future in futures.items():
            future.add_done_callback(lambda done, tp=tp: _log_failure(done, tp, log))


def _log_failure(future: Any, tp: TopicPartition, log: Any) -> None:
    error = future.exception()
    if error is not None:
        log.warning("deleting consumed credits failed", topic=tp.topic, partition=tp.partition, error=str(error))


def check_topology(settings: Settings, timeout: float = 30.0) -> Topology:
    """Check the partition counts of the task topics; return the changelog's topic id."""
    admin = AdminClient(clients.admin_config(settings))
    names = [settings.topics.payments, settings.credits_topic, settings.changelog_topic]
    expected = settings.kafka.partitions
    ids: dict[str, str] = {}
    futures = clients.while_settling(lambda: admin.describe_topics(TopicCollection(names), request_timeout=timeout))
    for name, future in futures.items():
        try:
            description = future.result(timeout)
        except KafkaException as error:
            kafka_error = error.args[0]
            raise TopologyError(f"cannot describe topic {name}: {kafka_error.str()}; if it is missing, run "
                                f"`paystream topics create`") from error
        if len(description.partitions) != expected:
            raise TopologyError(
                f"topic {name} has {len(description.partitions)} partitions but kafka.partitions is {expected}: every "
                f"task topic must have exactly kafka.partitions partitions (a task is partition p of each); "
                f"set kafka.partitions to match, or recreate the topic")
        ids[name] = str(description.topic_id)
    return Topology(expected, ids[settings.changelog_topic], admin)
