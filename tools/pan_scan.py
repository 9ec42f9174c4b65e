"""Looking for full card numbers where none may be (PCI DSS scope): output topics, the changelog,
the DLQ, snapshot files, logs, a metrics page. A card number is 13 to 19 digits, possibly split
by spaces or dashes, starting with a payment card's major industry digit (2 to 6: Mastercard,
Amex, Diners, JCB, Visa, Discover, UnionPay) and passing the Luhn check; a masked one
(`411111******1111`) is not, and neither is a millisecond timestamp (`1796396713010`).

>>> find_pans(b'{"pan":"4111111111111111"}')
['4111111111111111']
>>> find_pans(b'{"pan":"411111******1111","ts":1796396713010,"card":"4111 1111 1111 1111"}')
['4111111111111111']
>>> find_pans(b"order 1234567890123 shipped")  # 13 digits, but not Luhn-valid
[]
>>> find_pans(b"paystream_commit_seconds_sum 2.3456789012349428")  # a fraction, not a card
[]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

# 13-19 digits, optionally in groups split by one space or dash, not inside a longer digit run nor
# the fraction of a decimal number (`2.3456789012349428` on a metrics page)
_CANDIDATE: Final = re.compile(rb"(?<![0-9.])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")


def luhn_valid(digits: str) -> bool:
    """The Luhn check every payment card number passes.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def find_pans(data: bytes) -> list[str]:
    """The Luhn-valid card numbers in `data` (digits only)."""
    found = []
    for match in _CANDIDATE.finditer(data):
        digits = re.sub(rb"[ -]", b"", match[0]).decode()
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits) and len(set(digits)) > 1:
            found.append(digits)
    return found


def scan_records(records: Iterable[tuple[str, bytes | None, bytes | None, Iterable[tuple[str, bytes | None]]]]
                 ) -> list[str]:
    """Where card numbers are in `(where, key, value, headers)` records (one line per finding)."""
    findings = []
    for where, key, value, headers in records:
        for part, data in (("key", key), ("value", value), *((f"header {n}", v) for n, v in headers)):
            for pan in find_pans(data or b""):
                findings.append(f"{where} {part}: a card number ending {pan[-4:]}")
    return findings


def scan_files(paths: Iterable[Path]) -> list[str]:
    """Where card numbers are in the files under `paths` (directories are walked)."""
    findings = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            for pan in find_pans(path.read_bytes()):
                findings.append(f"{path}: a card number ending {pan[-4:]}")
    return findings
