"""paystream-only figures: recovery after `kill -9` with a large state, and changelog restore speed.

1. Fresh topics; `accounts` simple payments, one per account (amounts below the single limit, so
   every one is approved and every account gets a balance: `accounts` keys of state and as many
   changelog records). One paystream process (flows.simple:flow) runs until it committed all.
2. A paced producer keeps writing new payments (`ts` = now) so there is always an open
   transaction with work in it, and progress to make after the kill.
3. Twice, once with the local snapshot cache and once with the snapshot directory deleted
   (a full changelog restore): `kill -9` the process, restart it at once, and measure
   - kill → the group's first new committed offset on `payments`;
   - kill → every `decisions` partition's last stable offset (LSO) is at or past its end at the
     kill: the dead process's open transaction is aborted and no longer holds back
     `read_committed` readers (a transaction left open blocks them until it times out);
   - kill → the first decision of a payment produced after the kill that a `read_committed`
     consumer sees, and → such a decision on every partition;
   - restore: records and keys/s from the workers' "restored" log lines, "task open" seconds,
     and the restarted process's peak RSS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from bench.measure import ProcessSampler, decision_ts
from bench.peers import REPO, SIMPLE_FLOW, RunSpec, paystream_run_settings
from bench.workload import PARTITIONS, BenchTopics, delete_run_topics, produce_all, wait_for_offsets
from paystream.clients import consumer_config, producer_config
from paystream.settings import Settings
from tools.traffic import account_id

Say = Callable[[str], None]
TRICKLE_PER_S = 1_000
SNAPSHOT_EVERY_EPOCHS = 5  # so the "with snapshot" case has a recent snapshot to load
LOAD_TIMEOUT_S = 900.0
RECOVERY_TIMEOUT_S = 180.0
SINGLE_LIMIT = 40_000
BASELINE_AFTER_KILL_S = 0.3


@dataclass(frozen=True)
class RecoveryPlan:
    accounts: int
    commit_ms: int = 1_000
    store: str = "memory"  # `engine.store`: "memory" (snapshot cache) or "disk" (RocksDB)


def state_payments(accounts: int) -> list[tuple[bytes, bytes]]:
    """One approved payment per account: every account ends up with a balance in the state."""
    records = []
    for n in range(1, accounts + 1):
        account = account_id(n)
        records.append((account.encode(), (
            f'{{"v":1,"type":"payment","payment_id":"S{n:09d}","account":"{account}",'
            f'"amount":{1 + (n * 7919) % SINGLE_LIMIT},"currency":"EUR","ts":{n}}}').encode()))
    return records


class CommittedProbe:
    """The sum of the group's committed offsets on `payments`, as they stand now.

    `read_uncommitted`: a read_committed client asks the broker for *stable* offsets, and the
    broker makes it wait while a transaction with offsets is pending, for example the dead
    process's, until that transaction is aborted. Committed offsets are never uncommitted ones.
    """

    def __init__(self, settings: Settings) -> None:
        self.consumer = Consumer(consumer_config(settings, settings.consumer_group,
                                                 **{"isolation.level": "read_uncommitted"}))
        self.partitions = [TopicPartition(settings.topics.payments, p) for p in range(PARTITIONS)]

    def total(self) -> int:
        return sum(max(0, tp.offset) for tp in self.consumer.committed(self.partitions, timeout=30))

    def close(self) -> None:
        self.consumer.close()


class NewDecisions:
    """A read_committed reader from the current end of `decisions`: when decisions of payments
    produced after `since_ms` become visible, first anywhere and then on every partition."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.consumer = Consumer(consumer_config(settings, group))
        self.consumer.assign([TopicPartition(settings.topics.decisions, p, OFFSET_END) for p in range(PARTITIONS)])
        self.consumer.consume(1, timeout=1.0)  # resolve OFFSET_END before the kill

    def poll(self, since_ms: float, seen: dict[int, float], timeout: float) -> None:
        for message in self.consumer.consume(num_messages=10_000, timeout=timeout):
            if message.error() is None and message.partition() not in seen and decision_ts(message.value()) >= since_ms:
                seen[message.partition()] = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


class StableOffsets:
    """Where `read_committed` readers of `decisions` can read up to: each partition's last stable
    offset (LSO), which an open transaction holds back until it commits or is aborted."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers, **settings.kafka.client})
        self.partitions = [TopicPartition(settings.topics.decisions, p) for p in range(PARTITIONS)]

    def ends(self, committed_only: bool) -> dict[int, int]:
        """Per partition: the LSO (`committed_only`) or the high watermark (everything written)."""
        from confluent_kafka import IsolationLevel
        from confluent_kafka.admin import OffsetSpec

        level = IsolationLevel.READ_COMMITTED if committed_only else IsolationLevel.READ_UNCOMMITTED
        futures = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in self.partitions},
                                          isolation_level=level, request_timeout=10)
        return {tp.partition: future.result().offset for tp, future in futures.items()}


def worker_events(log: Path, offset: int) -> list[dict[str, Any]]:
    """The JSON log lines a worker wrote after byte `offset` of its log."""
    events = []
    with log.open("rb") as lines:
        lines.seek(offset)
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def opened_keys(event: dict[str, Any]) -> int:
    """Keys a task held when it opened, over all its stores (`keys` is a dict of store name to count).

    >>> opened_keys({"event": "task open", "keys": {"accounts": 3, "windows": 2}})
    5
    """
    keys = event.get("keys", {})
    return sum(int(count) for count in keys.values()) if isinstance(keys, dict) else 0


def restore_figures(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Restore records, seconds and keys/s of a restart, summed over its tasks (they open in parallel)."""
    restored = [e for e in events if e.get("event") == "restored"]
    opened = [e for e in events if e.get("event") == "task open"]
    snapshots = [e for e in events if e.get("event") == "snapshot loaded"]
    records = sum(int(e.get("records", 0)) for e in restored)
    slowest = max((float(e.get("seconds", 0)) for e in restored), default=0.0)
    return {
        "tasks_restored": len(restored),
        "restored_records": records,
        "restore_s": slowest,
        "restore_keys_per_s": records / slowest if slowest > 0 else None,
        "task_keys_per_s_max": max((int(e.get("keys_per_s", 0)) for e in restored), default=None),
        "snapshots_loaded": len(snapshots),
        "snapshot_records": sum(int(e.get("records", 0)) for e in snapshots),
        "accounts_after_open": sum(opened_keys(e) for e in opened),
        "task_open_s_max": max((float(e.get("seconds", 0)) for e in opened), default=None),
    }


def kill_and_recover(settings: Settings, workers: Any, probe: CommittedProbe, log: Path, snapshot_dir: Path,
                     with_snapshot: bool, reader_group: str) -> dict[str, Any]:
    """One `kill -9` and restart; see the module docstring for what is measured."""
    reader = NewDecisions(settings, reader_group)
    stable = StableOffsets(settings)
    try:
        log_offset = log.stat().st_size
        workers.kill(0)
        killed = time.monotonic()
        kill_ms = time.time() * 1000
        if not with_snapshot:
            shutil.rmtree(snapshot_dir, ignore_errors=True)
        workers.start()
        # everything the dead process wrote lies below these ends (the new one needs seconds to start)
        written = stable.ends(committed_only=False)
        # a commit the dead process had already sent may still complete at the coordinator: take the
        # baseline a little after the kill (a new process needs well over a second to import and open)
        committed_at_kill = probe.total()
        time.sleep(max(0.0, BASELINE_AFTER_KILL_S - (time.monotonic() - killed)))
        committed_at_kill = max(committed_at_kill, probe.total())
        sampler = ProcessSampler(workers.procs[0].pid).start()
        first_commit: float | None = None
        unblocked: float | None = None
        seen: dict[int, float] = {}
        next_probe = 0.0
        try:
            while time.monotonic() - killed < RECOVERY_TIMEOUT_S:
                reader.poll(kill_ms, seen, timeout=0.02)
                now = time.monotonic()
                if now >= next_probe:
                    if first_commit is None and probe.total() > committed_at_kill:
                        first_commit = time.monotonic()
                    if unblocked is None:
                        lso = stable.ends(committed_only=True)
                        if all(lso[p] >= written[p] for p in written):
                            unblocked = time.monotonic()
                    next_probe = now + 0.05
                if first_commit is not None and unblocked is not None and len(seen) == PARTITIONS:
                    break
                if not all(workers.alive()):
                    raise RuntimeError(f"restarted worker exited with {workers.returncodes()}")
            time.sleep(1.0)  # the restore is over; let the RSS settle into its steady state
        finally:
            sampler.stop()
        return {
            "with_snapshot": with_snapshot,
            "kill_to_first_commit_s": None if first_commit is None else first_commit - killed,
            # every decisions partition's LSO past what was written at the kill: the dead
            # transaction was aborted and no longer holds read_committed readers back
            "kill_to_readers_unblocked_s": None if unblocked is None else unblocked - killed,
            "kill_to_first_visible_s": min(seen.values()) - killed if seen else None,
            "kill_to_all_partitions_visible_s": max(seen.values()) - killed if len(seen) == PARTITIONS else None,
            "partitions_with_new_output": len(seen),
            "peak_rss_mib": sampler.peak_rss / 2**20,
            **restore_figures(worker_events(log, log_offset)),
        }
    finally:
        reader.close()


def wait_for_snapshots(snapshot_dir: Path, tasks: int, timeout_s: float, suffix: str = "snapshot") -> int:
    """Wait until every task wrote a snapshot (a `*.store` database on disk) or the timeout; returns how
    many tasks have one."""
    deadline = time.monotonic() + timeout_s
    while True:
        from state.disk import stored_label

        # `{app_id}.{task}.{offset}.snapshot` files; `{app_id}.{task}.store` databases, once labelled
        parts = 2 if suffix == "snapshot" else 1
        names = ({path.name.rsplit(".", parts)[0] for path in snapshot_dir.glob(f"*.{suffix}")
                  if suffix != "store" or stored_label(path) > 0}
                 if snapshot_dir.is_dir() else set())
        if len(names) >= tasks or time.monotonic() > deadline:
            return len(names)
        time.sleep(0.5)


def measure_recovery(settings: Settings, run_id: str, plan: RecoveryPlan, say: Say = print) -> dict[str, Any]:
    """The whole recovery experiment; returns the figures for the results document."""
    from tools.runner import FlowProcesses
    from tools.topics import create_topics

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-recovery-"))
    spec = RunSpec(settings.kafka.bootstrap_servers, BenchTopics.named(run_id, "recovery"), plan.commit_ms, workdir)
    run_settings = paystream_run_settings(spec)
    run_settings = msgspec.structs.replace(run_settings, kafka=msgspec.structs.replace(
        run_settings.kafka, client=settings.kafka.client), engine=msgspec.structs.replace(
        run_settings.engine, snapshot_every_epochs=SNAPSHOT_EVERY_EPOCHS, store=plan.store))
    snapshot_dir = Path(run_settings.engine.snapshot_dir)
    result: dict[str, Any] = {"accounts": plan.accounts, "commit_ms": plan.commit_ms, "store": plan.store,
                              "snapshot_every_epochs": SNAPSHOT_EVERY_EPOCHS, "trickle_per_s": TRICKLE_PER_S}
    workers = FlowProcesses(run_settings, processes=1, log_dir=workdir / "workers", flow=SIMPLE_FLOW)
    trickle: subprocess.Popen[bytes] | None = None
    probe: CommittedProbe | None = None
    try:
        create_topics(run_settings)
        wait_for_offsets(settings, [run_settings.topics.payments, run_settings.topics.decisions,
                                    run_settings.changelog_topic], PARTITIONS, time.monotonic() + 30)
        say(f"recovery: loading {plan.accounts:,} payments, one per account")
        producer = Producer(producer_config(settings))
        produce_all(producer, run_settings.topics.payments, state_payments(plan.accounts))
        probe = CommittedProbe(run_settings)
        workers.start()
        started = time.monotonic()
        while probe.total() < plan.accounts:
            if not all(workers.alive()):
                raise RuntimeError(f"worker exited with {workers.returncodes()}")
            if time.monotonic() - started > LOAD_TIMEOUT_S:
                raise TimeoutError(f"state of {plan.accounts:,} accounts not committed in {LOAD_TIMEOUT_S:.0f} s")
            time.sleep(0.25)
        result["state_load_s"] = time.monotonic() - started
        say(f"recovery: {plan.accounts:,} accounts committed in {result['state_load_s']:.1f} s; trickling new payments")
        trickle = subprocess.Popen(
            [sys.executable, "-m", "bench.paced_producer", "--bootstrap", spec.bootstrap, "--topic",
             run_settings.topics.payments, "--rate", str(TRICKLE_PER_S), "--seconds", "3600",
             "--accounts", str(plan.accounts), "--prefix", "R"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        suffix = "store" if plan.store == "disk" else "snapshot"
        result["tasks_with_snapshot"] = wait_for_snapshots(snapshot_dir, PARTITIONS, 30.0, suffix)
        time.sleep(2.0)  # open transactions with work in them when the kill comes
        log = workdir / "workers" / "worker-0.log"
        cases = []
        for with_snapshot in (True, False):
            say(f"recovery: kill -9 and restart {'with' if with_snapshot else 'without'} the local snapshot cache")
            case = kill_and_recover(run_settings, workers, probe, log, snapshot_dir, with_snapshot,
                                    f"{run_settings.consumer_group}-reader-{len(cases)}")
            cases.append(case)
            say(f"recovery: first commit {case['kill_to_first_commit_s']}, all partitions visible "
                f"{case['kill_to_all_partitions_visible_s']}, restored {case['restored_records']:,} "
                f"at {case['restore_keys_per_s']} keys/s, RSS {case['peak_rss_mib']:.0f} MiB")
            time.sleep(3.0)  # work in flight again before the next kill
        result["cases"] = cases
        result["status"] = "ok"
    except Exception as error:  # the throughput figures must survive a failed recovery run
        say(f"recovery: failed: {error!r}")
        result["status"] = f"failed: {(str(error).splitlines() or [type(error).__name__])[0]}"
    finally:
        if trickle is not None:
            trickle.kill()
            trickle.wait()
        workers.stop()
        if probe is not None:
            probe.close()
        try:
            delete_run_topics(settings, f"{run_id}-recovery-")
        except Exception as error:
            say(f"could not delete the recovery topics: {error}")
        shutil.rmtree(workdir, ignore_errors=True)
    return result
