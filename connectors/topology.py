"""The topics an application's tasks read and write, checked before any task opens.

A task is partition p of each of the application's inputs (for the payment engine, `payments`
and its internal credits topic) and of each of its stores' changelogs: all must have exactly
`kafka.partitions` partitions. Someone adding partitions to one of them would send credits
where no task reads, or state into the wrong task, while the engine kept running; so a
mismatch stops the process with one line naming the topic and both counts. Output topics must
exist (any partition count).

Each changelog topic's id (a UUID Kafka gives each topic at creation) labels local snapshots
and disk stores: local state kept after the topics were recreated never loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.application import Application
from paystream import clients
from paystream.settings import Settings


class TopologyError(clients.SetupError):
    """The topics do not match the settings; the message says which and how to fix it."""


@dataclass
class Topology:
    """What `check_topology` found, and the admin client the tasks share for topic maintenance."""

    partitions: int
    topic_ids: dict[str, str]  # every checked topic's id
    admin: Any = None

    def delete_consumed(self, consumed: list[TopicPartition], log: Any) -> None:
        """Delete records below committed offsets (`DeleteRecords`), in the background; a failure
        is logged only: the records are deleted at the next attempt."""
        if self.admin is None:
            return
        try:
            futures = self.admin.delete_records(consumed, request_timeout=10)
        except KafkaException as error:
            log.warning("deleting consumed records failed", error=str(error))
            return
        for tp, future in futures.items():
            future.add_done_callback(lambda done, tp=tp: _log_failure(done, tp, log))


def _log_failure(future: Any, tp: TopicPartition, log: Any) -> None:
    error = future.exception()
    if error is not None:
        log.warning("deleting consumed records failed", topic=tp.topic, partition=tp.partition, error=str(error))


def check_topology(settings: Settings, app: Application, timeout: float = 30.0) -> Topology:
    """Check the application's topics: every task topic has `kafka.partitions` partitions, every
    output topic exists; returns their ids."""
    task_topics = app.task_topics(settings)
    names = list(dict.fromkeys([*task_topics, *app.output_topics(settings)]))
    clients.require_topics(settings, [*names, *app.table_topic_names(settings)])  # one line within seconds
    admin = AdminClient(clients.admin_config(settings))
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
        if name in task_topics and len(description.partitions) != expected:
            raise TopologyError(
                f"topic {name} has {len(description.partitions)} partitions but kafka.partitions is {expected}: every "
                f"task topic must have exactly kafka.partitions partitions (a task is partition p of each); "
                f"set kafka.partitions to match, or recreate the topic")
        ids[name] = str(description.topic_id)
    return Topology(expected, ids, admin)
