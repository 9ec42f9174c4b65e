"""Backtests: what other rules would have decided on the payments already in history.

The history (`payments` and `customer-status`, read `read_committed`, or a generated JSON-lines
file) is replayed through the engine's own domain core twice, in memory with the test driver
(`connectors.driver`): once with the live rules and once with the candidate rules. Nothing is
written to Kafka. The comparison counts decisions by outcome, reasons and alerts by rule under
each rule set, and which payments changed outcome (with example payment ids).

Replays start from empty accounts at the start of the window and use the customer table as
it is at the end of the history (a backtest answers "what if these rules had been live", not
"what exactly happened at 10:04"): both rule sets see the same inputs, so their difference is
the rules' alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from connectors.driver import Driver
from flows.payments import PAYMENTS
from paystream.settings import RuleSettings, Settings
from state.customers import CustomerTable

EXAMPLES = 5


class _Decision(msgspec.Struct):
    payment_id: str
    decision: str
    reasons: list[str] = []


class _Alert(msgspec.Struct):
    rule: str


@dataclass
class Outcomes:
    """What one rule set decided over the history."""

    decisions: dict[str, str] = field(default_factory=dict)  # payment_id -> outcome
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0


@dataclass
class Backtest:
    """Live rules against candidate rules over the same history."""

    payments: int
    live: Outcomes
    candidate: Outcomes
    changed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (live, candidate) -> payments
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def side(o: Outcomes) -> dict[str, Any]:
            return {"outcomes": dict(o.outcomes), "reasons": dict(o.reasons), "alerts": dict(o.alerts),
                    "dead_letters": o.dead_letters}
        return {"payments": self.payments, "live": side(self.live), "candidate": side(self.candidate),
                "changed": [{"from": a, "to": b, "payments": n, "examples": self.examples.get((a, b), [])}
                            for (a, b), n in sorted(self.changed.items())]}


def replay(settings: Settings, rules: RuleSettings, customers: CustomerTable, payments: Iterable[Any]) -> Outcomes:
    """The engine's decisions on `payments` (records with topic, partition, key, value, timestamp)
    under `rules`, in memory."""
    replayed = msgspec.structs.replace(settings, rules=rules)
    driver = Driver(PAYMENTS, settings=replayed, tables={"customers": customers})
    topic = replayed.topics.payments
    for record in payments:
        driver.pipe(topic, record.key, record.value, timestamp=record.timestamp, partition=record.partition)
    driver.step()
    outcomes = Outcomes()
    decode = msgspec.json.Decoder(_Decision).decode
    for _key, value, _headers in driver.output(replayed.topics.decisions):
        decision = decode(value)  # type: ignore[arg-type]  # the engine's own output: never None
        outcomes.decisions[decision.payment_id] = decision.decision
        outcomes.outcomes[decision.decision] += 1
        outcomes.reasons.update(decision.reasons)
    alert = msgspec.json.Decoder(_Alert).decode
    outcomes.alerts.update(alert(value).rule for _key, value, _headers in driver.output(replayed.topics.alerts)  # type: ignore[arg-type]
                           )
    outcomes.dead_letters = len(driver.output(replayed.topics.dlq))
    return outcomes


def backtest(settings: Settings, candidate: RuleSettings, customers: Iterable[Any], payments: list[Any],
             since_ms: int | None = None, until_ms: int | None = None) -> Backtest:
    """Replay `payments` (those with `since_ms <= timestamp < until_ms`) under the live rules of
    `settings` and under `candidate`, and compare."""
    table = CustomerTable()
    for record in customers:
        table.apply(record.key, record.value, record.partition, record.offset)
    window = [record for record in payments
              if (since_ms is None or (record.timestamp or 0) >= since_ms)
              and (until_ms is None or (record.timestamp or 0) < until_ms)]
    live = replay(settings, settings.rules, table, window)
    new = replay(settings, candidate, table, window)
    result = Backtest(len(window), live, new)
    for payment_id, before in live.decisions.items():
        after = new.decisions.get(payment_id, "none")
        if after != before:
            result.changed[(before, after)] += 1
            examples = result.examples.setdefault((before, after), [])
            if len(examples) < EXAMPLES:
                examples.append(payment_id)
    return result


def table(result: Backtest) -> str:
    """The comparison, for a terminal."""
    lines = [f"{result.payments:,} payments replayed (nothing written to Kafka)", "",
             f"{'':<32}{'live':>12}{'candidate':>12}{'change':>10}"]

    def rows(title: str, live: Counter[str], new: Counter[str]) -> None:
        lines.append(title)
        for name in sorted(set(live) | set(new)):
            a, b = live[name], new[name]
            lines.append(f"  {name:<30}{a:>12,}{b:>12,}{b - a:>+10,}")

    rows("decisions", result.live.outcomes, result.candidate.outcomes)
    rows("reasons", result.live.reasons, result.candidate.reasons)
    rows("alerts by rule", result.live.alerts, result.candidate.alerts)
    lines.append("")
    if not result.changed:
        lines.append("no payment changes outcome")
    for (before, after), count in sorted(result.changed.items(), key=lambda item: -item[1]):
        shown = ", ".join(result.examples.get((before, after), []))
        lines.append(f"{count:>8,} {before} -> {after}   e.g. {shown}")
    return "\n".join(lines)


def plot(result: Backtest, path: Path) -> Path:
    """Bars of decisions, reasons and alerts, live against candidate, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tools.figures import save

    panels = [("decisions", result.live.outcomes, result.candidate.outcomes),
              ("reasons", result.live.reasons, result.candidate.reasons),
              ("alerts by rule", result.live.alerts, result.candidate.alerts)]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for axis, (title, live, new) in zip(axes, panels, strict=True):
        names = sorted(set(live) | set(new))
        positions = range(len(names))
        axis.bar([p - 0.2 for p in positions], [live[n] for n in names], 0.4, label="live")
        axis.bar([p + 0.2 for p in positions], [new[n] for n in names], 0.4, label="candidate")
        axis.set_xticks(list(positions), names, rotation=30, ha="right", fontsize=8)
        axis.set_title(title)
        axis.legend()
    return save(figure, path, f"backtest over {result.payments:,} payments: live rules vs candidate rules", dpi=100)
