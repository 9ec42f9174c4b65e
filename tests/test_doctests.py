"""Every example in a docstring runs, and shows what it says (the docs cannot drift from the code)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("paystream", "operators", "state", "connectors", "flows", "verify", "deploy", "bench", "tools")
PEER_RUNNERS = {"bench.quix_runner"}  # run inside the peers' own virtualenv (bench/peers.py), not here


def modules() -> list[str]:
    found = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        found.append(name)
        found += [info.name for info in pkgutil.walk_packages(package.__path__, f"{name}.")]
    return sorted(found)


@pytest.mark.parametrize("name", [name for name in modules()
                                  if not name.endswith("__main__") and name not in PEER_RUNNERS])
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see the output above)"
