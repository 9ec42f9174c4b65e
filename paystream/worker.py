"""Run a paystream dataflow in this process with the epoch length from settings.

`python -m bytewax.run flows.payments:flow -s 1` is the standard way and works; its `-s` only
takes whole seconds, so this entry point exists for sub-second epochs (commit every 100 ms):

    python -m paystream.worker flows.payments:flow [-i PROCESS_ID -a "host:port;host:port"] [-w WORKERS]

It takes the same scaling flags as `bytewax.run`, and `engine.epoch_interval_ms` from settings.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from datetime import timedelta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paystream.worker", description=__doc__.splitlines()[0])
    parser.add_argument("flow", help="module:variable, e.g. flows.payments:flow")
    parser.add_argument("-i", "--process-id", type=int, default=None)
    parser.add_argument("-a", "--addresses", default=None, help='"host:port;host:port" of every process')
    parser.add_argument("-w", "--workers-per-process", type=int, default=1)
    args = parser.parse_args(argv)

    import faulthandler
    import signal

    from bytewax._bytewax import cli_main

    # `kill -USR1 <pid>` writes every thread's stack to stderr (the worker's log): a stalled
    # worker tells where it waits, without stopping it
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    from paystream import settings

    module_name, _, variable = args.flow.partition(":")
    flow = getattr(importlib.import_module(module_name), variable or "flow")
    epoch = timedelta(milliseconds=settings.load().engine.epoch_interval_ms)
    addresses = args.addresses.split(";") if args.addresses else None
    # bytewax's stub leaves `cli_main` unannotated
    cli_main(flow, workers_per_process=args.workers_per_process, process_id=args.process_id,  # type: ignore[no-untyped-call]
             addresses=addresses, epoch_interval=epoch)
    # the flow ended: a graceful stop (SIGTERM/SIGINT) committed the open epoch; close the clients
    from paystream import shutdown

    return 0 if shutdown.close_tasks() else 1


if __name__ == "__main__":
    sys.exit(main())
