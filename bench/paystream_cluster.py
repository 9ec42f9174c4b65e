"""A launcher for paystream as a Bytewax cluster of N local processes, for the benchmark.

The harness samples one process tree; this small parent starts the N worker processes
(`tools.runner.FlowProcesses`, one Bytewax cluster on loopback) and waits, so the sampler
sees every worker's CPU and memory. SIGTERM/SIGINT stop the workers; if one worker exits, the
others are stopped and the launcher exits with that worker's code.

    python -m bench.paystream_cluster --processes 2 flows.simple:flow
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

POLL_S = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paystream_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("flow", help="module:variable, e.g. flows.simple:flow")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--log-dir", default=None, help="one worker-<i>.log per process (default: inherit nothing)")
    args = parser.parse_args(argv)

    from paystream.settings import load
    from tools.runner import FlowProcesses

    workers = FlowProcesses(load(), processes=args.processes, flow=args.flow, log_dir=args.log_dir)
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers.start()
    print(f"started {args.processes} processes of {args.flow}", flush=True)
    try:
        while not stopping and all(workers.alive()):
            time.sleep(POLL_S)
    finally:
        codes = workers.returncodes()
        workers.stop()
    failed = [code for code in codes if code not in (None, 0)]
    if failed and not stopping:
        print(f"a worker exited: exit codes {codes}", flush=True)
        if args.log_dir:
            print_worker_tails(Path(args.log_dir))
        return failed[0]
    return 0


def print_worker_tails(log_dir: Path, lines: int = 10) -> None:
    """The last lines of every worker's log, so the harness's log of this launcher shows why."""
    for log in sorted(log_dir.glob("worker-*.log")):
        print(f"--- {log.name}", flush=True)
        print("\n".join(log.read_text(errors="replace").splitlines()[-lines:]), flush=True)


if __name__ == "__main__":
    sys.exit(main())
