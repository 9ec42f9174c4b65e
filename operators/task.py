"""One task of the engine, still pure: raw records of partition p in, raw records to write out.

A task owns partition p of `payments` and partition p of the internal credits topic (both
keyed by account, so co-partitioned). It decodes each record, routes bad ones to the DLQ,
decides commands, applies credits and encodes every output. The state layer owns
`accounts`, drains `changed` at each commit and reads `counts` for metrics and the run report.

Hot path: about one command per few microseconds, so encoders are module-level, dispatch is
on `type(...)` and nothing is built that is not written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Final, Protocol

from msgspec.structs import replace

from operators.accounts import AccountState
from operators.payments import apply_credit, decide
from operators.rules import RULE_ERROR
from paystream.partitioning import partition_for
from paystream.records import NO_TIMESTAMP, InboundRecord, OutboundRecord
from paystream.settings import RuleSettings, Settings
from paystream.wire import (
    CustomerStatus,
    Malformed,
    SourcePosition,
    decode_command,
    decode_credit,
    encode,
    redact_pans,
    redact_text,
)


class RulesInForce(Protocol):
    """Where a task reads the rules in force (`state.rules_table.RuleVersions`)."""

    def current(self) -> tuple[int, RuleSettings]: ...


class MisroutedCredit(ValueError):
    """A credit in a partition its recipient does not hash to: the topics were repartitioned."""


MISROUTED: Final = "misrouted"
TS_OUT_OF_RANGE: Final = "ts_out_of_range"
_DUPLICATE_COUNT: Final = ("duplicate",)
_DECISION_COUNTS: Final = {decision: ("decision", decision) for decision in ("approved", "declined", "review")}


class TaskProcessor:
    """Decides the commands and applies the credits of one partition, in order."""

    def __init__(self, settings: Settings, customers: Mapping[str, CustomerStatus], accounts: dict[str, AccountState],
                 changed: set[str] | None = None, rules: RulesInForce | None = None) -> None:
        """`accounts`: the task's accounts (changed in place); `changed`: where to mark the accounts
        changed (the task's store's set of changed keys; a new set if not given); `rules`: where the
        rules in force come from, read once per batch (default: the configured rules, version 0)."""
        self.settings = settings
        self.customers = customers
        self.accounts = accounts
        self.changed: set[str] = set() if changed is None else changed
        self.counts: Counter[tuple[str, ...]] = Counter()
        self._rules = settings.rules
        self._rules_in_force = rules
        topics = settings.topics
        self._payments = topics.payments
        self._decisions = topics.decisions
        self._ledger = topics.ledger
        self._balances = topics.balances
        self._alerts = topics.alerts
        self._completed = topics.completed
        self._credits = settings.credits_topic
        self._partitions = settings.kafka.partitions
        self._home_partition: dict[str, int] = {}  # account → the partition its key hashes to
        # event time is bounded by the record's Kafka timestamp (deterministic on replay)
        self._max_skew = settings.rules.event_time.max_skew_ms
        self._max_lateness = settings.rules.event_time.max_lateness_ms

    def process(self, records: list[InboundRecord]) -> list[OutboundRecord]:
        """Process `records` in order; returns what to write, in order, in this task's transaction.

        The per-command path is written out in this one loop, with everything it reuses bound
        once per batch: at tens of thousands of commands a second, each call and attribute
        lookup saved is measurable.
        """
        out: list[OutboundRecord] = []
        append = out.append
        payments, credits = self._payments, self._credits
        decisions, ledger_topic, balances, alerts_topic, completed_topic = (
            self._decisions, self._ledger, self._balances, self._alerts, self._completed)
        accounts, customers, counts = self.accounts, self.customers, self.counts
        rules_version, rules = (0, self._rules) if self._rules_in_force is None else self._rules_in_force.current()
        home_partition, partitions, mark_changed = self._home_partition, self._partitions, self.changed.add
        max_skew, max_lateness = self._max_skew, self._max_lateness
        for record in records:
            topic = record.topic()
            if topic != payments:
                if topic != credits:
                    raise ValueError(f"a task of {payments!r} got a record from {topic!r}")
                self._credit(record, out)
                continue
            key = record.key()
            command = decode_command(key, record.value())
            if type(command) is Malformed:
                self._dead_letter(record, command.reason, command.error, out)
                continue
            kind, stamp = record.timestamp()
            ts = command.ts  # type: ignore[union-attr]
            if kind != NO_TIMESTAMP and not stamp - max_lateness <= ts <= stamp + max_skew:
                self._dead_letter(record, TS_OUT_OF_RANGE, f"ts {ts} is outside [{stamp - max_lateness}, "
                                  f"{stamp + max_skew}] around the record's timestamp {stamp}", out)
                continue
            account_id = command.account  # type: ignore[union-attr]
            partition = record.partition()
            home = home_partition.get(account_id)
            if home is None:
                home = home_partition[account_id] = partition_for(key, partitions)  # type: ignore[arg-type]
            if home != partition:
                self._dead_letter(record, MISROUTED,
                                  f"key {account_id!r} hashes to partition {home}, not {partition}", out)
                continue
            account = accounts.get(account_id)
            if account is None:
                account = accounts[account_id] = AccountState()
            outcome = decide(
                command, account, customers, rules, SourcePosition(payments, partition, record.offset())  # type: ignore[arg-type]
            )
            decision = outcome.decision
            if decision is None:
                counts[_DUPLICATE_COUNT] += 1
                continue
            if rules_version:
                decision = replace(decision, rules_version=rules_version)
            mark_changed(account_id)
            append((decisions, key, encode(decision), None))
            counts[_DECISION_COUNTS[decision.decision]] += 1
            if decision.reasons:
                for reason in decision.reasons:
                    counts[("reason", reason)] += 1
            for entry in outcome.ledger:  # a transfer's credit entry is keyed by its recipient
                append((ledger_topic, key if entry.account == account_id else entry.account.encode(),
                        encode(entry), None))
            if outcome.balance is not None:
                append((balances, key, encode(outcome.balance), None))
            if outcome.alerts:
                for alert in outcome.alerts:
                    append((alerts_topic, key, encode(alert), None))
                    counts[("alert", alert.rule)] += 1
            if outcome.completed is not None:
                append((completed_topic, key, encode(outcome.completed), None))
            credit = outcome.credit
            if credit is not None:
                append((credits, credit.account.encode(), encode(credit), None))
            if outcome.error is not None:  # a rule raised: declined above, and a copy to the DLQ says why
                self._dead_letter(record, RULE_ERROR, outcome.error, out)
        return out

    def _credit(self, record: InboundRecord, out: list[OutboundRecord]) -> None:
        """Land one transfer's credit on its recipient (paystream wrote it: a bad one is a broken invariant)."""
        if record.value() is None:
            raise ValueError(f"a null credit at {record.topic()}/{record.partition()}@{record.offset()}")
        credit = decode_credit(record.value())  # type: ignore[arg-type]  # not None: checked above
        home = partition_for(credit.account.encode(), self._partitions)
        if home != record.partition():  # paystream keys credits by recipient: another layout is a broken topology
            raise MisroutedCredit(
                f"credit {credit.transfer_id} for account {credit.account!r} at {record.topic()}[{record.partition()}]"
                f"@{record.offset()}: the account hashes to partition {home}; the credits topic and payments must "
                f"have the same partition count (kafka.partitions = {self._partitions})")
        account = self.accounts.get(credit.account)
        if account is None:
            account = self.accounts[credit.account] = AccountState()
        outcome = apply_credit(credit, account, self._rules.duplicate.horizon_ms)
        if outcome.balance is None:  # landed already: the recipient remembers the transfer id
            self.counts[("credit_duplicate",)] += 1
            return
        self.changed.add(credit.account)
        self.counts[("credit",)] += 1
        out.append((self._balances, credit.account.encode(), encode(outcome.balance), None))

    def _dead_letter(self, record: InboundRecord, reason: str, error: str, out: list[OutboundRecord]) -> None:
        """The original key and (PAN-redacted) value to `payments-dlq`, with Kafka Connect's dead-letter headers."""
        value = record.value()
        headers = [
            ("dlq.reason", reason.encode()),
            ("dlq.error", redact_text(error).encode("utf-8", "replace")),
            ("dlq.topic", record.topic().encode()),
            ("dlq.partition", str(record.partition()).encode()),
            ("dlq.offset", str(record.offset()).encode()),
        ]
        out.append((self.settings.topics.dlq, record.key(), None if value is None else redact_pans(value), headers))
        self.counts[("dlq", reason)] += 1
