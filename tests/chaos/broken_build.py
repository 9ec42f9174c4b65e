"""The deliberately broken build the chaos suite must catch: `tests.chaos.broken_build:flow`.

Input offsets are committed by the consumer *before* the transaction instead of inside it,
and the changelog keeps no copy of them: a `kill -9` between the two loses the decisions of
that epoch. Injected by the test that runs it (a task class given to the runtime), never
reachable from production settings.
"""

from __future__ import annotations

from confluent_kafka import TopicPartition

from connectors.tasks import TaskRuntime


class OffsetsOutsideTheTransaction(TaskRuntime):
    records_positions = False  # with the changelog's copy, the restart would refuse to open instead

    def offsets_for_transaction(self, offsets: list[TopicPartition]) -> list[TopicPartition]:
        assert self.consumer is not None
        self.consumer.commit(offsets=offsets, asynchronous=False)  # the bug the chaos test must catch
        return []


def __getattr__(name: str) -> object:
    if name != "flow":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from connectors.bytewax_io import kafka_source_and_sink
    from connectors.dataflow import build_flow
    from flows.payments import PAYMENTS
    from paystream import logs, settings

    loaded = settings.load()
    logs.configure(loaded)
    return build_flow(loaded, PAYMENTS, kafka_source_and_sink(loaded, PAYMENTS, runtime=OffsetsOutsideTheTransaction))
