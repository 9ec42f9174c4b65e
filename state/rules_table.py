"""The rules in force, followed from the compacted `paystream-rules` topic (a global table):
a change applies to the commands a task processes after the process has read it, without a
restart. Every decision records the version it was made under (`rules_version`), so the
auditor and the reference model replay it exactly.

`RuleVersions` folds the records (pure); `RulesTable` follows the topic with it. Records that
cannot be used (not JSON, a wrong shape, a version not above the current one, another key)
are counted by reason, logged and skipped: the rules in force stay as they were.

>>> from paystream.settings import RuleSettings
>>> version, rules = RuleVersions(RuleSettings()).current()  # nothing published: as configured
>>> version, rules.velocity.max_authorizations
(0, 5)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping

from paystream import logs
from paystream.settings import RuleSettings, Settings, live_rules
from paystream.wire import RULES_KEY, Malformed, decode_rules
from state.followed import FollowedTopic, shared


class RuleVersions(Mapping[str, RuleSettings]):
    """Every rules version seen, by its number as text (a table's keys are text; "0": the configured
    rules), and the one in force: the highest."""

    def __init__(self, configured: RuleSettings) -> None:
        self._configured = configured
        self._versions: dict[str, RuleSettings] = {"0": configured}
        self._current: tuple[int, RuleSettings] = (0, configured)
        self.skipped: Counter[str] = Counter()
        self._applied_at = time.monotonic()

    def current(self) -> tuple[int, RuleSettings]:
        """(version, rules) in force now (one tuple: read atomically by the tasks)."""
        return self._current

    @property
    def version(self) -> int:
        return self._current[0]

    def age_seconds(self) -> float:
        return time.monotonic() - self._applied_at

    def apply(self, key: bytes | None, value: bytes | None, partition: int | None = None,
              offset: int | None = None) -> None:
        """Fold one record; never raises."""
        self._applied_at = time.monotonic()
        if key != RULES_KEY:
            self._skip(Malformed("bad_key", "a rules record's key must be 'rules'"), partition, offset)
            return
        change = decode_rules(value)
        if isinstance(change, Malformed):
            self._skip(change, partition, offset)
            return
        if change.version <= self._current[0]:
            self._skip(Malformed("stale_version", f"version {change.version} is not above {self._current[0]}"),
                       partition, offset)
            return
        rules = live_rules(self._configured, change.rules)
        self._versions[str(change.version)] = rules
        self._current = (change.version, rules)
        logs.get("rules").info("rules changed", version=change.version, note=change.note)

    def _skip(self, why: Malformed, partition: int | None, offset: int | None) -> None:
        self.skipped[why.reason] += 1
        logs.get("rules").warning("rules record skipped", reason=why.reason, error=why.error[:200],
                                  partition=partition, offset=offset)

    def __getitem__(self, version: str) -> RuleSettings:
        return self._versions[version]

    def __iter__(self) -> Iterator[str]:
        return iter(self._versions)

    def __len__(self) -> int:
        return len(self._versions)


class RulesTable(RuleVersions, FollowedTopic):
    """`RuleVersions` loaded from `topics.rules` to its end, then followed in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        RuleVersions.__init__(self, settings.rules)
        FollowedTopic.__init__(self, settings, settings.topics.rules, "rules-table")

    def loaded(self, seconds: float) -> None:
        self._log.info("rules loaded", version=self.version, skipped=sum(self.skipped.values()),
                       seconds=round(seconds, 3))


def rules_table(settings: Settings) -> RulesTable:
    """The process's one rules table for these settings (shared by every task in the process)."""
    return shared(settings, settings.topics.rules, RulesTable)
