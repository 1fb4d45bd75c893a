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
from tests.conftest import EXAMPLE_CONFIG, ROOT, own_ses_example_text

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
    text = own_ses_example_text().replace("alerts@example.com", "signin@corp.example")
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


def test_export_infers_the_format_from_the_extension(tmp_path: Path) -> None:
    for name in ("t.json", "t.yaml", "t.yml"):
        result = runner.invoke(app, ["export", "-c", str(EXAMPLE_CONFIG), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert "NotifierFunction" in json.loads((tmp_path / "t.json").read_text())["Resources"]
    for name in ("t.yaml", "t.yml"):
        assert (tmp_path / name).read_text().startswith("AWSTemplateFormatVersion"), name  # YAML, not JSON
    clash = runner.invoke(app, ["export", "-c", str(EXAMPLE_CONFIG), "-f", "yaml", "-o", str(tmp_path / "x.json")])
    assert clash.exit_code == 2 and "--format yaml does not match" in clash.output
    assert not (tmp_path / "x.json").exists()


def _committed_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory holding the committed exports, as ``export --check`` finds them (relative paths)."""
    from loginwatch_org.templates import REGISTRY

    monkeypatch.chdir(tmp_path)
    for spec in REGISTRY.values():
        committed = ROOT / spec.path("yaml")
        if committed.exists():
            (tmp_path / spec.path("yaml")).parent.mkdir(exist_ok=True)
            (tmp_path / spec.path("yaml")).write_text(committed.read_text())
    return tmp_path / "templates"


def test_export_check_covers_every_registered_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loginwatch_org.templates import REGISTRY

    directory = _committed_copy(tmp_path, monkeypatch)
    result = runner.invoke(app, ["export", "-c", str(EXAMPLE_CONFIG), "--check"])
    assert result.exit_code == 0, result.output
    for spec in REGISTRY.values():
        assert f"{spec.path('yaml')} is current." in result.output
    # A committed JSON export is checked as JSON, beside the YAML one.
    watch_json = directory / "watch.json"
    watch_json.write_text("{}\n")
    stale = runner.invoke(app, ["export", "-c", str(EXAMPLE_CONFIG), "--check"])
    assert stale.exit_code == 1
    assert "templates/watch.yaml is current." in stale.output
    assert '+  "AWSTemplateFormatVersion"' in stale.output
    regenerate_line = f"loginwatch-org export -c {EXAMPLE_CONFIG} -o templates/watch.json"
    assert f"Error: templates/watch.json is stale; regenerate it with: {regenerate_line}\n" in stale.output
    assert runner.invoke(app, regenerate_line.split()[1:]).exit_code == 0
    assert runner.invoke(app, ["export", "-c", str(EXAMPLE_CONFIG), "--check"]).exit_code == 0


def test_export_check_of_a_format_never_written_says_how_to_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _committed_copy(tmp_path, monkeypatch)
    result = runner.invoke(app, ["export", "-c", str(EXAMPLE_CONFIG), "-f", "json", "--check"])
    assert result.exit_code == 1
    command = f"loginwatch-org export -c {EXAMPLE_CONFIG} -o templates/watch.json"
    assert f"templates/watch.json does not exist; write it with: {command}" in result.output
    assert runner.invoke(app, command.split()[1:]).exit_code == 0
    assert json.loads((tmp_path / "templates" / "watch.json").read_text())["Resources"]


def test_validate_names_a_misspelled_section(write_config: Callable[[str], Path]) -> None:
    path = write_config(EXAMPLE_CONFIG.read_text().replace("stack_set:", "stackset:", 1))
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2
    first = result.output.splitlines()[1].strip()
    assert first.endswith(": stackset: unknown key 'stackset'; did you mean stack_set?")


def test_export_says_what_it_wrote_and_what_stacksets_receive(tmp_path: Path) -> None:
    out = tmp_path / "watch.yaml"
    result = runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from loginwatch_org.templates import TEMPLATE_BODY_LIMIT

    written = len(out.read_bytes())
    assert f"wrote {out}: {written:,} bytes of yaml, for review" in result.output
    # The body StackSets receive: the same template as JSON, minified.
    as_json = runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG), "--format", "json"]).output
    body = json.dumps(json.loads(as_json), separators=(",", ":")).encode()
    assert f"CloudFormation receives it as minified JSON, {len(body):,} " in result.output
    if len(body) > TEMPLATE_BODY_LIMIT:  # the example's watch (mail mode) is too large to send inline
        assert "rollout stages it in S3 and passes its URL" in result.output
    assert len(body) < written
    forwarder = tmp_path / "forwarder.yaml"
    small = runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG), "-t", "forwarder", "-o", str(forwarder)])
    assert small.exit_code == 0 and f"of the {TEMPLATE_BODY_LIMIT:,} bytes a template body may have" in small.output


def test_export_refuses_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    out = tmp_path / "tempaltes" / "watch.yaml"
    result = runner.invoke(app, ["export", "--config", str(EXAMPLE_CONFIG), "-o", str(out)])
    assert result.exit_code == 2
    assert f"the directory {out.parent} does not exist; create it first" in result.output
    assert not out.parent.exists()


def test_validate_warns_when_forward_from_misses_where_alias_cookie_sign_ins_land(
    write_config: Callable[[str], Path],
) -> None:
    path = write_config(
        """
        delivery:
          sender: alerts@example.com
          alarm_topic_arn: arn:aws:sns:us-east-1:999988887777:security-paging
        defaults:
          recipients: [security@example.com]
        stack_set:
          organizational_units: [r-ab12]
          forward_from: [eu-west-1, us-east-2]
        accounts:
          - id: "111122223333"
            name: a
        """
    )
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 0, result.output
    (note,) = [line for line in result.output.splitlines() if line.startswith("Note:")]
    assert note.startswith("Note: stack_set.forward_from leaves out eu-north-1, ap-southeast-2: an IAM user")
    as_json = json.loads(runner.invoke(app, ["validate", "--config", str(path), "--json"]).output)
    assert as_json["notes"] == [note.removeprefix("Note: ")]

    everywhere = runner.invoke(app, ["validate", "--config", str(EXAMPLE_CONFIG)])
    assert "leaves out" not in everywhere.output


def test_validate_names_every_mistake_in_one_run_top_to_bottom(write_config: Callable[[str], Path]) -> None:
    # Field errors, a section's cross-field checks and the whole file's: pydantic alone would report only the
    # first kind, then the others on later runs.
    path = write_config(
        """
        stack_set:
          organizational_units: [r-ab12]
          forward_from: [eu-west-1, eu-west-1]
          operation_preferences:
            max_concurrent_percentage: 500
        delivery:
          sender: not-an-email
        defaults:
          recipients: [security@example.com]
        accounts:
          - id: "111122223333"
            name: a
          - id: "111122223333"
            name: b
          - id: "222233334444"
            name: c
          - id: "222233334444"
            name: d
        """
    )
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 2
    found = [line.strip() for line in result.output.splitlines() if line.strip().startswith(str(path))]
    assert [line.removeprefix(f"{path}:").split(":", 2)[:2] for line in found] == [
        ["3", " stack_set.forward_from[1]"],
        ["5", " stack_set.operation_preferences.max_concurrent_percentage"],
        ["7", " delivery.sender"],
        ["13", " accounts[1].id"],
        ["17", " accounts[3].id"],
    ]
    assert "account 222233334444 is listed twice (also as accounts[2])" in found[-1]
