"""The commands that never talk to AWS: validate and export, and a fast start without boto3."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from loginwatch_org.cli import app
from tests.conftest import EXAMPLE_CONFIG, ROOT

runner = CliRunner()


def test_validate_accepts_the_example() -> None:
    result = runner.invoke(app, ["validate", "--config", str(EXAMPLE_CONFIG)])
    assert result.exit_code == 0, result.output
    assert "valid. 8 account(s) watched, 1 disabled, 6 distinct recipient/policy group(s)" in result.output


def test_validate_rejects_bad_input_with_exit_2(write_config: Callable[[str], Path]) -> None:
    path = write_config(
        """
        delivery:
          sender: alerts@example.com
        defaults:
          recipients: [security@example.com]
        stack_set:
          organizational_units: [r-ab12]
        accounts:
          - id: 012345670123
            name: a
        """
    )
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:8: accounts[0].id" in result.output
    assert "Traceback" not in result.output


def test_export_yaml_and_json_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    result = runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG), "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    as_json = json.loads(out.read_text())
    as_yaml = runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG)]).output
    assert "NotifierFunction" in as_json["Resources"]
    assert "AWSTemplateFormatVersion" in as_yaml
    assert as_json["Parameters"]["Sender"]["Default"] == "alerts@example.com"


def test_export_check_reports_a_stale_template(tmp_path: Path) -> None:
    stale = tmp_path / "loginwatch.yaml"
    stale.write_text("old\n")
    result = runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG), "--check", "-o", str(stale)])
    assert result.exit_code == 1
    assert "+AWSTemplateFormatVersion" in result.output and "-old" in result.output
    runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG), "-o", str(stale)])
    fresh = runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG), "--check", "-o", str(stale)])
    assert fresh.exit_code == 0 and "is current" in fresh.output


def test_export_defaults_follow_the_config(write_config: Callable[[str], Path]) -> None:
    text = EXAMPLE_CONFIG.read_text().replace("alerts@example.com", "signin@corp.example")
    path = write_config(text)
    template = yaml.safe_load(runner.invoke(app, ["export", "--config", str(path), "-f", "json"]).output)
    assert template["Parameters"]["Sender"]["Default"] == "signin@corp.example"


def _modules_loaded_by(*args: str) -> set[str]:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['loginwatch-org', *{list(args)!r}]\n"
        "try:\n    runpy.run_module('loginwatch_org.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    return set(result.stderr.split())


def test_help_validate_and_export_do_not_import_boto3() -> None:
    for args in (["validate"], ["export"]):
        loaded = _modules_loaded_by(*args)
        assert "loginwatch_org.config" in loaded, args
        assert not {"boto3", "botocore"} & loaded, args


@pytest.mark.parametrize("args", [["--help"], ["plan", "--help"], ["export", "--help"]])
def test_help_imports_nothing_it_does_not_print(args: list[str]) -> None:
    loaded = _modules_loaded_by(*args)
    assert "loginwatch_org.cli_options" in loaded  # the CLI did run
    assert not {"boto3", "botocore", "loginwatch_org.config", "troposphere", "rich.markdown", "yaml"} & loaded
    if args == ["--help"]:
        # A command's own help builds typer's parameter converters, which use pydantic; the top level needs none.
        assert "pydantic" not in loaded
