"""The one place that knows about Kafka transactions (like Kafka Streams' `StreamsProducer`).

A `TaskProducer` belongs to one task (one partition of `payments`). Its `transactional.id`
is stable per task (`{app_id}-{task_id}`), not per process, so whichever process owns the
task next fences every zombie of it at `init_transactions`, across restarts and rescaling.

Errors map to one recovery action each (`classify`):
- `TaskFenced`: another owner took the task; drop it without committing (the process exits).
- `TaskNotAuthorized`: the principal lacks an ACL; one line names the principal and the
  resource (retrying cannot help, and it is not a fencing).
- `TaskCommitFailed`: anything else in a commit; the process exits and the restart's
  `init_transactions` aborts or completes what was left.
A retriable error of `commit_transaction` (a coordinator moving, a timeout) is retried in
place until the commit deadline, which is shorter than `transaction.timeout.ms`, so a commit
never outlives the transaction it commits. Either way nothing is written twice: the restart
resumes from what Kafka committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from paystream import clients, faults, logs, metrics
from paystream.settings import Settings

OutboundRecord = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


class TaskFenced(RuntimeError):
    """A newer owner of this task exists; this one must stop without writing."""


class TaskCommitFailed(RuntimeError):
    """A transaction could not be committed; the process must restart the task from Kafka."""


class TaskNotAuthorized(RuntimeError):
    """The broker refused an operation for lack of an ACL: a configuration error, not a race."""


_FENCED_CODES = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}

_AUTHORIZATION_CODES = {
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional.id",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "consumer group",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}


def classify(error: KafkaException | KafkaError, task_id: str, action: str, principal: str = "",
             resources: dict[str, str] | None = None) -> RuntimeError:
    """Map a Kafka error to the exception that names its recovery action.

    >>> classify(KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), "payments-3", "init_transactions",
    ...          "User:paystream", {"transactional.id": "paystream-payments-3"}).args[0].split(":")[0]
    'task payments-3'
    """
    kafka_error = error.args[0] if isinstance(error, KafkaException) else error
    code = kafka_error.code() if isinstance(kafka_error, KafkaError) else None
    if code in _FENCED_CODES:
        return TaskFenced(f"task {task_id} was fenced during {action}: {kafka_error}")
    if code in _AUTHORIZATION_CODES:
        kind = _AUTHORIZATION_CODES[code]
        resource = (resources or {}).get(kind, "")
        return TaskNotAuthorized(
            f"task {task_id}: {action} refused: principal {principal or 'ANONYMOUS'} is not authorized for "
            f"{kind} {resource!r}: add the ACL (see README, Security) ({kafka_error.str()})".replace(" ''", ""))
    return TaskCommitFailed(f"task {task_id}: {action} failed: {kafka_error}")


def principal_of(config: dict[str, Any]) -> str:
    """Who the clients authenticate as, for error messages (never the password)."""
    user = config.get("sasl.username")
    return f"User:{user}" if user else "ANONYMOUS"


def transactional_id(settings: Settings, task_id: str) -> str:
    """`{app_id}-{task_id}`: stable across restarts, so a new owner fences the old one."""
    return f"{settings.engine.app_id}-{task_id}"


class TaskProducer:
    """Writes one task's records in transactions: begin lazily, send, commit with offsets."""

    def __init__(self, settings: Settings, task_id: str, group_metadata: Any) -> None:
        self.task_id = task_id
        self._group_metadata = group_metadata
        self._log = logs.get("transactions", task=task_id)
        self._commit_timeout = settings.engine.commit_timeout_ms / 1000
        tid = transactional_id(settings, task_id)
        config = clients.producer_config(
            settings,
            **{
                "transactional.id": tid,
                "transaction.timeout.ms": settings.engine.transaction_timeout_ms,
                "client.id": tid,
                # a failed record fails the commit anyway; reporting only failures keeps the
                # hot path free of one Python callback per record
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
            },
        )
        self._principal = principal_of(config)
        self._resources = {"transactional.id": tid, "consumer group": settings.consumer_group}
        self._producer = Producer(config)
        self._in_transaction = False
        self._send_error: KafkaError | None = None

    def init(self, timeout: float = 60.0) -> None:
        """Fence every zombie of this task and abort or complete its dangling transaction."""
        try:
            self._producer.init_transactions(timeout)
        except KafkaException as error:
            raise self._classify(error, "init_transactions") from error

    def _classify(self, error: KafkaException | KafkaError, action: str) -> RuntimeError:
        return classify(error, self.task_id, action, self._principal, self._resources)

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None and self._send_error is None:
            self._send_error = error  # parked; raised on the next send or commit

    def send(self, records: Iterable[OutboundRecord]) -> None:
        """Produce records inside the open transaction (opened on first use)."""
        if self._send_error is not None:
            raise self._classify(self._send_error, "send")
        produce = self._producer.produce
        try:
            if not self._in_transaction:
                self._producer.begin_transaction()
                self._in_transaction = True
            for topic, key, value, headers in records:
                try:
                    if headers is None:
                        produce(topic, value, key)
                    else:
                        # confluent_kafka types `headers` as an invariant List[Tuple[str, str | bytes | None]]:
                        # a list of (str, bytes) is a valid value its annotation cannot accept
                        produce(topic, value, key, headers=headers)  # type: ignore[arg-type]
                except BufferError:
                    self._wait_for_room(topic, key, value, headers)
            self._producer.poll(0)
        except KafkaException as error:
            raise self._classify(error, "send") from error

    def send_to_partition(self, topic: str, partition: int, pairs: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Produce (key, value) pairs to one partition (the task's own changelog partition)."""
        if not self._in_transaction:
            self.send(())
        produce = self._producer.produce
        try:
            for key, value in pairs:
                try:
                    produce(topic, value, key, partition)
                except BufferError:
                    self._wait_for_room(topic, key, value, None, partition)
        except KafkaException as error:
            raise self._classify(error, "send") from error

    def _wait_for_room(self, topic: str, key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]] | None, partition: int = -1) -> None:
        """The local queue is full: let librdkafka drain it, then produce the record (or fail the
        task if it stays full past the commit deadline: a stuck queue must restart, never stall)."""
        deadline = time.monotonic() + self._commit_timeout
        while True:
            self._producer.poll(0.05)
            try:
                # `headers`: a valid value confluent_kafka's invariant List annotation cannot accept (see `send`)
                self._producer.produce(topic, value, key, partition, headers=headers)  # type: ignore[arg-type]
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise self._classify(KafkaError(KafkaError._QUEUE_FULL, "the producer queue stayed full past "
                                                    "engine.commit_timeout_ms"), "send") from None

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def commit(self, offsets: list[TopicPartition], timeout: float | None = None) -> None:
        """Send the input offsets into the transaction and commit it; raise if anything failed.

        Everything must be done by the commit deadline (`engine.commit_timeout_ms`, shorter than
        `transaction.timeout.ms`); a retriable error is retried in place until then.
        """
        deadline = time.monotonic() + (self._commit_timeout if timeout is None else timeout)
        try:
            if not self._in_transaction:
                self._producer.begin_transaction()
                self._in_transaction = True
            if offsets:
                self._retrying(lambda left: self._producer.send_offsets_to_transaction(
                    offsets, self._group_metadata, left), deadline)
            faults.maybe_die("mid_commit")
            self._retrying(self._producer.commit_transaction, deadline)
        except KafkaException as error:
            raise self._classify(error, "commit_transaction") from error
        finally:
            self._in_transaction = False
        if self._send_error is not None:  # cannot happen after a successful commit, but never hide it
            raise self._classify(self._send_error, "delivery")

    def _retrying(self, call: Callable[[float], Any], deadline: float) -> None:
        """`call(seconds_left)`, again while it fails with a retriable error and time is left."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit deadline passed "
                                                "(engine.commit_timeout_ms)"))
            try:
                call(left)
                return
            except KafkaException as error:
                kafka_error = error.args[0]
                if not (isinstance(kafka_error, KafkaError) and kafka_error.retriable()
                        and not kafka_error.txn_requires_abort() and not kafka_error.fatal()):
                    raise
                self._log.warning("retrying the commit", error=kafka_error.str(), seconds_left=round(left, 1))

    def abort(self, timeout: float = 10.0) -> None:
        """Abort the open transaction (a graceful stop with uncommitted work); never raises."""
        if not self._in_transaction:
            return
        metrics.TRANSACTIONS_ABORTED.inc()
        try:
            self._producer.abort_transaction(timeout)
        except KafkaException as error:
            self._log.warning("abort failed; the next owner's init_transactions aborts it", error=str(error))
        finally:
            self._in_transaction = False

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (nothing is, outside a transaction) and release the client."""
        self._producer.flush(timeout)

    def close_dirty(self) -> None:
        """Abandon the task without committing (the next owner's init aborts what is open)."""
        self._in_transaction = False
