"""Sandbox bookkeeping without a running emulator: the organisation it is seeded with, its state file, and the
sign-in records it puts on an account's event bus."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loginwatch_org.config import Config, load_config
from loginwatch_org.notifier import Alert, compose_alert
from loginwatch_org.sandbox import control
from loginwatch_org.sandbox.control import (
    DEFAULT_MANAGEMENT_ACCOUNT,
    STATE_DIR_ENV,
    STATE_FILE,
    Sandbox,
    SandboxError,
    organization_spec,
)
from loginwatch_org.sandbox.server import OrganizationSpec
from loginwatch_org.sandbox.simulate import IDENTITIES, signin_record
from tests.conftest import EXAMPLE_CONFIG
from tests.signin_events import eventbridge_envelope

ACCOUNT = "111122223333"
EXAMPLE_ACCOUNTS = [
    "111122223333",
    "222233334444",
    "333344445555",
    "555566667777",
    "121212121212",
    "666677778888",
    "777788889999",
    "888899990000",
    "444455556666",
]


def _config(stack_set: dict[str, Any], accounts: list[str], management: str | None = "999988887777") -> Config:
    data: dict[str, Any] = {
        "stack_set": {"name": "loginwatch", "regions": ["us-east-1", "eu-west-1"], **stack_set},
        "delivery": {"sender": "alerts@example.com"},
        "defaults": {"recipients": ["security@example.com"], "alert_on": "all"},
        "accounts": [{"id": account, "name": f"account-{index}"} for index, account in enumerate(accounts)],
    }
    if management is not None:
        data["management_account"] = {"id": management, "name": "management"}
    return Config.model_validate(data)


# --- organization_spec -------------------------------------------------------------------------------------------


def test_example_config_places_every_account_in_the_root() -> None:
    config = load_config(EXAMPLE_CONFIG)
    spec = organization_spec(config)

    assert spec["root_id"] == "r-ab12"
    assert spec["management_account"] == "999988887777"
    assert spec["organizational_units"] == {}
    # Disabled accounts exist in the organisation too: their instances are deleted, the accounts are not.
    assert spec["accounts_in_root"] == EXAMPLE_ACCOUNTS
    assert "444455556666" in spec["accounts_in_root"]
    assert "999988887777" not in spec["accounts_in_root"]
    assert spec["account_names"]["111122223333"] == "payments-prod"
    assert spec["account_names"]["444455556666"] == "old-sandbox"
    assert spec["sender"] == "alerts@example.com"
    assert spec["regions"] == ["us-east-1"]


def test_spec_of_the_example_config_is_accepted_by_the_server() -> None:
    parsed = OrganizationSpec.from_mapping(organization_spec(load_config(EXAMPLE_CONFIG)))

    assert parsed.root_id == "r-ab12"
    assert parsed.management_account == "999988887777"
    assert parsed.member_accounts == EXAMPLE_ACCOUNTS


def test_accounts_are_spread_over_the_configured_ous() -> None:
    accounts = [f"{100000000000 + index:012d}" for index in range(7)]
    config = _config({"organizational_units": ["ou-ab12-11111111", "ou-ab12-22222222", "ou-cd34-33333333"]}, accounts)
    spec = organization_spec(config)

    # The root comes from the first OU's id; the OU of another root is dropped.
    assert spec["root_id"] == "r-ab12"
    assert set(spec["organizational_units"]) == {"ou-ab12-11111111", "ou-ab12-22222222"}
    assert spec["accounts_in_root"] == []
    placed = [a for members in spec["organizational_units"].values() for a in members]
    assert sorted(placed) == accounts
    sizes = sorted(len(members) for members in spec["organizational_units"].values())
    assert sizes == [3, 4]
    assert spec["regions"] == ["us-east-1", "eu-west-1"]

    parsed = OrganizationSpec.from_mapping(spec)
    assert sorted(parsed.member_accounts) == accounts


def test_root_listed_with_ous_of_another_root() -> None:
    accounts = ["111122223333", "222233334444"]
    config = _config({"organizational_units": ["r-ab12", "ou-zz99-11111111"]}, accounts)
    spec = organization_spec(config)

    assert spec["root_id"] == "r-ab12"
    assert spec["organizational_units"] == {}
    assert spec["accounts_in_root"] == accounts


def test_without_a_management_account_a_default_one_is_used() -> None:
    config = _config({"permission_model": "self-managed"}, ["111122223333"], management=None)
    spec = organization_spec(config)

    assert spec["management_account"] == DEFAULT_MANAGEMENT_ACCOUNT
    assert spec["root_id"] == control.DEFAULT_ROOT
    assert spec["accounts_in_root"] == ["111122223333"]
    OrganizationSpec.from_mapping(spec)


def test_the_mail_account_is_in_the_organisation_and_alone_has_the_sender() -> None:
    config = _config({"organizational_units": ["ou-ab12-11111111"]}, ["111122223333"])
    mail = "777788889999"  # an account of the organisation that no watch is configured for
    config = config.model_copy(
        update={
            "delivery": config.delivery.model_copy(
                update={
                    "mail_account": mail,
                    "ses_identity_arn": f"arn:aws:ses:eu-central-1:{mail}:identity/example.com",
                }
            )
        }
    )
    spec = organization_spec(config)

    assert spec["mail_account"] == mail
    assert spec["accounts_in_root"] == [mail]
    assert spec["regions"] == ["us-east-1", "eu-west-1", "eu-central-1"]  # SES sends from the identity's Region
    parsed = OrganizationSpec.from_mapping(spec)
    assert parsed.sending_accounts == [mail]
    assert OrganizationSpec.from_mapping({**spec, "mail_account": None}).sending_accounts == [
        "999988887777",
        "111122223333",
        mail,
    ]
    with pytest.raises(ValueError, match="mail_account 000011112222 is not an account of the organisation"):
        OrganizationSpec.from_mapping({**spec, "mail_account": "000011112222"})


# --- the state file ----------------------------------------------------------------------------------------------


def _write_state(directory: Path, endpoint_url: str, pid: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE
    document = {
        "endpoint_url": endpoint_url,
        "pid": pid,
        "port": 0,
        "management_account": "999988887777",
        "region": "us-east-1",
        "credentials": {"aws_access_key_id": "AKIA999988887777SBOX", "aws_secret_access_key": "testing"},
        "member_role_name": "OrganizationAccountAccessRole",
        "root_id": "r-ab12",
        "accounts": ["999988887777", ACCOUNT],
        "sender": "alerts@example.com",
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://10.0.0.1:4566",
        "http://localhost:4566",
        "http://0.0.0.0:4566",
        "http://127.0.0.1.example.com:4566",
        "http://127.0.0.1@example.com:4566",
        "http://[::1]:4566",
        "https://cloudformation.us-east-1.amazonaws.com",
    ],
)
def test_state_file_naming_another_host_is_refused(tmp_path: Path, endpoint: str) -> None:
    path = _write_state(tmp_path, endpoint, 12345)
    with pytest.raises(SandboxError, match=r"127\.0\.0\.1"):
        Sandbox.from_state(path)


def test_state_file_on_the_loopback_address_is_read(tmp_path: Path) -> None:
    path = _write_state(tmp_path, "http://127.0.0.1:45678", 12345)
    sandbox = Sandbox.from_state(path)

    assert sandbox.endpoint_url == "http://127.0.0.1:45678"
    assert sandbox.pid == 12345
    assert sandbox.accounts == ("999988887777", ACCOUNT)
    target = sandbox.target()
    assert target.endpoint_url == "http://127.0.0.1:45678"
    assert target.access_key_id == "AKIA999988887777SBOX"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(directory))
    return directory


def _exited_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_state_directory_is_the_users_own_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    seen = set()
    for folder in ("one", "two/deeper"):
        (tmp_path / folder).mkdir(parents=True)
        monkeypatch.chdir(tmp_path / folder)
        seen.add(control.state_dir())
    assert seen == {tmp_path / "state" / "loginwatch-org"}

    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert control.state_dir() == tmp_path / "home" / ".local" / "state" / "loginwatch-org"


def test_no_state_file_means_no_sandbox(state_dir: Path) -> None:
    assert control.state_dir() == state_dir
    assert control.running() is None
    assert control.down() is None


def test_state_file_of_an_exited_process_is_removed(state_dir: Path, listening_port: int) -> None:
    path = _write_state(state_dir, f"http://127.0.0.1:{listening_port}", _exited_pid())

    assert control.running() is None
    assert not path.exists()


def test_state_file_of_a_live_process_without_a_listener_is_removed(state_dir: Path) -> None:
    path = _write_state(state_dir, f"http://127.0.0.1:{_closed_port()}", os.getpid())

    assert control.running() is None
    assert not path.exists()


def test_live_process_with_a_listener_is_running(state_dir: Path, listening_port: int) -> None:
    path = _write_state(state_dir, f"http://127.0.0.1:{listening_port}", os.getpid())
    found = control.running()

    assert found is not None
    assert found.endpoint_url == f"http://127.0.0.1:{listening_port}"
    assert found.state_file == path
    assert path.exists()


# --- the simulated sign-ins --------------------------------------------------------------------------------------


def _alert_for(identity: str) -> tuple[dict[str, Any], Alert]:
    record = signin_record(ACCOUNT, identity)  # type: ignore[arg-type]
    return record, compose_alert(eventbridge_envelope(record), "payments-prod")


def test_every_identity_is_a_console_login_in_the_account() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    for identity in IDENTITIES:
        record = signin_record(ACCOUNT, identity, now=moment)  # type: ignore[arg-type]
        assert record["eventSource"] == "signin.amazonaws.com"
        assert record["eventName"] == "ConsoleLogin"
        assert record["recipientAccountId"] == ACCOUNT
        assert record["userIdentity"]["accountId"] == ACCOUNT
        assert record["eventTime"] == "2024-05-06T07:08:09Z"
        json.dumps(record)
    first, second = (signin_record(ACCOUNT, "root") for _ in range(2))
    assert first["eventID"] != second["eventID"]


def test_root_sign_in_is_flagged_root() -> None:
    record, alert = _alert_for("root")

    assert record["userIdentity"]["type"] == "Root"
    assert alert.subject.startswith("[ROOT]")
    assert "[FAILED]" not in alert.subject
    assert f"{ACCOUNT} (payments-prod)" in alert.subject
    assert "root user of account 111122223333" in alert.text
    assert "Result:               Success" in alert.text


def test_failed_sign_in_is_flagged_failed() -> None:
    record, alert = _alert_for("failed")

    assert record["responseElements"] == {"ConsoleLogin": "Failure"}
    assert alert.subject.startswith("[FAILED]")
    assert "[ROOT]" not in alert.subject
    assert "IAM user alice" in alert.subject
    assert "Failure: Failed authentication" in alert.text


def test_sso_sign_in_names_the_permission_set_and_user() -> None:
    record, alert = _alert_for("sso")

    assert record["userIdentity"]["type"] == "AssumedRole"
    assert not alert.subject.startswith("[")
    assert "alice@example.com" in alert.subject
    assert "AdministratorAccess" in alert.subject
    assert "Permission set:       AdministratorAccess" in alert.text
    assert "IAM Identity Center user alice@example.com" in alert.text
    assert "MFA used:             not recorded" in alert.text


def test_iam_user_sign_in_used_mfa() -> None:
    record, alert = _alert_for("iam-user")

    assert record["userIdentity"]["type"] == "IAMUser"
    assert not alert.subject.startswith("[")
    assert "[NO MFA]" not in alert.subject
    assert "by IAM user alice" in alert.subject
    assert "MFA used:             Yes" in alert.text
    assert "Result:               Success" in alert.text


@pytest.mark.parametrize(
    "state",
    [
        '{"endpoint_url": "http://10.0.0.1:4566", "pid": 1, "management_account": "999988887777",'
        ' "credentials": {"aws_access_key_id": "x", "aws_secret_access_key": "y"}, "member_role_name": "r"}',
        "{broken",
        '{"endpoint_url": "http://127.0.0.1:4566"}',
    ],
)
@pytest.mark.parametrize("command", [["sandbox", "status"], ["sandbox", "down"], ["plan", "--sandbox"]])
def test_an_unusable_state_file_is_reported_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str, command: list[str]
) -> None:
    from typer.testing import CliRunner

    from loginwatch_org.cli import app

    (tmp_path / "sandbox.json").write_text(state)
    monkeypatch.setenv("LOGINWATCH_SANDBOX_DIR", str(tmp_path))
    result = CliRunner().invoke(app, [*command, "--config", str(EXAMPLE_CONFIG)] if command[0] == "plan" else command)
    assert result.exit_code == 1, result.output
    assert "Error:" in result.output and "sandbox" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_demo_checks_the_identity_before_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from loginwatch_org.cli import app

    monkeypatch.setenv("LOGINWATCH_SANDBOX_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["demo", "--identity", "bogus", "--config", str(EXAMPLE_CONFIG)])
    assert result.exit_code == 2
    assert "'bogus' is not one of 'root', 'iam-user', 'sso', 'failed'" in result.output
    assert "Rollout" not in result.output and list(tmp_path.iterdir()) == []


def test_a_missing_emulator_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "moto" else real_find_spec(name))
    with pytest.raises(control.SandboxError, match=r"pip install 'loginwatch-org\[sandbox\]'"):
        control.start(load_config(EXAMPLE_CONFIG), tmp_path, detach=False)
    assert not (tmp_path / "sandbox.json").exists()
