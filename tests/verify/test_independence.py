"""The auditor shares no code with the engine it audits: an engine bug cannot hide in shared code."""

from __future__ import annotations

import ast
from pathlib import Path

import verify

ENGINE = {"paystream", "operators", "state", "connectors", "flows"}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_of_the_auditor_imports_the_engine() -> None:
    sources = sorted(Path(verify.__file__).parent.glob("*.py"))
    assert len(sources) > 5
    borrowed = {path.name: imported_packages(path) & ENGINE for path in sources}
    assert not any(borrowed.values()), {name: sorted(found) for name, found in borrowed.items() if found}
