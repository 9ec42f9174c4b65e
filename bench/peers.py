"""The systems the harness compares: how each is prepared (built, installed) and started.

Every system gets the same `RunSpec` (bootstrap, its fresh topics and group, the commit interval
and a scratch directory) and returns the command line and environment of one process, which the
harness starts, samples and stops. Systems that cannot run yet return a reason instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.workload import BenchTopics

if TYPE_CHECKING:
    from paystream.settings import Settings

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
QUIX_VENV = BENCH / ".venvs" / "quix"
KSTREAMS_POM = BENCH / "kstreams" / "pom.xml"
KSTREAMS_TARGET = BENCH / "kstreams" / "target"
KSTREAMS_MAIN = "paystream.bench.SimplePayments"


@dataclass(frozen=True)
class RunSpec:
    """What one run of one system needs to know."""

    bootstrap: str
    topics: BenchTopics
    commit_ms: int
    workdir: Path


@dataclass(frozen=True)
class Launch:
    """One process to start: its argv and extra environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Peer:
    """A system under test."""

    name: str
    label: str
    guarantee: str
    launch: Callable[[RunSpec], Launch | str]  # a str is the reason it cannot run
    prepare: Callable[[Callable[[str], None]], None] = lambda _say: None
    # "simple": the benchmark's simple payments, done when N decisions are visible;
    # "realistic": the generator's wire-contract traffic, done when the group committed every input
    workload: str = "simple"


def _topic_args(spec: RunSpec) -> list[str]:
    t = spec.topics
    return ["--bootstrap", spec.bootstrap, "--input", t.payments, "--decisions", t.decisions,
            "--balances", t.balances, "--commit-ms", str(spec.commit_ms)]


def _raw_loop(mode: str) -> Callable[[RunSpec], Launch]:
    def launch(spec: RunSpec) -> Launch:
        return Launch([sys.executable, "-m", "bench.raw_loop", *_topic_args(spec),
                       "--group", spec.topics.group, "--mode", mode])
    return launch


def _python_env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO)}


def prepare_quix(say: Callable[[str], None]) -> None:
    """Create bench/.venvs/quix with the pinned Quix Streams, once."""
    python = QUIX_VENV / "bin" / "python"
    marker = QUIX_VENV / ".installed"
    requirements = BENCH / "requirements-quix.txt"
    if marker.exists() and marker.read_text() == requirements.read_text():
        return
    say(f"creating the Quix Streams venv in {QUIX_VENV.relative_to(REPO)} (once)")
    venv.EnvBuilder(with_pip=True, clear=True).create(QUIX_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(requirements)], check=True)
    marker.write_text(requirements.read_text())


def _quix(topology: str) -> Callable[[RunSpec], Launch]:
    """`linear`: the peer as Quix's docs lead one to write it; `branched`: the earlier two-`to_topic` form."""
    def launch(spec: RunSpec) -> Launch:
        return Launch([str(QUIX_VENV / "bin" / "python"), "-m", "bench.quix_runner", *_topic_args(spec),
                       "--group", spec.topics.group, "--state-dir", str(spec.workdir / "quix-state"),
                       "--topology", topology], _python_env())
    return launch


def prepare_kstreams(say: Callable[[str], None]) -> None:
    """Build the Kafka Streams app with Maven when its classes are missing."""
    built = KSTREAMS_TARGET / "classes" / "paystream" / "bench" / "SimplePayments.class"
    if built.exists() and (KSTREAMS_TARGET / "lib").is_dir():
        return
    say("building the Kafka Streams peer with Maven (once)")
    subprocess.run(["mvn", "-q", "-f", str(KSTREAMS_POM), "package"], check=True)


def _kstreams(threads: int) -> Callable[[RunSpec], Launch]:
    def launch(spec: RunSpec) -> Launch:
        classpath = f"{KSTREAMS_TARGET / 'classes'}{os.pathsep}{KSTREAMS_TARGET / 'lib' / '*'}"
        return Launch(["java", "-Xms256m", "-Xmx1g", "-cp", classpath, KSTREAMS_MAIN, *_topic_args(spec),
                       "--app-id", spec.topics.group, "--threads", str(threads),
                       "--state-dir", str(spec.workdir / "kstreams-state")])
    return launch


def _bytewax(spec: RunSpec) -> Launch:
    spec.workdir.mkdir(parents=True, exist_ok=True)
    recovery = tempfile.mkdtemp(prefix="bytewax-recovery-", dir=spec.workdir)  # one fresh store per launch
    return Launch([sys.executable, "-m", "bench.bytewax_runner", *_topic_args(spec), "--recovery-dir", recovery],
                  _python_env())


# ---------------------------------------------------------------------------------------------
# paystream: the engine runs `python -m paystream.worker <flow>`, whose epoch (= the commit
# interval: one Kafka transaction per task per epoch) is `engine.epoch_interval_ms`, so 100 ms
# works as well as 1 s. Topics, app id and epoch reach the flow as PAYSTREAM_* settings variables.
# - `paystream`: flows.simple:flow, the simple variant on the same exactly-once task machinery;
# - `paystream-2p`: the same as one Bytewax cluster of 2 processes, under a small launcher
#   (bench/paystream_cluster.py) so the harness samples both processes' CPU and memory;
# - `paystream-full`: flows.payments:flow, the realistic flow with all seven rules, on the
#   generator's realistic traffic (customers + payment commands of the wire contract); its
#   completion is "the group's committed offsets reached the end of payments and credits".
# ---------------------------------------------------------------------------------------------
SIMPLE_FLOW = "flows.simple:flow"
FULL_FLOW = "flows.payments:flow"


def paystream_settings_env(spec: RunSpec) -> dict[str, str]:
    """The PAYSTREAM_* variables that point the engine at the run's topics, group and epoch."""
    t = spec.topics
    prefix = t.payments.removesuffix("-payments")
    return {
        "PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS": spec.bootstrap,
        "PAYSTREAM_TOPICS__PAYMENTS": t.payments,
        "PAYSTREAM_TOPICS__DECISIONS": t.decisions,
        "PAYSTREAM_TOPICS__BALANCES": t.balances,
        "PAYSTREAM_TOPICS__CUSTOMERS": f"{prefix}-customer-status",
        "PAYSTREAM_TOPICS__LEDGER": f"{prefix}-ledger",
        "PAYSTREAM_TOPICS__ALERTS": f"{prefix}-fraud-alerts",
        "PAYSTREAM_TOPICS__COMPLETED": f"{prefix}-payment-completed",
        "PAYSTREAM_TOPICS__DLQ": f"{prefix}-payments-dlq",
        "PAYSTREAM_ENGINE__APP_ID": t.group,
        "PAYSTREAM_ENGINE__EPOCH_INTERVAL_MS": str(spec.commit_ms),
        "PAYSTREAM_ENGINE__SNAPSHOT_DIR": str(spec.workdir / "paystream-snapshots"),
        "PAYSTREAM_LOG_FORMAT": "json",
    }


def paystream_run_settings(spec: RunSpec) -> Settings:
    """The settings the engine will load for `spec` (the harness uses them to load and to probe)."""
    from paystream.settings import load

    return load(environ=paystream_settings_env(spec))


def _paystream(flow: str, processes: int, store: str = "memory") -> Callable[[RunSpec], Launch | str]:
    def launch(spec: RunSpec) -> Launch | str:
        module = flow.split(":")[0].replace(".", "/") + ".py"
        if not (REPO / module).exists():
            return f"paystream: not built yet (no {module})"
        from tools.topics import create_topics

        env = {**paystream_settings_env(spec), "PAYSTREAM_ENGINE__STORE": store}
        create_topics(paystream_run_settings(spec))  # public and internal topics of the run (idempotent)
        if processes == 1:
            argv = [sys.executable, "-m", "paystream.worker", flow]
        else:
            argv = [sys.executable, "-m", "bench.paystream_cluster", "--processes", str(processes),
                    "--log-dir", str(spec.workdir / "workers"), flow]
        return Launch(argv, {**_python_env(), **env})
    return launch


PEERS: dict[str, Peer] = {peer.name: peer for peer in (
    Peer("paystream", "paystream (Bytewax), 1 process", "exactly-once", _paystream(SIMPLE_FLOW, 1)),
    Peer("paystream-2p", "paystream (Bytewax), 2 processes", "exactly-once", _paystream(SIMPLE_FLOW, 2)),
    Peer("paystream-full", "paystream, realistic flow, 7 rules", "exactly-once", _paystream(FULL_FLOW, 1),
         workload="realistic"),
    Peer("paystream-disk", "paystream (Bytewax), 1 process, disk store", "exactly-once",
         _paystream(SIMPLE_FLOW, 1, "disk")),
    Peer("paystream-full-disk", "paystream, realistic flow, 7 rules, disk store", "exactly-once",
         _paystream(FULL_FLOW, 1, "disk"), workload="realistic"),
    Peer("raw-eos", "raw confluent-kafka loop", "exactly-once", _raw_loop("eos")),
    Peer("raw-alo", "raw confluent-kafka loop", "at-least-once", _raw_loop("alo")),
    Peer("kstreams-1", "Kafka Streams 4.1.1, 1 thread", "exactly_once_v2", _kstreams(1), prepare_kstreams),
    Peer("kstreams-2", "Kafka Streams 4.1.1, 2 threads", "exactly_once_v2", _kstreams(2), prepare_kstreams),
    Peer("quix", "Quix Streams 3.28.1", "exactly-once", _quix("linear"), prepare_quix),
    # not in the default set: the earlier branched topology, to measure it against `quix` in one run
    Peer("quix-branched", "Quix Streams 3.28.1, branched into two to_topic", "exactly-once", _quix("branched"),
         prepare_quix),
    Peer("bytewax", "Bytewax 0.21.1 stock connectors", "at-least-once", _bytewax),
)}
