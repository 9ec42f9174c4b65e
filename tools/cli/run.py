"""`paystream run`: run the payment dataflow as local Bytewax processes."""

from __future__ import annotations

import argparse
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the payment dataflow (flows.payments:flow)")
    parser.add_argument("--processes", type=int, default=1, help="Bytewax processes on loopback (default 1)")
    parser.add_argument("--workers-per-process", type=int, default=1)
    parser.add_argument("--epoch-ms", type=int, help="epoch (= transaction) length; default from settings")
    parser.add_argument("--until-caught-up", type=int, metavar="PAYMENTS", default=None,
                        help="stop once this many payments and every credit are committed")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--log-dir", default=".paystream/logs")
    parser.add_argument("--shadow", metavar="TOML",
                        help="also run these candidate rules beside the live flow, on *-shadow topics")
    parser.set_defaults(func=run, needs_kafka=True)


def run(args: argparse.Namespace) -> int:
    import msgspec

    from connectors.topology import check_topology
    from flows.payments import PAYMENTS
    from tools import runner

    settings = args.settings
    check_topology(settings, PAYMENTS)  # a missing topic or a wrong partition count: one line, now
    if args.epoch_ms:
        settings = msgspec.structs.replace(
            settings, engine=msgspec.structs.replace(settings.engine, epoch_interval_ms=args.epoch_ms))
    flows = [runner.FlowProcesses(settings, args.processes, args.workers_per_process, log_dir=args.log_dir)]
    shadow = None
    if args.shadow:
        from paystream.settings import load
        from tools import shadow as shadow_mode
        from tools.topics import create_topics

        shadow = shadow_mode.shadow_settings(settings, load(args.shadow, environ={}).rules)
        create_topics(shadow)
        flows.append(runner.FlowProcesses(shadow, args.processes, args.workers_per_process,
                                          log_dir=f"{args.log_dir}/shadow"))
    started = time.monotonic()
    for procs in flows:
        procs.start()
    print(f"paystream: {args.processes} process(es) running {runner.FLOW}; logs in {args.log_dir}/"
          + ("; the shadow flow (candidate rules) writes to the *-shadow topics" if shadow else ""))
    try:
        if args.until_caught_up is None:
            while all(all(procs.alive()) for procs in flows):
                time.sleep(1.0)
            print(f"paystream: a worker exited: {[procs.returncodes() for procs in flows]}")
            return 1
        runner.wait_until_caught_up(settings, args.until_caught_up, args.timeout, flows[0])
        seconds = time.monotonic() - started
        print(f"paystream: {args.until_caught_up:,} payments committed in {seconds:.1f} s "
              f"({args.until_caught_up / seconds:,.0f} payments/s, start-up included)")
        if shadow is not None:
            from tools import shadow as shadow_mode

            runner.wait_until_caught_up(shadow, args.until_caught_up, args.timeout, flows[1])
            print(shadow_mode.compare(settings, shadow))
        return 0
    finally:
        for procs in flows:
            procs.stop()
