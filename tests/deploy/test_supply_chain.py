"""Supply chain: the image's base is pinned by digest, and every dependency, the developers' and the
image's, is installed from a lock that pins it with `==` and its sha256 (`python -m tools.lock`
writes the lock from pyproject.toml's pins). Read from the files: no Docker engine, no package index.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools import lock as lock_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "k8s" / "Dockerfile"
REQUIREMENTS = ROOT / "requirements"
LOCK, RUNTIME, BUILD = REQUIREMENTS / "lock.txt", REQUIREMENTS / "runtime.txt", REQUIREMENTS / "build.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def instructions(path: Path) -> list[str]:
    """A Dockerfile's instructions, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line.removesuffix(chr(92)).strip()}".strip()
        if not line.endswith("\\"):
            logical.append(current)
            current = ""
    return logical


def read_lock(path: Path) -> dict[str, tuple[str, set[str]]]:
    """{name: (version, sha256 digests)} of a lock file; fails on any entry that is not `name==version`
    followed by its hashes alone."""
    entries: dict[str, tuple[str, set[str]]] = {}
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", requirement)
        assert match, f"{path.name}: not pinned with ==: {line!r}"
        name = canonicalize_name(match.group(1))
        assert options and all(HASH.fullmatch(option) for option in options), \
            f"{path.name}: {name} must carry sha256 hashes and nothing else: {options}"
        assert name not in entries, f"{path.name}: {name} twice"
        entries[name] = (match.group(2), {option.removeprefix("--hash=sha256:") for option in options})
    return entries


def direct(*groups: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    found = []
    for group in groups:
        if group == "dependencies":
            found += project["dependencies"]
        else:
            found += project["optional-dependencies"][group]
    return [Requirement(r) for r in found]


def test_the_dockerfile_pins_its_base_by_digest() -> None:
    lines = instructions(DOCKERFILE)
    first_from = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    args = dict(line.removeprefix("ARG ").split("=", 1) for line in lines[:first_from]
                if line.startswith("ARG ") and "=" in line)
    bases = []
    for line in lines:
        if line.startswith("FROM "):
            image = line.split()[1]
            for name, default in args.items():
                image = image.replace(f"${{{name}}}", default)
            bases.append(image)
    assert len(bases) == 2, bases  # the build stage and the image
    assert len(set(bases)) == 1, f"both stages on one base: {bases}"
    base = bases[0]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-bookworm)?@sha256:[0-9a-f]{64}", base), \
        f"the base must be python:3.11-slim pinned by digest, not {base!r}"
    # the lock's hashes are for the wheels pip picks on the base's glibc: bookworm is glibc 2.36
    assert "-bookworm" in base and lock_tool.IMAGE_GLIBC_MINOR == 36
    assert base.startswith(f"python:{lock_tool.IMAGE_PYTHON}")


def test_the_image_installs_only_hashed_files() -> None:
    commands = [command.strip() for line in instructions(DOCKERFILE) if line.startswith("RUN ")
                for command in line.removeprefix("RUN ").split("&&")]
    pip = [c for c in commands if re.search(r"\bpip (install|wheel)\b", c)]
    assert any("--require-hashes -r requirements/build.txt" in c for c in pip)
    assert any("--require-hashes" in c and "-r requirements/runtime.txt" in c for c in pip)
    assert any("--require-hashes -r /wheels/runtime.txt" in c and "--no-index" in c for c in pip)
    for command in pip:
        # either every file is hashed, or it is paystream itself: no dependencies, no build environment fetched
        assert "--require-hashes" in command or "--no-deps" in command, command
        if "pip wheel" in command and "--no-deps" in command:
            assert "--no-build-isolation" in command and command.endswith(" ."), command


def test_dev_installs_the_lock_with_hashes() -> None:
    dev = (ROOT / "dev").read_text()
    assert "lock=requirements/lock.txt" in dev
    assert '--require-hashes -r "$lock"' in dev
    assert "--no-deps --no-build-isolation -e ." in dev
    assert '[ "$lock" -nt "$stamp" ]' in dev  # a new lock reinstalls
    assert "--upgrade pip" not in dev  # pip comes from the lock like everything else


@pytest.mark.parametrize("path", [LOCK, RUNTIME, BUILD], ids=lambda p: p.name)
def test_every_lock_entry_is_pinned_and_hashed(path: Path) -> None:
    assert read_lock(path)


def test_the_locks_carry_pyproject_pins() -> None:
    locked, runtime, build = read_lock(LOCK), read_lock(RUNTIME), read_lock(BUILD)
    for requirement in direct("dependencies", *PYPROJECT["project"]["optional-dependencies"]):
        pins = [s for s in requirement.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(requirement.specifier) == 1, f"pyproject.toml must pin {requirement} with =="
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements/lock.txt: run python -m tools.lock"
        assert locked[name][0] == pins[0].version, \
            f"{name}: {pins[0].version} in pyproject.toml, {locked[name][0]} in the lock: run python -m tools.lock"
    for requirement in direct("dependencies"):
        name = canonicalize_name(requirement.name)
        assert name in runtime and requirement.specifier.contains(runtime[name][0]), name
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        for entries in (build, locked):  # the image builds with build.txt, ./dev with lock.txt
            name = canonicalize_name(requirement.name)
            assert name in entries and requirement.specifier.contains(entries[name][0]), text
    assert "pip" in locked  # ./dev's pip is pinned too
    # the image's files are the developers' files
    for smaller in (runtime, build):
        for name, (version, hashes) in smaller.items():
            assert name in locked and locked[name][0] == version and hashes <= locked[name][1], name


def test_the_runtime_lock_is_closed() -> None:
    """Every runtime package's own dependencies are in runtime.txt too (read from the installed
    metadata, which is the lock's when ./dev installed it): the image installs it alone."""
    runtime = read_lock(RUNTIME)
    environment: dict[str, str] = {**default_environment(), "extra": ""}
    for name, (version, _) in runtime.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here: ./dev installs requirements/lock.txt")
        if installed != version:
            pytest.skip(f"{name} {installed} is installed, the lock has {version}: ./dev reinstalls it")
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                assert canonicalize_name(requirement.name) in runtime, f"{name} needs {text}, not in runtime.txt"
