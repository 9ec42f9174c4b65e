"""The chaos run: kill workers (and brokers) while the engine works, then audit it.

A supervisor, like a StatefulSet controller with a trigger-happy operator:
1. fresh topics and app id, N payments of generated traffic (1% malformed);
2. the payment flow as `processes` local Bytewax processes, with the in-process fault points
   of `paystream.faults` armed at a small probability, so some deaths land exactly inside a
   commit (random kills from outside rarely hit a 10 ms window);
3. K times: `kill -9` a random process, restart, and time the recovery: from the kill to the
   first NEW committed progress of the group. When a kill fires is the plan's `trigger`:
   - `progress` (the default): kill k fires as soon as the group has committed
     `round(k * N / (K + 1))` payments, so the kills are spread evenly over the work however
     fast or slow the machine is. The payments are let into the topic step by step (`Feed`):
     until kill k fires, only those up to halfway to the next threshold, the last ones after
     the last kill. A group cannot commit what is not in the topic, so every kill lands at its
     point of the run with work left, and finds new work after its restart, by construction,
     not by luck;
   - `time`: after a random wait of `wait_s` (0.3–3 s); with everything produced up front a
     fast engine may finish before the last kills (the report then says "n/a").
   A process that dies by itself (a fault point, or an error such as a failed commit while a
   broker is down) is restarted too and counted apart. With several processes the whole
   Bytewax cluster is killed and restarted, because a Bytewax cluster cannot take a lone
   process back. With a `process_schedule` (say 1, 2, 3, 2, 1) the run starts with its first
   count and the restarts after the kills move through it evenly (`ChaosPlan.process_counts`);
   a restart with a different count is a rescale: every process of the cluster is killed and a
   fresh cluster of the new size is started (a running Bytewax cluster cannot change its size),
   so the tasks move between processes, fence their predecessors and restore from Kafka;
4. optionally B times: `kill -9` the broker leading partition 0 of `payments` (at committed
   `round(b * N / (B + 1))` payments with the progress trigger, between worker kills with the
   time trigger), keep it down a few seconds while the workers run on, then start it again;
5. wait until every input is committed, stop, and run the independent auditor (`verify`).

The run is green iff the auditor is: nothing lost, nothing applied twice, whatever was killed.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from confluent_kafka import Consumer, KafkaException, TopicPartition

from paystream import clients, faults, logs
from paystream.settings import Settings

if TYPE_CHECKING:
    from tools.runner import FlowProcesses

log = logs.get("chaos")

Say = Callable[[str], None]

DEFAULT_FAULT_CHANCES: Mapping[str, float] = {"before_commit": 0.005, "mid_commit": 0.01, "after_commit": 0.005}
RESTART_POLICY = ("a killed or dead process is restarted at once; with more than one process every process of "
                  "the Bytewax cluster is killed and all are restarted together (as a supervisor restarting a "
                  "StatefulSet would), because a running Bytewax cluster cannot take a lone process back")


# A worker that keeps dying by itself with no new progress is broken, not unlucky: stop the run.
MAX_DEATHS_WITHOUT_PROGRESS = 8

# When a kill fires: once the group has committed enough payments, or after a random wait.
TRIGGERS = ("progress", "time")


def _relative(path: Path) -> str:
    """`path` relative to the working directory where it lies under it (reports get committed)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class ChaosError(RuntimeError):
    """The chaos run could not be carried out (not: the engine failed the audit)."""


def spread(count: int, total: int) -> list[int]:
    """`count` thresholds spread evenly over `total`: `round(k * total / (count + 1))` for k = 1..count.

    >>> spread(3, 100)
    [25, 50, 75]
    """
    return [round(k * total / (count + 1)) for k in range(1, count + 1)]


@dataclass(frozen=True)
class Shot:
    """One planned kill: of a worker process or of the broker leading `payments[0]`."""

    kind: str  # worker_kill | broker_kill
    number: int  # 1.. within its kind
    threshold: int | None = None  # progress trigger: fire once the group committed this many payments
    # progress trigger: the payments in the topic until this kill has fired (threshold <= limit < all)
    limit: int | None = None


@dataclass(frozen=True)
class ChaosPlan:
    """What to break, when, how often, and how long to wait for things."""

    kills: int
    payments: int
    accounts: int = 10_000
    processes: int = 1
    broker_kills: int = 0
    # brokers the cluster must list before topics are created (a just-started node registers
    # a moment after it is "ready"; topics made before would get a smaller replication factor)
    brokers: int = 1
    seed: int = 7
    bad_ratio: float = 0.01
    # progress: kills fire at committed-payment thresholds (see `thresholds`); time: after `wait_s`
    trigger: str = "progress"
    wait_s: tuple[float, float] = (0.3, 3.0)  # the time trigger's random wait before each worker kill
    fault_chances: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FAULT_CHANCES))
    # the process counts the run moves through over its worker kills (see `process_counts`);
    # empty: always `processes` (which a schedule replaces)
    process_schedule: tuple[int, ...] = ()
    broker_down_s: float = 3.0
    # no new committed progress for this long after a death (or while waiting for a threshold)
    recovery_timeout_s: float = 90.0
    catch_up_timeout_s: float = 900.0
    flow: str = "flows.payments:flow"  # module:variable the workers run (tests inject broken builds here)

    def thresholds(self) -> list[int]:
        """Progress trigger: the committed payments at which worker kill k (1..K) fires."""
        return spread(self.kills, self.payments) if self.trigger == "progress" else []

    def broker_thresholds(self) -> list[int]:
        """Progress trigger: the committed payments at which broker kill b (1..B) fires."""
        return spread(self.broker_kills, self.payments) if self.trigger == "progress" else []

    def process_counts(self) -> list[int]:
        """The Bytewax processes of each of the K + 1 segments of the run: segment 0 from the start
        to worker kill 1, segment k from the restart after kill k to the next kill (or the end).

        With a schedule of S counts, segment j runs `process_schedule[j * S // (K + 1)]`: the run
        starts with the first count and moves through the schedule evenly over the kills, every
        count for at least one segment (the plan needs K + 1 >= S), and with the progress trigger
        (kills spread evenly over the payments) for about N / S payments each. A restart whose
        count differs from the one before is a rescale.

        >>> ChaosPlan(kills=100, payments=10**6, process_schedule=(1, 2, 3, 2, 1)).process_counts()[19:23]
        [1, 1, 2, 2]
        >>> ChaosPlan(kills=4, payments=100, process_schedule=(1, 2, 1)).process_counts()
        [1, 1, 2, 2, 1]
        """
        schedule = self.process_schedule or (self.processes,)
        segments = self.kills + 1
        return [schedule[j * len(schedule) // segments] for j in range(segments)]

    def rescales(self) -> int:
        """The restarts planned with a different process count than the one before."""
        counts = self.process_counts()
        return sum(1 for before, after in zip(counts, counts[1:], strict=False) if before != after)

    def held_back(self) -> int:
        """Progress trigger: the payments let into the topic only after the last kill (see `schedule`)."""
        shots = self.schedule()
        return self.payments - shots[-1].limit if shots and shots[-1].limit is not None else 0

    def problems(self) -> list[str]:
        """What makes this plan impossible to carry out (empty: fine)."""
        found = []
        if self.processes < 1 or self.kills < 0 or self.broker_kills < 0 or self.payments < 1:
            found.append("need processes >= 1, kills >= 0, broker kills >= 0 and payments >= 1")
        if any(count < 1 for count in self.process_schedule):
            found.append(f"every count of the process schedule must be >= 1: {self.process_schedule}")
        elif len(self.process_schedule) > self.kills + 1 and self.kills >= 0:
            found.append(f"a process schedule of {len(self.process_schedule)} counts needs at least "
                         f"{len(self.process_schedule) - 1} worker kills (each count runs from a restart on)")
        if self.trigger not in TRIGGERS:
            found.append(f"unknown trigger {self.trigger!r}; known: {', '.join(TRIGGERS)}")
        elif self.trigger == "progress" and self.payments >= 1 and \
                max(self.thresholds() + self.broker_thresholds(), default=0) >= self.payments:
            most = max(self.kills, self.broker_kills)
            least = next(n for n in itertools.count(1) if max(spread(most, n)) < n)
            found.append(f"{self.payments:,} payments are too few for {most} kills with the progress trigger "
                         f"(the last one would wait for the last payment): give at least {least}")
        return found

    def schedule(self) -> list[Shot]:
        """Every kill in the order it fires.

        Progress: by threshold (a broker kill before a worker kill at the same one); until a kill
        has fired, the topic holds the payments up to halfway from its threshold to the next
        higher one (or to the end), so it fires at its point of the run with work left, and the
        restarted engine finds new work. Time: the broker kills between the worker kills, spread
        evenly (after `round(b * K / (B + 1))` of them).
        """
        if self.trigger == "progress":
            planned = [("broker_kill", b, t) for b, t in enumerate(self.broker_thresholds(), 1)]
            planned += [("worker_kill", k, t) for k, t in enumerate(self.thresholds(), 1)]
            planned.sort(key=lambda row: (row[2], row[0] != "broker_kill"))
            thresholds = sorted({threshold for _, _, threshold in planned}) + [self.payments]

            def limit(threshold: int) -> int:
                return (threshold + thresholds[thresholds.index(threshold) + 1]) // 2

            return [Shot(kind, number, threshold, limit(threshold)) for kind, number, threshold in planned]
        workers = [(k - 1, 1, Shot("worker_kill", k)) for k in range(1, self.kills + 1)]
        brokers = [(round(b * self.kills / (self.broker_kills + 1)), 0, Shot("broker_kill", b))
                   for b in range(1, self.broker_kills + 1)]
        return [shot for _, _, shot in sorted(workers + brokers, key=lambda row: row[:2])]


@dataclass
class Incident:
    """One death: a kill by the supervisor, a process that died by itself, or a broker kill."""

    kind: str  # worker_kill | fault_point | worker_exit | broker_kill
    at_s: float  # seconds since the flow first started
    target: int  # process index, or broker node id
    committed_before: int  # payments the group had committed at the death
    threshold: int | None = None  # a kill by the progress trigger: the committed payments it waited for
    limit: int | None = None  # ... and the payments in the topic until it fired
    returncode: int | None = None
    recovery_s: float | None = None  # kill -> first new committed progress; None: n/a or not seen
    note: str = ""
    # the Bytewax processes before the death and after its restart (they differ: a rescale)
    processes_before: int | None = None
    processes_after: int | None = None

    @property
    def settled(self) -> bool:
        return self.recovery_s is not None or bool(self.note)


@dataclass
class ChaosResult:
    """The report of one run; `ok` iff the auditor found no violation."""

    report: dict[str, Any]
    verify_table: str
    ok: bool
    violated: list[str]


def fresh_settings(base: Settings, bootstrap_servers: str | None = None, partitions: int | None = None,
                   snapshot_root: str | Path = ".paystream/chaos", run_id: str | None = None) -> Settings:
    """`base` with unique topic names and app id (so group, credits and changelog are fresh too)."""
    run = run_id or uuid.uuid4().hex[:10]
    topics = msgspec.structs.replace(
        base.topics, **{name: f"{value}-{run}" for name, value in msgspec.structs.asdict(base.topics).items()})
    app_id = f"chaos-{run}"
    kafka = msgspec.structs.replace(base.kafka, bootstrap_servers=bootstrap_servers or base.kafka.bootstrap_servers,
                                    partitions=partitions or base.kafka.partitions)
    engine = msgspec.structs.replace(base.engine, app_id=app_id,
                                     snapshot_dir=str(Path(snapshot_root).resolve() / app_id / "snapshots"))
    return msgspec.structs.replace(base, topics=topics, kafka=kafka, engine=engine)


def leader_of_payments_zero(settings: Settings) -> int:
    """The node id of the broker that leads partition 0 of `payments`."""
    from confluent_kafka.admin import AdminClient

    topic = settings.topics.payments
    metadata = AdminClient(clients.admin_config(settings)).list_topics(topic, timeout=10)
    leader = metadata.topics[topic].partitions[0].leader
    if leader < 0:
        raise ChaosError(f"partition 0 of {topic} has no leader")
    return leader


class Feed:
    """The run's traffic, let into the `payments` topic in steps: up to a given count of payments
    before the flow starts, then more after each kill (`release`), the last payments only after
    the last kill.

    Why: a group cannot commit a payment that is not in its topic yet. Before kill k the topic
    holds a bit more than the kill's threshold and less than every payment, so however fast the
    engine is, the kill lands at its point of the run with work left; after the kill there is
    new work, so the restarted engine's recovery can be seen.

    How: `produce_traffic` (the same bytes, order and timestamps as `paystream generate`) writes
    the customers to their topic and the payments to a one-partition staging topic, which keeps
    the generator's order; a release copies the next payments from there, key, value, headers and
    timestamp as they are, with paystream's producer (the same partitioner as a direct write).
    With nothing to hold back (the time trigger, or no kills) the traffic goes straight to
    `payments` and there is no staging topic.
    """

    def __init__(self, settings: Settings, plan: ChaosPlan, progress: bool = False) -> None:
        self.settings = settings
        self.plan = plan
        self.progress = progress
        self.staging = f"{settings.topics.payments}-staged"
        self.available = 0  # payments in the `payments` topic so far
        self._staged = False  # the staging topic exists (and must be dropped)
        self._producer: Any = None
        self.errors: Counter[str] = Counter()

    def write(self, payments: int) -> None:
        """Produce the traffic with the first `payments` payments in the `payments` topic."""
        from tools.cli.generate import produce_traffic

        plan = self.plan
        direct = payments >= plan.payments
        settings = self.settings if direct else msgspec.structs.replace(
            self.settings, topics=msgspec.structs.replace(self.settings.topics, payments=self.staging))
        if not direct:
            self._create_staging()
        summary = produce_traffic(settings, plan.accounts, plan.payments, plan.seed, plan.bad_ratio,
                                  progress=self.progress)
        if summary.delivery_errors:
            raise ChaosError(f"traffic was not fully delivered: {dict(summary.delivery_errors)}")
        if direct:
            self.available = plan.payments
            return
        from confluent_kafka import Producer

        self._producer = Producer(clients.producer_config(self.settings))
        self.release(payments)

    def release(self, payments: int) -> int:
        """Let payments into the topic up to the first `payments` (more: never fewer); return how
        many were new. The staging topic is dropped with the last of them."""
        payments = min(payments, self.plan.payments)
        if payments <= self.available:
            return 0
        before = self.available
        self._copy(payments)
        if self.available == self.plan.payments:
            self.discard()
        return self.available - before

    def discard(self) -> None:
        """Drop the staging topic if there is one (after the last release, or when the run ends early)."""
        from tools.topics import TopicError, delete_topics

        if not self._staged:
            return
        try:
            delete_topics(self.settings, [self.staging], wait=False)
            self._staged = False
        except (KafkaException, TopicError):
            pass  # a cluster that is gone has no topics to clean up

    def _create_staging(self) -> None:
        """One partition (it keeps the generator's order), replicated like `payments`, kept until dropped."""
        from confluent_kafka.admin import AdminClient, NewTopic

        brokers = self.plan.brokers
        config = {"cleanup.policy": "delete", "retention.ms": "-1", "min.insync.replicas": str(min(2, brokers))}
        admin = AdminClient(clients.admin_config(self.settings))
        future = admin.create_topics([NewTopic(self.staging, 1, min(3, brokers), config=config)],
                                     request_timeout=30)[self.staging]
        self._staged = True
        try:
            future.result()
        except KafkaException as error:
            raise ChaosError(f"cannot create the staging topic {self.staging}: {error.args[0].str()}") from error

    def _copy(self, until: int, idle_timeout_s: float = 60.0) -> None:
        """Copy staged payments `available`..`until - 1` to `payments`; flush, and raise unless every
        one was delivered. (One idempotent, non-transactional producer wrote the staging topic, so
        its offsets count its records.)"""
        produce, poll = self._producer.produce, self._producer.poll

        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                self.errors[error.name()] += 1

        consumer = Consumer(clients.consumer_config(self.settings, f"chaos-feed-{uuid.uuid4().hex[:6]}"))
        try:
            consumer.assign([TopicPartition(self.staging, 0, self.available)])
            last_read = time.monotonic()
            while self.available < until:
                messages = consumer.consume(min(10_000, until - self.available), timeout=0.5)
                if messages:
                    last_read = time.monotonic()
                elif time.monotonic() - last_read > idle_timeout_s:
                    raise ChaosError(f"copying {self.staging}: nothing read for {idle_timeout_s:.0f} s, "
                                     f"{until - self.available:,} payments still to copy")
                for message in messages:
                    if message.error() is not None:
                        raise ChaosError(f"copying {self.staging}: {message.error()}")
                    if message.offset() >= until:
                        break
                    self._produce_copy(produce, poll, message, on_delivery)
                    self.available = message.offset() + 1
                poll(0)
        finally:
            consumer.close()
        unsent = self._producer.flush(120.0)
        if unsent:
            self.errors["not_flushed"] += unsent
        if self.errors:
            raise ChaosError(f"copying {self.staging} to {self.settings.topics.payments}: "
                             f"payments not delivered: {dict(self.errors)}")

    def _produce_copy(self, produce: Any, poll: Any, message: Any, on_delivery: Any) -> None:
        from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

        timestamp_type, timestamp = message.timestamp()
        extra = {} if timestamp_type == TIMESTAMP_NOT_AVAILABLE else {"timestamp": timestamp}
        while True:
            try:
                produce(self.settings.topics.payments, message.value(), message.key(), headers=message.headers(),
                        on_delivery=on_delivery, **extra)
                return
            except BufferError:  # the local queue is full: let librdkafka send some
                poll(0.05)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class ChaosRun:
    """One supervised run; `run()` does everything and returns the report."""

    def __init__(self, settings: Settings, plan: ChaosPlan, log_dir: str | Path, say: Say = print,
                 progress: bool = False) -> None:
        if plan.problems():
            raise ChaosError("; ".join(plan.problems()))
        self.settings = settings
        self.plan = plan
        self.say = say
        self.progress = progress
        self.log_dir = Path(log_dir)
        self.rng = random.Random(plan.seed)
        self.procs: FlowProcesses = self._flow_processes(plan.process_counts()[0])
        self.incidents: list[Incident] = []
        self.restarts = 0
        self.rescales = 0  # restarts with a new process count (a fresh cluster of another size)
        self.segment_processes: list[int] = []  # the processes started for each segment of the run
        self.restarts_after_deaths = 0  # restarts for processes that died by themselves (one may cover several)
        self._feed: Feed | None = None
        self.committed = 0
        self._started = 0.0
        self._deaths_without_progress = 0
        self._probe: Consumer | None = None
        self._inputs = [TopicPartition(topic, p) for topic in (settings.topics.payments, settings.credits_topic)
                        for p in range(settings.kafka.partitions)]
        self._inputs_committed = 0  # payments and credits: any progress, for the crash-loop guard

    def _flow_processes(self, count: int) -> FlowProcesses:
        """A Bytewax cluster of `count` processes (not started), logging to `log_dir` (appending:
        worker-i.log holds every life of process i, in every cluster size that had one)."""
        from tools.runner import FlowProcesses

        return FlowProcesses(self.settings, count, log_dir=self.log_dir,
                             flow=self.plan.flow, extra_env=faults.environment(self.plan.fault_chances))

    # -- observing ------------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic() - self._started

    def _read_committed(self) -> int:
        """Payments committed by the group (the last known value if Kafka does not answer quickly)."""
        assert self._probe is not None
        try:
            offsets = self._probe.committed(self._inputs, timeout=5)
        except KafkaException:
            return self.committed  # e.g. the group coordinator is moving after a broker kill
        if any(tp.error is not None for tp in offsets):
            return self.committed
        payments = self.settings.topics.payments
        self.committed = max(self.committed, sum(max(0, tp.offset) for tp in offsets if tp.topic == payments))
        inputs = sum(max(0, tp.offset) for tp in offsets)
        if inputs > self._inputs_committed:
            self._inputs_committed = inputs
            self._deaths_without_progress = 0
        return self.committed

    def _watch(self, seconds: float) -> None:
        """For `seconds`: restart processes that died by themselves and settle recoveries."""
        until = time.monotonic() + seconds
        while True:
            self._tend()
            self._read_committed()
            self._mark_recoveries()
            if time.monotonic() >= until:
                return
            time.sleep(min(0.1, max(0.0, until - time.monotonic())))

    def _mark_recoveries(self) -> None:
        """Every open incident the group has committed new payments since has recovered: now."""
        for incident in self.incidents:
            if not incident.settled and self.committed > incident.committed_before:
                incident.recovery_s = round(self._now() - incident.at_s, 3)

    def _settle(self) -> None:
        """Wait until every open incident shows new progress (or cannot, or the timeout passes).

        An incident cannot show new progress when the group had committed every payment in the
        topic (all of them, or with the progress trigger all let in so far: after a kill there is
        new work, unless a worker and a broker kill share a threshold): its recovery is n/a, as
        the time a restart spent waiting for traffic would not be a recovery.
        """
        assert self._feed is not None
        deadline = time.monotonic() + self.plan.recovery_timeout_s
        while True:
            self._mark_recoveries()
            open_ = [i for i in self.incidents if not i.settled]
            if not open_:
                return
            if self.committed >= self._feed.available:
                for incident in open_:
                    incident.note = "n/a: every payment in the topic was committed before this death"
                return
            if time.monotonic() > deadline:
                for incident in open_:
                    incident.note = f"no new progress within {self.plan.recovery_timeout_s:.0f} s"
                return
            self._watch(0.1)

    # -- breaking and mending -------------------------------------------------------------

    def _await_committed(self, threshold: int) -> None:
        """Tend the processes until the group has committed `threshold` payments.

        Raises ChaosError, rather than hang, if nothing new is committed for `recovery_timeout_s`
        or the threshold is not reached within `catch_up_timeout_s`.
        """
        plan = self.plan
        started = last_progress = time.monotonic()
        last = self.committed
        self._watch(0.0)
        while self.committed < threshold:
            now = time.monotonic()
            if self.committed > last:
                last, last_progress = self.committed, now
            if now - last_progress > plan.recovery_timeout_s:
                self._dump_stacks()
                raise ChaosError(f"waiting for {threshold:,} committed payments: no new progress for "
                                 f"{plan.recovery_timeout_s:.0f} s at {self.committed:,}; the log ends with:\n"
                                 f"{self._log_tail(150)}")
            if now - started > plan.catch_up_timeout_s:
                raise ChaosError(f"waiting for {threshold:,} committed payments: only {self.committed:,} after "
                                 f"{plan.catch_up_timeout_s:.0f} s")
            self._watch(0.1)

    def _restart(self, processes: int | None = None) -> None:
        """Kill whatever still runs of the Bytewax cluster and start all of it again; with a new
        count of `processes`, a fresh cluster of that size (a rescale)."""
        self.procs.kill_all()
        self.procs.stop(timeout=1.0)  # nothing left to stop: closes the log files
        if processes is not None and processes != self.procs.count:
            self.procs = self._flow_processes(processes)
            self.rescales += 1
        self.procs.start()
        self.restarts += 1

    def _tend(self) -> None:
        alive = self.procs.alive()
        if all(alive):
            return
        for index, up in enumerate(alive):
            if not up:
                code = self.procs.returncodes()[index]
                kind = "fault_point" if code == -9 else "worker_exit"
                committed = self.committed
                self.incidents.append(Incident(kind, round(self._now(), 3), index, committed, returncode=code,
                                               processes_before=self.procs.count,
                                               processes_after=self.procs.count))
                self.say(f"  process {index} died by itself (exit {code}, {kind}) at {self._now():.1f} s, "
                         f"{committed:,} payments committed; restarting")
        self._deaths_without_progress += 1
        if self._deaths_without_progress > MAX_DEATHS_WITHOUT_PROGRESS:
            raise ChaosError(f"the workers died {self._deaths_without_progress} times in a row by themselves without "
                             "committing anything new (a crash loop, not chaos); "
                             f"the log ends with:\n{self._log_tail()}")
        self._restart()
        self.restarts_after_deaths += 1

    def _dump_stacks(self) -> None:
        """Ask every live worker for its threads' stacks (SIGUSR1, see paystream.worker) before giving up on it."""
        import os
        import signal

        for proc in self.procs.procs:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(1.0)

    def _log_tail(self, lines: int = 25) -> str:
        worker_logs = sorted(self.log_dir.glob("worker-*.log"))
        if not worker_logs:
            return "(no log)"
        return "\n".join(worker_logs[0].read_text(errors="replace").splitlines()[-lines:])

    def _kill_worker(self, shot: Shot) -> Incident:
        before, after = self.procs.count, self.plan.process_counts()[shot.number]
        index = self.rng.randrange(before)
        committed = self._read_committed()
        at = round(self._now(), 3)
        self.procs.kill(index)
        incident = Incident("worker_kill", at, index, committed, threshold=shot.threshold, limit=shot.limit,
                            processes_before=before, processes_after=after)
        self.incidents.append(incident)
        self._restart(after)
        self.segment_processes.append(self.procs.count)
        if after != before:
            self.say(f"  rescale: {before} -> {after} process(es) at {self._now():.1f} s (every process of the "
                     f"cluster killed, a fresh cluster of {after} started)")
        return incident

    def _kill_broker(self, shot: Shot) -> Incident:
        from deploy.local import cluster

        node = leader_of_payments_zero(self.settings)
        committed = self._read_committed()
        at = round(self._now(), 3)
        cluster.kill_broker(node)
        incident = Incident("broker_kill", at, node, committed, threshold=shot.threshold, limit=shot.limit,
                            processes_before=self.procs.count, processes_after=self.procs.count)
        self.incidents.append(incident)
        self.say(f"broker kill {shot.number}/{self.plan.broker_kills}: node {node} (leader of "
                 f"{self.settings.topics.payments}[0]) killed at {at:.1f} s, {committed:,} payments committed"
                 f"{_trigger_note(shot)}")
        self._watch(self.plan.broker_down_s)
        failure: list[BaseException] = []

        def start() -> None:
            try:
                cluster.start_broker(node)
            except BaseException as error:  # reported below, on the supervisor's thread
                failure.append(error)

        starter = threading.Thread(target=start, name=f"start-broker-{node}", daemon=True)
        starter.start()
        while starter.is_alive():
            self._watch(0.2)
        if failure:
            raise ChaosError(f"broker {node} did not come back: {failure[0]}")
        self.say(f"  node {node} back at {self._now():.1f} s (down {self._now() - at:.1f} s)")
        return incident

    # -- the run --------------------------------------------------------------------------

    def _produce(self, shots: list[Shot]) -> None:
        """Fresh topics, then the traffic, with the payments up to the first kill's limit in `payments` (see `Feed`)."""
        from tools.topics import create_topics

        assert self._feed is not None
        self._wait_for_brokers()
        create_topics(self.settings, brokers=self.plan.brokers)
        self._feed.write(_limit(shots, 0, self.plan.payments))

    def _release(self, payments: int) -> None:
        """Let the payments up to the first `payments` into the topic (for the next kill, or all)."""
        assert self._feed is not None
        released = self._feed.release(payments)
        if released:
            self.say(f"  {released:,} more payments let into {self.settings.topics.payments} at {self._now():.1f} s "
                     f"({self._feed.available:,}/{self.plan.payments:,})")

    def _wait_for_brokers(self, timeout_s: float = 60.0) -> None:
        from tools.topics import broker_count

        deadline = time.monotonic() + timeout_s
        while (count := broker_count(self.settings)) < self.plan.brokers:
            if time.monotonic() > deadline:
                raise ChaosError(f"the cluster lists {count} brokers after {timeout_s:.0f} s, "
                                 f"the run needs {self.plan.brokers}")
            time.sleep(0.5)

    def _catch_up(self) -> float:
        """Keep tending until every payment and credit is committed; return the seconds it took."""
        from tools.runner import LagProbe

        started = time.monotonic()
        probe = LagProbe(self.settings)
        try:
            quiet = 0
            while time.monotonic() - started < self.plan.catch_up_timeout_s:
                self._watch(0.5)
                try:
                    _, lag = probe.measure()
                except KafkaException:
                    quiet = 0
                    continue
                quiet = quiet + 1 if (lag == 0 and self.committed >= self.plan.payments) else 0
                if quiet >= 2:
                    return time.monotonic() - started
            raise ChaosError(f"the engine did not catch up within {self.plan.catch_up_timeout_s:.0f} s "
                             f"({self.committed:,}/{self.plan.payments:,} payments committed)")
        finally:
            probe.close()

    def _fire(self, shot: Shot) -> Incident:
        """Wait for the shot's moment (tending the processes meanwhile), then kill."""
        if shot.threshold is not None:
            self._await_committed(shot.threshold)
        elif shot.kind == "worker_kill":
            self._watch(self.rng.uniform(*self.plan.wait_s))
        return self._kill_worker(shot) if shot.kind == "worker_kill" else self._kill_broker(shot)

    def _report_kill(self, shot: Shot, incident: Incident) -> None:
        if shot.kind != "worker_kill":
            return  # a broker kill told its story as it went
        recovery = (f"new progress after {incident.recovery_s:.2f} s" if incident.recovery_s is not None
                    else incident.note)
        self.say(f"kill {shot.number}/{self.plan.kills}: process {incident.target} killed at {incident.at_s:.1f} s, "
                 f"{incident.committed_before:,}/{self.plan.payments:,} payments committed{_trigger_note(shot)}; "
                 f"{recovery}")

    def run(self) -> ChaosResult:
        plan = self.plan
        processes = (f"processes {_schedule_text(plan.process_schedule)} ({plan.rescales()} rescales)"
                     if plan.process_schedule else f"{plan.processes} process(es)")
        self.say(f"chaos: {plan.payments:,} payments, {plan.kills} worker kills, {plan.broker_kills} broker kills, "
                 f"{processes}, {self.settings.kafka.partitions} partitions, seed {plan.seed}, "
                 f"app {self.settings.engine.app_id}")
        self.say(describe_trigger(plan.trigger, plan.wait_s, plan.thresholds(), plan.broker_thresholds(),
                                  plan.held_back()))
        self._feed = Feed(self.settings, plan, progress=self.progress)
        shots = plan.schedule()
        try:
            self._produce(shots)
            wall_s = self._supervise(shots)
        finally:
            self._feed.discard()
        return self._audit(wall_s)

    def _supervise(self, shots: list[Shot]) -> float:
        """Start the flow, fire every shot, let the flow catch up; return the seconds it all took."""
        self._probe = Consumer(clients.consumer_config(
            self.settings, self.settings.consumer_group, **{"client.id": f"chaos-probe-{uuid.uuid4().hex[:6]}"}))
        self._started = time.monotonic()
        self.procs.start()
        self.segment_processes.append(self.procs.count)
        try:
            for position, shot in enumerate(shots):
                incident = self._fire(shot)
                # new work for the restarted engine: up to the next kill's limit, or everything
                self._release(_limit(shots, position + 1, self.plan.payments))
                self._settle()
                self._report_kill(shot, incident)
            self._catch_up()
            self._settle()
            return self._now()
        finally:
            self.procs.stop()
            self._probe.close()

    def _fault_deaths_by_point(self) -> dict[str, int]:
        counts = {point: 0 for point in faults.POINTS}
        for path in self.log_dir.glob("worker-*.log"):
            for point, count in faults.deaths_in_log(path.read_text(errors="replace")).items():
                counts[point] += count
        return counts

    def _audit(self, wall_s: float) -> ChaosResult:
        from verify.audit import audit
        from verify.geo import distance_km
        from verify.readback import read_snapshot

        result = audit(read_snapshot(self.settings), self.settings.rules, distance_km)
        kills = [i for i in self.incidents if i.kind == "worker_kill"]
        recoveries = [i.recovery_s for i in kills if i.recovery_s is not None]
        all_recoveries = [i.recovery_s for i in self.incidents if i.recovery_s is not None]
        plan = self.plan
        report = {
            "trigger": plan.trigger,
            # progress trigger: the committed payments each kill waited for (time trigger: empty)
            "thresholds": {"worker_kills": plan.thresholds(), "broker_kills": plan.broker_thresholds()},
            "held_back_payments": plan.held_back(),
            "run": {
                "app_id": self.settings.engine.app_id, "bootstrap_servers": self.settings.kafka.bootstrap_servers,
                "partitions": self.settings.kafka.partitions, "processes": plan.process_counts()[0],
                "epoch_interval_ms": self.settings.engine.epoch_interval_ms, "payments": plan.payments,
                "accounts": plan.accounts, "seed": plan.seed, "bad_ratio": plan.bad_ratio,
                "fault_chances": dict(plan.fault_chances),
                "wait_s": list(plan.wait_s) if plan.trigger == "time" else None,
                "flow": plan.flow,
                "log_dir": _relative(self.log_dir),
            },
            "restart_policy": RESTART_POLICY,
            # the planned counts the run moved through (empty: always run.processes), the processes
            # started for each segment (the start, then the restart after each worker kill), and the
            # restarts with a new count (a fresh cluster of another size)
            "process_schedule": list(plan.process_schedule),
            "process_counts": list(self.segment_processes),
            "rescales": self.rescales,
            "kills": len(kills),
            "fault_point_deaths": sum(1 for i in self.incidents if i.kind == "fault_point"),
            "fault_point_deaths_by_point": self._fault_deaths_by_point(),
            "other_worker_exits": sum(1 for i in self.incidents if i.kind == "worker_exit"),
            "restarts": self.restarts,
            "restarts_after_deaths": self.restarts_after_deaths,
            "broker_kills": sum(1 for i in self.incidents if i.kind == "broker_kill"),
            "recovery_s": [i.recovery_s for i in kills],
            "recovery_p50_s": statistics.median(recoveries) if recoveries else None,
            "recovery_p90_s": _percentile(recoveries, 0.9),
            "recovery_max_s": max(recoveries) if recoveries else None,
            "recovery_na": sum(1 for i in kills if i.recovery_s is None),
            "kills_while_work_remained": sum(1 for i in kills if i.committed_before < plan.payments),
            "recovery_all_deaths_p50_s": statistics.median(all_recoveries) if all_recoveries else None,
            "recovery_all_deaths_max_s": max(all_recoveries) if all_recoveries else None,
            "wall_s": round(wall_s, 2),
            "throughput_payments_per_s": round(plan.payments / wall_s, 1) if wall_s > 0 else None,
            "incidents": [asdict(i) for i in self.incidents],
            "verify": result.to_json(),
            "ok": result.ok,
        }
        return ChaosResult(report, result.table(), result.ok, result.violated())


def _thresholds_text(thresholds: list[int], shown: int = 6) -> str:
    """`19,048, 38,095, ... 380,952` (the first and last few of a long list)."""
    if len(thresholds) <= shown:
        return ", ".join(f"{t:,}" for t in thresholds)
    half = shown // 2
    return ", ".join(f"{t:,}" for t in thresholds[:half]) + ", ... " + ", ".join(f"{t:,}" for t in thresholds[-half:])


def _limit(shots: list[Shot], position: int, payments: int) -> int:
    """The payments in the topic until shot `position` fires: its limit, or all of them (none left,
    or the time trigger)."""
    limit = shots[position].limit if position < len(shots) else None
    return payments if limit is None else limit


def _schedule_text(counts: Any) -> str:
    """`1 -> 2 -> 3 -> 2 -> 1`"""
    return " -> ".join(str(count) for count in counts)


def _segments_text(counts: list[int]) -> str:
    """`1 x21 -> 2 x20 -> 3 x20`: the process counts of consecutive segments of a run, each with how many."""
    return " -> ".join(f"{count} x{len(list(run))}" for count, run in itertools.groupby(counts))


def _trigger_note(shot: Shot) -> str:
    return "" if shot.threshold is None else f" (trigger: {shot.threshold:,})"


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The human-readable summary of a chaos report (printed under the verify table)."""

    def seconds(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} s"

    by_point = ", ".join(f"{p} {n}" for p, n in report["fault_point_deaths_by_point"].items())
    return [
        f"worker kills: {report['kills']} ({report['recovery_na']} with recovery n/a), fault-point deaths: "
        f"{report['fault_point_deaths']} ({by_point}), other worker exits: {report['other_worker_exits']}, "
        f"restarts: {report['restarts']}, broker kills: {report['broker_kills']}",
        f"recovery (kill -> new committed progress): p50 {seconds(report['recovery_p50_s'])}, "
        f"p90 {seconds(report['recovery_p90_s'])}, max {seconds(report['recovery_max_s'])}; "
        f"every death: p50 {seconds(report['recovery_all_deaths_p50_s'])}, "
        f"max {seconds(report['recovery_all_deaths_max_s'])}",
        f"{report['run']['payments']:,} payments in {report['wall_s']:.1f} s = "
        f"{report['throughput_payments_per_s']:,.0f} payments/s including every kill and restart",
        _trigger_summary(report),
        f"processes {_schedule_text(report['process_schedule'])} over the kills: {report['rescales']} rescales "
        f"(every process of the cluster killed, a fresh cluster of the new size started); processes (x segments): "
        f"{_segments_text(report['process_counts'])}" if report.get("process_schedule") else "",
        f"restarts: {report['restart_policy']}"
        if max(report.get("process_counts") or [report["run"]["processes"]]) > 1 else "",
        f"note: {report['kills'] - report['kills_while_work_remained']} of {report['kills']} kills came after every "
        f"payment was committed; for kills spread over the run use --trigger progress, or raise --payments (about "
        f"20,000 per kill here) or shorten --wait"
        if report["trigger"] == "time" and report["kills_while_work_remained"] * 2 < report["kills"] else "",
        "CHAOS OK: verify is green" if report["ok"] else "CHAOS FAILED: verify found violations",
    ]


def describe_trigger(trigger: str, wait_s: tuple[float, float] | list[float] | None, worker_thresholds: list[int],
                     broker_thresholds: list[int], held_back: int) -> str:
    """One line: when the kills of a run fire."""
    if trigger == "time":
        low, high = wait_s or (0.0, 0.0)
        return f"kills triggered by time: a random {low:g}-{high:g} s wait before each worker kill"
    if not worker_thresholds and not broker_thresholds:
        return "no kills planned (only the fault points' deaths)"
    at = [f"{kind} kills at {_thresholds_text(thresholds)}"
          for kind, thresholds in (("worker", worker_thresholds), ("broker", broker_thresholds)) if thresholds]
    return (f"kills triggered by committed progress: {', '.join(at)} committed payments; until a kill fires the "
            f"topic holds the payments up to halfway to the next threshold, the last {held_back:,} come after the "
            f"last kill")


def _trigger_summary(report: Mapping[str, Any]) -> str:
    thresholds = report["thresholds"]
    line = describe_trigger(report["trigger"], report["run"]["wait_s"], thresholds["worker_kills"],
                            thresholds["broker_kills"], report["held_back_payments"])
    return f"{line}; {report['kills_while_work_remained']} of {report['kills']} worker kills landed while work remained"
