"""A newcomer's first mistakes get one line that says what is wrong and how to fix it, within
seconds, with a non-zero exit status and no traceback: no Kafka at the bootstrap servers, the
topics not created, a partition count that does not match the settings."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from paystream.settings import Settings, TopicSettings, load
from tools.runner import settings_environment

ROOT = Path(__file__).resolve().parents[2]
FLOW = [sys.executable, "-m", "bytewax.run", "flows.payments:flow"]
CLI = [sys.executable, "-m", "tools"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attempt(command: list[str], settings: Settings, tmp_path: Path) -> tuple[int, str, float]:
    """(exit status, stderr, seconds) of `command` run as a user would, in a scratch folder."""
    env = settings_environment(settings)
    env["PYTHONPATH"] = str(ROOT)
    started = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr, time.monotonic() - started


def assert_one_clear_line(status: int, stderr: str, seconds: float, *expected: str) -> None:
    assert status == 2, stderr
    assert "Traceback" not in stderr, stderr
    line = stderr.strip().splitlines()[-1]
    for text in expected:
        assert text in line, line
    assert seconds < 30, f"took {seconds:.0f} s to say so"


@pytest.mark.parametrize("command", [
    [*CLI, "generate", "--accounts", "5", "--payments", "10"],
    [*CLI, "run", "--until-caught-up", "10"],
    [*CLI, "verify"],
    FLOW,
], ids=["generate", "run", "verify", "bytewax.run"])
def test_no_kafka_says_start_one(command: list[str], tmp_path: Path) -> None:
    settings = load(environ={}, kafka={"bootstrap_servers": f"127.0.0.1:{closed_port()}"},
                    engine={"http_port": 0})
    assert_one_clear_line(*attempt(command, settings, tmp_path), "no Kafka answers", "paystream kafka up")


def test_missing_topics_say_create_them(kafka_cluster: Any, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    settings = load(environ={}, kafka={"bootstrap_servers": kafka_cluster.bootstrap_servers},
                    topics={field: f"{name}-{run}" for field, name in msgspec.structs.asdict(TopicSettings()).items()},
                    engine={"app_id": f"missing-{run}", "http_port": 0})
    assert_one_clear_line(*attempt(FLOW, settings, tmp_path), "missing", "paystream topics create")
    assert_one_clear_line(*attempt([*CLI, "run"], settings, tmp_path), "missing", "paystream topics create")


def test_a_partition_count_that_does_not_match_is_named(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(partitions=4, engine={"http_port": 0})
    wrong = msgspec.structs.replace(settings, kafka=msgspec.structs.replace(settings.kafka, partitions=6))
    assert_one_clear_line(*attempt(FLOW, wrong, tmp_path), "has 4 partitions but kafka.partitions is 6")
