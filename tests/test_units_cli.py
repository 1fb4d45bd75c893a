"""The commands over every unit: StackSets on the double, the management account's plain stacks and STS on moto
in-process, through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from loginwatch_org.aws import session
from loginwatch_org.cli import app
from tests.doubles.clients import moto_with_bucket_policies
from tests.doubles.s3 import BotoS3Reader
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, config_for, organization

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

runner = CliRunner()
COUNT = 6
MOTO_ACCOUNT = "123456789012"
STACK_SET_CALL = ("stack_set", "stack_instance")


class Account:
    """The caller's account: StackSet calls go to the double, plain-stack calls to moto; writes are recorded."""

    def __init__(self, double: StackSetsDouble) -> None:
        self.double = double
        self.stack_writes: list[tuple[str, str]] = []

    def cloudformation(self, region: str) -> Any:
        account = self
        moto = boto3.client("cloudformation", region_name=region)

        class Both:
            def __getattr__(self, name: str) -> Any:
                if any(part in name for part in STACK_SET_CALL):
                    return getattr(account.double.client(), name)
                if not name.startswith(("describe", "list", "get")):
                    account.stack_writes.append((region, name))
                return getattr(moto, name)

        return Both()


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    with moto_with_bucket_policies():
        caller = Account(StackSetsDouble(organization(COUNT), MANAGEMENT_ACCOUNT, polls_per_state=1))

        def client(target: session.AwsTarget, service: str, progress: Any = None) -> Any:
            if service == "cloudformation":
                return caller.cloudformation(target.region or "us-east-1")
            if service == "sts":
                return boto3.client("sts", region_name="us-east-1")
            if service == "s3":
                return boto3.client("s3", region_name=target.region or "us-east-1")
            return None

        # The watch's body is staged in moto's S3, where the double reads it back as CloudFormation would.
        caller.double.s3 = BotoS3Reader(boto3.client("s3", region_name="us-east-1"))
        monkeypatch.setattr(session, "client", client)
        monkeypatch.setattr("time.sleep", lambda _seconds: None)
        yield caller


def write_config(path: Path, *, management: str | None = MOTO_ACCOUNT) -> Path:
    data = config_for(COUNT, groups=2, stack_set_extra={"forward_from": ["eu-west-1", "us-east-2"]}).model_dump(
        mode="json", exclude_none=True
    )
    if management is None:
        del data["management_account"]
    else:
        data["management_account"]["id"] = management
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "accounts.yaml")


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_plan_counts_every_unit_and_a_converged_rerun_writes_nothing(account: Account, config_file: Path) -> None:
    assert invoke("rollout", "-c", str(config_file), "--yes", "--only", "watch").exit_code == 0
    pending = invoke("plan", "-c", str(config_file), "--detailed-exitcode", "--json")
    assert pending.exit_code == 2, pending.output  # the watch is current; forwarders and management are not
    document = json.loads(pending.stdout)
    assert [(u["unit"], u["has_changes"]) for u in document["units"]] == [
        ("watch", False),
        ("forwarders", True),
        ("management", True),
    ]
    assert document["steps"] == []  # the watch's own plan, where scripts read it

    done = invoke("rollout", "-c", str(config_file), "--yes")
    assert done.exit_code == 0, done.output
    assert "+ create stack loginwatch-watch (us-east-1)" in done.output
    assert f"Rollout complete: {COUNT} account(s) current." in done.output

    account.double.reset_calls()
    account.stack_writes.clear()
    quiet = invoke("rollout", "-c", str(config_file), "--yes")
    assert quiet.exit_code == 0 and "All units: no changes." in quiet.output
    assert invoke("plan", "-c", str(config_file), "--detailed-exitcode").exit_code == 0
    assert account.double.count(kind="write") == 0
    assert account.stack_writes == []

    status = invoke("status", "-c", str(config_file), "--json")
    assert status.exit_code == 0, status.output
    rows = json.loads(status.stdout)
    (management,) = [row for row in rows if row["unit"] == "management"]
    assert (management["account_id"], management["status"], management["in_sync"]) == (MOTO_ACCOUNT, "CURRENT", True)


def test_only_management_touches_no_stack_set(account: Account, config_file: Path) -> None:
    result = invoke("rollout", "-c", str(config_file), "--yes", "--only", "management")
    assert result.exit_code == 0, result.output
    assert account.double.calls == []
    assert ("us-east-1", "create_stack") in account.stack_writes
    assert "stack set" not in result.output.lower()


def test_a_delegated_administrator_is_told_plainly_about_the_management_account(
    account: Account, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "accounts.yaml", management="999900000000")
    result = invoke("rollout", "-c", str(config), "--yes")
    assert result.exit_code == 0, result.output
    assert "management account 999900000000 (management) is not covered by this run" in result.output
    assert "Not covered by these credentials: management." in result.output
    assert account.stack_writes == []
    assert invoke("plan", "-c", str(config), "--detailed-exitcode").exit_code == 0
    status = invoke("status", "-c", str(config))
    assert status.exit_code == 0 and "NOT_COVERED" in status.output


def test_removing_the_management_account_from_the_config_needs_prune(account: Account, config_file: Path) -> None:
    assert invoke("rollout", "-c", str(config_file), "--yes", "--only", "management").exit_code == 0
    without = write_config(config_file, management=None)
    account.stack_writes.clear()
    kept = invoke("rollout", "-c", str(without), "--yes", "--only", "management")
    assert kept.exit_code == 0, kept.output
    assert "rerun with --prune to delete them" in kept.output and account.stack_writes == []
    pruned = invoke("rollout", "-c", str(without), "--yes", "--only", "management", "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert sorted(account.stack_writes) == [
        ("eu-west-1", "delete_stack"),
        ("us-east-1", "delete_stack"),
        ("us-east-2", "delete_stack"),
    ]


def test_remove_takes_every_unit_down(account: Account, config_file: Path) -> None:
    assert invoke("rollout", "-c", str(config_file), "--yes").exit_code == 0
    removed = invoke("remove", "-c", str(config_file), "--yes", "--json")
    assert removed.exit_code == 0, removed.output
    document = json.loads(removed.stdout)
    assert [u["unit"] for u in document["plan"]["units"]] == ["management", "forwarders", "watch"]
    assert [u["unit"] for u in document["units"]] == ["management", "forwarders", "watch"]
    after = {u["unit"]: u for u in json.loads(invoke("plan", "-c", str(config_file), "--json").stdout)["units"]}
    assert after["management"]["unchanged"] == [] and after["forwarders"]["steps"][0]["action"] == "create-stack-set"


def test_only_rejects_an_unknown_unit(account: Account, config_file: Path) -> None:
    result = invoke("plan", "-c", str(config_file), "--only", "everything")
    assert result.exit_code == 2 and "everything" in result.output
    assert account.double.calls == []
