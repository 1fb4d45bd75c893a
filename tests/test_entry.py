"""The executable reads ``validate`` itself, without typer, to start fast: what it prints and how it exits must be
exactly what the typer application would have done, and everything else must reach the typer application."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loginwatch_org.entry import plain_validate
from tests.conftest import EXAMPLE_CONFIG, ROOT

MISSPELT = """\
stackset:
  name: loginwatch
delivery:
  sender: alerts@example.com
"""


def _run(module: str, args: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    # Usage lines name the program as it was run.
    program = f"python -m {module} "
    return (
        done.returncode,
        done.stdout.replace(program, "loginwatch-org "),
        done.stderr.replace(program, "loginwatch-org "),
    )


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "accounts.yaml"
    path.write_text(MISSPELT)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "--json"],
        ["validate", "-c", "{example}"],
        ["validate", "--config={example}", "--json"],
        ["validate", "--config", "{broken}"],
        ["validate", "--json", "-c", "{broken}"],
        ["validate", "-c", "{missing}"],
    ],
    ids=["default", "json", "short", "equals-json", "invalid", "invalid-json", "missing-file"],
)
def test_validate_without_typer_prints_and_exits_as_the_typer_command_does(
    args: list[str], broken: Path, tmp_path: Path
) -> None:
    paths = {"example": str(EXAMPLE_CONFIG), "broken": str(broken), "missing": str(tmp_path / "nope.yaml")}
    argv = [arg.format(**paths) for arg in args]
    assert plain_validate(argv) is not None  # the fast path takes it
    fast = _run("loginwatch_org", argv)
    typer_app = _run("loginwatch_org.cli", argv)
    assert fast == typer_app
    assert fast[0] in (0, 2)


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "--help"],
        ["validate", "--bogus"],
        ["validate", "-c"],
        ["validate", "extra"],
        ["--version"],
    ],
)
def test_anything_else_reaches_the_typer_application(args: list[str]) -> None:
    assert plain_validate(args) is None
    assert _run("loginwatch_org", args) == _run("loginwatch_org.cli", args)


def test_validate_loads_neither_typer_nor_troposphere_nor_boto3() -> None:
    probe = (
        "import sys\n"
        "from loginwatch_org.entry import validate\n"
        f"code = validate(__import__('pathlib').Path({str(EXAMPLE_CONFIG)!r}), False)\n"
        "heavy = ('typer', 'click', 'troposphere', 'boto3', 'botocore', 'rich')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "print(code, loaded, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == "0 []"
    assert "valid." in done.stdout
