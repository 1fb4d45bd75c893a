"""The CLI's AWS commands end to end on the StackSets double: exit codes, prompts and tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from loginwatch_org.aws import session
from loginwatch_org.cli import app
from tests.doubles.clients import double_clients
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, account_ids, config_for, organization

runner = CliRunner()
COUNT = 12


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> StackSetsDouble:
    fake = StackSetsDouble(organization(COUNT), MANAGEMENT_ACCOUNT, polls_per_state=1)

    monkeypatch.setattr(session, "client", double_clients(fake))
    monkeypatch.setattr("time.sleep", lambda _seconds: None)
    return fake


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    config = config_for(COUNT, groups=3)
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False))
    return path


def edit(path: Path, account: str, recipients: list[str]) -> None:
    data = yaml.safe_load(path.read_text())
    for entry in data["accounts"]:
        if entry["id"] == account:
            entry["recipients"] = recipients
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_plan_rollout_status_cycle(double: StackSetsDouble, config_file: Path) -> None:
    planned = runner.invoke(app, ["plan", "-c", str(config_file), "--detailed-exitcode"])
    assert planned.exit_code == 2, planned.output
    assert "+ create stack set loginwatch" in planned.output
    assert "Plan: 3 StackSet operation(s)" in planned.output
    assert double.count(kind="write") == 0

    done = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"])
    assert done.exit_code == 0, done.output
    assert f"Rollout complete: {COUNT} account(s) current." in done.output

    quiet = runner.invoke(app, ["plan", "-c", str(config_file), "--detailed-exitcode"])
    assert quiet.exit_code == 0 and "No changes." in quiet.output

    target = account_ids(COUNT)[4]
    edit(config_file, target, ["new-owner@example.com"])
    diff = runner.invoke(app, ["plan", "-c", str(config_file), "--json", "--detailed-exitcode"])
    assert diff.exit_code == 2
    steps = json.loads(diff.output)["steps"]
    assert [s["action"] for s in steps] == ["update-instances"]
    assert steps[0]["accounts"] == [target]
    assert steps[0]["changes"][0]["after"]["Recipients"] == "new-owner@example.com"
    assert steps[0]["changes"][0]["before"]["Recipients"] == "team-1@example.com"

    applied = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"])
    assert applied.exit_code == 0, applied.output
    status = runner.invoke(app, ["status", "-c", str(config_file), "--json"])
    rows = {row["account_id"]: row for row in json.loads(status.output) if row["unit"] == "watch"}
    assert rows[target]["recipients_deployed"] == "new-owner@example.com"
    assert all(row["in_sync"] for row in rows.values())


def test_rollout_without_yes_and_without_a_terminal_changes_nothing(double: StackSetsDouble, config_file: Path) -> None:
    result = runner.invoke(app, ["rollout", "-c", str(config_file)], input="")
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert double.count(kind="write") == 0


def test_rollout_exits_non_zero_when_an_account_fails(double: StackSetsDouble, config_file: Path) -> None:
    bad = account_ids(COUNT)[2]
    double.failing_accounts[bad] = "ResourceLogicalId:NotifierFunction, ResourceStatusReason:quota exceeded"
    result = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"])
    assert result.exit_code == 1
    assert bad in result.output and "quota exceeded" in result.output


def test_invalid_config_makes_no_aws_call(double: StackSetsDouble, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stack_set:\n  name: 1bad\n")
    for command in ("plan", "rollout", "status", "remove"):
        result = runner.invoke(
            app, [command, "-c", str(bad), "--yes"] if command != "plan" else [command, "-c", str(bad)]
        )
        assert result.exit_code == 2, (command, result.output)
    assert double.calls == []


def test_remove_one_account_then_everything(double: StackSetsDouble, config_file: Path) -> None:
    assert runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"]).exit_code == 0
    one = account_ids(COUNT)[0]
    result = runner.invoke(app, ["remove", "-c", str(config_file), "--yes", "--account", one])
    assert result.exit_code == 0, result.output
    assert one not in double.instances("loginwatch")
    assert len(double.instances("loginwatch")) == COUNT - 1
    result = runner.invoke(app, ["remove", "-c", str(config_file), "--yes"])
    assert result.exit_code == 0, result.output
    assert "delete stack set loginwatch" in result.output
    again = runner.invoke(app, ["status", "-c", str(config_file)])
    assert again.exit_code == 1 and "does not exist" in again.output


def test_status_drift_runs_detection(double: StackSetsDouble, config_file: Path) -> None:
    assert runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"]).exit_code == 0
    drifted = account_ids(COUNT)[1]
    healthy = runner.invoke(app, ["status", "-c", str(config_file), "--drift"])
    assert healthy.exit_code == 0, healthy.output
    double.drifted_accounts.add(drifted)
    result = runner.invoke(app, ["status", "-c", str(config_file), "--drift", "--json"])
    assert result.exit_code == 1, "a drifted account needs attention"
    rows = {row["account_id"]: row for row in json.loads(result.stdout) if row["unit"] == "watch"}
    assert rows[drifted]["drift"] == "DRIFTED"
    # Once per stack set (the watches, the forwarders) per --drift run.
    assert double.count("detect_stack_set_drift") == 4


def test_status_drift_names_a_forwarder_changed_by_hand(double: StackSetsDouble, config_file: Path) -> None:
    assert runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"]).exit_code == 0
    account = account_ids(COUNT)[2]
    # Somebody disabled the forwarder rule in eu-west-1: sign-ins recorded there reach nobody.
    double.drifted_instances.add((account, "eu-west-1"))
    without = runner.invoke(app, ["status", "-c", str(config_file), "--json"])
    assert without.exit_code == 0, "nothing has detected the drift yet"
    result = runner.invoke(app, ["status", "-c", str(config_file), "--drift", "--json"])
    assert result.exit_code == 1, result.output
    forwarders = [row for row in json.loads(result.stdout) if row["unit"] == "forwarders"]
    wrong = [(row["account_id"], row["reason"]) for row in forwarders if row["status"] != "CURRENT"]
    assert wrong == [(account, "forwarders drifted in eu-west-1")]
    # --json gives every watched account's forwarders, not only those that need attention.
    assert sorted(row["account_id"] for row in forwarders) == sorted(account_ids(COUNT))
    assert {row["reason"] for row in forwarders if row["status"] == "CURRENT"} == {"current in 16 region(s)"}
    watch = [row for row in json.loads(result.stdout) if row["unit"] == "watch" and row["account_id"] == account]
    assert watch and watch[0]["drift"] == "IN_SYNC"
    # Until the next detection the drift status stays, and so does the row.
    assert runner.invoke(app, ["status", "-c", str(config_file)]).exit_code == 1
    double.drifted_instances.clear()
    assert runner.invoke(app, ["status", "-c", str(config_file), "--drift"]).exit_code == 0


def test_missing_credentials_are_explained(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # A closed local port: the call must fail on credentials before any connection is tried.
    result = runner.invoke(app, ["plan", "-c", str(config_file), "--endpoint-url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "No AWS credentials found" in result.output
    assert "Traceback" not in result.output


def test_unknown_profile_is_explained(config_file: Path) -> None:
    result = runner.invoke(app, ["plan", "-c", str(config_file), "--profile", "nope"])
    assert result.exit_code == 1
    assert "nope" in result.output and "Traceback" not in result.output


def test_detailed_exitcode_reports_config_errors_as_1(double: StackSetsDouble, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stack_set:\n  name: 1bad\n")
    result = runner.invoke(app, ["plan", "-c", str(bad), "--detailed-exitcode"])
    assert result.exit_code == 1  # 2 would read as "changes pending"
    assert "Invalid configuration" in result.output


def test_status_is_non_zero_when_an_account_is_out_of_sync(double: StackSetsDouble, config_file: Path) -> None:
    assert runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"]).exit_code == 0
    assert runner.invoke(app, ["status", "-c", str(config_file)]).exit_code == 0
    edit(config_file, account_ids(COUNT)[0], ["someone-else@example.com"])
    result = runner.invoke(app, ["status", "-c", str(config_file)])
    assert result.exit_code == 1
    assert "team-0@example.com [all] -> someone-else@example.com [all]" in result.output
    # The exit status is explained, for a pipeline's log.
    assert (
        f"Exit 1: 1 need attention ({account_ids(COUNT)[0]}). loginwatch-org plan -c {config_file} shows what a "
        "rollout would change." in result.output
    )
    assert "Exit 1" not in runner.invoke(app, ["status", "-c", str(config_file), "--json"]).output


def test_the_admin_region_comes_from_the_config_not_the_environment(
    monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    seen: list[str | None] = []

    def client(target: session.AwsTarget, service: str, progress: Any = None) -> Any:
        seen.append(target.region)
        raise session_error()

    def session_error() -> Exception:
        from botocore.exceptions import NoCredentialsError

        return NoCredentialsError()

    monkeypatch.setattr(session, "client", client)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    runner.invoke(app, ["plan", "-c", str(config_file)])
    runner.invoke(app, ["plan", "-c", str(config_file), "--region", "eu-central-1"])
    assert seen == ["us-east-1", "eu-central-1"]


def test_export_to_a_directory_is_an_error(tmp_path: Path) -> None:
    from tests.conftest import EXAMPLE_CONFIG

    result = runner.invoke(app, ["export", "-c", str(EXAMPLE_CONFIG), "-o", str(tmp_path)])
    assert result.exit_code == 1 and "is a directory" in result.output
