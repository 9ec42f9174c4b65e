"""The records a task reads and writes, whatever its application.

`InboundRecord` has the accessors of `confluent_kafka.Message`, so the Kafka source hands its
messages over as they are (no copy per record on the hot path) while tests and in-memory runs
build these instead. `OutboundRecord` is `(topic, key, value, headers)`: one record to produce
in the task's transaction.

>>> record = InboundRecord("payments", 3, 42, b"A1", b"{}", timestamp=1_000)
>>> record.topic(), record.partition(), record.offset(), record.timestamp()
('payments', 3, 42, (1, 1000))
"""

from __future__ import annotations

from typing import Final

NO_TIMESTAMP: Final = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE
CREATE_TIME: Final = 1  # confluent_kafka.TIMESTAMP_CREATE_TIME


class InboundRecord:
    """One consumed Kafka record, with the accessors of `confluent_kafka.Message`."""

    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_timestamp")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                 timestamp: int | None = None) -> None:
        self._topic, self._partition, self._offset, self._key, self._value = topic, partition, offset, key, value
        self._timestamp = (NO_TIMESTAMP, -1) if timestamp is None else (CREATE_TIME, timestamp)

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        """(kind, milliseconds), as `Message.timestamp()`: kind 0 means the record has none."""
        return self._timestamp

    def __repr__(self) -> str:
        return f"InboundRecord({self._topic!r}, {self._partition}, {self._offset}, {self._key!r}, {self._value!r})"


# (topic, key, value, headers): one record to produce in the task's transaction
OutboundRecord = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]
