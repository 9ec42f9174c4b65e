"""The accounts changelog: one compacted record per changed account per commit.

A task's state is the latest changelog record of each of its accounts in partition p of
`{app_id}-accounts-changelog`. Records are msgpack-encoded `AccountState`s; `None` would be a
tombstone (accounts are never deleted today).
"""

from __future__ import annotations

from typing import Iterable

import msgspec

from operators.accounts import AccountState

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AccountState)


def encode_state(state: AccountState) -> bytes:
    return _encoder.encode(state)


def decode_state(value: bytes) -> AccountState:
    return _decoder.decode(value)


def changelog_records(accounts: dict[str, AccountState], changed: Iterable[str]) -> list[tuple[bytes, bytes]]:
    """The (key, value) records that make the changelog equal `accounts` for every account in `changed`."""
    encode = _encoder.encode
    return [(account.encode(), encode(accounts[account])) for account in changed]
