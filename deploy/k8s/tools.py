"""The chart's tools: Helm, built once from the Go module proxy into a cache outside the repository.

`helm()` returns the path of a `helm` binary of `HELM_VERSION`, building it with
`go install helm.sh/helm/v3/cmd/helm@HELM_VERSION` into `$PAYSTREAM_HOME/tools/helm-<version>/bin`
(default `~/.cache/paystream`) only when it is not there yet. The first build compiles Helm and
its dependencies (minutes on two cores); every later call is a file check.

    python -m deploy.k8s.tools          # install if missing, print the path

Validation of rendered manifests uses the Kubernetes JSON schemas that the `kubernetes-validate`
package ships (the `test` extra), so nothing here needs a cluster or the network after install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELM_VERSION = "v3.22.0"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
# Kubernetes version of Helm's client-go (v0.37 -> 1.37): Helm's Makefile stamps it into the binary
# as the default `.Capabilities.KubeVersion` of `helm template`/`lint`; a plain `go install` would
# leave v1.20 there and a chart's kubeVersion constraint would fail offline.
HELM_KUBERNETES = ("1", "37")
CHART = Path(__file__).resolve().parent


class ToolError(RuntimeError):
    """A tool could not be found or built; the message says what to install or what failed."""


def home() -> Path:
    """The cache root, shared with deploy/local: `$PAYSTREAM_HOME`, default `~/.cache/paystream`."""
    from deploy.local.cluster import home as cluster_home

    return cluster_home()


def helm_path(root: Path | None = None, version: str = HELM_VERSION) -> Path:
    """Where the `helm` binary of `version` lives in the cache (it may not exist yet)."""
    return (root or home()) / "tools" / f"helm-{version}" / "bin" / "helm"


def _locked(directory: Path) -> contextlib.AbstractContextManager[None]:
    """One build at a time across processes (two pytest sessions may ask at once)."""
    from deploy.local.cluster import file_lock

    return file_lock(directory / "tools.lock")


def _ldflags(version: str) -> str:
    """The `-X` stamps of Helm's own release build: its version and its default Kubernetes version."""
    major, minor = HELM_KUBERNETES
    stamps = {"helm.sh/helm/v3/internal/version.version": version,
              "helm.sh/helm/v3/internal/version.gitTreeState": "clean",
              "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor": major,
              "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor": minor,
              "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor": major,
              "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor": minor}
    return " ".join(["-s", "-w", *(f"-X {name}={value}" for name, value in stamps.items())])


def helm(root: Path | None = None, version: str = HELM_VERSION, log: bool = True) -> Path:
    """The `helm` binary, built with `go install` into the cache the first time it is asked for."""
    target = helm_path(root, version)
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    if not go:
        raise ToolError("`go` not found on PATH: install Go 1.24 or newer to build helm")
    with _locked(target.parent.parent.parent):
        if target.is_file():
            return target  # another process built it while we waited
        target.parent.mkdir(parents=True, exist_ok=True)
        # build into a scratch GOBIN and rename, so a half-written binary is never used
        scratch = Path(tempfile.mkdtemp(prefix="gobin-", dir=target.parent))
        env = {**os.environ, "GOBIN": str(scratch), "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}
        started = time.monotonic()
        if log:
            print(f"paystream: building helm {version} with go install (first time only; minutes)", file=sys.stderr)
        try:
            result = subprocess.run([go, "install", "-ldflags", _ldflags(version), f"{HELM_MODULE}@{version}"], env=env,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
                raise ToolError(f"go install {HELM_MODULE}@{version} failed:\n{tail}")
            (scratch / "helm").rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if log:
            print(f"paystream: helm {version} built in {time.monotonic() - started:.0f} s: {target}", file=sys.stderr)
    return target


if __name__ == "__main__":
    try:
        print(helm())
    except ToolError as error:
        print(f"paystream: {error}", file=sys.stderr)
        sys.exit(1)
