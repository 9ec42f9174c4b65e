"""The hash-pinned lock files, regenerated from pyproject.toml's pins: `python -m tools.lock`.

pyproject.toml pins the direct dependencies; this resolves their whole transitive closure with pip
(`pip install --dry-run --report`: nothing is installed) and writes every distribution as
`name==version` with the sha256 of each file pip would install, so that
`pip install --require-hashes -r FILE` accepts those files and nothing else:

    requirements/lock.txt     build + runtime + test + bench, and pip itself: what `./dev` installs
    requirements/runtime.txt  the runtime dependencies only: what the image installs
    requirements/build.txt    pyproject's [build-system] requires: what builds paystream's own wheel

Hashes are gathered for two targets: the interpreter that runs this (where the developers' `./dev`
installs), and CPython 3.11 on Linux x86_64 with glibc 2.36 (the image's python:3.11-slim-bookworm,
see deploy/k8s/Dockerfile), so the image's hashes are there whatever machine wrote the files.

A package pyproject.toml does not pin keeps the version the current lock.txt has (a changed pin
moves only what it must); `--upgrade` resolves those afresh, to the newest that fit.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
LOCK, RUNTIME, BUILD = REQUIREMENTS / "lock.txt", REQUIREMENTS / "runtime.txt", REQUIREMENTS / "build.txt"

# The image's base (deploy/k8s/Dockerfile): CPython 3.11, Debian bookworm, so glibc 2.36. Raise this
# with the base's Debian release, or pip in the image may pick a wheel whose hash is not in the lock.
IMAGE_PYTHON = "3.11"
IMAGE_GLIBC_MINOR = 36
# pip installs pip: pinned and hashed like the rest (it is also pip-audit's dependency, through pip-api)
DEV_TOOLS = ["pip"]


def image_target() -> list[str]:
    """pip options that resolve for the image instead of this interpreter, best platform tag first."""
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(IMAGE_GLIBC_MINOR, 17, -1)]
    platforms.append("manylinux2014_x86_64")  # pip expands it to manylinux_2_17, 2010 (2_12) and 1 (2_5)
    return ["--only-binary=:all:", "--implementation=cp", f"--python-version={IMAGE_PYTHON}",
            *(f"--platform={platform}" for platform in platforms)]


TARGETS: dict[str, list[str]] = {"this interpreter": [], "the image": image_target()}


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


class ResolutionError(Exception):
    """pip could not resolve, or resolved to something this cannot write down."""


@dataclass
class Pin:
    version: str
    hashes: set[str] = field(default_factory=set)


def resolve(requirements: Sequence[str], constraints: Mapping[str, str], target: Sequence[str]) -> dict[str, Pin]:
    """What pip would install for `requirements` on `target`: {name: version and sha256 of the file}."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
        (folder / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
        report = folder / "report.json"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--disable-pip-version-check", "--report", str(report), *target,
             "-r", str(folder / "requirements.txt"), "-c", str(folder / "constraints.txt")],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise ResolutionError(done.stderr.strip() or done.stdout.strip())
        installs = json.loads(report.read_text())["install"]
    pins: dict[str, Pin] = {}
    for install in installs:
        name = canonical(install["metadata"]["name"])
        archive = install["download_info"].get("archive_info", {})
        digest = archive.get("hashes", {}).get("sha256")
        if digest is None and str(archive.get("hash", "")).startswith("sha256="):
            digest = archive["hash"].removeprefix("sha256=")
        if digest is None:
            raise ResolutionError(f"{name}: pip reported no sha256 for {install['download_info']['url']}")
        pins[name] = Pin(install["metadata"]["version"], {digest})
    return pins


def resolve_everywhere(requirements: Sequence[str], constraints: Mapping[str, str]) -> dict[str, Pin]:
    """resolve() on every target; one version per package, the hashes of all of them."""
    merged: dict[str, Pin] = {}
    for where, target in TARGETS.items():
        pins = resolve(requirements, constraints, target)
        if merged and pins.keys() != merged.keys():
            raise ResolutionError(f"{where} needs other packages than {next(iter(TARGETS))}: "
                                  f"{sorted(pins.keys() ^ merged.keys())}")
        for name, pin in pins.items():
            have = merged.setdefault(name, Pin(pin.version))
            if have.version != pin.version:
                raise ResolutionError(f"{name}: {have.version} here, {pin.version} on {where}")
            have.hashes |= pin.hashes
    return merged


def read_versions(path: Path) -> dict[str, str]:
    """{name: version} of a lock file (its `name==version` lines); {} when there is none yet."""
    if not path.exists():
        return {}
    found = (re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", line) for line in path.read_text().splitlines())
    return {canonical(match.group(1)): match.group(2) for match in found if match}


def render(pins: Mapping[str, Pin], path: Path, what: str) -> str:
    relative = path.relative_to(ROOT).as_posix()
    lines = [
        f"# {relative}: {what}.",
        "# Written by `python -m tools.lock` from pyproject.toml's pins: do not edit by hand.",
        f"# Install with: python -m pip install --require-hashes -r {relative}",
        f"# Hashes for CPython {IMAGE_PYTHON} on Linux x86_64 (glibc 2.{IMAGE_GLIBC_MINOR}, the image) and for the "
        "interpreter that wrote this.",
    ]
    for name in sorted(pins):
        pin = pins[name]
        lines.append(f"{name}=={pin.version} \\")
        lines.extend(f"    --hash=sha256:{digest}" + (" \\" if i < len(pin.hashes) - 1 else "")
                     for i, digest in enumerate(sorted(pin.hashes)))
    return "\n".join(lines) + "\n"


def direct_requirements(pyproject: Mapping[str, object]) -> tuple[list[str], list[str], list[str]]:
    """(build, runtime, every extra) requirement strings of a parsed pyproject.toml."""
    project = pyproject["project"]
    build_system = pyproject["build-system"]
    assert isinstance(project, dict) and isinstance(build_system, dict)
    extras: list[str] = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return list(build_system["requires"]), list(project.get("dependencies", [])), extras


def kept(versions: Mapping[str, str], direct: Iterable[str]) -> dict[str, str]:
    """The versions worth keeping: all but those of the packages pyproject.toml pins itself (`==`)."""
    pinned = {requirement_name(r) for r in direct if "==" in r}
    return {name: version for name, version in versions.items() if name not in pinned}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lock", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--upgrade", action="store_true",
                        help="resolve the packages pyproject.toml does not pin afresh, not from the current lock")
    args = parser.parse_args(argv)
    build, runtime, extras = direct_requirements(tomllib.loads((ROOT / "pyproject.toml").read_text()))
    everything = [*build, *runtime, *extras, *DEV_TOOLS]
    previous = {} if args.upgrade else kept(read_versions(LOCK), everything)
    try:
        full = resolve_everywhere(everything, previous)
        versions = {name: pin.version for name, pin in full.items()}
        # the smaller files are resolved against the full one's versions: a subset of it, never a neighbour
        files = {LOCK: (full, "build + runtime + test + bench, and pip: what ./dev installs"),
                 RUNTIME: (resolve_everywhere(runtime, versions), "the runtime dependencies: what the image installs"),
                 BUILD: (resolve_everywhere(build, versions), "[build-system] requires: what builds paystream")}
    except ResolutionError as error:
        print(f"tools.lock: pip could not resolve: {error}", file=sys.stderr)
        if previous:
            print("tools.lock: if a version kept from requirements/lock.txt is in the way, run it with --upgrade",
                  file=sys.stderr)
        return 1
    REQUIREMENTS.mkdir(exist_ok=True)
    for path, (pins, what) in files.items():
        text = render(pins, path, what)
        changed = not path.exists() or path.read_text() != text
        if changed:
            path.write_text(text)
        print(f"{path.relative_to(ROOT).as_posix()}: {len(pins)} packages, "
              f"{sum(len(p.hashes) for p in pins.values())} hashes{'' if changed else ' (unchanged)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
