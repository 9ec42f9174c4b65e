"""The single-threaded reference model: every output paystream owes for a set of inputs.

Written from docs/RULES.md and the wire contract in SPEC.md, sharing no code with the engine
(`operators/`, `state/`, `connectors/`, `flows/`, `paystream.wire`). Plain and slow on purpose:
one account at a time, one command at a time.

Two ways to run it:
- `run_input_order`: commands in input order; a transfer's credit lands on the recipient
  immediately after the transfer (what `paystream model` prints).
- `run_engine_order`: each account's commands in input order, with the credits it received
  placed where the engine applied them (the `seq` of their `balances` records). Accounts are
  replayed lazily: a credit waits until the model has decided its transfer.

The customer table is the final state of `customer-status` (latest row wins, a tombstone
removes): the model does not know when the engine saw a change to it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from msgspec import Struct

from verify import geo
from verify.rules import AuditRules, audit_rules
from verify.validation import Command, Customer, InputRecord, Invalid, SourcePosition, classify_payment

DistanceKm = Callable[[str, str], "int | None"]


# ---------------------------------------------------------------------------------------
# What the model computes
# ---------------------------------------------------------------------------------------


class ExpectedDecision(Struct, frozen=True, kw_only=True, gc=False):
    payment_id: str
    account: str
    type: str
    amount: int
    currency: str
    ts: int
    decision: str
    reasons: tuple[str, ...]
    source: SourcePosition
    seq: int
    rules_version: int = 0


class ExpectedLedgerEntry(Struct, frozen=True, kw_only=True, gc=False):
    entry_id: str
    payment_id: str
    account: str
    direction: str
    amount: int
    currency: str
    ts: int


class ExpectedBalance(Struct, frozen=True, kw_only=True, gc=False):
    account: str
    currency: str
    posted: int
    held: int
    available: int
    ts: int
    seq: int
    cause: str


class ExpectedAlert(Struct, frozen=True, kw_only=True, gc=False):
    alert_id: str
    payment_id: str
    account: str
    rule: str
    score: int
    evidence: dict[str, int | str]


class ExpectedCompleted(Struct, frozen=True, kw_only=True, gc=False):
    payment_id: str
    account: str
    type: str
    amount: int
    currency: str
    ts: int


@dataclass
class ModelOutputs:
    """Everything the model computed, in the order it computed it."""

    decisions: list[ExpectedDecision] = field(default_factory=list)
    ledger: list[ExpectedLedgerEntry] = field(default_factory=list)
    balances: list[ExpectedBalance] = field(default_factory=list)
    alerts: list[ExpectedAlert] = field(default_factory=list)
    completed: list[ExpectedCompleted] = field(default_factory=list)
    dead_letters: list[Invalid] = field(default_factory=list)
    duplicates: int = 0
    # where the engine's order could not be followed (a credit for a transfer the model declined, ...)
    notes: list[str] = field(default_factory=list)

    def final_balances(self) -> dict[str, ExpectedBalance]:
        """The last balance record per account (what the compacted topic keeps)."""
        return {balance.account: balance for balance in self.balances}


# ---------------------------------------------------------------------------------------
# Per-account state (RULES.md "Per-account state")
# ---------------------------------------------------------------------------------------


@dataclass
class Authorization:
    amount: int
    state: str = "open"  # open | captured | voided
    captured: int = 0
    refunded: int = 0
    closed_ts: int = 0  # ts of the capture or void that closed it


@dataclass
class AccountState:
    account: str
    posted: int = 0
    held: int = 0
    currency: str | None = None
    seq: int = 0
    authorizations: dict[str, Authorization] = field(default_factory=dict)
    remembered_ids: dict[str, int] = field(default_factory=dict)  # payment_id -> ts
    max_ts: int | None = None
    daily_debits: list[tuple[int, int]] = field(default_factory=list)  # (ts, amount) of approved debits
    authorization_times: list[int] = field(default_factory=list)  # ts of decided authorizations
    last_card_use: tuple[str, int] | None = None  # (country, ts)


@dataclass(frozen=True)
class OwedCredit:
    """A transfer's credit, owed to `account` once the transfer is approved."""

    transfer_id: str
    from_account: str
    account: str
    amount: int
    currency: str
    ts: int


# ---------------------------------------------------------------------------------------
# The rules, one command at a time
# ---------------------------------------------------------------------------------------


class ReferenceModel:
    """Applies RULES.md to accounts; holds all account state and collects the outputs."""

    def __init__(self, rules: object, customers: dict[str, Customer],
                 distance_km: DistanceKm = geo.distance_km) -> None:
        self.rules: AuditRules = audit_rules(rules)
        self.configured = self.rules
        # the published rule versions ("0": as configured) and the version the engine says it
        # decided each (account, payment_id) under: the model decides it under the same rules
        self.rule_versions: Mapping[str, AuditRules] = {"0": self.rules}
        self.version_of: Mapping[tuple[str, str], int] = {}
        # where the engine says a rule raised (its `rule_error` dead letters): declined there, fail
        # closed, as a decline at stage 2 (the model cannot know which rule raises; the audit
        # counts these and checks each has its one decision and one dead letter)
        self.rule_errors: frozenset[tuple[str, int, int]] = frozenset()
        self.customers = customers
        self.distance_km = distance_km
        self.accounts: dict[str, AccountState] = {}
        self.out = ModelOutputs()

    def account(self, account: str) -> AccountState:
        state = self.accounts.get(account)
        if state is None:
            state = self.accounts[account] = AccountState(account)
        return state

    # -- stage 1 ------------------------------------------------------------------------
    def _is_duplicate(self, state: AccountState, command: Command) -> bool:
        """Stage 1: a remembered id (not yet past the horizon) is a re-sent command."""
        seen_ts = state.remembered_ids.get(command.payment_id)
        horizon = self.rules.duplicate.horizon_ms
        # RULES.md clarifications: remembered while ts >= max_ts - horizon, max_ts over the earlier
        # non-duplicate commands; that is monotone in max_ts, so checking lazily here is the same
        # as purging eagerly after every command
        if seen_ts is not None and state.max_ts is not None and seen_ts >= state.max_ts - horizon:
            return True
        state.remembered_ids[command.payment_id] = command.ts
        state.max_ts = command.ts if state.max_ts is None else max(state.max_ts, command.ts)
        return False

    # -- stages 2-4 ---------------------------------------------------------------------
    def _refusal(self, state: AccountState, command: Command) -> str | None:
        """Stages 2 to 4: the single reason a command cannot be honoured, if any."""
        customer = self.customers.get(command.account)
        if self.rules.customer.enabled:
            if customer is None:
                return "unknown_customer"
            if customer.blocked:
                return "customer_blocked"
            if customer.kyc != "verified":
                return "kyc_not_verified"
        if customer is not None and command.currency != customer.currency:
            return "currency_mismatch"
        kind = command.type
        if kind == "authorize" and self._authorization(state, command.payment_id) is not None:
            return "authorization_exists"  # never reopen or replace an authorization that counts
        if kind in ("capture", "void", "refund"):
            authorization = self._authorization(state, command.auth_id or "")
            if authorization is None:
                return "unknown_authorization"
            if kind == "capture":
                if authorization.state != "open":
                    return "authorization_closed"
                if command.amount > authorization.amount:
                    return "capture_exceeds_hold"
            elif kind == "void":
                if authorization.state != "open":
                    return "authorization_closed"
            else:
                if authorization.state != "captured":
                    return "authorization_not_captured"
                if authorization.refunded + command.amount > authorization.captured:
                    return "refund_exceeds_captured"
        if kind == "transfer":
            if command.to_account == command.account:
                return "transfer_to_self"
            recipient = self.customers.get(command.to_account or "")
            if self.rules.customer.enabled:
                if recipient is None:
                    return "unknown_recipient"
                if recipient.blocked or recipient.kyc != "verified":
                    return "recipient_not_allowed"
            if recipient is not None and recipient.currency != command.currency:
                return "currency_mismatch"
        return None

    def _authorization(self, state: AccountState, auth_id: str) -> Authorization | None:
        """An authorization counts unless it is closed and was closed before `max_ts - horizon`
        (RULES.md clarifications; `max_ts` includes the current command). Kept forever here."""
        authorization = state.authorizations.get(auth_id)
        if authorization is None:
            return None
        if (authorization.state != "open"
                and authorization.closed_ts < (state.max_ts or 0) - self.rules.duplicate.horizon_ms):
            return None
        return authorization

    # -- stage 5 ------------------------------------------------------------------------
    def _limit_failures(self, state: AccountState, command: Command) -> list[str]:
        """Stage 5, for debits: every limit or funds rule that fails, in RULES.md order."""
        customer = self.customers.get(command.account)
        failures = []
        single = self.rules.single_limit
        capped = single.max_amount > 0 and command.amount > single.max_amount
        if single.enabled and customer is not None and (command.amount > customer.single_limit or capped):
            failures.append("single_limit_exceeded")
        if self.rules.daily_limit.enabled and customer is not None:
            window = self.rules.daily_limit.window_ms
            floor = self._kept_after(state, window)
            spent = sum(a for t, a in state.daily_debits if command.ts - window < t <= command.ts and t > floor)
            if command.amount + spent > customer.daily_limit:
                failures.append("daily_limit_exceeded")
        if self.rules.funds.enabled and command.amount > state.posted - state.held:
            failures.append("insufficient_funds")
        return failures

    # -- stage 6 ------------------------------------------------------------------------
    def _review_alerts(self, state: AccountState, command: Command) -> list[ExpectedAlert]:
        """Stage 6, for authorizations: one alert per review rule that fires."""
        alerts = []
        velocity = self.rules.velocity
        if velocity.enabled:
            floor = self._kept_after(state, velocity.window_ms)
            count = 1 + sum(1 for t in state.authorization_times
                            if command.ts - velocity.window_ms < t <= command.ts and t > floor)
            if count > velocity.max_authorizations:
                score = min(100, 50 + 10 * (count - velocity.max_authorizations))
                evidence: dict[str, int | str] = {
                    "count": count, "window_ms": velocity.window_ms, "limit": velocity.max_authorizations}
                alerts.append(self._alert(command, "velocity", score, evidence))
        travel = self.rules.impossible_travel
        if travel.enabled and state.last_card_use is not None and command.country is not None:
            last_country, last_ts = state.last_card_use
            distance = self.distance_km(last_country, command.country) if last_country != command.country else None
            if distance is not None:
                dt = max(abs(command.ts - last_ts), 1)
                speed = distance * 3_600_000 // dt
                if speed > travel.max_speed_kmh:
                    score = min(100, 50 + 50 * (speed - travel.max_speed_kmh) // travel.max_speed_kmh)
                    evidence = {"from_country": last_country, "to_country": command.country,
                                "distance_km": distance, "minutes": dt // 60_000, "speed_kmh": speed}
                    alerts.append(self._alert(command, "impossible_travel", score, evidence))
        return alerts

    @staticmethod
    def _alert(command: Command, rule: str, score: int, evidence: dict[str, int | str]) -> ExpectedAlert:
        return ExpectedAlert(alert_id=f"{command.payment_id}:{rule}", payment_id=command.payment_id,
                             account=command.account, rule=rule, score=score, evidence=evidence)

    # -- one command ----------------------------------------------------------------------
    def decide(self, command: Command) -> OwedCredit | None:
        """Process one command on its account; returns the credit an approved transfer owes."""
        state = self.account(command.account)
        version = self.version_of.get((command.account, command.payment_id), 0)
        published = self.rule_versions.get(str(version))
        if published is None:  # a version never published: decide as configured, and disagree on it
            version, published = 0, self.configured
        self.rules = published
        if self._is_duplicate(state, command):
            self.out.duplicates += 1
            return None
        state.seq += 1
        reasons: list[str] = []
        alerts: list[ExpectedAlert] = []
        # stage 1b: older than the horizon (max_ts did not move: the command is older than it)
        if state.max_ts is not None and command.ts < state.max_ts - self.rules.duplicate.horizon_ms:
            refusal: str | None = "outside_horizon"
        elif (command.source.topic, command.source.partition, command.source.offset) in self.rule_errors:
            refusal = "rule_error"
        else:
            refusal = self._refusal(state, command)
        if refusal is not None:
            outcome, reasons = "declined", [refusal]
        else:
            if command.type in ("authorize", "transfer"):
                reasons = self._limit_failures(state, command)
            if reasons:
                outcome = "declined"
            elif command.type == "authorize" and (alerts := self._review_alerts(state, command)):
                outcome, reasons = "review", [alert.rule for alert in alerts]
            else:
                outcome = "approved"
            if command.type == "authorize":  # decided past stage 4: counts for velocity and travel
                state.authorization_times.append(command.ts)
                state.last_card_use = (command.country or "", command.ts)
        self._forget_old_window_entries(state)
        self.out.decisions.append(ExpectedDecision(
            payment_id=command.payment_id, account=command.account, type=command.type, amount=command.amount,
            currency=command.currency, ts=command.ts, decision=outcome, reasons=tuple(reasons),
            source=command.source, seq=state.seq, rules_version=version))
        self.out.alerts.extend(alerts)
        if outcome == "approved":
            return self._apply_approved(state, command)
        return None

    def _kept_after(self, state: AccountState, window_ms: int) -> int:
        """Window entries at or below this ts are dropped (RULES.md, clarifications: relative to
        `max_ts`, the current command included, minus the duplicate horizon and the window)."""
        return (state.max_ts or 0) - self.rules.duplicate.horizon_ms - window_ms

    def _forget_old_window_entries(self, state: AccountState) -> None:
        """Drop the entries no sum can count any more (the same threshold the sums apply)."""
        if len(state.authorization_times) > 64:
            floor = self._kept_after(state, self.rules.velocity.window_ms)
            state.authorization_times = [t for t in state.authorization_times if t > floor]
        if len(state.daily_debits) > 64:
            floor = self._kept_after(state, self.rules.daily_limit.window_ms)
            state.daily_debits = [(t, a) for t, a in state.daily_debits if t > floor]

    def _apply_approved(self, state: AccountState, command: Command) -> OwedCredit | None:
        """The effects table of RULES.md for an approved command."""
        kind, amount = command.type, command.amount
        if state.currency is None:
            state.currency = command.currency
        owed = None
        if kind == "deposit":
            state.posted += amount
            self._ledger(command, command.account, "credit")
        elif kind == "authorize":
            state.held += amount
            state.authorizations[command.payment_id] = Authorization(amount)
            state.daily_debits.append((command.ts, amount))
        elif kind == "capture":
            authorization = state.authorizations[command.auth_id or ""]
            state.held -= authorization.amount
            state.posted -= amount
            authorization.state, authorization.captured, authorization.closed_ts = "captured", amount, command.ts
            self._ledger(command, command.account, "debit")
        elif kind == "void":
            authorization = state.authorizations[command.auth_id or ""]
            state.held -= authorization.amount
            authorization.state, authorization.closed_ts = "voided", command.ts
        elif kind == "refund":
            state.posted += amount
            state.authorizations[command.auth_id or ""].refunded += amount
            self._ledger(command, command.account, "credit")
        elif kind == "transfer":
            state.posted -= amount
            state.daily_debits.append((command.ts, amount))
            self._ledger(command, command.account, "debit")
            self._ledger(command, command.to_account or "", "credit")
            owed = OwedCredit(command.payment_id, command.account, command.to_account or "", amount,
                              command.currency, command.ts)
        self._balance(state, command.ts, command.payment_id)
        if kind in ("deposit", "capture", "refund", "transfer"):
            self.out.completed.append(ExpectedCompleted(
                payment_id=command.payment_id, account=command.account, type=kind, amount=amount,
                currency=command.currency, ts=command.ts))
        return owed

    def apply_credit(self, credit: OwedCredit) -> None:
        """A transfer's credit reaching its recipient (regardless of the recipient's customer row)."""
        state = self.account(credit.account)
        state.seq += 1
        state.posted += credit.amount
        if state.currency is None:
            state.currency = credit.currency
        self._balance(state, credit.ts, credit.transfer_id)

    def _ledger(self, command: Command, account: str, direction: str) -> None:
        self.out.ledger.append(ExpectedLedgerEntry(
            entry_id=f"{command.payment_id}:{direction}", payment_id=command.payment_id, account=account,
            direction=direction, amount=command.amount, currency=command.currency, ts=command.ts))

    def _balance(self, state: AccountState, ts: int, cause: str) -> None:
        self.out.balances.append(ExpectedBalance(
            account=state.account, currency=state.currency or "", posted=state.posted, held=state.held,
            available=state.posted - state.held, ts=ts, seq=state.seq, cause=cause))


# ---------------------------------------------------------------------------------------
# Running the model
# ---------------------------------------------------------------------------------------


def event_time_bounds(rules: object) -> tuple[int, int]:
    """`(max_skew_ms, max_lateness_ms)` of the rules, for `classify_payment`."""
    event_time = audit_rules(rules).event_time
    return event_time.max_skew_ms, event_time.max_lateness_ms


def split_payments(payments: Iterable[InputRecord], partitions: int | None,
                   event_time: tuple[int, int] | None = None) -> tuple[list[Command], list[Invalid]]:
    """Validate the payments records: the commands in input order, and the dead letters."""
    commands: list[Command] = []
    invalid: list[Invalid] = []
    for record in payments:
        verdict = classify_payment(record, partitions, event_time)
        (commands if isinstance(verdict, Command) else invalid).append(verdict)  # type: ignore[arg-type]
    return commands, invalid


def run_input_order(payments: Iterable[InputRecord], customers: dict[str, Customer], rules: object,
                    distance_km: DistanceKm = geo.distance_km, partitions: int | None = None,
                    rule_errors: frozenset[tuple[str, int, int]] = frozenset()) -> ModelOutputs:
    """Every command in input order; each approved transfer's credit right after the transfer."""
    commands, invalid = split_payments(payments, partitions, event_time_bounds(rules))
    model = ReferenceModel(rules, customers, distance_km)
    model.rule_errors = rule_errors
    model.out.dead_letters = invalid
    for command in commands:
        owed = model.decide(command)
        if owed is not None:
            model.apply_credit(owed)
    return model.out


def run_engine_order(payments: Iterable[InputRecord], customers: dict[str, Customer], rules: object,
                     distance_km: DistanceKm, credit_order: dict[str, list[tuple[int, str]]],
                     partitions: int | None = None) -> ModelOutputs:
    """Replay each account in the engine's order.

    `credit_order[account]` lists `(seq, transfer payment_id)` for every credit the engine
    applied to `account`, from its `balances` records. Commands keep input order; a credit
    is applied once the account's `seq` reaches the engine's `seq - 1` (or when the account
    has no commands left), and only after the model has decided its transfer. Owed credits
    the engine never applied are applied at the end, so final balances show the difference.
    """
    commands, invalid = split_payments(payments, partitions, event_time_bounds(rules))
    return replay_engine_order(commands, invalid, customers, rules, distance_km, credit_order)


def replay_engine_order(commands: list[Command], invalid: list[Invalid], customers: dict[str, Customer],
                        rules: object, distance_km: DistanceKm,
                        credit_order: dict[str, list[tuple[int, str]]],
                        rule_versions: Mapping[str, AuditRules] | None = None,
                        version_of: Mapping[tuple[str, str], int] | None = None,
                        rule_errors: frozenset[tuple[str, int, int]] = frozenset()) -> ModelOutputs:
    """`run_engine_order` on payments already split by `split_payments`; each command decided
    under the rules version the engine says it used (`version_of`, among `rule_versions`), and
    declined `rule_error` where the engine dead-lettered it so (`rule_errors`: input positions)."""
    model = ReferenceModel(rules, customers, distance_km)
    model.rule_errors = rule_errors
    if rule_versions is not None:
        model.rule_versions = {"0": model.configured, **rule_versions}
    model.version_of = version_of or {}
    model.out.dead_letters = invalid
    per_account: dict[str, deque[Command]] = {}
    senders: dict[tuple[str, str], list[str]] = {}  # (recipient, transfer id) -> sender accounts
    for command in commands:
        per_account.setdefault(command.account, deque()).append(command)
        if command.type == "transfer":
            candidates = senders.setdefault((command.to_account or "", command.payment_id), [])
            if command.account not in candidates:
                candidates.append(command.account)
    placed: dict[str, deque[tuple[int, str]]] = {
        account: deque(sorted(credits)) for account, credits in credit_order.items()}
    decided: dict[tuple[str, str], OwedCredit | None] = {}  # (sender, transfer id) -> credit if approved
    applied: set[tuple[str, str]] = set()
    waiting: dict[tuple[str, str], list[str]] = {}
    ready = deque(sorted(set(per_account) | set(placed)))

    def transfer_of(recipient: str, transfer_id: str) -> tuple[str, str] | None:
        """The (sender, id) of the transfer a placed credit belongs to: undecided first, so a
        sender blocked on it is waited for."""
        candidates = senders.get((recipient, transfer_id), [])
        for sender in candidates:
            if (sender, transfer_id) not in applied:
                return sender, transfer_id
        return None

    def advance(account: str) -> tuple[str, str] | None:
        """Run `account` as far as possible; returns the transfer it waits for, if any."""
        queue = per_account.get(account, deque())
        credits = placed.get(account, deque())
        state = model.account(account)
        while queue or credits:
            if credits and (not queue or credits[0][0] <= state.seq + 1):
                _, transfer_id = credits[0]
                transfer = transfer_of(account, transfer_id)
                if transfer is None:
                    model.out.notes.append(f"{account}: the engine applied credit {transfer_id} of no transfer to it")
                    credits.popleft()
                    continue
                if transfer not in decided:
                    return transfer
                credits.popleft()
                owed = decided[transfer]
                if owed is None:
                    model.out.notes.append(f"{account}: the engine applied credit {transfer_id}, "
                                           "a transfer the model did not approve")
                else:
                    applied.add(transfer)
                    model.apply_credit(owed)
                continue
            command = queue.popleft()
            duplicate_before = model.out.duplicates
            owed = model.decide(command)
            if command.type == "transfer" and model.out.duplicates == duplicate_before:
                key = (command.account, command.payment_id)
                decided[key] = owed
                for sleeper in waiting.pop(key, []):
                    ready.append(sleeper)
        return None

    while True:
        while ready:
            account = ready.popleft()
            blocker = advance(account)
            if blocker is not None:
                waiting.setdefault(blocker, []).append(account)
        if not waiting:
            break
        # only a cycle the engine could not have produced leaves accounts waiting: break it by
        # dropping the credit the first waiter is stuck on (its owed credit is applied below)
        blocker, sleepers = next(iter(waiting.items()))
        del waiting[blocker]
        account = sleepers[0]
        placed[account].popleft()
        model.out.notes.append(f"{account}: credit {blocker[1]} placed before its transfer was decided")
        ready.extend(sleepers)
    for transfer, owed in decided.items():
        if owed is not None and transfer not in applied:
            model.apply_credit(owed)
    return model.out
