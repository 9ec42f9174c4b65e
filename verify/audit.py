"""The independent auditor: checks the six exactly-once invariants of SPEC.md, and agreement
with the reference model replayed in the engine's order, on plain lists of topic records.

Kafka stays out of this module (`verify.readback` reads the topics), so every check can be
tested on records built in memory. The output records are decoded with this module's own
msgspec Structs, not the engine's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from msgspec import Struct

from verify import geo
from verify.model import ModelOutputs, event_time_bounds, replay_engine_order, split_payments
from verify.rules import audit_rules, published_versions
from verify.validation import Command, InputRecord, classify_customer, customer_table

# ---------------------------------------------------------------------------------------
# The output records as this auditor reads them (unknown fields are ignored)
# ---------------------------------------------------------------------------------------


class _Source(Struct, frozen=True, gc=False):
    topic: str
    partition: int
    offset: int


class DecisionSeen(Struct, frozen=True, gc=False):
    payment_id: str
    account: str
    type: str
    amount: int
    currency: str
    ts: int
    decision: str
    reasons: list[str]
    source: _Source
    seq: int
    rules_version: int = 0


class LedgerSeen(Struct, frozen=True, gc=False):
    entry_id: str
    payment_id: str
    account: str
    direction: str
    amount: int
    currency: str
    ts: int


class BalanceSeen(Struct, frozen=True, gc=False):
    account: str
    currency: str
    posted: int
    held: int
    available: int
    ts: int
    seq: int
    cause: str


class AlertSeen(Struct, frozen=True, gc=False):
    alert_id: str
    payment_id: str
    account: str
    rule: str
    score: int
    evidence: dict[str, Any]


class CompletedSeen(Struct, frozen=True, gc=False):
    payment_id: str
    account: str
    type: str
    amount: int
    currency: str
    ts: int


# ---------------------------------------------------------------------------------------
# Input to the audit, and its result
# ---------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Every record of the inputs and outputs, each topic in (partition, offset) order."""

    customers: list[InputRecord] = field(default_factory=list)
    payments: list[InputRecord] = field(default_factory=list)
    payment_partitions: int | None = None  # enables the `misrouted` expectation
    decisions: list[InputRecord] = field(default_factory=list)
    ledger: list[InputRecord] = field(default_factory=list)
    balances: list[InputRecord] = field(default_factory=list)
    alerts: list[InputRecord] = field(default_factory=list)
    completed: list[InputRecord] = field(default_factory=list)
    dlq: list[InputRecord] = field(default_factory=list)
    rules: list[InputRecord] = field(default_factory=list)  # the published rule changes, in order


# (id, what it means); the ids are the `invariant` label of the metrics and the JSON keys
INVARIANTS: tuple[tuple[str, str], ...] = (
    ("1_one_decision", "every valid payment_id has exactly one decision"),
    ("2_transfer_pairs", "every approved transfer has one debit and one credit of its amount"),
    ("3_balances", "last balance = fold of ledger, available = posted - held, = model"),
    ("4_conservation", "sum of balances = deposits - captures + refunds"),
    ("5_dlq", "every invalid input is in the DLQ exactly once with its reason"),
    ("6_order", "per account, decisions in input order and seq without gaps"),
    ("model_decisions", "decisions and reasons agree with the model (engine order)"),
    ("model_ledger", "ledger entries agree with the model"),
    ("model_balances", "every balance record agrees with the model's at its seq"),
    ("model_alerts", "fraud alerts agree with the model"),
    ("model_completed", "payment-completed facts agree with the model"),
    ("outputs_readable", "every output record decodes as the wire contract says"),
)


@dataclass
class Finding:
    """One row of the audit table."""

    invariant: str
    title: str
    checked: int = 0
    violations: int = 0
    example: str = ""

    def violated(self, example: str) -> None:
        if not self.violations:
            self.example = example
        self.violations += 1


@dataclass
class AuditResult:
    findings: dict[str, Finding]
    counts: dict[str, int]
    model: ModelOutputs

    @property
    def ok(self) -> bool:
        return not any(finding.violations for finding in self.findings.values())

    def violated(self) -> list[str]:
        return [name for name, finding in self.findings.items() if finding.violations]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts,
            "invariants": {name: {"title": f.title, "checked": f.checked, "violations": f.violations,
                                  "example": f.example} for name, f in self.findings.items()},
            "model_notes": self.model.notes[:100],
        }

    def table(self) -> str:
        """The human-readable table: invariant, checked, violations, first example."""
        rows = [("invariant", "checked", "violations", "first example")]
        rows += [(name, str(f.checked), str(f.violations), f.example[:120]) for name, f in self.findings.items()]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
        lines.insert(1, "-" * (sum(widths) + 6 + 13))
        lines.append("OK: all invariants hold" if self.ok else "VIOLATED: " + ", ".join(self.violated()))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------

S = TypeVar("S")


def _decode_all(records: list[InputRecord], kind: type[S], finding: Finding) -> list[S]:
    """Decode one output topic; a record that does not decode is a violation, then skipped."""
    decoder = msgspec.json.Decoder(kind)
    decoded = []
    for record in records:
        finding.checked += 1
        try:
            decoded.append(decoder.decode(record.value or b""))
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            finding.violated(f"{record.topic}[{record.partition}]@{record.offset}: {error}")
    return decoded


def _header(record: InputRecord, name: str) -> bytes | None:
    for key, value in record.headers:
        if key == name:
            return value
    return None


# ---------------------------------------------------------------------------------------
# The audit
# ---------------------------------------------------------------------------------------


def credit_order(decisions: list[DecisionSeen], balances: list[BalanceSeen],
                 commands: list[Command]) -> dict[str, list[tuple[int, str]]]:
    """Where the engine applied each credit: `(seq, transfer id)` per recipient account.

    A balance record is a credit when its cause is a transfer to its account from another
    account, and not the decision of the account's own command at that seq.
    """
    incoming = {(c.to_account, c.payment_id) for c in commands if c.type == "transfer" and c.to_account != c.account}
    own_decisions = {(d.account, d.payment_id, d.seq) for d in decisions}
    order: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for balance in balances:
        if (balance.account, balance.cause) in incoming and \
                (balance.account, balance.cause, balance.seq) not in own_decisions:
            order[balance.account].append((balance.seq, balance.cause))
    return order


def audit(snapshot: Snapshot, rules: object,
          distance_km: Callable[[str, str], int | None] = geo.distance_km) -> AuditResult:
    """Check every invariant on `snapshot`; nothing here talks to Kafka.

    `rules`: the configured rule settings, read as the auditor's own `verify.rules.AuditRules`;
    `distance_km`: the auditor's own geography unless a test gives another.
    """
    rules = audit_rules(rules)
    findings = {name: Finding(name, title) for name, title in INVARIANTS}
    readable = findings["outputs_readable"]
    decisions = _decode_all(snapshot.decisions, DecisionSeen, readable)
    ledger = _decode_all(snapshot.ledger, LedgerSeen, readable)
    balances = _decode_all(snapshot.balances, BalanceSeen, readable)
    alerts = _decode_all(snapshot.alerts, AlertSeen, readable)
    completed = _decode_all(snapshot.completed, CompletedSeen, readable)

    customers = customer_table([(r.key, r.value) for r in snapshot.customers])
    commands, invalid = split_payments(snapshot.payments, snapshot.payment_partitions, event_time_bounds(rules))
    rule_errors = _rule_error_positions(snapshot)
    model = replay_engine_order(commands, invalid, customers, rules, distance_km,
                                credit_order(decisions, balances, commands),
                                published_versions(snapshot.rules, rules),
                                {(d.account, d.payment_id): d.rules_version for d in decisions},
                                rule_errors)

    _check_one_decision(findings["1_one_decision"], decisions, model, commands)
    _check_transfer_pairs(findings["2_transfer_pairs"], decisions, ledger, commands)
    _check_balances(findings["3_balances"], balances, ledger, model)
    _check_conservation(findings["4_conservation"], balances, completed, model)
    _check_dlq(findings["5_dlq"], snapshot, model)
    _check_order(findings["6_order"], decisions, balances, commands)
    _compare(findings["model_decisions"], decisions, model.decisions, lambda d: (d.account, d.payment_id),
             lambda d: (d.type, d.amount, d.currency, d.ts, d.decision, tuple(d.reasons),
                        (d.source.topic, d.source.partition, d.source.offset), d.seq, d.rules_version))
    _compare(findings["model_ledger"], ledger, model.ledger, lambda e: (e.account, e.entry_id),
             lambda e: (e.payment_id, e.direction, e.amount, e.currency, e.ts))
    _compare_balance_records(findings["model_balances"], balances, model)
    _compare(findings["model_alerts"], alerts, model.alerts, lambda a: (a.account, a.alert_id),
             lambda a: (a.payment_id, a.rule, a.score, sorted(a.evidence.items())))
    _compare(findings["model_completed"], completed, model.completed, lambda c: (c.account, c.payment_id),
             lambda c: (c.type, c.amount, c.currency, c.ts))
    counts = {
        "customers": len(snapshot.customers), "payments": len(snapshot.payments), "commands": len(commands),
        "duplicates": model.duplicates, "invalid": len(model.dead_letters), "decisions": len(decisions),
        "ledger": len(ledger), "balances": len(balances), "alerts": len(alerts), "completed": len(completed),
        "dlq": len(snapshot.dlq), "rule_errors": len(rule_errors),
    }
    return AuditResult(findings, counts, model)


RULE_ERROR = "rule_error"  # the engine's dead letter for a valid command a rule raised on (declined too)


def _rule_error_positions(snapshot: Snapshot) -> frozenset[tuple[str, int, int]]:
    """The inputs the engine says a rule raised on: its `rule_error` dead letters' positions."""
    positions = set()
    for record in snapshot.dlq:
        if _header(record, "dlq.reason") == RULE_ERROR.encode():
            try:
                positions.add(((_header(record, "dlq.topic") or b"").decode(),
                               int(_header(record, "dlq.partition") or b""), int(_header(record, "dlq.offset") or b"")))
            except ValueError:
                continue  # reported by the DLQ check
    return frozenset(positions)


def _check_one_decision(finding: Finding, decisions: list[DecisionSeen], model: ModelOutputs,
                        commands: list[Command]) -> None:
    """Invariant 1: as many decisions per (account, payment_id) as the model owes (one, unless an
    id was re-sent after the duplicate horizon), none for ids that were never input."""
    owed = Counter((d.account, d.payment_id) for d in model.decisions)
    seen = Counter((d.account, d.payment_id) for d in decisions)
    inputs = {(c.account, c.payment_id) for c in commands}
    finding.checked = len(owed)
    for key, count in owed.items():
        if seen[key] < count:
            finding.violated(f"lost: no decision for payment {key[1]} of account {key[0]}")
        elif seen[key] > count:
            finding.violated(f"duplicated: {seen[key]} decisions for payment {key[1]} of account {key[0]}")
    for key in seen.keys() - owed.keys():
        what = "duplicated" if key in inputs else "unexpected"
        finding.violated(f"{what}: decision for payment {key[1]} of account {key[0]}, which is owed none")


def _check_transfer_pairs(finding: Finding, decisions: list[DecisionSeen], ledger: list[LedgerSeen],
                          commands: list[Command]) -> None:
    """Invariant 2: each approved transfer has exactly one debit (sender) and one credit (recipient)
    of its amount; no transfer has ledger entries without being approved; no entry is written twice."""
    recipient = {(c.account, c.payment_id): c.to_account for c in commands if c.type == "transfer"}
    entries: dict[tuple[str, str], list[LedgerSeen]] = defaultdict(list)
    for entry in ledger:
        entries[(entry.account, entry.entry_id)].append(entry)
    approved = {(d.account, d.payment_id): d for d in decisions if d.type == "transfer" and d.decision == "approved"}
    finding.checked = len(approved)
    paired: set[tuple[str, str]] = set()
    for (account, payment_id), decision in approved.items():
        to_account = recipient.get((account, payment_id))
        debits = entries.get((account, f"{payment_id}:debit"), [])
        credits = entries.get((to_account or "", f"{payment_id}:credit"), [])
        paired.add((account, f"{payment_id}:debit"))
        paired.add((to_account or "", f"{payment_id}:credit"))
        if len(debits) != 1 or len(credits) != 1:
            finding.violated(f"transfer {payment_id} {account}->{to_account}: "
                             f"{len(debits)} debit(s), {len(credits)} credit(s)")
        elif not debits[0].amount == credits[0].amount == decision.amount:
            finding.violated(f"transfer {payment_id}: debit {debits[0].amount}, credit {credits[0].amount}, "
                             f"decided {decision.amount}")
    debit_keys = set(recipient)
    credit_keys = {(to_account, payment_id) for (_, payment_id), to_account in recipient.items()}
    for (account, entry_id), group in entries.items():
        if (account, entry_id) in paired:
            continue
        if len(group) > 1:
            finding.violated(f"ledger entry {entry_id} of {account} written {len(group)} times")
        entry = group[0]
        if (account, entry.payment_id) in (debit_keys if entry.direction == "debit" else credit_keys):
            finding.violated(f"ledger {entry.direction} {entry_id} on {account} for a transfer that was not approved")


def _last_balances(balances: list[BalanceSeen]) -> dict[str, BalanceSeen]:
    """The latest balance per account: the last one read (each key lives in one partition)."""
    return {balance.account: balance for balance in balances}


def _check_balances(finding: Finding, balances: list[BalanceSeen], ledger: list[LedgerSeen],
                    model: ModelOutputs) -> None:
    """Invariant 3: the last balance equals the ledger fold and the model's; available = posted - held."""
    fold: Counter[str] = Counter()
    for entry in ledger:
        fold[entry.account] += entry.amount if entry.direction == "credit" else -entry.amount
    last = _last_balances(balances)
    expected = model.final_balances()
    accounts = set(last) | set(expected) | {a for a, v in fold.items() if v}
    finding.checked = len(accounts)
    for account in sorted(accounts):
        balance, owed = last.get(account), expected.get(account)
        if balance is None:
            finding.violated(f"{account}: no balance record (ledger fold {fold[account]})")
            continue
        if balance.posted != fold[account]:
            finding.violated(f"{account}: posted {balance.posted} != ledger fold {fold[account]}")
        elif balance.available != balance.posted - balance.held:
            finding.violated(f"{account}: available {balance.available} != "
                             f"posted {balance.posted} - held {balance.held}")
        elif owed is None:
            finding.violated(f"{account}: a balance the model does not owe (posted {balance.posted})")
        elif (balance.posted, balance.held, balance.currency) != (owed.posted, owed.held, owed.currency):
            finding.violated(f"{account}: posted/held {balance.posted}/{balance.held} {balance.currency}, "
                             f"model {owed.posted}/{owed.held} {owed.currency}")


def _net_by_currency(facts: Iterable[Any]) -> Counter[str]:
    """Deposits − captures + refunds, per currency, from completed facts."""
    sign = {"deposit": 1, "capture": -1, "refund": 1}
    net: Counter[str] = Counter()
    for fact in facts:
        net[fact.currency] += sign.get(fact.type, 0) * fact.amount
    return net


def _check_conservation(finding: Finding, balances: list[BalanceSeen], completed: list[CompletedSeen],
                        model: ModelOutputs) -> None:
    """Invariant 4, per currency: sum of last posted = deposits − captures + refunds, as the
    engine's own facts say and as the model says."""
    total: Counter[str] = Counter()
    for balance in _last_balances(balances).values():
        total[balance.currency] += balance.posted
    engine_net, model_net = _net_by_currency(completed), _net_by_currency(model.completed)
    currencies = set(total) | set(engine_net) | set(model_net)
    finding.checked = len(currencies)
    for currency in sorted(currencies):
        if total[currency] != engine_net[currency]:
            finding.violated(f"{currency}: balances sum {total[currency]} != completed facts {engine_net[currency]}")
        elif total[currency] != model_net[currency]:
            finding.violated(f"{currency}: balances sum {total[currency]} != model {model_net[currency]}")


def _masked_copy(original: bytes | None, dead: bytes | None) -> bool:
    """The DLQ value is the original byte for byte, except digits a PAN mask replaced with '*'."""
    if original is None or dead is None:
        return original == dead
    if len(original) != len(dead):
        return False
    return all(a == b or (b == 0x2A and 0x30 <= a <= 0x39) for a, b in zip(original, dead, strict=True))


def _check_dlq(finding: Finding, snapshot: Snapshot, model: ModelOutputs) -> None:
    """Invariant 5: every invalid payment once in the DLQ (found by its dlq.* headers) with its
    reason (when unambiguous), key and value; nothing else there but malformed customer rows and
    one copy of each valid command a rule raised on (`rule_error`, which is also declined)."""
    letters: dict[tuple[str, int, int], list[InputRecord]] = defaultdict(list)
    for record in snapshot.dlq:
        try:
            position = ((_header(record, "dlq.topic") or b"").decode(), int(_header(record, "dlq.partition") or b""),
                        int(_header(record, "dlq.offset") or b""))
        except ValueError:
            finding.violated(f"dlq[{record.partition}]@{record.offset}: no readable dlq.topic/partition/offset")
            continue
        letters[position].append(record)
    finding.checked = len(model.dead_letters)
    expected = set()
    for invalid in model.dead_letters:
        source = invalid.record
        position = (source.topic, source.partition, source.offset)
        expected.add(position)
        found = letters.get(position, [])
        where = f"{source.topic}[{source.partition}]@{source.offset}"
        if len(found) != 1:
            finding.violated(f"{where} ({'/'.join(invalid.problems)}): in the DLQ {len(found)} times")
            continue
        reason = (_header(found[0], "dlq.reason") or b"").decode()
        if reason not in invalid.problems:  # the one reason, or one of the codes that all apply
            finding.violated(f"{where}: reason {reason!r}, "
                             f"expected {invalid.reason or 'one of ' + str(invalid.problems)}")
        elif found[0].key != source.key or not _masked_copy(source.value, found[0].value):
            finding.violated(f"{where}: the DLQ does not carry the original key and value")
    rule_errors = {(d.source.topic, d.source.partition, d.source.offset) for d in model.decisions
                   if d.reasons == (RULE_ERROR,)}
    inputs = {(r.topic, r.partition, r.offset): r for r in snapshot.payments
              if (r.topic, r.partition, r.offset) in rule_errors}
    for position in rule_errors:
        expected.add(position)
        found, source = letters.get(position, []), inputs.get(position)
        where = f"{position[0]}[{position[1]}]@{position[2]} (rule_error)"
        if len(found) != 1:
            finding.violated(f"{where}: in the DLQ {len(found)} times")
        elif source is None or found[0].key != source.key or not _masked_copy(source.value, found[0].value):
            finding.violated(f"{where}: the DLQ does not carry the original key and value")
    malformed_customers = {(r.topic, r.partition, r.offset) for r in snapshot.customers
                           if isinstance(classify_customer(r.key, r.value), str)}
    for position in letters.keys() - expected - malformed_customers:
        finding.violated(f"{position[0]}[{position[1]}]@{position[2]}: dead-lettered but valid (or no such input)")


def _check_order(finding: Finding, decisions: list[DecisionSeen], balances: list[BalanceSeen],
                 commands: list[Command]) -> None:
    """Invariant 6: per account, decisions in input order (source offsets increase) and the seqs of
    its decisions and credits are exactly 1, 2, 3, ..."""
    last_source: dict[str, tuple[int, int]] = {}
    seqs: dict[str, list[int]] = defaultdict(list)
    for decision in decisions:
        position = (decision.source.partition, decision.source.offset)
        previous = last_source.get(decision.account)
        if previous is not None and position <= previous:
            finding.violated(f"{decision.account}: decision for {decision.source.topic}[{position[0]}]@{position[1]} "
                             f"after one for [{previous[0]}]@{previous[1]}")
        last_source[decision.account] = position
        seqs[decision.account].append(decision.seq)
    incoming = {(c.to_account, c.payment_id) for c in commands if c.type == "transfer" and c.to_account != c.account}
    own = {(d.account, d.payment_id, d.seq) for d in decisions}
    for balance in balances:
        if (balance.account, balance.cause) in incoming and (balance.account, balance.cause, balance.seq) not in own:
            seqs[balance.account].append(balance.seq)
    finding.checked = len(seqs)
    for account, values in sorted(seqs.items()):
        if sorted(values) != list(range(1, len(values) + 1)):
            finding.violated(f"{account}: seqs of decisions and credits are {_runs(sorted(values))}, "
                             f"not 1..{len(values)}")


def _runs(values: list[int]) -> str:
    """A short rendering of a sorted list of ints, e.g. `1-4,4,6-9`."""
    parts: list[str] = []
    start = prev = None
    for value in values + [None]:  # type: ignore[list-item]
        if start is not None and value is not None and value == prev + 1:  # type: ignore[operator]
            prev = value
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = value
    text = ",".join(parts)
    return text if len(text) < 60 else text[:57] + "..."


T = TypeVar("T")
U = TypeVar("U")


def _compare(finding: Finding, seen: list[T], owed: list[U], key: Callable[[Any], tuple[str, str]],
             value: Callable[[Any], Any]) -> None:
    """Engine records against the model's, matched by `key` (the first of each key; duplicates
    are the business of invariants 1 and 2): missing, unexpected and different ones."""
    engine: dict[tuple[str, str], Any] = {}
    for record in seen:
        engine.setdefault(key(record), record)
    model: dict[tuple[str, str], Any] = {}
    for record in owed:
        model.setdefault(key(record), record)
    finding.checked = len(model.keys() | engine.keys())
    for k in sorted(model.keys() | engine.keys()):
        if k not in engine:
            finding.violated(f"{k[0]} {k[1]}: missing (model: {value(model[k])})")
        elif k not in model:
            finding.violated(f"{k[0]} {k[1]}: not owed by the model (engine: {value(engine[k])})")
        elif value(engine[k]) != value(model[k]):
            finding.violated(f"{k[0]} {k[1]}: engine {value(engine[k])} != model {value(model[k])}")


def _compare_balance_records(finding: Finding, balances: list[BalanceSeen], model: ModelOutputs) -> None:
    """Every balance record the engine wrote equals the model's at the same account and seq
    (compaction may have removed some of the engine's, so only present ones are compared)."""
    owed = {(b.account, b.seq): b for b in model.balances}
    finding.checked = len(balances)
    for balance in balances:
        expected = owed.get((balance.account, balance.seq))
        got = (balance.currency, balance.posted, balance.held, balance.available, balance.ts, balance.cause)
        if expected is None:
            finding.violated(f"{balance.account} seq {balance.seq}: a balance record the model does not owe {got}")
            continue
        want = (expected.currency, expected.posted, expected.held, expected.available, expected.ts, expected.cause)
        if got != want:
            finding.violated(f"{balance.account} seq {balance.seq}: engine {got} != model {want}")


def cut_at_outputs(snapshot: Snapshot) -> Snapshot:
    """Only the payments the engine visibly got to: per partition, up to the last input that has a
    decision or a dead letter. For auditing a running engine (`--follow`), whose later inputs are
    simply not processed yet; a lost decision before that point is still found."""
    last: dict[tuple[str, int], int] = {}
    decoder = msgspec.json.Decoder(DecisionSeen)
    for record in snapshot.decisions:
        try:
            source = decoder.decode(record.value or b"").source
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        key = (source.topic, source.partition)
        last[key] = max(last.get(key, -1), source.offset)
    for record in snapshot.dlq:
        try:
            key = ((_header(record, "dlq.topic") or b"").decode(), int(_header(record, "dlq.partition") or b""))
            offset = int(_header(record, "dlq.offset") or b"")
        except ValueError:
            continue
        last[key] = max(last.get(key, -1), offset)
    payments = [r for r in snapshot.payments if r.offset <= last.get((r.topic, r.partition), -1)]
    return Snapshot(**{**vars(snapshot), "payments": payments})
