"""Known vulnerabilities in the installed dependencies (`pip-audit`), run by `./dev test`.

The advisory source (PyPI's vulnerability data, or OSV) is not reachable from every machine: a
dependency pip-audit could not look up is reported as such, and when none could be looked up
the check says so in one line and passes, rather than claiming "no known vulnerabilities".
A vulnerability found fails the check.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        frozen = Path(scratch) / "requirements.txt"
        listed = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                                capture_output=True, text=True, check=True).stdout
        frozen.write_text(listed)
        done = subprocess.run([sys.executable, "-m", "pip_audit", "-r", str(frozen), "--progress-spinner", "off",
                               "-f", "json", "--no-deps", "--disable-pip"], capture_output=True, text=True)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        print(f"pip-audit: could not run ({done.stderr.strip().splitlines()[-1:]}); dependencies not audited")
        return 0
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    for dependency in vulnerable:
        ids = ", ".join(v["id"] for v in dependency["vulns"])
        print(f"pip-audit: {dependency['name']} {dependency['version']}: {ids}")
    if vulnerable:
        return 1
    if dependencies and len(skipped) == len(dependencies):
        print(f"pip-audit: the advisory source is not reachable from here: none of {len(dependencies)} "
              f"dependencies could be audited (not a clean bill of health)")
    else:
        print(f"pip-audit: no known vulnerabilities in {len(dependencies) - len(skipped)} dependencies"
              + (f" ({len(skipped)} could not be looked up)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
