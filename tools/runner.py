"""Running the dataflow as local processes, and watching how far it got.

`FlowProcesses` starts `python -m paystream.worker flows.payments:flow` as one or more processes
(a Bytewax cluster on loopback, as the Helm chart's StatefulSet does with pod ordinals),
and can stop or `kill -9` them. `committed_lag` reads, from Kafka alone, how many input
records the engine has not yet committed: the only progress measure that counts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from confluent_kafka import Consumer, TopicPartition

from paystream import clients
from paystream.settings import Settings

FLOW = "flows.payments:flow"
# our entry point, so that any `engine.epoch_interval_ms` works (bytewax.run's -s takes whole seconds)
WORKER = "paystream.worker"


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load exactly `settings`."""
    import msgspec

    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSTREAM_")}
    flat: dict[str, str] = {}

    def walk(prefix: str, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}__{key}" if prefix else key, value)
        else:
            flat["PAYSTREAM_" + prefix.upper()] = str(node).lower() if isinstance(node, bool) else str(node)

    for key, value in msgspec.to_builtins(settings).items():
        if key == "kafka":
            for sub, v in value.items():
                if sub != "client":
                    walk(f"kafka__{sub}", v)
            for name, v in value["client"].items():
                flat[f"PAYSTREAM_KAFKA__CLIENT__{name}"] = str(v)
        else:
            walk(key, value)
    env.update(flat)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class FlowProcesses:
    """A Bytewax cluster of `processes` local processes running the payment flow."""

    def __init__(self, settings: Settings, processes: int = 1, workers_per_process: int = 1,
                 log_dir: str | Path | None = None, cwd: str | Path | None = None, flow: str = FLOW,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.flow = flow
        self.extra_env = dict(extra_env or {})  # e.g. fault points armed for a chaos run
        self.count = processes
        self.workers = workers_per_process
        self.log_dir = Path(log_dir) if log_dir else None
        self.cwd = Path(cwd) if cwd else Path(__file__).resolve().parent.parent
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * processes
        self._logs: list[IO[bytes] | None] = [None] * processes
        self._addresses = ""
        self.starts = 0

    def _command(self, index: int) -> list[str]:
        command = [sys.executable, "-m", WORKER, self.flow]
        if self.count > 1:
            command += ["-i", str(index), "-a", self._addresses]
        if self.workers > 1:
            command += ["-w", str(self.workers)]
        return command

    def start(self) -> None:
        """Start every process (a fresh Bytewax cluster: new addresses each time)."""
        if self.count > 1:
            self._addresses = ";".join(f"127.0.0.1:{p}" for p in _free_ports(self.count))
        env = settings_environment(self.settings)
        env.update(self.extra_env)
        env["PAYSTREAM_ENGINE__HTTP_PEERS"] = ",".join(
            f"127.0.0.1:{self.http_port(index)}" for index in range(self.count) if self.http_port(index))
        for index in range(self.count):
            env["PAYSTREAM_ENGINE__HTTP_PORT"] = str(self.http_port(index))
            output: IO[bytes] | int = subprocess.DEVNULL
            if self.log_dir:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log = open(self.log_dir / f"worker-{index}.log", "ab")
                self._logs[index] = log
                output = log
            self.procs[index] = subprocess.Popen(self._command(index), cwd=self.cwd, env=env,
                                                 stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    def http_port(self, index: int) -> int:
        """Where process `index` serves its metrics and health: `engine.http_port` + index (0: none)."""
        base = self.settings.engine.http_port
        return base + index if base > 0 else 0

    def alive(self) -> list[bool]:
        return [p is not None and p.poll() is None for p in self.procs]

    def kill(self, index: int) -> None:
        """`kill -9` one process: no goodbye, no flush, an open transaction left behind."""
        proc = self.procs[index]
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop all processes: SIGTERM, then SIGKILL after `timeout`."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            if log:
                log.close()
        self._logs = [None] * self.count

    def kill_all(self) -> None:
        for index in range(self.count):
            self.kill(index)

    def returncodes(self) -> list[int | None]:
        return [p.poll() if p is not None else None for p in self.procs]


class LagProbe:
    """Committed offsets of the engine's group versus the ends of its input topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer = Consumer(clients.consumer_config(settings, settings.consumer_group,
                                                          **{"client.id": f"lag-probe-{uuid.uuid4().hex[:6]}"}))
        self.partitions = [TopicPartition(topic, p)
                           for topic in (settings.topics.payments, settings.credits_topic)
                           for p in range(settings.kafka.partitions)]

    def measure(self) -> tuple[int, int]:
        """(committed input records, committed input records not yet consumed by the engine).

        The end of a transactional topic holds commit markers and may hold aborted records,
        which no `read_committed` reader ever sees, so a small lag is counted exactly by
        reading what is really there after the group's position.
        """
        committed = clients.while_settling(lambda: self._consumer.committed(self.partitions, timeout=30))
        done = lag = 0
        exact: list[TopicPartition] = []
        for tp in committed:
            where = TopicPartition(tp.topic, tp.partition)
            low, high = clients.while_settling(
                lambda where=where: self._consumer.get_watermark_offsets(where, timeout=30))
            position = tp.offset if tp.offset >= 0 else low
            done += max(0, position - low)
            if high - position > 10_000:
                lag += high - position
            elif high > position:
                exact.append(TopicPartition(tp.topic, tp.partition, position))
        if exact:
            lag += self._count_until_end(exact)
        return done, lag

    def _count_until_end(self, start: list[TopicPartition]) -> int:
        reader = Consumer(clients.consumer_config(self.settings, f"lag-reader-{uuid.uuid4().hex[:8]}",
                                                  **{"enable.partition.eof": True}))
        try:
            reader.assign(start)
            remaining = {(tp.topic, tp.partition) for tp in start}
            count = 0
            deadline = time.monotonic() + 30
            while remaining and time.monotonic() < deadline:
                for message in reader.consume(10_000, timeout=0.5):
                    if message.error() is None:
                        count += 1
                    else:
                        remaining.discard((message.topic(), message.partition()))
            return count
        finally:
            reader.close()

    def payments_committed(self) -> int:
        payments = self.partitions[: self.settings.kafka.partitions]
        committed = clients.while_settling(lambda: self._consumer.committed(payments, timeout=30))
        return sum(max(0, tp.offset) for tp in committed)

    def close(self) -> None:
        self._consumer.close()


def wait_until_caught_up(settings: Settings, expected_payments: int | None, timeout: float,
                         procs: FlowProcesses | None = None, progress: bool = True) -> float:
    """Block until the engine committed every input (payments and credits); return seconds waited."""
    from tqdm import tqdm

    probe = LagProbe(settings)
    started = time.monotonic()
    bar = tqdm(total=expected_payments, unit="payment", disable=not progress or expected_payments is None,
               file=sys.stderr, dynamic_ncols=True)
    try:
        quiet = 0
        while time.monotonic() - started < timeout:
            if procs is not None and not all(procs.alive()):
                raise RuntimeError(f"a worker stopped unexpectedly: exit codes {procs.returncodes()}")
            done = probe.payments_committed()
            bar.n = min(done, expected_payments or done)
            bar.refresh()
            _, lag = probe.measure()
            reached = expected_payments is None or done >= expected_payments
            quiet = quiet + 1 if (lag == 0 and reached) else 0
            if quiet >= 2:
                return time.monotonic() - started
            time.sleep(0.5)
        raise TimeoutError(f"the engine did not catch up within {timeout:.0f} s")
    finally:
        bar.close()
        probe.close()
