"""The chaos run: kill workers (and brokers) at random while the engine works, then audit it.

A supervisor, like a StatefulSet controller with a trigger-happy operator:
1. fresh topics and app id, N payments of generated traffic (1% malformed);
2. the payment flow as `processes` local Bytewax processes, with the in-process fault points
   of `paystream.faults` armed at a small probability, so some deaths land exactly inside a
   commit (random kills from outside rarely hit a 10 ms window);
3. K times: wait a random 0.3–3 s, `kill -9` a random process, restart, and time the recovery:
   from the kill to the first NEW committed progress of the group. A process that dies by
   itself (a fault point, or an error such as a failed commit while a broker is down) is
   restarted too and counted apart. With several processes the whole Bytewax cluster is
   killed and restarted, because a Bytewax cluster cannot take a lone process back;
4. optionally B times: `kill -9` the broker leading partition 0 of `payments`, keep it down a
   few seconds while the workers run on, then start it again on its data;
5. wait until every input is committed, stop, and run the independent auditor (`verify`).

The run is green iff the auditor is: nothing lost, nothing applied twice, whatever was killed.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import msgspec
from confluent_kafka import Consumer, KafkaException, TopicPartition

from paystream import clients, faults, logs
from paystream.settings import Settings

log = logs.get("chaos")

Say = Callable[[str], None]

DEFAULT_FAULT_CHANCES: Mapping[str, float] = {"before_commit": 0.005, "mid_commit": 0.01, "after_commit": 0.005}
RESTART_POLICY = ("a killed or dead process is restarted at once; with more than one process every process of "
                  "the Bytewax cluster is killed and all are restarted together (as a supervisor restarting a "
                  "StatefulSet would), because a running Bytewax cluster cannot take a lone process back")


# A worker that keeps dying by itself with no new progress is broken, not unlucky: stop the run.
MAX_DEATHS_WITHOUT_PROGRESS = 8


def _relative(path: Path) -> str:
    """`path` relative to the working directory where it lies under it (reports get committed)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class ChaosError(RuntimeError):
    """The chaos run could not be carried out (not: the engine failed the audit)."""


@dataclass(frozen=True)
class ChaosPlan:
    """What to break, how often, and how long to wait for things."""

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
    wait_s: tuple[float, float] = (0.3, 3.0)
    fault_chances: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FAULT_CHANCES))
    broker_down_s: float = 3.0
    recovery_timeout_s: float = 90.0
    catch_up_timeout_s: float = 900.0


@dataclass
class Incident:
    """One death: a kill by the supervisor, a process that died by itself, or a broker kill."""

    kind: str  # worker_kill | fault_point | worker_exit | broker_kill
    at_s: float  # seconds since the flow first started
    target: int  # process index, or broker node id
    committed_before: int  # payments the group had committed at the death
    returncode: int | None = None
    recovery_s: float | None = None  # kill -> first new committed progress; None: n/a or not seen
    note: str = ""

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


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class ChaosRun:
    """One supervised run; `run()` does everything and returns the report."""

    def __init__(self, settings: Settings, plan: ChaosPlan, log_dir: str | Path, say: Say = print,
                 progress: bool = False) -> None:
        from paystream.runner import FlowProcesses

        if plan.processes < 1 or plan.kills < 0 or plan.broker_kills < 0 or plan.payments < 1:
            raise ChaosError("need processes >= 1, kills >= 0, broker kills >= 0 and payments >= 1")
        self.settings = settings
        self.plan = plan
        self.say = say
        self.progress = progress
        self.log_dir = Path(log_dir)
        self.rng = random.Random(plan.seed)
        self.procs = FlowProcesses(settings, plan.processes, log_dir=self.log_dir,
                                   extra_env=faults.environment(plan.fault_chances))
        self.incidents: list[Incident] = []
        self.restarts = 0
        self.committed = 0
        self._started = 0.0
        self._deaths_without_progress = 0
        self._probe: Consumer | None = None
        self._inputs = [TopicPartition(topic, p) for topic in (settings.topics.payments, settings.credits_topic)
                        for p in range(settings.kafka.partitions)]
        self._inputs_committed = 0  # payments and credits: any progress, for the crash-loop guard

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
            committed = self._read_committed()
            for incident in self.incidents:
                if not incident.settled and committed > incident.committed_before:
                    incident.recovery_s = round(self._now() - incident.at_s, 3)
            if time.monotonic() >= until:
                return
            time.sleep(min(0.1, max(0.0, until - time.monotonic())))

    def _settle(self) -> None:
        """Wait until every open incident shows new progress (or cannot, or the timeout passes)."""
        deadline = time.monotonic() + self.plan.recovery_timeout_s
        while True:
            open_ = [i for i in self.incidents if not i.settled]
            if not open_:
                return
            if self.committed >= self.plan.payments:
                for incident in open_:
                    incident.note = "n/a: every payment was committed before this death"
                return
            if time.monotonic() > deadline:
                for incident in open_:
                    incident.note = f"no new progress within {self.plan.recovery_timeout_s:.0f} s"
                return
            self._watch(0.1)

    # -- breaking and mending -------------------------------------------------------------

    def _restart(self) -> None:
        """Kill whatever still runs of the Bytewax cluster and start all of it again."""
        self.procs.kill_all()
        self.procs.stop(timeout=1.0)  # nothing left to stop: closes the log files
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
                self.incidents.append(Incident(kind, round(self._now(), 3), index, committed, returncode=code))
                self.say(f"  process {index} died by itself (exit {code}, {kind}) at {self._now():.1f} s, "
                         f"{committed:,} payments committed; restarting")
        self._deaths_without_progress += 1
        if self._deaths_without_progress > MAX_DEATHS_WITHOUT_PROGRESS:
            raise ChaosError(f"the workers died {self._deaths_without_progress} times in a row by themselves without "
                             f"committing anything new (a crash loop, not chaos); the log ends with:\n{self._log_tail()}")
        self._restart()

    def _log_tail(self, lines: int = 25) -> str:
        worker_logs = sorted(self.log_dir.glob("worker-*.log"))
        return "\n".join(worker_logs[0].read_text(errors="replace").splitlines()[-lines:]) if worker_logs else "(no log)"

    def _kill_worker(self, number: int) -> Incident:
        index = self.rng.randrange(self.plan.processes)
        committed = self._read_committed()
        at = round(self._now(), 3)
        self.procs.kill(index)
        incident = Incident("worker_kill", at, index, committed)
        self.incidents.append(incident)
        self._restart()
        return incident

    def _kill_broker(self, number: int) -> Incident:
        from deploy.local import cluster

        node = leader_of_payments_zero(self.settings)
        committed = self._read_committed()
        at = round(self._now(), 3)
        cluster.kill_broker(node)
        incident = Incident("broker_kill", at, node, committed)
        self.incidents.append(incident)
        self.say(f"broker kill {number}/{self.plan.broker_kills}: node {node} (leader of "
                 f"{self.settings.topics.payments}[0]) killed at {at:.1f} s, {committed:,} payments committed")
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

    def _produce(self) -> None:
        from paystream.cli.generate import produce_traffic
        from paystream.topics import create_topics

        self._wait_for_brokers()
        create_topics(self.settings, brokers=self.plan.brokers)
        summary = produce_traffic(self.settings, self.plan.accounts, self.plan.payments, self.plan.seed,
                                  self.plan.bad_ratio, progress=self.progress)
        if summary.delivery_errors:
            raise ChaosError(f"traffic was not fully delivered: {dict(summary.delivery_errors)}")

    def _wait_for_brokers(self, timeout_s: float = 60.0) -> None:
        from paystream.topics import broker_count

        deadline = time.monotonic() + timeout_s
        while (count := broker_count(self.settings)) < self.plan.brokers:
            if time.monotonic() > deadline:
                raise ChaosError(f"the cluster lists {count} brokers after {timeout_s:.0f} s, the run needs {self.plan.brokers}")
            time.sleep(0.5)

    def _broker_kill_slots(self) -> set[int]:
        """Before which worker kills a broker kill happens: spread evenly over the run."""
        plan = self.plan
        return {round((b + 1) * plan.kills / (plan.broker_kills + 1)) for b in range(plan.broker_kills)}

    def _catch_up(self) -> float:
        """Keep tending until every payment and credit is committed; return the seconds it took."""
        from paystream.runner import LagProbe

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

    def run(self) -> ChaosResult:
        plan = self.plan
        self.say(f"chaos: {plan.payments:,} payments, {plan.kills} worker kills, {plan.broker_kills} broker kills, "
                 f"{plan.processes} process(es), {self.settings.kafka.partitions} partitions, seed {plan.seed}, "
                 f"app {self.settings.engine.app_id}")
        self._produce()
        self._probe = Consumer(clients.consumer_config(
            self.settings, self.settings.consumer_group, **{"client.id": f"chaos-probe-{uuid.uuid4().hex[:6]}"}))
        broker_slots = self._broker_kill_slots()
        broker_number = 0
        self._started = time.monotonic()
        self.procs.start()
        try:
            for number in range(1, plan.kills + 1):
                if number - 1 in broker_slots and broker_number < plan.broker_kills:
                    broker_number += 1
                    self._kill_broker(broker_number)
                    self._settle()
                self._watch(self.rng.uniform(*plan.wait_s))
                incident = self._kill_worker(number)
                self._settle()
                recovery = (f"new progress after {incident.recovery_s:.2f} s" if incident.recovery_s is not None
                            else incident.note)
                self.say(f"kill {number}/{plan.kills}: process {incident.target} killed at {incident.at_s:.1f} s, "
                         f"{incident.committed_before:,}/{plan.payments:,} payments committed; {recovery}")
            while broker_number < plan.broker_kills:  # kills == 0, or slots rounded past the end
                broker_number += 1
                self._kill_broker(broker_number)
                self._settle()
            self._catch_up()
            self._settle()
            wall_s = self._now()
        finally:
            self.procs.stop()
            self._probe.close()
        return self._audit(wall_s)

    def _fault_deaths_by_point(self) -> dict[str, int]:
        counts = {point: 0 for point in faults.POINTS}
        for path in self.log_dir.glob("worker-*.log"):
            for point, count in faults.deaths_in_log(path.read_text(errors="replace")).items():
                counts[point] += count
        return counts

    def _audit(self, wall_s: float) -> ChaosResult:
        from paystream.geo import distance_km
        from verify.audit import audit
        from verify.readback import read_snapshot

        result = audit(read_snapshot(self.settings), self.settings.rules, distance_km)
        kills = [i for i in self.incidents if i.kind == "worker_kill"]
        recoveries = [i.recovery_s for i in kills if i.recovery_s is not None]
        all_recoveries = [i.recovery_s for i in self.incidents if i.recovery_s is not None]
        plan = self.plan
        report = {
            "run": {
                "app_id": self.settings.engine.app_id, "bootstrap_servers": self.settings.kafka.bootstrap_servers,
                "partitions": self.settings.kafka.partitions, "processes": plan.processes,
                "epoch_interval_ms": self.settings.engine.epoch_interval_ms, "payments": plan.payments,
                "accounts": plan.accounts, "seed": plan.seed, "bad_ratio": plan.bad_ratio,
                "fault_chances": dict(plan.fault_chances), "wait_s": list(plan.wait_s),
                "unsafe_offsets_outside_transaction": self.settings.engine.unsafe_offsets_outside_transaction,
                "log_dir": _relative(self.log_dir),
            },
            "restart_policy": RESTART_POLICY,
            "kills": len(kills),
            "fault_point_deaths": sum(1 for i in self.incidents if i.kind == "fault_point"),
            "fault_point_deaths_by_point": self._fault_deaths_by_point(),
            "other_worker_exits": sum(1 for i in self.incidents if i.kind == "worker_exit"),
            "restarts": self.restarts,
            "broker_kills": sum(1 for i in self.incidents if i.kind == "broker_kill"),
            "recovery_s": [i.recovery_s for i in kills],
            "recovery_p50_s": statistics.median(recoveries) if recoveries else None,
            "recovery_p90_s": _percentile(recoveries, 0.9),
            "recovery_max_s": max(recoveries) if recoveries else None,
            "recovery_na": sum(1 for i in kills if i.recovery_s is None),
            "recovery_all_deaths_p50_s": statistics.median(all_recoveries) if all_recoveries else None,
            "recovery_all_deaths_max_s": max(all_recoveries) if all_recoveries else None,
            "wall_s": round(wall_s, 2),
            "throughput_payments_per_s": round(plan.payments / wall_s, 1) if wall_s > 0 else None,
            "incidents": [asdict(i) for i in self.incidents],
            "verify": result.to_json(),
            "ok": result.ok,
        }
        return ChaosResult(report, result.table(), result.ok, result.violated())


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
        f"restarts: {report['restart_policy']}" if report["run"]["processes"] > 1 else "",
        f"note: {report['recovery_na']} of {report['kills']} kills came after every payment was committed; for kills "
        f"spread over the run raise --payments (about 20,000 per kill here) or shorten --wait"
        if report["kills"] and report["recovery_na"] * 2 > report["kills"] else "",
        "CHAOS OK: verify is green" if report["ok"] else "CHAOS FAILED: verify found violations",
    ]
