"""Runs the systems side by side on one broker, one at a time, and measures each the same way.

For each system and commit interval:
1. throughput: fresh topics, N simple payments loaded first, then the system is started reading
   from the beginning with a fresh group; the clock runs from its start until a read_committed
   consumer sees N decisions. psutil samples its process tree meanwhile. Afterwards the
   decisions are checked: one per payment id, none missing, none duplicated.
2. latency: fresh topics again, the system is started and warmed up with a few probe payments,
   then a paced producer writes payments with `ts` = now at half the rate the system reached in
   step 1, and a read_committed consumer records now − ts for each decision.
Every topic of the run is deleted at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.measure import DecisionReader, ProcessSampler, Timeline, count_payment_ids, decision_ts, percentiles
from bench.peers import PEERS, REPO, Launch, Peer, RunSpec
from bench.workload import PARTITIONS, BenchTopics, create_topics, delete_run_topics, load_payments, wait_for_offsets
from paystream.clients import producer_config
from paystream.settings import Settings
from tools.traffic import account_id

Say = Callable[[str], None]
PROBES = PARTITIONS
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class BenchPlan:
    """What one `paystream bench` run does."""

    payments: int
    accounts: int
    systems: list[str]
    commit_ms: list[int]
    latency_s: float
    seed: int = 42
    recovery_accounts: int = 0  # > 0: also the kill -9 recovery and restore figures (bench/recovery.py)


class RunnerFailed(RuntimeError):
    """The system under test exited or never finished; the message ends with its log's tail."""


def start(launch: Launch, log: Path) -> subprocess.Popen[bytes]:
    """Start one system process in its own session (so it and its children can be stopped together)."""
    with log.open("wb") as out:
        return subprocess.Popen(launch.argv, cwd=REPO, env={**os.environ, **launch.env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started, SIGKILL it if it does not exit in time."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent
    except ProcessLookupError:
        pass
    process.wait()


def log_tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join(text[-lines:])


def check_alive(process: subprocess.Popen[bytes], log: Path) -> None:
    if process.poll() is not None:
        tail = log_tail(log)
        last = next((line for line in reversed(tail.splitlines()) if "Error" in line or "Exception" in line), "")
        raise RunnerFailed(f"exited with {process.returncode}: {last[:300]}\n{tail}")


def finish_timeout(payments: int) -> float:
    """Generous: the slowest peer runs at ~20k/s here, and startup takes seconds."""
    return START_TIMEOUT_S + payments / 2_000


def measure_throughput(settings: Settings, peer: Peer, spec: RunSpec, plan: BenchPlan, say: Say) -> dict[str, Any]:
    """Steps 1: the timed run over N preloaded payments, and the exactly-one-decision check."""
    launch = peer.launch(spec)
    assert isinstance(launch, Launch)
    create_topics(settings, spec.topics)
    load_rate = load_payments(settings, spec.topics.payments, plan.accounts, plan.payments, plan.seed)
    reader = DecisionReader(settings, spec.topics.decisions, PARTITIONS, f"{spec.topics.group}-reader")
    log = spec.workdir / "throughput.log"
    values: list[bytes] = []
    timeline = Timeline()
    process = start(launch, log)
    started = time.monotonic()
    sampler = ProcessSampler(process.pid).start()
    try:
        deadline = started + finish_timeout(plan.payments)
        while len(values) < plan.payments:
            batch = reader.poll(0.1)
            if batch:
                values.extend(batch)
                timeline.points.append((time.monotonic() - started, len(values)))
            else:
                check_alive(process, log)
            if time.monotonic() > deadline:
                raise RunnerFailed(f"only {len(values)} of {plan.payments} decisions after "
                                   f"{deadline - started:.0f} s:\n{log_tail(log)}")
        elapsed = time.monotonic() - started
        sampler.stop()
        distinct, duplicates = count_payment_ids(values)
        grace = time.monotonic() + max(3.0, 3 * spec.commit_ms / 1000)
        while distinct < plan.payments and time.monotonic() < grace:  # duplicates hid a missing one
            more = reader.poll(0.2)
            if more:
                values.extend(more)
                distinct, duplicates = count_payment_ids(values)
    finally:
        sampler.stop()
        stop(process)
        reader.close()
    steady = timeline.steady_rate(plan.payments, min_span_s=2 * spec.commit_ms / 1000)
    return {
        "workload": "simple",
        "items_per_s": plan.payments / elapsed,
        "steady_items_per_s": steady,
        "elapsed_s": elapsed,
        "startup_s": timeline.points[0][0] if timeline.points else None,
        "cpu_percent": 100 * sampler.cpu_seconds / elapsed,
        "cpu_seconds": sampler.cpu_seconds,
        "items_per_cpu_s": plan.payments / sampler.cpu_seconds if sampler.cpu_seconds else None,
        "steady_items_per_cpu_s": steady_items_per_cpu_s(timeline, sampler, started, plan.payments),
        "peak_rss_mib": sampler.peak_rss / 2**20,
        "loader_items_per_s": load_rate,
        "decisions": len(values),
        "distinct_payments": distinct,
        "duplicates": duplicates,
        "missing": plan.payments - distinct,
    }


def measure_realistic_throughput(settings: Settings, peer: Peer, spec: RunSpec, plan: BenchPlan,
                                 say: Say) -> dict[str, Any]:
    """Step 1 for the realistic flow: the generator's traffic (customers, then `plan.payments`
    payment commands with every rule scenario, 1% malformed, some re-sent duplicates); the clock
    runs from process start until the group's committed offsets reach the end of `payments` and
    the internal credits topic (the transaction that commits an offset also commits its outputs).
    Afterwards a read_committed count: one decision per valid payment id, malformed ones in the DLQ.
    """
    from bench.peers import paystream_run_settings
    from bench.recovery import CommittedProbe as CommittedInputs
    from tools.cli.generate import produce_traffic
    from tools.runner import LagProbe

    launch = peer.launch(spec)
    assert isinstance(launch, Launch)
    create_topics(settings, spec.topics)
    run_settings = paystream_run_settings(spec)
    wait_for_offsets(settings, [run_settings.topics.customers, run_settings.credits_topic], PARTITIONS,
                     time.monotonic() + 30)
    summary = produce_traffic(run_settings, accounts=plan.accounts, payments=plan.payments, seed=plan.seed,
                              bad_ratio=0.01, progress=False)
    if summary.delivery_errors:
        raise RunnerFailed(f"realistic traffic not delivered: {dict(summary.delivery_errors)}")
    inputs = summary.records["payments"]
    log = spec.workdir / "throughput.log"
    timeline = Timeline()
    probe = LagProbe(run_settings)
    committed = CommittedInputs(run_settings)
    process = start(launch, log)
    started = time.monotonic()
    sampler = ProcessSampler(process.pid).start()
    try:
        deadline = started + finish_timeout(plan.payments)
        while True:
            check_alive(process, log)
            done = committed.total()
            if not timeline.points or timeline.points[-1][1] != done:
                timeline.points.append((time.monotonic() - started, done))
            if done >= inputs and probe.measure()[1] == 0:  # credits owed between tasks committed too
                break
            if time.monotonic() > deadline:
                raise RunnerFailed(f"only {done} of {inputs} inputs committed after "
                                   f"{deadline - started:.0f} s:\n{log_tail(log)}")
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        sampler.stop()
    finally:
        sampler.stop()
        stop(process)
        probe.close()
        committed.close()
    decisions = count_topic(settings, run_settings.topics.decisions)
    dlq = count_topic(settings, run_settings.topics.dlq)
    distinct, duplicates = count_payment_ids(decisions)
    valid = inputs - sum(summary.malformed.values()) - summary.duplicates
    return {
        "workload": "realistic",
        "items_per_s": inputs / elapsed,
        "steady_items_per_s": timeline.steady_rate(inputs, min_span_s=2 * spec.commit_ms / 1000),
        "elapsed_s": elapsed,
        "startup_s": next((at for at, done in timeline.points if done > 0), None),
        "cpu_percent": 100 * sampler.cpu_seconds / elapsed,
        "cpu_seconds": sampler.cpu_seconds,
        "items_per_cpu_s": inputs / sampler.cpu_seconds if sampler.cpu_seconds else None,
        "steady_items_per_cpu_s": steady_items_per_cpu_s(timeline, sampler, started, inputs),
        "peak_rss_mib": sampler.peak_rss / 2**20,
        "loader_items_per_s": sum(summary.records.values()) / summary.seconds,
        "inputs": inputs,
        "customers": summary.records["customers"],
        "malformed": sum(summary.malformed.values()),
        "resent_duplicates": summary.duplicates,
        "dlq": len(dlq),
        "decisions": len(decisions),
        "distinct_payments": distinct,
        "duplicates": duplicates,
        "missing": valid - distinct,
    }


def count_topic(settings: Settings, topic: str) -> list[bytes]:
    """Every committed value of `topic`, read to its end with a fresh read_committed consumer."""
    reader = DecisionReader(settings, topic, PARTITIONS, f"bench-count-{uuid.uuid4().hex[:8]}", eof=True)
    try:
        return reader.read_to_end()
    finally:
        reader.close()


def steady_items_per_cpu_s(timeline: Timeline, sampler: ProcessSampler, started: float, total: int) -> float | None:
    """Records per CPU-second between 10% and 90% visible: startup and shutdown left out."""
    span = timeline.steady_span(total)
    if span is None:
        return None
    low, high, records = span
    cpu = sampler.cpu_between(started + low, started + high)
    return records / cpu if cpu else None


def send_probes(settings: Settings, topic: str, accounts: int, kind: str = "payment") -> None:
    """Warm-up payments (`kind` "deposit": wire-contract deposits for the realistic flow; any
    decision, a currency mismatch's decline included, says the flow is up)."""
    producer = Producer(producer_config(settings))
    now_ms = int(time.time() * 1000)
    for n in range(PROBES):
        account = account_id(n % accounts + 1)
        producer.produce(topic, (f'{{"v":1,"type":"{kind}","payment_id":"W{n:09d}","account":"{account}",'
                                 f'"amount":1,"currency":"EUR","ts":{now_ms}}}').encode(), account.encode())
    producer.flush(30)


def load_customers(settings: Settings, peer: Peer, spec: RunSpec, plan: BenchPlan) -> None:
    """The realistic flow's customer table for the latency run: the generator's rows, no payments."""
    from bench.peers import paystream_run_settings
    from tools.cli.generate import produce_traffic

    if peer.workload != "realistic":
        return
    run_settings = paystream_run_settings(spec)
    wait_for_offsets(settings, [run_settings.topics.customers], PARTITIONS, time.monotonic() + 30)
    summary = produce_traffic(run_settings, accounts=plan.accounts, payments=0, seed=plan.seed, bad_ratio=0.0,
                              progress=False)
    if summary.delivery_errors:
        raise RunnerFailed(f"customer rows not delivered: {dict(summary.delivery_errors)}")


def measure_latency(settings: Settings, peer: Peer, spec: RunSpec, plan: BenchPlan, rate: float,
                    say: Say) -> dict[str, Any]:
    """Step 2: end-to-end latency at `rate` payments/s, after a warm-up with probe payments
    (the realistic flow: the generator's commands, after its customer table is loaded)."""
    realistic = peer.workload == "realistic"
    launch = peer.launch(spec)
    assert isinstance(launch, Launch)
    create_topics(settings, spec.topics)
    load_customers(settings, peer, spec, plan)
    reader = DecisionReader(settings, spec.topics.decisions, PARTITIONS, f"{spec.topics.group}-reader")
    log = spec.workdir / "latency.log"
    process = start(launch, log)
    paced: subprocess.Popen[bytes] | None = None
    latencies: list[float] = []
    try:
        send_probes(settings, spec.topics.payments, plan.accounts, "deposit" if realistic else "payment")
        seen, deadline = 0, time.monotonic() + START_TIMEOUT_S
        while seen < PROBES:
            seen += len(reader.poll(0.1))
            check_alive(process, log)
            if time.monotonic() > deadline:
                raise RunnerFailed(f"probe payments not decided after {START_TIMEOUT_S:.0f} s:\n{log_tail(log)}")
        warmup_s = 1.0
        measure_from_ms = int(time.time() * 1000 + warmup_s * 1000)
        paced = subprocess.Popen(
            [sys.executable, "-m", "bench.paced_producer", "--bootstrap", spec.bootstrap,
             "--topic", spec.topics.payments, "--rate", str(rate), "--seconds", str(plan.latency_s + warmup_s),
             "--accounts", str(plan.accounts), *(["--realistic", "--seed", str(plan.seed)] if realistic else [])],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        received, sent = 0, None
        deadline = time.monotonic() + plan.latency_s + warmup_s + 30 + 3 * spec.commit_ms / 1000
        while sent is None or received < sent:
            for value in reader.poll(0.01):
                now_ms = time.time() * 1000
                received += 1
                ts = decision_ts(value)
                if ts >= measure_from_ms:
                    latencies.append(now_ms - ts)
            if sent is None and paced.poll() is not None:
                sent = int(paced.stdout.read().split()[-1]) if paced.returncode == 0 else 0
            check_alive(process, log)
            if time.monotonic() > deadline:
                break
    finally:
        if paced is not None and paced.poll() is None:
            paced.kill()
            paced.wait()
        stop(process)
        reader.close()
    cdf = percentiles(latencies)
    return {
        "rate": rate,
        "seconds": plan.latency_s,
        "sent": sent,
        "received": received,
        "samples": len(latencies),
        "p50_ms": cdf[49] if cdf else None,
        "p99_ms": cdf[98] if cdf else None,
        "max_ms": cdf[-1] if cdf else None,
        "cdf_ms": cdf,
    }


def run_system(settings: Settings, peer: Peer, run_id: str, commit_ms: int, plan: BenchPlan,
               say: Say) -> dict[str, Any]:
    """Both measurements of one system at one commit interval; failures become the row's status."""
    row: dict[str, Any] = {"system": peer.name, "label": peer.label, "guarantee": peer.guarantee,
                           "commit_ms": commit_ms}
    tag = f"{peer.name}-c{commit_ms}"
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-{tag}-"))
    try:
        spec = RunSpec(settings.kafka.bootstrap_servers, BenchTopics.named(run_id, tag), commit_ms, workdir)
        reason = peer.launch(spec)
        if isinstance(reason, str):
            say(reason)
            return {**row, "status": reason}
        started = time.monotonic()
        peer.prepare(say)
        row["prepare_s"] = time.monotonic() - started
        say(f"{peer.name} (commit {commit_ms} ms): throughput over {plan.payments:,} payments ({peer.workload})")
        if peer.workload == "realistic":
            row.update(measure_realistic_throughput(settings, peer, spec, plan, say))
        else:
            row.update(measure_throughput(settings, peer, spec, plan, say))
        rate = (row["steady_items_per_s"] or row["items_per_s"]) / 2
        if plan.latency_s > 0:
            say(f"{peer.name} (commit {commit_ms} ms): latency at {rate:,.0f}/s for {plan.latency_s:.0f} s")
            (workdir / "latency").mkdir()
            latency_spec = RunSpec(spec.bootstrap, BenchTopics.named(run_id, f"{tag}-lat"), commit_ms,
                                   workdir / "latency")
            row["latency"] = measure_latency(settings, peer, latency_spec, plan, rate, say)
        row["status"] = "ok"
    except Exception as error:  # one system failing must not lose the others' figures
        say(f"{peer.name}: failed: {error!r}" if not isinstance(error, RunnerFailed)
            else f"{peer.name}: failed: {error}")
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        row["status"] = f"failed: {first_line}"
    finally:
        try:
            delete_run_topics(settings, f"{run_id}-{tag}-")
        except Exception as error:  # cleanup must not hide the measurement
            say(f"could not delete topics of {tag}: {error}")
        shutil.rmtree(workdir, ignore_errors=True)
    return row


def run_bench(settings: Settings, plan: BenchPlan, say: Say = print) -> dict[str, Any]:
    """Every system of `plan`, one at a time; returns the results document."""
    unknown = [name for name in plan.systems if name not in PEERS]
    if unknown:
        raise ValueError(f"unknown systems: {', '.join(unknown)} (known: {', '.join(PEERS)})")
    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]  # unique even for runs in the same second
    started = time.time()
    load_at_start = os.getloadavg()
    rows = []
    recovery: dict[str, Any] | None = None
    recovery_disk: dict[str, Any] | None = None
    try:
        for commit_ms in plan.commit_ms:
            for name in plan.systems:
                rows.append(run_system(settings, PEERS[name], run_id, commit_ms, plan, say))
        if plan.recovery_accounts > 0:
            from bench.recovery import RecoveryPlan, measure_recovery

            recovery = measure_recovery(settings, run_id, RecoveryPlan(plan.recovery_accounts, plan.commit_ms[0]), say)
            recovery_disk = measure_recovery(settings, f"{run_id}-disk",
                                             RecoveryPlan(plan.recovery_accounts, plan.commit_ms[0], "disk"), say)
    finally:
        delete_run_topics(settings, f"bench-{run_id}-")
    results = {
        "run_id": run_id,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": time.time() - started,
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "partitions": PARTITIONS,
        "payments": plan.payments,
        "accounts": plan.accounts,
        "commit_ms": plan.commit_ms,
        "latency_s": plan.latency_s,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_at_start,  # 1, 5, 15 min: how busy the shared machine was
        "load_average_at_end": os.getloadavg(),
        "note": "one run on a shared 2-core machine (broker, harness and system on the same cores): "
                "figures are noisy, compare only within one run; items_per_s includes each system's startup",
        "systems": rows,
        "recovery": recovery,
        "recovery_disk": recovery_disk,
    }
    from bench.report import targets

    results["targets"] = targets(results)
    return results
