"""What an admin sees: tables that fit, coloured plans, --json everywhere it matters, the small promises of
--help, --version, prompts and account ids, and the same story about an account from rollout and status."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from loginwatch_org import cli, cli_options
from loginwatch_org.aws import session
from loginwatch_org.cli import app
from loginwatch_org.config import load_config
from tests.doubles.clients import double_clients
from tests.doubles.organizations import OrganizationsDouble
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, account_ids, config_for, organization

runner = CliRunner()
COUNT = 6
GHOST = "555555555555"  # in the config, not in the organisation
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> StackSetsDouble:
    fake = StackSetsDouble(organization(COUNT), MANAGEMENT_ACCOUNT, polls_per_state=1)
    members = OrganizationsDouble([*account_ids(COUNT), MANAGEMENT_ACCOUNT])

    # The caller is not the management account: its unit is reported as not covered, and the stack sets are tested.
    monkeypatch.setattr(session, "client", double_clients(fake, organizations=members))
    monkeypatch.setattr("time.sleep", lambda _seconds: None)
    return fake


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = config_for(COUNT, groups=3).model_dump(mode="json", exclude_none=True)
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def add_ghost(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    data["accounts"].append({"id": GHOST, "name": "ghost"})
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def rolled_out(config_file: Path) -> None:
    result = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"])
    assert result.exit_code == 0, result.output


# -- small contract points ------------------------------------------------------------------------------


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"loginwatch-org \d+\.\d+\.\d+\n", result.output)


@pytest.mark.parametrize(
    ("command", "choices"),
    [(["export"], "<yaml|json>"), (["simulate-login"], "<root|iam-user|sso|failed>"), (["demo"], "<root|iam-user")],
)
def test_help_shows_choices(command: list[str], choices: str) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert choices in result.output


def test_help_and_readme_agree_on_the_region_default() -> None:
    help_text = " ".join(runner.invoke(app, ["plan", "--help"], env={"COLUMNS": "200"}).output.split())
    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text().split())
    assert "default: the config's stack_set.admin_region, which defaults to us-east-1" in help_text
    assert "default: the config's `stack_set.admin_region`, which defaults to us-east-1" in readme


@pytest.mark.parametrize("bad", ["123", "1234567890123", "12345678901a"])
def test_remove_rejects_an_account_that_is_not_12_digits(double: StackSetsDouble, config_file: Path, bad: str) -> None:
    result = runner.invoke(app, ["remove", "-c", str(config_file), "--yes", "--account", bad])
    assert result.exit_code == 2
    assert f"Error: --account {bad}: an AWS account id is exactly 12 digits" in result.output
    assert double.calls == []


def test_declining_the_prompt_is_not_an_error(
    double: StackSetsDouble, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    result = runner.invoke(app, ["rollout", "-c", str(config_file)], input="n\n")
    assert result.exit_code == 1
    assert result.output.rstrip().endswith("Apply this plan? [y/N]: n\nNothing changed.")
    assert "Error" not in result.output
    assert double.count(kind="write") == 0
    rolled_out(config_file)
    declined = runner.invoke(app, ["remove", "-c", str(config_file), "--json"], input="n\n")
    assert declined.exit_code == 1
    # The test runner echoes the typed answer onto stdout, as a terminal would; the document follows it.
    document = json.loads(declined.stdout[declined.stdout.index("{") :])
    assert document["declined"] is True and document["applied"] is False
    assert len(double.instances("loginwatch")) == COUNT


# -- the plan's summary and accounts outside the organisation --------------------------------------------


def test_removing_one_account_leaves_the_others_counted_as_unchanged(
    double: StackSetsDouble, config_file: Path
) -> None:
    rolled_out(config_file)
    result = runner.invoke(app, ["remove", "-c", str(config_file), "--yes", "--account", account_ids(COUNT)[0]])
    assert result.exit_code == 0, result.output
    assert f"Plan: 1 StackSet operation(s); {COUNT - 1} account(s) unchanged." in result.output


def test_rollout_and_status_tell_the_same_story_about_an_account_outside_the_organisation(
    double: StackSetsDouble, config_file: Path
) -> None:
    add_ghost(config_file)
    rollout = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"])
    status = runner.invoke(app, ["status", "-c", str(config_file)])
    as_json = runner.invoke(app, ["status", "-c", str(config_file), "--json"])
    assert rollout.exit_code == status.exit_code == as_json.exit_code == 0, (rollout.output, status.output)
    warning = f"account {GHOST} is in the config but not in the organisation; it is skipped"
    assert f"! {warning}" in rollout.output and f"! {warning}" in status.output
    assert f"{COUNT} account(s) unchanged" not in rollout.output
    assert "; 1 skipped (not in the organisation)." in rollout.output
    ghost_rows = [line for line in (rollout.output + status.output).splitlines() if line.startswith(GHOST)]
    assert len(ghost_rows) == 2 and all("NOT_IN_ORGANIZATION" in row for row in ghost_rows)
    row = next(row for row in json.loads(as_json.stdout) if row["account_id"] == GHOST)
    assert row["status"] == "NOT_IN_ORGANIZATION" and row["reason"] == warning


# -- output that fits, colour ----------------------------------------------------------------------------


def test_the_status_table_fits_the_terminal_and_wide_shows_everything(
    double: StackSetsDouble, config_file: Path
) -> None:
    add_ghost(config_file)
    rolled_out(config_file)
    narrow = runner.invoke(app, ["status", "-c", str(config_file)], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, narrow.stdout
    # REGION stays, so an account's watch and forwarder rows never look like duplicates.
    assert lines[0].split() == ["ACCOUNT", "NAME", "REGION", "STATUS", "IN", "SYNC"]
    assert " ".join(narrow.stdout.split()).endswith(
        "(LAST OPERATION, DRIFT not shown, to fit 80 columns: --wide shows every column)"
    )
    # The reason and the recipients move under their row, whole; no address is cut at a line's end.
    reason = f"reason: account {GHOST} is in the config but not in the organisation; it is skipped"
    assert reason in " ".join(narrow.stdout.split())
    words = set(narrow.stdout.replace(",", " ").split())
    for account in load_config(config_file).accounts:
        assert set(account.recipients or []) <= words, account
    # One line a row, then its detail lines: nothing else wraps at 80 columns.
    assert all(re.match(r"\d{12}  ", line) or line.startswith(("    ", "(")) for line in lines[2:]), narrow.stdout
    drift = runner.invoke(app, ["status", "-c", str(config_file), "--drift"], env={"COLUMNS": "80"})
    assert drift.stdout.splitlines()[0].split()[-1] == "DRIFT", drift.stdout
    assert max(len(line) for line in drift.stdout.splitlines()) <= 80
    wide = runner.invoke(app, ["status", "-c", str(config_file), "--wide"], env={"COLUMNS": "80"})
    assert wide.stdout.splitlines()[0].split()[-3:] == ["LAST", "OPERATION", "REASON"]
    piped = runner.invoke(app, ["status", "-c", str(config_file)])
    assert piped.stdout == wide.stdout


def test_plan_lines_are_coloured_on_a_terminal(
    double: StackSetsDouble, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = runner.invoke(app, ["plan", "-c", str(config_file)])
    assert not ANSI.search(plain.stdout)
    monkeypatch.setattr(cli, "use_colour", lambda: True)
    coloured = runner.invoke(app, ["plan", "-c", str(config_file)])
    assert "\x1b[32m  + create stack set loginwatch" in coloured.stdout
    assert ANSI.sub("", coloured.stdout) == plain.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_needs_a_terminal_and_no_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr("sys.stdout", _Terminal())
    assert cli_options.use_colour()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli_options.use_colour()
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert not cli_options.use_colour()


# -- --json ------------------------------------------------------------------------------------------------


def test_validate_json(config_file: Path) -> None:
    result = runner.invoke(app, ["validate", "-c", str(config_file), "--json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["valid"] is True and document["accounts_watched"] == COUNT
    assert document["recipient_policy_groups"] == 3 and document["regions"] == ["us-east-1"]


def test_rollout_and_remove_json(double: StackSetsDouble, config_file: Path) -> None:
    result = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["applied"] is True and document["not_converged"] == {}
    assert [op["status"] for op in document["operations"]] == ["SUCCEEDED"] * 3
    assert {row["account_id"] for row in document["accounts"] if row["in_sync"]} == set(account_ids(COUNT))
    again = json.loads(runner.invoke(app, ["rollout", "-c", str(config_file), "--json"]).stdout)
    assert again["applied"] is False and again["plan"]["has_changes"] is False
    removed = runner.invoke(app, ["remove", "-c", str(config_file), "--yes", "--json"])
    assert removed.exit_code == 0, removed.output
    document = json.loads(removed.stdout)
    assert [step["action"] for step in document["plan"]["steps"]] == ["delete-instances", "delete-stack-set"]
    assert document["applied"] is True


def test_a_failed_rollout_in_json_carries_the_error(double: StackSetsDouble, config_file: Path) -> None:
    bad = account_ids(COUNT)[2]
    double.failing_accounts[bad] = "ResourceLogicalId:NotifierFunction, ResourceStatusReason:quota exceeded"
    result = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes", "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert "quota exceeded" in document["not_converged"][bad]
    assert "account(s) are not as the config says" in document["error"]["message"]


@pytest.mark.parametrize("command", ["validate", "plan", "rollout"])
def test_every_line_fits_80_columns_and_a_pipe_gets_whole_lines(
    double: StackSetsDouble, config_file: Path, command: str
) -> None:
    from loginwatch_org.text import words

    arguments = [command, "-c", str(config_file), *(["--yes"] if command == "rollout" else [])]
    narrow = runner.invoke(app, arguments, env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    # A line may pass 80 only when one word (an address, an ARN) is longer than the room left for it.
    too_long = [line for line in narrow.output.splitlines() if len(line) > 80 and max(map(len, words(line))) < 60]
    assert too_long == [], too_long
    if command != "rollout":  # a rollout's second run has nothing left to do
        piped = runner.invoke(app, arguments)
        assert " ".join(piped.output.split()) == " ".join(narrow.output.split())
        assert max(len(line) for line in piped.output.splitlines()) > 80, "nothing here needed fitting"
