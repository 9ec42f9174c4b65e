"""A real Apache Kafka 4.1.1 (KRaft, no ZooKeeper) on loopback, for development and tests.

The jars come from Maven Central through `pom.xml` beside this file and are cached in
`$PAYSTREAM_HOME/kafka-4.1.1/libs` (default `~/.cache/paystream`); runtime data (properties,
storage, logs, pid files) lives in `$PAYSTREAM_HOME/cluster/`. Every node is a combined
broker+controller; node i (1-based) listens on PLAINTEXT 127.0.0.1:(9090+2i) and CONTROLLER
127.0.0.1:(9091+2i). One node is the default; three make a 3-voter quorum for failure tests.

>>> cluster = up(1)              # doctest: +SKIP
>>> cluster.bootstrap_servers    # doctest: +SKIP
'127.0.0.1:9092'
>>> down()                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = "4.1.1"
HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J2 = HERE / "log4j2.properties"
HEAP = ("-Xms1G", "-Xmx1G")
READY_LINE = "Kafka Server started"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


class ClusterError(RuntimeError):
    """The local cluster cannot be brought to the asked state; the message says why and what to do."""


class ToolMissing(ClusterError):
    """`java` or `mvn` is not installed; the message says what to install."""


@dataclass(frozen=True)
class Node:
    """One combined broker+controller process of the local cluster."""

    node_id: int
    home: Path
    base_port: int = 9090  # the secure cluster (deploy/local/secure.py) has its own

    @property
    def port(self) -> int:
        return self.base_port + 2 * self.node_id

    @property
    def controller_port(self) -> int:
        return self.base_port + 1 + 2 * self.node_id

    @property
    def listener(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def controller(self) -> str:
        return f"127.0.0.1:{self.controller_port}"

    @property
    def dir(self) -> Path:
        return self.home / "cluster" / f"node-{self.node_id}"

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log(self) -> Path:
        return self.dir / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"


@dataclass(frozen=True)
class BrokerStatus:
    """What `status()` knows about one node."""

    node_id: int
    pid: int | None
    alive: bool
    listener: str
    log_path: str


@dataclass(frozen=True)
class Cluster:
    """A running local cluster of `brokers` nodes."""

    brokers: int
    home: Path

    @property
    def nodes(self) -> list[Node]:
        return [Node(i, self.home) for i in range(1, self.brokers + 1)]

    @property
    def bootstrap_servers(self) -> str:
        """Comma-separated PLAINTEXT listeners of every node (node 1 first)."""
        return ",".join(node.listener for node in self.nodes)


# ---------------------------------------------------------------------------------------------
# where things live


def home() -> Path:
    """The cache and runtime root: `$PAYSTREAM_HOME`, default `~/.cache/paystream`."""
    return Path(os.environ.get("PAYSTREAM_HOME") or Path.home() / ".cache" / "paystream").expanduser()


def _libs(root: Path) -> Path:
    return root / f"kafka-{KAFKA_VERSION}" / "libs"


def _state_file(root: Path) -> Path:
    return root / "cluster" / "cluster.json"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created with its folder) across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _locked(root: Path) -> contextlib.AbstractContextManager[None]:
    """Serialise up/down/start across processes (pytest sessions and CLIs may race)."""
    return file_lock(root / "cluster.lock")


def _size(root: Path) -> int | None:
    """How many nodes the cluster set up under `root` has (None if there is none)."""
    try:
        return int(json.loads(_state_file(root).read_text())["brokers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# tools and jars


def _tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolMissing(f"`{name}` not found on PATH: install {install} to run a local Kafka")
    return path


def _java() -> str:
    return _tool("java", "a Java 17+ runtime (e.g. the openjdk-17-jre-headless package)")


def ensure_jars(root: Path | None = None) -> Path:
    """Fetch Kafka's jars into the cache once (Maven); later calls return the cached directory."""
    root = root or home()
    libs = _libs(root)
    if (libs / ".complete").exists():
        return libs
    mvn = _tool("mvn", "Apache Maven (e.g. the maven package)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    # fetch into a scratch directory and rename, so a half-finished download is never used
    scratch = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    try:
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={scratch}"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ClusterError(f"mvn could not fetch the Kafka {KAFKA_VERSION} jars:\n{tail}")
        (scratch / ".complete").write_text(KAFKA_VERSION)
        if libs.exists():
            shutil.rmtree(libs)
        scratch.rename(libs)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return libs


def _java_command(libs: Path, main: str, *args: str, heap: tuple[str, ...] = ("-Xmx256M",)) -> list[str]:
    return [
        _java(), *heap, "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J2}",
        "-cp", f"{libs}/*", main, *args,
    ]


# ---------------------------------------------------------------------------------------------
# configuration and storage


def server_properties(node: Node, brokers: int, overrides: Mapping[str, str] | None = None) -> str:
    """The `server.properties` of one combined node in a cluster of `brokers` nodes.

    `overrides` replace or add broker settings (the lifetime tests shorten Kafka's memory with them).
    """
    peers = [Node(i, node.home) for i in range(1, brokers + 1)]
    replication = min(3, brokers)
    min_isr = min(2, brokers)
    if brokers == 1:
        # `format --standalone` makes a dynamic single-voter quorum found through bootstrap servers
        quorum = f"controller.quorum.bootstrap.servers={node.controller}"
    else:
        # a static 3-voter quorum: every node formatted alike, no bootstrapping dance
        quorum = "controller.quorum.voters=" + ",".join(f"{p.node_id}@{p.controller}" for p in peers)
    lines = [
        f"node.id={node.node_id}",
        "process.roles=broker,controller",
        quorum,
        f"listeners=PLAINTEXT://{node.listener},CONTROLLER://{node.controller}",
        f"advertised.listeners=PLAINTEXT://{node.listener},CONTROLLER://{node.controller}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={node.data}",
        "auto.create.topics.enable=false",
        "num.partitions=12",
        f"default.replication.factor={replication}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={replication}",
        "offsets.topic.num.partitions=12",
        f"transaction.state.log.replication.factor={replication}",
        f"transaction.state.log.min.isr={min_isr}",
        "transaction.state.log.num.partitions=12",
        f"share.coordinator.state.topic.replication.factor={replication}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        # long-running exactly-once jobs may hold a transaction open while they catch up
        "transaction.max.timeout.ms=3600000",
        "group.initial.rebalance.delay.ms=0",
        # a restarted node re-registers only once its old session expired (9 s by default)
        "broker.heartbeat.interval.ms=1000",
        "broker.session.timeout.ms=4000",
        "group.coordinator.rebalance.protocols=classic,consumer",
        # Kafka's defaults: durability comes from replication and acks=all, not per-write fsync
        "log.flush.interval.messages=9223372036854775807",
        "log.retention.check.interval.ms=300000",
        "num.network.threads=3",
        "num.io.threads=4",
        "num.recovery.threads.per.data.dir=1",
        "unclean.leader.election.enable=false",
    ]
    if overrides:
        lines = [line for line in lines if line.split("=", 1)[0] not in overrides]
        lines += [f"{key}={value}" for key, value in overrides.items()]
    return "\n".join(lines) + "\n"


def _format_storage(libs: Path, nodes: list[Node], overrides: Mapping[str, str] | None = None,
                    extra: tuple[str, ...] = ()) -> None:
    """Write properties and format every node's storage with one fresh cluster id (`extra`: more
    `format` arguments, e.g. the secure cluster's SCRAM users)."""
    result = subprocess.run(_java_command(libs, "kafka.tools.StorageTool", "random-uuid"),
                            capture_output=True, text=True)
    cluster_id = result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else ""
    if not cluster_id:
        raise ClusterError(f"kafka StorageTool random-uuid failed: {result.stderr.strip()[-2000:]}")
    formatting = {}
    for node in nodes:  # in parallel: each format is a JVM start
        node.dir.mkdir(parents=True, exist_ok=True)
        node.properties.write_text(server_properties(node, len(nodes), overrides))
        args = ["format", "-t", cluster_id, "-c", str(node.properties), *extra]
        if len(nodes) == 1:
            args.append("--standalone")
        formatting[node.node_id] = subprocess.Popen(
            _java_command(libs, "kafka.tools.StorageTool", *args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for node_id, process in formatting.items():
        output, _ = process.communicate()
        if process.returncode != 0:
            raise ClusterError(f"formatting node {node_id} failed: {output.strip()[-2000:]}")


# ---------------------------------------------------------------------------------------------
# processes


def _pid(node: Node) -> int | None:
    try:
        return int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_ours(pid: int, node: Node) -> bool:
    """True if `pid` is alive and is this node's Kafka (not a recycled pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _running(pid) and b"kafka.Kafka" in cmdline and str(node.properties).encode() in cmdline


def _alive(node: Node) -> bool:
    pid = _pid(node)
    return pid is not None and _is_ours(pid, node)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _port_closed(port: int, timeout: float) -> bool:
    """Wait up to `timeout` for nothing to listen on `port` (a killed JVM's threads exit after its leader)."""
    deadline = time.monotonic() + timeout
    while _port_open(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _spawn(libs: Path, node: Node) -> int:
    """Start one node detached from this process; return the log offset where this start begins."""
    for port in (node.port, node.controller_port):
        if not _port_closed(port, timeout=10.0):
            raise ClusterError(f"port {port} is already in use by another process; "
                               "stop it or run `paystream kafka down`")
    node.dir.mkdir(parents=True, exist_ok=True)
    offset = node.log.stat().st_size if node.log.exists() else 0
    with open(node.log, "ab") as log:
        process = subprocess.Popen(
            _java_command(libs, "kafka.Kafka", str(node.properties), heap=HEAP),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=node.dir,
        )
    node.pid_file.write_text(f"{process.pid}\n")
    return offset


def _wait_ready(node: Node, offset: int, deadline: float) -> None:
    """Wait for "Kafka Server started" in the part of the log written by this start."""
    while time.monotonic() < deadline:
        with open(node.log, "rb") as log:
            log.seek(offset)
            if READY_LINE.encode() in log.read():
                return
        pid = _pid(node)
        if pid is None or not _running(pid):  # not _is_ours: right after fork the cmdline is still Python's
            if pid is not None:
                _reap(pid)
            raise ClusterError(f"Kafka node {node.node_id} exited while starting; "
                               f"see {node.log}:\n{_tail(node.log, offset)}")
        time.sleep(0.1)
    raise ClusterError(f"Kafka node {node.node_id} not ready after {READY_TIMEOUT_S:.0f} s; see {node.log}")


def _tail(path: Path, offset: int, lines: int = 15) -> str:
    with open(path, "rb") as log:
        log.seek(offset)
        return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])


def _start(libs: Path, nodes: list[Node]) -> None:
    """Start nodes together (a multi-voter quorum needs its peers) and wait until each is ready."""
    offsets = {node.node_id: _spawn(libs, node) for node in nodes}
    deadline = time.monotonic() + READY_TIMEOUT_S
    for node in nodes:
        _wait_ready(node, offsets[node.node_id], deadline)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    # a node started by this very process is our child: collect it so it does not linger as a zombie
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _stop(node: Node, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the node's process (by pid file), SIGKILL it after `timeout`, wait until it is gone."""
    pid = _pid(node)
    if pid is None or not _is_ours(pid, node):
        node.pid_file.unlink(missing_ok=True)
        return
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_ours(pid, node):
        _reap(pid)
        time.sleep(0.1)
    if _is_ours(pid, node):
        _signal(pid, signal.SIGKILL)
        while _is_ours(pid, node):
            _reap(pid)
            time.sleep(0.05)
    _reap(pid)
    node.pid_file.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the public API


def is_up() -> bool:
    """True if a cluster was started here and every one of its nodes is alive and listening."""
    size = _size(home())
    if size is None:
        return False
    cluster = Cluster(size, home())
    return all(_alive(node) and _port_open(node.port) for node in cluster.nodes)


def up(brokers: int = 1, overrides: Mapping[str, str] | None = None) -> Cluster:
    """Bring up a local cluster of `brokers` (1 or 3) nodes and return it once every node is ready.

    Idempotent: a healthy cluster of the same size is returned as is, and dead nodes of it are
    restarted on their existing data. A running cluster of another size is an error.
    `overrides`: broker settings for a new cluster (see `server_properties`); a running
    cluster is returned with the settings it was started with.
    """
    if brokers not in (1, 3):
        raise ClusterError(f"a local cluster has 1 or 3 brokers, not {brokers}")
    root = home()
    with _locked(root):
        running = _size(root)
        if running is not None:
            existing = Cluster(running, root)
            alive = [node for node in existing.nodes if _alive(node)]
            if running != brokers:
                if alive:
                    raise ClusterError(
                        f"a {running}-broker Kafka cluster is running; run `paystream kafka down` first")
                _wipe(root)
            else:
                dead = [node for node in existing.nodes if node not in alive]
                if dead:
                    _start(_java_libs(root), dead)
                return existing
        cluster = Cluster(brokers, root)
        libs = _java_libs(root)
        _wipe(root)
        _format_storage(libs, cluster.nodes, overrides)
        _state_file(root).write_text(json.dumps({"brokers": brokers, "version": KAFKA_VERSION}))
        try:
            _start(libs, cluster.nodes)
        except BaseException:
            for node in cluster.nodes:
                _stop(node, timeout=5)
            raise
        return cluster


def _java_libs(root: Path) -> Path:
    _java()  # a missing java is reported before a long download
    return ensure_jars(root)


def _wipe(root: Path) -> None:
    shutil.rmtree(root / "cluster", ignore_errors=True)
    (root / "cluster").mkdir(parents=True, exist_ok=True)


def down() -> None:
    """Stop every node this launcher started (by pid file) and delete the data: the next `up` is fresh."""
    root = home()
    with _locked(root):
        # without a state file, still look for every node a 3-node cluster could have left behind
        nodes = Cluster(_size(root) or 3, root).nodes
        for node in nodes:
            _terminate(node)
        for node in nodes:
            _stop(node)
        shutil.rmtree(root / "cluster", ignore_errors=True)


def _terminate(node: Node) -> None:
    # SIGTERM every node first so they shut down in parallel rather than one after another
    pid = _pid(node)
    if pid is not None and _is_ours(pid, node):
        _signal(pid, signal.SIGTERM)


def status() -> list[BrokerStatus]:
    """One row per node of the cluster started here (empty if none)."""
    root = home()
    size = _size(root)
    if size is None:
        return []
    cluster = Cluster(size, root)
    rows = []
    for node in cluster.nodes:
        pid = _pid(node)
        rows.append(BrokerStatus(node.node_id, pid, pid is not None and _is_ours(pid, node), node.listener,
                                 str(node.log)))
    return rows


def _node(node_id: int) -> Node:
    root = home()
    brokers = _size(root)
    if brokers is None:
        raise ClusterError("no local Kafka cluster; run `paystream kafka up` first")
    if not 1 <= node_id <= brokers:
        raise ClusterError(f"the local cluster has nodes 1..{brokers}, not {node_id}")
    return Node(node_id, root)


def kill_broker(node_id: int) -> None:
    """SIGKILL one node (a crash, for chaos tests) and wait until it is gone."""
    node = _node(node_id)
    pid = _pid(node)
    if pid is None or not _is_ours(pid, node):
        return
    _signal(pid, signal.SIGKILL)
    while _is_ours(pid, node):
        _reap(pid)
        time.sleep(0.02)
    _reap(pid)
    _port_closed(node.port, timeout=10.0)


def start_broker(node_id: int) -> None:
    """Restart a killed node on its existing data and wait until it is ready (no-op if it runs)."""
    node = _node(node_id)
    root = home()
    with _locked(root):
        if not _alive(node):
            _start(_java_libs(root), [node])
