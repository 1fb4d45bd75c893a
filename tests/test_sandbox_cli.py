"""The command line against the sandbox, as a user runs it: every command is its own process.

Each test's sandbox state lives in a temporary directory (``LOGINWATCH_SANDBOX_DIR``), the environment carries no
AWS settings, and every sandbox a test starts is stopped when it ends, even when it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
import yaml

from loginwatch_org.config import load_config
from loginwatch_org.sandbox.control import STATE_DIR_ENV, STATE_FILE
from loginwatch_org.sandbox.identity import code_identity
from loginwatch_org.sandbox.mailbox import MAILBOX_PATH
from tests.conftest import EXAMPLE_CONFIG

SERVER_MODULE = "loginwatch_org.sandbox.server"
COMMAND_TIMEOUT = 180.0
SENDER = "alerts@example.com"
# A sender of another domain: the sandbox verifies it (and its domain identity, in mail mode) and drops the
# old one, so a watch still deployed with the old sender is rejected until the rollout.
MOVED_SENDER = "alerts@example.org"


def moved_sender(config_text: str) -> str:
    """The config with its sender, and the SES identity naming the sender's domain if any, moved to
    ``MOVED_SENDER``'s domain."""
    assert SENDER in config_text
    return config_text.replace(SENDER, MOVED_SENDER).replace("identity/example.com", "identity/example.org")


MANAGEMENT = "999900000000"
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def _clean_env(state_dir: Path, temp_dir: Path) -> dict[str, str]:
    """This process's environment without any AWS setting or proxy, pointed at the test's own directories."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name.lower() not in _PROXY_VARIABLES and name != STATE_DIR_ENV
    }
    env.update(
        {
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
            STATE_DIR_ENV: str(state_dir),
            # A private sandbox keeps its state in a temporary directory: this one, so nothing is left elsewhere.
            "TMPDIR": str(temp_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _server_pids(marker: str) -> list[int]:
    """Sandbox server processes whose command line mentions ``marker`` (a test's own directory)."""
    found: list[int] = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if SERVER_MODULE in command and marker in command:
            found.append(int(entry.name))
    return found


@dataclass
class Workspace:
    """A directory holding a test's configs, its sandbox state and its temporary files."""

    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def temp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "loginwatch_org.cli", *args],
            cwd=self.root,
            env=_clean_env(self.state_dir, self.temp_dir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_from(self, folder: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """A command run from ``folder`` (under the workspace) with only the user's own state directory
        (``XDG_STATE_HOME``), as a user who never set ``LOGINWATCH_SANDBOX_DIR`` runs it."""
        cwd = self.root / folder
        cwd.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        env = _clean_env(self.state_dir, self.temp_dir)
        del env[STATE_DIR_ENV]
        env.update(XDG_STATE_HOME=str(self.root / "xdg-state"), HOME=str(self.root / "home"))
        return subprocess.run(
            [sys.executable, "-m", "loginwatch_org.cli", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def config(self, name: str = "accounts.yaml", text: str | None = None) -> Path:
        """A config file in the workspace: a copy of the example config, or ``text``."""
        path = self.root / name
        if text is None:
            shutil.copyfile(EXAMPLE_CONFIG, path)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def up(self, config: Path) -> dict[str, Any]:
        """``sandbox up``; the state file it wrote."""
        result = self.run("sandbox", "up", "-c", str(config))
        assert result.returncode == 0, result.stderr
        assert "Sandbox started at http://127.0.0.1:" in result.stdout
        state: dict[str, Any] = json.loads(self.state_file.read_text(encoding="utf-8"))
        return state

    def stop_everything(self) -> None:
        """``sandbox down``, then kill whatever sandbox of this workspace still runs."""
        if self.state_file.exists():
            with suppress(subprocess.TimeoutExpired):
                self.run("sandbox", "down", timeout=60)
        pids = set(_server_pids(str(self.root)))
        with suppress(OSError, ValueError, KeyError):
            pids.add(int(json.loads(self.state_file.read_text(encoding="utf-8"))["pid"]))
        for pid in pids:
            # Only a process that is one of this workspace's sandboxes, never a reused pid.
            if pid in _server_pids(str(self.root)):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextmanager
def _workspace(root: Path) -> Iterator[Workspace]:
    root.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(root)
    try:
        yield workspace
    finally:
        workspace.stop_everything()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with _workspace(tmp_path / "ws") as created:
        yield created


@dataclass
class Example:
    """The example config rolled out into a sandbox shared by the tests that only read it or restore it."""

    workspace: Workspace
    config: Path
    rollout: subprocess.CompletedProcess[str]

    def simulate(self, account: str, identity: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.workspace.run(
            "simulate-login", account, "--identity", identity, "--sandbox", "-c", str(config or self.config)
        )


def sandbox_client(state: dict[str, Any], service: str, credentials: dict[str, str] | None = None) -> Any:
    """A client of the sandbox ``state`` describes, as its management account (or with ``credentials``)."""
    keys = credentials or {
        "aws_access_key_id": state["credentials"]["aws_access_key_id"],
        "aws_secret_access_key": state["credentials"]["aws_secret_access_key"],
    }
    return boto3.client(service, region_name="us-east-1", endpoint_url=state["endpoint_url"], **keys)


def member_client(state: dict[str, Any], account: str, service: str) -> Any:
    """A client in a member account, through the member role, as the product reaches it."""
    role = f"arn:aws:iam::{account}:role/{state['member_role_name']}"
    assumed = sandbox_client(state, "sts").assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
    return sandbox_client(
        state,
        service,
        {
            "aws_access_key_id": assumed["AccessKeyId"],
            "aws_secret_access_key": assumed["SecretAccessKey"],
            "aws_session_token": assumed["SessionToken"],
        },
    )


@contextmanager
def rolled_out_example(root: Path) -> Iterator[Example]:
    """The example config rolled out into a sandbox of its own under ``root`` (a module's fixture)."""
    with _workspace(root) as shared:
        config = shared.config()
        shared.up(config)
        rollout = shared.run("rollout", "--sandbox", "--yes", "-c", str(config))
        yield Example(shared, config, rollout)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    with rolled_out_example(tmp_path_factory.mktemp("example")) as shared:
        yield shared


@dataclass(frozen=True)
class Email:
    sender: str
    to: list[str]
    subject: str
    body: str


def _emails(output: str) -> list[Email]:
    """The emails ``simulate-login`` printed."""
    found: list[Email] = []
    for chunk in output.split("Email accepted by SES")[1:]:
        headers: dict[str, str] = {}
        body: list[str] = []
        for line in chunk.splitlines():
            stripped = line.strip()
            for name in ("From", "To", "Subject"):
                if stripped.startswith(f"{name}:") and name not in headers:
                    headers[name] = stripped.removeprefix(f"{name}:").strip()
            if line.startswith("  |"):
                body.append(line.removeprefix("  |").removeprefix(" "))
        found.append(Email(headers["From"], headers["To"].split(", "), headers["Subject"], "\n".join(body)))
    return found


def _one_email(result: subprocess.CompletedProcess[str]) -> Email:
    assert result.returncode == 0, result.stderr
    emails = _emails(result.stdout)
    assert len(emails) == 1, result.stdout
    return emails[0]


def _recipients(config: Path, account: str) -> list[str]:
    return next(list(t.recipients) for t in load_config(config).targets() if t.account_id == account)


# --- the shared sandbox holding the example config ---------------------------------------------------------------


def test_rollout_then_sign_ins_email_the_configured_recipients(example: Example) -> None:
    rollout = example.rollout
    assert rollout.returncode == 0, rollout.stderr
    assert "Rollout complete: 8 account(s) current." in rollout.stdout

    root = _one_email(example.simulate("111122223333", "root"))
    assert root.sender == SENDER
    assert root.to == _recipients(example.config, "111122223333")
    assert root.to == ["payments-oncall@example.com", "security@example.com"]
    assert root.subject.startswith("[ROOT]")
    assert "111122223333" in root.subject
    assert "Account:              111122223333 (payments-prod)" in root.body

    sso = _one_email(example.simulate("333344445555", "sso"))
    assert sso.sender == SENDER
    assert sso.to == _recipients(example.config, "333344445555")
    assert not sso.subject.startswith("[ROOT]")
    assert "AdministratorAccess" in sso.subject
    assert "alice@example.com" in sso.subject
    assert "IAM Identity Center user alice@example.com with permission set AdministratorAccess" in sso.body
    assert "333344445555" in sso.body


def test_simulate_login_as_json_gives_the_emails_or_why_none_came(example: Example) -> None:
    def simulate(account: str) -> dict[str, Any]:
        result = example.workspace.run(
            "simulate-login", account, "--identity", "root", "--sandbox", "-c", str(example.config), "--json"
        )
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    mailed = simulate("111122223333")
    assert (mailed["account"], mailed["identity"], mailed["region"]) == ("111122223333", "root", "us-east-1")
    assert mailed["emailed"] is True and mailed["why_no_email"] is None
    (email,) = mailed["emails"]
    assert email["to"] == _recipients(example.config, "111122223333")
    assert email["subject"].startswith("[ROOT]") and "111122223333" in email["text"]

    disabled = simulate("444455556666")
    assert disabled["emailed"] is False and disabled["emails"] == []
    assert disabled["why_no_email"].startswith("no watch is deployed there")


def test_recipient_change_is_planned_rolled_out_and_used(example: Example, tmp_path: Path) -> None:
    account = "121212121212"
    new = ["platform-oncall@example.com", "security-leads@example.com"]
    original = example.config.read_text(encoding="utf-8")
    block = f'  - id: "{account}"\n    name: networking\n'
    assert block in original
    config = tmp_path / "accounts.yaml"
    config.write_text(original.replace(block, block + f"    recipients: [{', '.join(new)}]\n"), encoding="utf-8")
    old = _recipients(example.config, account)
    assert _recipients(config, account) == new
    run = example.workspace.run
    try:
        plan = run("plan", "--sandbox", "--detailed-exitcode", "-c", str(config))
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert f"{account} (networking): recipients changed" in plan.stdout
        assert f"recipients={','.join(old)} alert_on=all" in plan.stdout
        assert f"-> recipients={','.join(new)} alert_on=all" in plan.stdout
        assert "Plan: 1 StackSet operation(s); 7 account(s) unchanged." in plan.stdout

        rollout = run("rollout", "--sandbox", "--yes", "-c", str(config))
        assert rollout.returncode == 0, rollout.stdout + rollout.stderr
        assert "Rollout complete: 8 account(s) current." in rollout.stdout

        email = _one_email(example.simulate(account, "root", config))
        assert email.to == new
        assert not set(old) & set(email.to)

        again = run("plan", "--sandbox", "--detailed-exitcode", "-c", str(config))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "No changes." in again.stdout
    finally:
        # Leave the shared sandbox as the example config has it, whatever happened above.
        restored = run("rollout", "--sandbox", "--yes", "-c", str(example.config))
        assert restored.returncode == 0, restored.stdout + restored.stderr


def test_status_runs_drift_detection_in_the_sandbox(example: Example) -> None:
    result = example.workspace.run("status", "--drift", "--sandbox", "--json", "-c", str(example.config))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [row for row in json.loads(result.stdout) if row["unit"] == "watch"]  # the management account is a row too
    assert len(rows) == 8
    assert {row["drift"] for row in rows} == {"IN_SYNC"}


def test_status_html_writes_the_coverage_page_of_every_account(example: Example, tmp_path: Path) -> None:
    page = tmp_path / "coverage.html"
    result = example.workspace.run("status", "--sandbox", "--html", str(page), "-c", str(example.config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote {page}: 9 account(s)" in result.stderr
    text = page.read_text(encoding="utf-8")
    assert "9 account(s): 9 ok." in text
    # The watch's Region and the 16 forwarder Regions are the columns; every member's forwarders are current.
    assert text.count('<th class="region"') == 17
    assert text.count('<tr data-state="ok">') == 9
    missing = example.workspace.run("status", "--sandbox", "--html", str(tmp_path / "no" / "x.html"),
                                    "-c", str(example.config))  # fmt: skip
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_status_names_a_recipient_the_mail_accounts_ses_would_silently_drop(example: Example) -> None:
    state = json.loads(example.workspace.state_file.read_text(encoding="utf-8"))
    ses = sandbox_client(state, "sesv2")  # the example's mail account (the management account) sends every alert
    ses.put_suppressed_destination(EmailAddress="payments-oncall@example.com", Reason="COMPLAINT")
    try:
        text = example.workspace.run("status", "--sandbox", "-c", str(example.config))
        assert text.returncode == 1, text.stdout + text.stderr
        assert "payments-oncall@example.com (COMPLAINT, in 999988887777/us-east-1)" in " ".join(text.stderr.split())
        assert "delete-suppressed-destination --email-address payments-oncall@example.com" in text.stderr
        assert "recipients on the SES suppression list get no alert" in " ".join(text.stderr.split())

        as_json = example.workspace.run("status", "--sandbox", "--json", "-c", str(example.config))
        assert as_json.returncode == 1
        rows = {row["account_id"]: row for row in json.loads(as_json.stdout) if row["unit"] == "watch"}
        assert rows["111122223333"]["suppressed_recipients"] == {"payments-oncall@example.com": "COMPLAINT"}
        assert {a for a, row in rows.items() if row["suppressed_recipients"]} == {"111122223333", "222233334444"}
    finally:
        ses.delete_suppressed_destination(EmailAddress="payments-oncall@example.com")
    clean = example.workspace.run("status", "--sandbox", "--json", "-c", str(example.config))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert all(row.get("suppressed_recipients", {}) == {} for row in json.loads(clean.stdout))


def test_sender_change_is_followed_and_a_rejected_email_is_explained(example: Example, tmp_path: Path) -> None:
    account, new_sender = "111122223333", MOVED_SENDER
    config = tmp_path / "accounts.yaml"
    config.write_text(moved_sender(example.config.read_text(encoding="utf-8")), encoding="utf-8")
    run = example.workspace.run
    try:
        # The sandbox now verifies the config's sender only; the deployed function still sends as the old one.
        rejected = example.simulate(account, "root", config)
        assert rejected.returncode == 0, rejected.stderr
        assert "Email accepted" not in rejected.stdout
        assert "No email was sent: the notifier failed:" in rejected.stdout
        assert "MessageRejected" in rejected.stdout and SENDER in rejected.stdout
        assert "alert policy" not in rejected.stdout

        rollout = run("rollout", "--sandbox", "--yes", "-c", str(config))
        assert rollout.returncode == 0, rollout.stdout + rollout.stderr
        assert _one_email(example.simulate(account, "root", config)).sender == new_sender
    finally:
        restored = run("rollout", "--sandbox", "--yes", "-c", str(example.config))
        assert restored.returncode == 0, restored.stdout + restored.stderr
    assert _one_email(example.simulate(account, "root")).sender == SENDER


def test_a_sign_in_recorded_in_us_east_2_reaches_the_watch_by_its_forwarder(example: Example) -> None:
    # The rollout deployed the forwarders stack set: a forwarder in every region of forward_from (all: the 16
    # default regions besides us-east-1), for every watched account.
    assert example.rollout.returncode == 0, example.rollout.stderr
    account = "555566667777"  # alert policy: all
    command = ("simulate-login", account, "--identity", "iam-user", "--sandbox", "-c", str(example.config))
    forwarded = example.workspace.run(*command, "--region", "us-east-2")
    assert f"console sign-in to {account} (shared-services), recorded in us-east-2." in forwarded.stdout
    email = _one_email(forwarded)
    assert email.to == _recipients(example.config, account)
    assert "us-east-2, forwarded to the watch in us-east-1" in email.body

    # An opt-in region the config does not list has no forwarder: the sign-in never reaches the watch.
    unlisted = example.workspace.run(*command, "--region", "me-central-1")
    assert unlisted.returncode == 0, unlisted.stderr
    assert "Email accepted" not in unlisted.stdout
    assert (
        "No email was sent: me-central-1 is not in stack_set.forward_from, so no forwarder carried it to the watch "
        "in us-east-1" in unlisted.stdout
    )


def test_a_root_sign_in_to_the_management_account_is_mailed_by_its_own_watch(example: Example) -> None:
    # Service-managed stack sets never reach the management account: the rollout deployed its watch there as
    # a plain stack, with the management account's own recipients and policy.
    assert example.rollout.returncode == 0, example.rollout.stderr
    config = load_config(example.config)
    management = config.management_watch()
    assert management is not None
    email = _one_email(example.simulate(management.account_id, "root"))
    assert email.subject.startswith("[ROOT]")
    assert management.account_id in email.subject
    assert email.to == list(management.recipients)


@pytest.mark.parametrize(
    ("account", "policy", "ignored", "alerted", "flag"),
    [
        ("666677778888", "root-only", "iam-user", "root", "[ROOT]"),
        ("888899990000", "failures-only", "root", "failed", "[FAILED]"),
        ("777788889999", "no-mfa", "iam-user", "root", "[ROOT]"),
        ("777788889999", "no-mfa", "failed", "root", "[ROOT]"),  # a failed sign-in got nobody in
    ],
)
def test_alert_policy_decides_which_sign_ins_email(
    example: Example, account: str, policy: str, ignored: str, alerted: str, flag: str
) -> None:
    quiet = example.simulate(account, ignored)
    assert quiet.returncode == 0, quiet.stderr
    assert "Email accepted" not in quiet.stdout
    assert f"No email was sent: its alert policy is '{policy}'." in quiet.stdout

    email = _one_email(example.simulate(account, alerted))
    assert email.subject.startswith(flag)
    assert email.to == _recipients(example.config, account)


def test_simulate_login_refuses_what_it_cannot_simulate(example: Example, workspace: Workspace) -> None:
    no_flag = workspace.run("simulate-login", "111122223333", "-c", str(workspace.config()))
    assert no_flag.returncode == 2
    assert "only runs in the sandbox (pass --sandbox)" in no_flag.stderr
    assert not workspace.state_file.exists()

    stranger = example.simulate("123456789012", "root")
    assert stranger.returncode == 2
    assert "account 123456789012 is not in the sandbox's organisation" in stranger.stderr

    identity = example.simulate("111122223333", "admin")
    assert identity.returncode == 2
    assert "'admin' is not one of 'root', 'iam-user', 'sso', 'failed'" in identity.stderr

    disabled = example.simulate("444455556666", "root")
    assert disabled.returncode == 0, disabled.stderr
    assert "Email accepted" not in disabled.stdout
    assert "No email was sent: no watch is deployed there" in disabled.stdout


# --- an organisation of 22 accounts, for each permission model ---------------------------------------------------

ACCOUNTS = [f"{100000000000 + index:012d}" for index in range(22)]


def _org_config(model: str, recipients: dict[str, list[str]] | None = None, drop: str | None = None) -> str:
    # One forward region: forwarders are rolled out like the watch, and 22 accounts x 16 regions of stacks in the
    # emulator would only make this test slower (the example config's tests forward from all 16).
    stack_set: dict[str, Any] = {
        "name": "loginwatch",
        "permission_model": model,
        "regions": ["us-east-1"],
        "forward_from": ["us-east-2"],
    }
    if drop is not None:
        # With the default (defaults), an account dropped from the config but still in the organisation is
        # watched with the default recipients; report leaves it to --prune.
        stack_set["new_accounts"] = "report"
    if model == "service-managed":
        stack_set["organizational_units"] = ["r-ab12"]
    accounts = [
        {
            "id": account,
            "name": f"account-{index}",
            "recipients": (recipients or {}).get(account, [f"team-{index % 3}@example.com"]),
        }
        for index, account in enumerate(ACCOUNTS)
        if account != drop
    ]
    data = {
        "stack_set": stack_set,
        "delivery": {"sender": SENDER},
        "defaults": {"recipients": ["security@example.com"], "alert_on": "all"},
        "management_account": {"id": MANAGEMENT, "name": "management"},
        "accounts": accounts,
    }
    return yaml.safe_dump(data, sort_keys=False)


def _status(workspace: Workspace, config: Path, exit_code: int = 0) -> list[dict[str, Any]]:
    result = workspace.run("status", "--sandbox", "--json", "-c", str(config))
    assert result.returncode == exit_code, result.stderr
    # The member watches' rows (the management account is a row of its own).
    rows: list[dict[str, Any]] = [row for row in json.loads(result.stdout) if row["unit"] == "watch"]
    return rows


def _operations(state: dict[str, Any]) -> list[str]:
    """The stack set's operations, read from the sandbox as the management account: every StackSet write
    starts one, so an unchanged list means no write."""
    cloudformation = boto3.client(
        "cloudformation",
        region_name="us-east-1",
        endpoint_url=state["endpoint_url"],
        aws_access_key_id=state["credentials"]["aws_access_key_id"],
        aws_secret_access_key=state["credentials"]["aws_secret_access_key"],
    )
    summaries = cloudformation.list_stack_set_operations(StackSetName="loginwatch")["Summaries"]
    return sorted(op["OperationId"] for op in summaries)


@pytest.mark.parametrize("model", ["service-managed", "self-managed"])
def test_organisation_of_22_accounts(workspace: Workspace, model: str) -> None:
    config = workspace.config(text=_org_config(model))
    state = workspace.up(config)
    assert len(state["accounts"]) == 23
    assert state["management_account"] == MANAGEMENT
    run = workspace.run

    first = run("rollout", "--sandbox", "--yes", "-c", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Rollout complete: 22 account(s) current." in first.stdout

    operations = _operations(state)
    second = run("rollout", "--sandbox", "--yes", "-c", str(config))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "No changes." in second.stdout
    assert _operations(state) == operations, "a converged rollout wrote nothing"
    assert "Rollout complete" not in second.stdout
    rows = _status(workspace, config)
    assert sorted(row["account_id"] for row in rows) == ACCOUNTS
    assert all(row["in_sync"] for row in rows), rows

    changed = {ACCOUNTS[4]: ["moved@example.com"], ACCOUNTS[5]: ["moved@example.com", "team-0@example.com"]}
    edited = workspace.config("changed.yaml", _org_config(model, recipients=changed))
    plan = run("plan", "--sandbox", "--json", "-c", str(edited))
    assert plan.returncode == 0, plan.stderr
    steps = json.loads(plan.stdout)["steps"]
    assert steps
    assert {step["action"] for step in steps} == {"update-instances"}
    assert sorted(account for step in steps for account in step["accounts"]) == sorted(changed)
    assert {change["account_id"] for step in steps for change in step["changes"]} == set(changed)
    applied = run("rollout", "--sandbox", "--yes", "-c", str(edited))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert len(_operations(state)) == len(operations) + len(steps)
    deployed_now = {row["account_id"]: row["recipients_deployed"] for row in _status(workspace, edited)}
    for account in ACCOUNTS:
        expected = (
            ",".join(changed[account]) if account in changed else f"team-{ACCOUNTS.index(account) % 3}@example.com"
        )
        assert deployed_now[account] == expected, account
    assert run("rollout", "--sandbox", "--yes", "-c", str(config)).returncode == 0  # back to the first config

    removed = ACCOUNTS[21]
    pruned = workspace.config("pruned.yaml", _org_config(model, drop=removed))
    before = {row["account_id"]: row for row in _status(workspace, pruned)}
    assert before[removed]["status"] == "CURRENT"
    assert before[removed]["recipients_config"] is None
    prune_plan = run("plan", "--sandbox", "--json", "--prune", "-c", str(pruned))
    assert prune_plan.returncode == 0, prune_plan.stderr
    prune_steps = json.loads(prune_plan.stdout)["steps"]
    assert [(step["action"], step["accounts"]) for step in prune_steps] == [("delete-instances", [removed])]

    prune = run("rollout", "--sandbox", "--yes", "--prune", "-c", str(pruned))
    assert prune.returncode == 0, prune.stdout + prune.stderr
    assert "Rollout complete: 21 account(s) current." in prune.stdout
    # Still in the organisation and no longer watched: status names it UNWATCHED and fails.
    after = _status(workspace, pruned, exit_code=1)
    assert [row["status"] for row in after if row["account_id"] == removed] == ["UNWATCHED"]
    after = [row for row in after if row["account_id"] != removed]
    assert sorted(row["account_id"] for row in after) == [a for a in ACCOUNTS if a != removed]
    assert all(row["in_sync"] and row["status"] == "CURRENT" for row in after), after
    # The remaining instances were not touched: their deployed recipients are what the first rollout set.
    deployed = {row["account_id"]: row["recipients_deployed"] for row in after}
    assert deployed[ACCOUNTS[4]] == "team-1@example.com"
    assert deployed[ACCOUNTS[20]] == "team-2@example.com"


# --- starting and stopping -------------------------------------------------------------------------------------


def _listening_addresses(port: int) -> list[str] | None:
    """Local addresses (as the kernel writes them) listening on TCP ``port``; None where /proc/net is missing."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return None
    found: list[str] = []
    for table in tables:
        with suppress(OSError):
            for line in table.read_text(encoding="ascii").splitlines()[1:]:
                fields = line.split()
                address, port_hex = fields[1].rsplit(":", 1)
                if fields[3] == "0A" and int(port_hex, 16) == port:
                    found.append(address)
    return found


def test_sandboxes_bind_127_0_0_1_on_a_free_port(tmp_path: Path) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(_workspace(tmp_path / "first"))
        second = stack.enter_context(_workspace(tmp_path / "second"))
        states = [first.up(first.config()), second.up(second.config())]

        ports = []
        for workspace, state in zip([first, second], states, strict=True):
            endpoint = urlparse(state["endpoint_url"])
            assert endpoint.hostname == "127.0.0.1"
            assert endpoint.port == state["port"]
            ports.append(state["port"])
            status = workspace.run("sandbox", "status")
            assert status.returncode == 0, status.stdout
            assert f"Sandbox running at {state['endpoint_url']} (pid {state['pid']})" in status.stdout
            with urllib.request.urlopen(state["endpoint_url"] + MAILBOX_PATH, timeout=10) as response:
                assert json.loads(response.read())["messages"] == []
            addresses = _listening_addresses(state["port"])
            if addresses is not None:
                assert addresses == ["0100007F"]  # 127.0.0.1 only: not 0.0.0.0, not IPv6
        assert ports[0] != ports[1]
        assert not {4566, 5000} & set(ports)

        for workspace, state in zip([first, second], states, strict=True):
            down = workspace.run("sandbox", "down")
            assert down.returncode == 0, down.stderr
            assert f"Sandbox at {state['endpoint_url']} stopped." in down.stdout
            assert not workspace.state_file.exists()
            assert _server_pids(str(workspace.root)) == []
            status = workspace.run("sandbox", "status")
            assert status.returncode == 1
            assert "No sandbox is running" in status.stdout


def test_sandbox_flag_starts_a_private_sandbox_for_one_command(workspace: Workspace) -> None:
    config = workspace.config()
    assert not workspace.state_dir.exists()

    plan = workspace.run("plan", "--sandbox", "--detailed-exitcode", "-c", str(config))
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "starting a private sandbox" in plan.stderr
    assert "vanish when the command ends" in plan.stderr
    assert "create stack set loginwatch" in plan.stdout

    assert not workspace.state_file.exists()
    assert _server_pids(str(workspace.root)) == []
    assert list(workspace.temp_dir.iterdir()) == []  # the private sandbox's directory is gone too
    status = workspace.run("sandbox", "status")
    assert status.returncode == 1
    assert "No sandbox is running" in status.stdout


def test_before_any_rollout_simulate_login_says_there_is_no_watch_and_what_to_run(workspace: Workspace) -> None:
    config = workspace.config()
    workspace.up(config)
    signed_in = workspace.run("simulate-login", "111122223333", "--identity", "root", "--sandbox", "-c", str(config))
    assert signed_in.returncode == 0, signed_in.stderr
    assert (
        "No email was sent: account 111122223333 has no watch deployed yet; run "
        f"loginwatch-org rollout -c {config} --sandbox first." in signed_in.stdout
    )
    # Every next step a message suggests keeps the options that chose this sandbox and this file.
    status = workspace.run("status", "--sandbox", "-c", str(config))
    assert f"loginwatch-org rollout -c {config} --sandbox" in status.stdout + status.stderr
    assert "run: loginwatch-org rollout\n" not in status.stdout + status.stderr


def test_every_folder_sees_the_sandbox_that_sandbox_up_started(workspace: Workspace) -> None:
    config = workspace.config()
    up = workspace.run_from("project", "sandbox", "up", "-c", str(config))
    assert up.returncode == 0, up.stdout + up.stderr
    assert not (workspace.root / "project" / ".loginwatch").exists()

    status = workspace.run_from("elsewhere", "sandbox", "status")
    assert status.returncode == 0, status.stdout
    assert "Sandbox running at http://127.0.0.1:" in status.stdout
    assert str(workspace.root / "xdg-state" / "loginwatch-org") in status.stdout

    plan = workspace.run_from("elsewhere/deeper", "plan", "--sandbox", "-c", str(config))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "private sandbox" not in plan.stderr

    down = workspace.run_from("third", "sandbox", "down")
    assert down.returncode == 0, down.stderr
    assert "stopped." in down.stdout
    assert _server_pids(str(workspace.root)) == []


def test_stale_state_file_is_reported_and_removed(workspace: Workspace) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    workspace.state_dir.mkdir(parents=True)
    state = {
        "endpoint_url": "http://127.0.0.1:9",
        "pid": exited.pid,
        "management_account": "999988887777",
        "credentials": {"aws_access_key_id": "AKIA999988887777SBOX", "aws_secret_access_key": "testing"},
        "member_role_name": "OrganizationAccountAccessRole",
    }
    workspace.state_file.write_text(json.dumps(state), encoding="utf-8")

    status = workspace.run("sandbox", "status")
    assert status.returncode == 1
    assert "No sandbox is running" in status.stdout
    assert not workspace.state_file.exists()


def test_demo_rolls_out_and_shows_one_email(workspace: Workspace) -> None:
    config = workspace.config()
    started = time.monotonic()
    demo = workspace.run("demo", "-c", str(config))
    elapsed = time.monotonic() - started
    print(f"demo wall time: {elapsed:.2f} s")

    assert demo.returncode == 0, demo.stdout + demo.stderr
    # The story in order: prerequisites, rollout, a test alert through every watch, coverage, status, two
    # sign-ins.
    checked, rest = demo.stdout.split("== 2. Rollout of")
    assert "8 of 8 check(s) passed." in checked and "[FAIL]" not in checked
    rolled, rest = rest.split("== 3. A test alert through every watch")
    assert "Rollout complete: 8 account(s) current." in rolled
    table = [line for line in rolled.splitlines() if re.match(r"\d{12}  ", line)]
    assert "IN SYNC" in rolled and len(table) == 8, demo.stdout
    tested, rest = rest.split("== 4. Coverage")
    assert "9 of 9 test alert(s) delivered." in tested  # the 8 members and the management account
    covered, rest = rest.split("== 5. status:")
    statused, rest = rest.split("== 6. A console sign-in")
    assert "status exited 0: every watched account is current and as the config says" in statused
    assert len([line for line in statused.splitlines() if re.match(r"\d{12}  ", line)]) >= 9  # members, management
    assert "The organisation has 9 member account(s) and the management account." in covered
    assert "watched: 8 member account(s)" in covered and "(8 instance(s) CURRENT)" in covered
    assert "not watched: 444455556666 (old-sandbox), enabled: false in the config" in covered
    assert "Every unit matches the config: a rollout now would change nothing." in covered
    first, forwarded = rest.split("== 7. An IAM user's failed sign-in, recorded in us-east-2")
    [email] = _emails(first)
    assert email.to == ["payments-oncall@example.com", "security@example.com"]
    assert email.subject.startswith("[ROOT]")
    assert "recorded in us-east-2." in forwarded
    # The rollout deployed the forwarders: the sign-in recorded in us-east-2 is mailed by the us-east-1 watch.
    [email] = _emails(forwarded)
    assert email.subject.startswith("[FAILED]")
    assert "us-east-2, forwarded to the watch in us-east-1" in email.body

    # The demo's sandbox keeps running: later --sandbox commands see what it rolled out.
    assert "keeps running" in demo.stderr
    assert workspace.state_file.exists()
    status = workspace.run("status", "--sandbox", "--json", "-c", str(config))
    assert status.returncode == 0, status.stdout + status.stderr
    assert "private sandbox" not in status.stderr
    assert len([row for row in json.loads(status.stdout) if row["unit"] == "watch"]) == 8
    down = workspace.run("sandbox", "down")
    assert down.returncode == 0, down.stderr
    assert _server_pids(str(workspace.root)) == []


def test_a_sandbox_running_other_code_is_not_used(workspace: Workspace) -> None:
    config = workspace.config()
    state = workspace.up(config)
    assert state["code"] == code_identity()
    # As another checkout or version of the tool would have left it running.
    workspace.state_file.write_text(json.dumps({**state, "code": "0123456789abcdef"}), encoding="utf-8")

    again = workspace.run("sandbox", "up", "-c", str(config))
    assert again.returncode != 0
    assert f"(pid {state['pid']}) runs other loginwatch-org code" in again.stderr
    assert "loginwatch-org sandbox down" in again.stderr
    # A command that only needs a sandbox gets a private one with this code instead of the stale one.
    status = workspace.run("status", "--sandbox", "-c", str(config))
    assert "the running sandbox runs other loginwatch-org code; starting a private sandbox" in status.stderr
