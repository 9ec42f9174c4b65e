"""What the harness measures, from outside the system under test.

- `ProcessSampler`: CPU seconds and resident memory of a process tree (children included),
  sampled with psutil while the system runs.
- `DecisionReader`: a `read_committed` consumer on the `decisions` topic; the one uniform
  completion test for every system is "the topic holds N committed decisions".
- `Timeline`: when how many decisions became visible, from which the rates are computed.
- latency: `now - ts` of each decision as a `read_committed` consumer first sees it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import msgspec
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from paystream.clients import consumer_config
from paystream.settings import Settings

SAMPLE_S = 0.25
MIN_CPU_SPAN_S = 2.0
CDF_POINTS = [float(p) for p in range(1, 100)] + [99.5, 99.9, 100.0]


class ProcessSampler:
    """Samples a process and all its descendants: total CPU seconds and peak summed RSS."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.cpu_by_pid: dict[int, float] = {}
        self.peak_rss = 0
        self.history: list[tuple[float, float]] = []  # (time.monotonic(), CPU seconds so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)

    def start(self) -> ProcessSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = 0
        for process in processes:
            try:
                times = process.cpu_times()
                rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            # a pid's CPU only grows; keep the last value seen for processes that exit
            self.cpu_by_pid[process.pid] = times.user + times.system
        self.peak_rss = max(self.peak_rss, rss)
        self.history.append((time.monotonic(), self.cpu_seconds))

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds used between two `time.monotonic()` instants (nearest samples), if sampled."""
        before = [cpu for at, cpu in self.history if at <= start]
        after = [cpu for at, cpu in self.history if at >= end]
        if not before or not after or end - start < MIN_CPU_SPAN_S:
            return None  # too few samples for a CPU difference to mean anything
        return after[0] - before[-1]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid.values())


@dataclass
class Timeline:
    """(seconds since start, decisions visible) each time the count changed."""

    points: list[tuple[float, int]] = field(default_factory=list)

    def first_at(self, count: int) -> float | None:
        for at, seen in self.points:
            if seen >= count:
                return at
        return None

    def steady_span(self, total: int) -> tuple[float, float, int] | None:
        """(from, to, records) between 10% and 90% visible, in seconds since start."""
        low, high = self.first_at(max(1, total // 10)), self.first_at(total * 9 // 10)
        if low is None or high is None or high <= low:
            return None
        count_low = next(seen for at, seen in self.points if at == low)
        count_high = next(seen for at, seen in self.points if at == high)
        return low, high, count_high - count_low

    def steady_rate(self, total: int, min_span_s: float) -> float | None:
        """Decisions/s between 10% and 90% visible, if that span covers at least `min_span_s`."""
        low, high = self.first_at(max(1, total // 10)), self.first_at(total * 9 // 10)
        if low is None or high is None or high - low < min_span_s:
            return None
        count_low = next(seen for at, seen in self.points if at == low)
        count_high = next(seen for at, seen in self.points if at == high)
        return (count_high - count_low) / (high - low)


class DecisionReader:
    """A read_committed consumer of a whole `decisions` topic, from its beginning."""

    def __init__(self, settings: Settings, topic: str, partitions: int, group: str, eof: bool = False) -> None:
        self.consumer = Consumer(consumer_config(settings, group, **({"enable.partition.eof": True} if eof else {})))
        self.partitions = partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])

    def read_to_end(self, timeout_s: float = 120.0) -> list[bytes]:
        """Every committed value up to each partition's last stable offset (needs `eof=True`)."""
        values: list[bytes] = []
        ended: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(ended) < self.partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(ended)} of {self.partitions} partitions read to their end")
            for message in self.consumer.consume(num_messages=10_000, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {message.topic()}: {error}")
                    ended.add(message.partition())
                elif message.value() is not None:
                    values.append(message.value())
        return values

    def poll(self, timeout: float = 0.1) -> list[bytes]:
        values = []
        for message in self.consumer.consume(num_messages=10_000, timeout=timeout):
            if message.error() is None and message.value() is not None:
                values.append(message.value())
        return values

    def close(self) -> None:
        self.consumer.close()


class DecisionIds(msgspec.Struct):
    payment_id: str


class DecisionTs(msgspec.Struct):
    ts: int


def count_payment_ids(values: list[bytes]) -> tuple[int, int]:
    """(distinct payment ids, duplicate decisions) among decision values."""
    decode = msgspec.json.Decoder(DecisionIds).decode
    ids = [decode(value).payment_id for value in values]
    distinct = len(set(ids))
    return distinct, len(ids) - distinct


_decode_decision_ts = msgspec.json.Decoder(DecisionTs).decode


def decision_ts(value: bytes) -> int:
    return _decode_decision_ts(value).ts


def percentiles(samples: list[float], points: list[float] = CDF_POINTS) -> list[float]:
    """The `points` percentiles of `samples` (nearest rank)."""
    ordered = sorted(samples)
    if not ordered:
        return []
    last = len(ordered) - 1
    return [ordered[min(last, max(0, round(p / 100 * last)))] for p in points]
