"""The rules in force follow the published versions: a higher version replaces the rules (only
their thresholds and switches), anything else is skipped with a reason and changes nothing."""

from __future__ import annotations

import msgspec

from paystream.settings import RuleSettings, load
from state.rules_table import RuleVersions


def change(version: int, **sections: dict[str, object]) -> bytes:
    return msgspec.json.encode({"v": 1, "version": version, "rules": sections})


def test_a_higher_version_replaces_the_thresholds_and_keeps_the_windows() -> None:
    versions = RuleVersions(load(environ={}).rules)
    versions.apply(b"rules", change(1, velocity={"max_authorizations": 2, "window_ms": 5},
                                    single_limit={"max_amount": 700}))
    version, rules = versions.current()
    assert version == 1 and rules.velocity.max_authorizations == 2 and rules.single_limit.max_amount == 700
    assert rules.velocity.window_ms == RuleSettings().velocity.window_ms  # windows stay as configured
    assert versions["0"] == RuleSettings() and versions["1"] == rules and len(versions) == 2


def test_bad_and_stale_records_are_skipped_and_change_nothing() -> None:
    versions = RuleVersions(RuleSettings())
    versions.apply(b"rules", change(2, funds={"enabled": False}))
    in_force = versions.current()
    versions.apply(b"rules", change(2, funds={"enabled": True}))  # not above the current version
    versions.apply(b"rules", change(1, funds={"enabled": True}))
    versions.apply(b"other", change(3))
    versions.apply(b"rules", b"{not json")
    versions.apply(b"rules", None)
    versions.apply(b"rules", b'{"v":1,"version":3,"rules":{"velocity":{"max_authorizations":"many"}}}')
    versions.apply(b"rules", b'{"v":1,"version":3,"rules":{"velocity":{"no_such_threshold":1}}}')
    assert versions.current() is in_force and versions.current()[1].funds.enabled is False
    assert dict(versions.skipped) == {"stale_version": 2, "bad_key": 1, "not_json": 1, "empty_value": 1,
                                      "invalid_value": 2}
