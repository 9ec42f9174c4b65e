"""One typed settings object for everything paystream does, read from a TOML file and the environment.

Precedence: defaults < the TOML file named by `PAYSTREAM_CONFIG` (or `--config`) < environment
variables `PAYSTREAM_<SECTION>__<FIELD>` (for example `PAYSTREAM_KAFKA__BOOTSTRAP_SERVERS` or
`PAYSTREAM_RULES__VELOCITY__MAX_AUTHORIZATIONS`).

>>> load(environ={"PAYSTREAM_RULES__VELOCITY__MAX_AUTHORIZATIONS": "9"}).rules.velocity.max_authorizations
9
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

DAY_MS = 86_400_000


class KafkaSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    """Where Kafka is and how its clients behave."""

    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = 12
    # librdkafka settings merged into every client paystream makes (e.g. security for a cluster)
    client: dict[str, str] = {}


class TopicSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    """The public topics of the wire contract; the internal ones are named from `app_id`."""

    payments: str = "payments"
    customers: str = "customer-status"
    decisions: str = "payment-decisions"
    ledger: str = "ledger"
    balances: str = "balances"
    alerts: str = "fraud-alerts"
    completed: str = "payment-completed"
    dlq: str = "payments-dlq"
    # rules changed while the engine runs (compacted, one partition, key `rules`): `paystream rules set`
    rules: str = "paystream-rules"

    def outputs(self) -> list[str]:
        return [self.decisions, self.ledger, self.balances, self.alerts, self.completed, self.dlq]


class SingleLimitRule(Struct, kw_only=True, forbid_unknown_fields=True):
    """Decline a debit above the customer's `single_limit` (`single_limit_exceeded`), or above
    `max_amount` for every customer when it is set (> 0): a bank-wide cap, e.g. for a backtest."""

    enabled: bool = True
    max_amount: int = 0  # minor units; 0: no cap beyond the customer's own limit


class DailyLimitRule(Struct, kw_only=True, forbid_unknown_fields=True):
    """Decline a debit that takes the rolling event-time window's spend above `daily_limit`."""

    enabled: bool = True
    window_ms: int = DAY_MS


class VelocityRule(Struct, kw_only=True, forbid_unknown_fields=True):
    """Review an authorization that is the (K+1)-th or later within `window_ms` (`velocity`)."""

    enabled: bool = True
    max_authorizations: int = 5
    window_ms: int = 10 * 60_000


class ImpossibleTravelRule(Struct, kw_only=True, forbid_unknown_fields=True):
    """Review a card use whose distance from the previous one needs more than `max_speed_kmh`."""

    enabled: bool = True
    max_speed_kmh: int = 1_000


class CustomerRule(Struct, kw_only=True, forbid_unknown_fields=True):
    """Decline unknown, blocked or not-KYC-verified customers (and transfer recipients)."""

    enabled: bool = True


class DuplicateRule(Struct, kw_only=True, forbid_unknown_fields=True):
    """Remember decided `payment_id`s for `horizon_ms` of event time; a re-sent one has no effect."""

    horizon_ms: int = 7 * DAY_MS


class EventTimeRule(Struct, kw_only=True, forbid_unknown_fields=True):
    """Bound a command's `ts` by its record's Kafka timestamp (deterministic on replay).

    A command whose `ts` is more than `max_skew_ms` after its record's timestamp, or more than
    `max_lateness_ms` before it, goes to the DLQ as `ts_out_of_range`: one producer clock in
    microseconds must not move an account's event time (and so its duplicate horizon and its
    windows) years ahead. Their sum must stay below the duplicate horizon, so that a re-sent
    command old enough to be forgotten by the horizon is too late to be admitted at all.
    """

    max_skew_ms: int = 5 * 60_000
    max_lateness_ms: int = DAY_MS


class FundsRule(Struct, kw_only=True, forbid_unknown_fields=True):
    """Decline a debit above the available balance (`insufficient_funds`)."""

    enabled: bool = True


class RuleSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    """The seven fraud and safety rules, each configured on its own."""

    single_limit: SingleLimitRule = msgspec.field(default_factory=SingleLimitRule)
    daily_limit: DailyLimitRule = msgspec.field(default_factory=DailyLimitRule)
    velocity: VelocityRule = msgspec.field(default_factory=VelocityRule)
    impossible_travel: ImpossibleTravelRule = msgspec.field(default_factory=ImpossibleTravelRule)
    customer: CustomerRule = msgspec.field(default_factory=CustomerRule)
    duplicate: DuplicateRule = msgspec.field(default_factory=DuplicateRule)
    funds: FundsRule = msgspec.field(default_factory=FundsRule)
    event_time: EventTimeRule = msgspec.field(default_factory=EventTimeRule)


class EngineSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    """How the dataflow runs."""

    app_id: str = "paystream"
    epoch_interval_ms: int = 1_000
    # local state snapshots (a cache; Kafka's changelog is the truth)
    snapshot_dir: str = ".paystream/snapshots"
    snapshot_every_epochs: int = 5
    # where a task keeps its state: "memory" (a dict, snapshots as a cache) or "disk" (RocksDB under
    # snapshot_dir, for state larger than memory; state/disk.py), with its decoded-value cache size
    store: str = "memory"
    store_cache_keys: int = 100_000
    # a local snapshot or disk store labelled longer ago than this is not trusted (a full restore
    # instead): a compacted changelog drops its tombstones `delete.retention.ms` (24 h by default)
    # after compaction, so a replay from an older label could miss deletions. Keep it below that.
    local_state_max_age_ms: int = 12 * 3_600_000
    max_batch: int = 5_000
    # per task: records read but not yet processed (backpressure; bounds an epoch's work)
    max_in_flight: int = 5_000
    # per task and input partition: what the Kafka client may fetch ahead of the task (librdkafka's
    # `queued.max.messages.kbytes`). Its default (64 MiB, and 100,000 records) let twelve tasks
    # with a backlog hold most of the topic in memory; 4 MiB is seconds of work for a task
    fetch_queue_kbytes: int = 4_096
    # glibc malloc arenas per process (paystream/allocator.py; 0: glibc's default of 8 per core).
    # Two kept 50 MiB (set in-process) to 110 MiB (MALLOC_ARENA_MAX) less RSS for the realistic flow
    malloc_arenas: int = 2
    # a transaction the broker aborts if it is not committed in time (librdkafka's
    # `transaction.timeout.ms`); a commit gives up well before it (`commit_timeout_ms`)
    transaction_timeout_ms: int = 30_000
    commit_timeout_ms: int = 20_000
    # an idle task still commits its input positions this often, so the group's committed
    # offsets never reach `offsets.retention.minutes` (7 days) however long a partition is idle
    offsets_refresh_ms: int = 3_600_000
    # consumed records of the internal credits topic are deleted this often (it keeps records
    # until they are consumed: unlimited retention, like Kafka Streams' repartition topics)
    credits_purge_interval_ms: int = 60_000
    # SIGTERM/SIGINT: stop reading, commit the open epoch, close the clients, exit 0 within this
    shutdown_timeout_ms: int = 20_000
    # a changelog record above this many bytes is logged and counted (state/codec.py); by
    # design none passes 256 KiB: a large account's record is split into pages (operators/account_codec.py)
    changelog_record_warn_bytes: int = 64 * 1024
    # each process serves /metrics, /health/live and /health/ready here (connectors/health.py);
    # port 0: no server. Several local processes need one port each (the runner gives them).
    http_host: str = "127.0.0.1"
    http_port: int = 9310
    # every process's host:port, comma-separated: where an interactive query (GET /accounts/ID)
    # is forwarded when this process does not own the account's task (`paystream run` sets it)
    http_peers: str = ""
    # /health/ready fails while a task has work and has committed nothing for this long
    ready_commit_bound_ms: int = 30_000


# What a published rules change may set (`paystream rules set`): thresholds and switches. Windows,
# the duplicate horizon and the event-time bounds stay as configured: the accounts' state keeps
# what those windows need, so they cannot change under a running engine.
MUTABLE_RULES: dict[str, tuple[str, ...]] = {
    "single_limit": ("enabled", "max_amount"), "daily_limit": ("enabled",),
    "velocity": ("enabled", "max_authorizations"), "impossible_travel": ("enabled", "max_speed_kmh"),
    "customer": ("enabled",), "funds": ("enabled",),
}


def live_rules(configured: RuleSettings, published: RuleSettings) -> RuleSettings:
    """The rules in force: `published`'s thresholds and switches (`MUTABLE_RULES`), everything
    else as `configured`.

    >>> live = live_rules(RuleSettings(), msgspec.convert({"velocity": {"max_authorizations": 2,
    ...                   "window_ms": 1}}, RuleSettings))
    >>> live.velocity.max_authorizations, live.velocity.window_ms
    (2, 600000)
    """
    sections = {}
    for section, fields in MUTABLE_RULES.items():
        changes = {name: getattr(getattr(published, section), name) for name in fields}
        sections[section] = msgspec.structs.replace(getattr(configured, section), **changes)
    return msgspec.structs.replace(configured, **sections)


class Settings(Struct, kw_only=True, forbid_unknown_fields=True):
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    topics: TopicSettings = msgspec.field(default_factory=TopicSettings)
    rules: RuleSettings = msgspec.field(default_factory=RuleSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    log_format: str = "auto"  # auto | console | json
    log_level: str = "info"

    @property
    def credits_topic(self) -> str:
        return f"{self.engine.app_id}-credits"

    @property
    def changelog_topic(self) -> str:
        return f"{self.engine.app_id}-accounts-changelog"

    @property
    def consumer_group(self) -> str:
        return self.engine.app_id


class SettingsError(ValueError):
    """A setting is unknown or has the wrong type; the message names it."""


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("PAYSTREAM_") or name in ("PAYSTREAM_CONFIG", "PAYSTREAM_HOME", "PAYSTREAM_VENV"):
            continue
        if name.startswith("PAYSTREAM_FAULT_"):  # fault points of chaos runs (paystream/faults.py), not settings
            continue
        path = name[len("PAYSTREAM_"):].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = raw
    return tree


def load(config: str | Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings: defaults, then the TOML file, then the environment, then `overrides`."""
    environ = os.environ if environ is None else environ
    tree: dict[str, Any] = {}
    path = config or environ.get("PAYSTREAM_CONFIG")
    if path:
        try:
            tree = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise SettingsError(f"cannot read settings file {path}: {error}") from error
    _merge(tree, _from_environ(environ))
    _merge(tree, overrides)
    try:
        settings = msgspec.convert(tree, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise SettingsError(f"invalid setting: {error}") from error
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """Reject combinations of settings that would break a guarantee, naming the settings."""
    engine = settings.engine
    if engine.store not in ("memory", "disk"):
        raise SettingsError(f"engine.store must be 'memory' or 'disk', not {engine.store!r}")
    if engine.local_state_max_age_ms < 1:
        raise SettingsError(f"engine.local_state_max_age_ms ({engine.local_state_max_age_ms}) must be positive")
    if engine.store_cache_keys < 1:
        raise SettingsError(f"engine.store_cache_keys ({engine.store_cache_keys}) must be positive")
    if engine.malloc_arenas < 0:
        raise SettingsError(f"engine.malloc_arenas ({engine.malloc_arenas}) must be 0 (glibc's default) or more")
    if not 1 <= engine.fetch_queue_kbytes <= 2_097_151:  # librdkafka's range
        raise SettingsError(f"engine.fetch_queue_kbytes ({engine.fetch_queue_kbytes}) must be 1 to 2097151")
    if not 0 < engine.commit_timeout_ms < engine.transaction_timeout_ms:
        raise SettingsError(
            f"engine.commit_timeout_ms ({engine.commit_timeout_ms}) must be positive and below "
            f"engine.transaction_timeout_ms ({engine.transaction_timeout_ms}): a commit must give up before the broker "
            f"aborts it")
    if engine.changelog_record_warn_bytes <= 0:
        raise SettingsError(
            f"engine.changelog_record_warn_bytes ({engine.changelog_record_warn_bytes}) must be positive")
    rules = settings.rules
    event_time = rules.event_time
    if event_time.max_skew_ms < 0 or event_time.max_lateness_ms < 0:
        raise SettingsError("rules.event_time.max_skew_ms and max_lateness_ms must be >= 0")
    if event_time.max_skew_ms + event_time.max_lateness_ms >= rules.duplicate.horizon_ms:
        raise SettingsError(
            f"rules.event_time.max_skew_ms + max_lateness_ms ({event_time.max_skew_ms} + "
            f"{event_time.max_lateness_ms}) must be below rules.duplicate.horizon_ms "
            f"({rules.duplicate.horizon_ms}): a re-send the horizon forgot could be admitted again")
