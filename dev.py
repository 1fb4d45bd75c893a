#!/usr/bin/env python3
"""Set up and run loginwatch-org from a fresh clone with nothing but python3.

    python3 dev.py demo    # the main job in the local sandbox: rollout, status, a simulated sign-in
    python3 dev.py test    # the whole test suite, linters and type checks included

The first run creates .venv/ and installs the project with its test and sandbox extras; later runs reuse it
(and reinstall only when pyproject.toml changed).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-from"


def _run(*args: str | Path) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def ensure_environment() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and (BIN / "loginwatch-org").exists():
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing loginwatch-org with its test and sandbox extras ...", file=sys.stderr)
    pip = [BIN / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if _run(*pip, "--editable", ".[test,sandbox]") != 0:
        sys.exit("installation failed; see the pip output above")
    STAMP.write_text(wanted)


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
        [BIN / "python", "-m", "pytest", *argv[1:]],
    ]
    for check in checks:
        print("$ " + " ".join(str(part.name) if isinstance(part, Path) else part for part in check), flush=True)
        code = _run(*check)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
