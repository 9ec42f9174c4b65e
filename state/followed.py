"""A topic every process reads to its end at start, then follows in a daemon thread: the
mechanism under global tables (like Kafka Streams' `GlobalKTable`).

`FollowedTopic` owns the consumer, the load to the end, the follower thread and its failure;
a table built on it only says how one record folds in (`apply`, which must never raise). If
the follower thread dies (a fatal consumer error), `check()` raises, so the engine stops and
restarts instead of deciding on a frozen table.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from paystream import clients, logs
from paystream.settings import Settings

# After a consumer error raised by `consume`, wait before retrying instead of spinning on it.
_ERROR_BACKOFF_S: Final = 1.0


class FollowedTopic:
    """Reads `topic` to its end now (every partition), then follows it in a thread named `name`.

    Subclasses define `apply(key, value, partition, offset)` (never raising) and may override
    `loaded(seconds)`, called once the load reached the end.
    """

    def __init__(self, settings: Settings, topic: str, name: str) -> None:
        self._topic = topic
        self._name = name
        self._log: Any = logs.get(name)
        self._failure: BaseException | None = None
        self._closing = threading.Event()
        self._consumer = Consumer(
            clients.consumer_config(settings, f"{settings.engine.app_id}-{name}-{uuid.uuid4().hex[:8]}",
                                    **{"enable.partition.eof": True})
        )
        metadata = self._consumer.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"cannot read {topic}: {metadata.error}")
        partitions = [TopicPartition(topic, p, -2) for p in metadata.partitions]  # -2: beginning
        self._consumer.assign(partitions)
        self._load_to_end(len(partitions))
        self._thread = threading.Thread(target=self._run_follower, name=name, daemon=True)
        self._thread.start()

    def apply(self, key: bytes | None, value: bytes | None, partition: int | None = None,
              offset: int | None = None) -> None:
        raise NotImplementedError

    def loaded(self, seconds: float) -> None:
        """The load reached the end of every partition, in `seconds`."""

    def check(self) -> None:
        """Raise if the follower thread stopped: the table is frozen, so nothing may be decided on it.

        Call it before each batch of decisions; the raise stops the worker, and its restart
        loads the table afresh.
        """
        if self._thread.is_alive():
            return
        cause = self._failure
        what = self._name.replace("-", " ")
        if cause is None:
            why = "the table was closed" if self._closing.is_set() else "the thread ended"
            raise RuntimeError(f"{what} follower stopped: {why}")
        raise RuntimeError(f"{what} follower stopped: {cause!r}") from cause

    def follower_alive(self) -> bool:
        """Whether the follower thread still runs (`check()` raises when it does not)."""
        return self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Stop following and close the consumer (orderly shutdown, tests); `check()` then raises."""
        self._closing.set()
        self._thread.join(timeout)

    def _load_to_end(self, partitions: int) -> None:
        started = time.perf_counter()
        at_end: set[int | None] = set()  # `Message.partition()` is typed Optional
        while len(at_end) < partitions:
            for message in self._consumer.consume(10_000, timeout=0.05):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                        continue
                    raise RuntimeError(f"reading {self._topic}: {error}")
                self.apply(message.key(), message.value(), message.partition(), message.offset())
        self.loaded(time.perf_counter() - started)

    def _consume(self, timeout: float) -> list[Message]:
        """One fetch for the follower (the seam where tests inject consumer errors)."""
        return self._consumer.consume(1_000, timeout=timeout)

    def _run_follower(self) -> None:
        """The follower thread's body: whatever ends it is kept for `check()` and logged, never lost."""
        try:
            self._follow()
        except BaseException as error:
            self._failure = error
            self._log.error(f"{self._name} follower stopped", error=repr(error), exc_info=True)
        finally:
            try:
                self._consumer.close()
            except Exception as error:  # already closed or broken: the follower is over either way
                self._log.warning(f"{self._name} consumer close failed", error=repr(error))

    def _follow(self) -> None:
        while not self._closing.is_set():
            try:
                messages = self._consume(1.0)
            except KafkaException as error:
                self._on_consume_error(error)
                self._closing.wait(_ERROR_BACKOFF_S)
                continue
            for message in messages:
                failure = message.error()
                if failure is None:
                    self.apply(message.key(), message.value(), message.partition(), message.offset())
                elif failure.code() != KafkaError._PARTITION_EOF:
                    self._on_consume_error(KafkaException(failure))

    def _on_consume_error(self, error: KafkaException) -> None:
        """Log a consumer error and go on (librdkafka retries); re-raise a fatal one, which ends the follower.

        An error that is not a `KafkaError` cannot be classified, so it counts as fatal: a
        stopped worker is loud, a follower looping on an unknown failure is not.
        """
        cause = error.args[0] if error.args else None
        if not isinstance(cause, KafkaError) or cause.fatal():
            raise error
        self._log.warning(f"{self._topic} consume error", code=cause.name(), error=cause.str())


T = TypeVar("T", bound=FollowedTopic)
_shared: dict[str, FollowedTopic] = {}
_shared_lock = threading.Lock()


def shared(settings: Settings, topic: str, make: Callable[[Settings], T]) -> T:
    """The process's one table following `topic` on these settings' cluster (made by `make` the first
    time), shared by every task of the process."""
    key = f"{settings.kafka.bootstrap_servers}/{topic}"
    with _shared_lock:
        if key not in _shared:
            _shared[key] = make(settings)
        return _shared[key]  # type: ignore[return-value]  # one `make` per topic
