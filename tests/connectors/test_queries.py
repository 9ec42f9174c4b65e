"""Interactive queries on a three-process run: any process answers `GET /accounts/{id}` from the
live task that owns the account (forwarding when it is elsewhere), with the same balance as the
last `balances` record and so as the reference model (the audit checks that one)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import msgspec

from tools.cli.generate import produce_traffic
from tools.runner import FlowProcesses, wait_until_caught_up
from tools.status import get
from verify.audit import audit
from verify.geo import distance_km
from verify.readback import read_snapshot


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65_000:
            continue
        try:
            held = []
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no consecutive free ports")


class _Balance(msgspec.Struct):
    account: str
    currency: str
    posted: int
    held: int
    available: int
    seq: int


def test_any_process_answers_for_any_account_as_the_balances_topic_says(make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings(partitions=6, engine={"http_port": free_ports(3)})
    produce_traffic(settings, accounts=300, payments=3_000, seed=13, bad_ratio=0.0, progress=False)
    procs = FlowProcesses(settings, 3, log_dir=tmp_path / "logs")
    procs.start()
    try:
        wait_until_caught_up(settings, 3_000, timeout=300, procs=procs, progress=False)
        ports = [procs.http_port(index) for index in range(3)]
        deadline = time.monotonic() + 60
        while not all(get(f"http://127.0.0.1:{port}/health/ready")[0] == 200 for port in ports):
            assert time.monotonic() < deadline, "the processes did not all become ready"
            time.sleep(0.2)
        snapshot = read_snapshot(settings)
        decode = msgspec.json.Decoder(_Balance).decode
        last: dict[str, _Balance] = {}
        for record in snapshot.balances:
            balance = decode(record.value)
            if balance.account not in last or balance.seq > last[balance.account].seq:
                last[balance.account] = balance
        owners: set[str] = set()
        for number, (account, balance) in enumerate(sorted(last.items())[:60]):
            port = ports[number % 3]  # ask each process about accounts it mostly does not own
            status, body = get(f"http://127.0.0.1:{port}/accounts/{account}", timeout=10)
            assert status == 200, (account, status, body)
            answer = json.loads(body)
            assert (answer["posted"], answer["held"], answer["available"], answer["currency"]) == (
                balance.posted, balance.held, balance.available, balance.currency), account
            assert answer["seq"] >= balance.seq  # every event counts; a balance record only when money moved
            assert answer["key"] == account and answer["positions"]
            owners.add(answer["task"])
        assert len(owners) > 3  # the answers came from tasks spread over the processes
        status, body = get(f"http://127.0.0.1:{ports[1]}/accounts/NO-SUCH-ACCOUNT", timeout=10)
        assert status == 404 and "no accounts" in json.loads(body)["error"]
    finally:
        procs.stop()
    result = audit(read_snapshot(settings), settings.rules, distance_km)
    assert result.ok, result.table()  # the balances topic agrees with the reference model
