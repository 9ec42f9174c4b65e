"""The auditor's own reading of the rule settings.

The auditor must not share code with the engine, so it declares the rule thresholds it models
itself and reads them from whatever the operator configured, as plain data (any msgspec Struct,
dataclass or mapping with the same shape: `audit_rules`). Every field is required and unknown
ones are refused: a rule the engine gains and the auditor does not model stops the audit with
a clear error instead of being silently ignored.

>>> rules = audit_rules({"single_limit": {"enabled": True, "max_amount": 0},
...     "daily_limit": {"enabled": True, "window_ms": 86_400_000},
...     "velocity": {"enabled": True, "max_authorizations": 5, "window_ms": 600_000},
...     "impossible_travel": {"enabled": True, "max_speed_kmh": 1000}, "customer": {"enabled": True},
...     "duplicate": {"horizon_ms": 604_800_000}, "funds": {"enabled": True},
...     "event_time": {"max_skew_ms": 300_000, "max_lateness_ms": 86_400_000}})
>>> rules.velocity.max_authorizations, rules.duplicate.horizon_ms
(5, 604800000)
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct


class Switch(Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool


class SingleLimit(Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool
    max_amount: int  # 0: the customer's own limit only


class DailyLimit(Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool
    window_ms: int


class Velocity(Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool
    max_authorizations: int
    window_ms: int


class ImpossibleTravel(Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool
    max_speed_kmh: int


class Duplicate(Struct, frozen=True, forbid_unknown_fields=True):
    horizon_ms: int


class EventTime(Struct, frozen=True, forbid_unknown_fields=True):
    max_skew_ms: int
    max_lateness_ms: int


class AuditRules(Struct, frozen=True, forbid_unknown_fields=True):
    """The seven rules and the event-time bound, as the reference model applies them (docs/RULES.md)."""

    single_limit: SingleLimit
    daily_limit: DailyLimit
    velocity: Velocity
    impossible_travel: ImpossibleTravel
    customer: Switch
    duplicate: Duplicate
    funds: Switch
    event_time: EventTime


class RulesMismatch(ValueError):
    """The configured rules have a shape the auditor does not model."""


def audit_rules(configured: Any) -> AuditRules:
    """The configured rules (a Struct, a dataclass or a mapping), read as the auditor's own `AuditRules`."""
    if isinstance(configured, AuditRules):
        return configured
    try:
        return msgspec.convert(msgspec.to_builtins(configured), AuditRules)
    except msgspec.ValidationError as error:
        raise RulesMismatch(f"the auditor cannot model these rule settings: {error}") from None


# What a published change may set, as the auditor models it (its own list: see docs/RULES.md)
_PUBLISHED: dict[str, tuple[str, ...]] = {
    "single_limit": ("enabled", "max_amount"), "daily_limit": ("enabled",),
    "velocity": ("enabled", "max_authorizations"), "impossible_travel": ("enabled", "max_speed_kmh"),
    "customer": ("enabled",), "funds": ("enabled",),
}


class _Published(Struct, frozen=True):
    version: int
    rules: dict[str, dict[str, Any]]


def published_versions(records: Any, configured: AuditRules) -> dict[str, AuditRules]:
    """The rules of each version published on the rules topic (records with `key` and `value`, in
    topic order): the configured rules with the published thresholds and switches. Records the
    engine skips (another key, not decodable, a version not above the last) are skipped here too.

    >>> from types import SimpleNamespace as R
    >>> base = audit_rules({"single_limit": {"enabled": True, "max_amount": 0},
    ...     "daily_limit": {"enabled": True, "window_ms": 86_400_000},
    ...     "velocity": {"enabled": True, "max_authorizations": 5, "window_ms": 600_000},
    ...     "impossible_travel": {"enabled": True, "max_speed_kmh": 1000}, "customer": {"enabled": True},
    ...     "duplicate": {"horizon_ms": 604_800_000}, "funds": {"enabled": True},
    ...     "event_time": {"max_skew_ms": 300_000, "max_lateness_ms": 86_400_000}})
    >>> found = published_versions([R(key=b"rules", value=b'{"v":1,"version":1,'
    ...     b'"rules":{"velocity":{"max_authorizations":2,"window_ms":1}}}')], base)
    >>> found["1"].velocity
    Velocity(enabled=True, max_authorizations=2, window_ms=600000)
    """
    versions: dict[str, AuditRules] = {}
    last = 0
    decode = msgspec.json.Decoder(_Published).decode
    for record in records:
        if record.key != b"rules" or record.value is None:
            continue
        try:
            published = decode(record.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if published.version <= last:
            continue
        tree = msgspec.to_builtins(configured)
        for section, fields in _PUBLISHED.items():
            given = published.rules.get(section, {})
            defaults = _DEFAULTS[section]
            for name in fields:
                tree[section][name] = given.get(name, defaults[name])
        try:
            versions[str(published.version)] = msgspec.convert(tree, AuditRules)
        except msgspec.ValidationError:
            continue
        last = published.version
    return versions


# a published record's missing field takes the field's default (as the engine's decoder does)
_DEFAULTS: dict[str, dict[str, Any]] = {
    "single_limit": {"enabled": True, "max_amount": 0}, "daily_limit": {"enabled": True},
    "velocity": {"enabled": True, "max_authorizations": 5},
    "impossible_travel": {"enabled": True, "max_speed_kmh": 1000},
    "customer": {"enabled": True}, "funds": {"enabled": True},
}
