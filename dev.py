#!/usr/bin/env python3
"""Set up and run loginwatch-org from a fresh clone with nothing but python3.

    python3 dev.py demo    # the main job in the local sandbox: rollout, status, a simulated sign-in
    python3 dev.py test    # the whole test suite, linters and type checks included, then checkov on templates/

The first run creates .venv/ and installs the project with its test and sandbox extras; later runs reuse it
(and reinstall only when pyproject.toml changed). checkov, the reviewers' scanner for the exported
templates, gets a virtual environment of its own (.venv-checkov/), as its dependencies pin versions the
project's do not share.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-from"
CHECKOV_VENV = ROOT / ".venv-checkov"
CHECKOV_BIN = CHECKOV_VENV / ("Scripts" if os.name == "nt" else "bin")
# Pinned: a new release brings new checks, which must not turn CI red without a change here.
CHECKOV = "checkov==3.3.30"
# Offline: no update check against PyPI and no download of guidelines from checkov's vendor.
CHECKOV_ENV = {"CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}


def _run(*args: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT, env={**os.environ, **env} if env else None)


def _install(what: str, *args: str | Path, expected: str) -> int:
    """Run a quiet pip install, saying every 15 s that it is still going: a first install takes minutes, and a
    silent terminal looks like a hang."""
    print(f"installing {what} (first run only, {expected}) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    process = subprocess.Popen([str(a) for a in args], cwd=ROOT)
    while True:
        try:
            code = process.wait(timeout=15)
            break
        except subprocess.TimeoutExpired:
            print(f"  still installing {what}: {time.monotonic() - started:.0f} s so far", file=sys.stderr, flush=True)
    print(f"  installed {what} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return code


def ensure_environment() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and (BIN / "loginwatch-org").exists():
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [BIN / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if _install("loginwatch-org with its test and sandbox extras", *pip, "--editable", ".[test,sandbox]",
                expected="about 1-2 minutes") != 0:  # fmt: skip
        sys.exit("installation failed; see the pip output above")
    STAMP.write_text(wanted)


def ensure_checkov() -> None:
    stamp = CHECKOV_VENV / ".installed-from"
    if stamp.exists() and stamp.read_text() == CHECKOV and (CHECKOV_BIN / "checkov").exists():
        return
    if not (CHECKOV_BIN / "python").exists():
        print("creating .venv-checkov ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(CHECKOV_VENV)
    pip = [CHECKOV_BIN / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if _install(CHECKOV, *pip, CHECKOV, expected="about 1-2 minutes") != 0:
        sys.exit("installing checkov failed; see the pip output above")
    stamp.write_text(CHECKOV)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command not in ("demo", "test"):
        print(__doc__)
        return 0 if command == "help" else 2
    ensure_environment()
    if command == "demo":
        return _run(BIN / "loginwatch-org", "demo", *argv[1:])
    checks = [
        [BIN / "ruff", "check", "."],
        [BIN / "ruff", "format", "--check", "."],
        [BIN / "mypy"],
    ]
    for check in checks:
        if (code := _check(*check)) != 0:
            return code
    # Every exported template, as a reviewer would scan it; a check that does not apply is skipped in the
    # resource's Metadata with its reason, so any failure here is new. Before pytest, so that the run ends
    # with pytest's own summary.
    ensure_checkov()
    scan = ["--directory", "templates", "--framework", "cloudformation", "--compact", "--quiet", "--skip-download"]
    if (code := _check(CHECKOV_BIN / "checkov", *scan, env=CHECKOV_ENV)) != 0:
        return code
    # One test file per worker (module-scoped sandboxes are started once), as many workers as cores.
    return _check(BIN / "python", "-m", "pytest", "-n", "auto", "--dist", "loadfile", *argv[1:])


def _check(*args: str | Path, env: dict[str, str] | None = None) -> int:
    print("$ " + " ".join(part.name if isinstance(part, Path) else part for part in args), flush=True)
    return _run(*args, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
