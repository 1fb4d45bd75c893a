"""Coverage through the real command line against the sandbox: an account created in the organisation after the
first rollout is named by plan and status, then watched with the defaults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.test_sandbox_cli import Workspace, _workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with _workspace(tmp_path / "ws") as created:
        yield created


def _organizations(state: dict[str, Any]) -> Any:
    return boto3.client(
        "organizations",
        region_name="us-east-1",
        endpoint_url=state["endpoint_url"],
        aws_access_key_id=state["credentials"]["aws_access_key_id"],
        aws_secret_access_key=state["credentials"]["aws_secret_access_key"],
    )


def test_an_account_created_after_the_rollout_is_unwatched_until_the_next_rollout(workspace: Workspace) -> None:
    config = workspace.config()
    state = workspace.up(config)
    run = workspace.run
    assert run("rollout", "--sandbox", "--yes", "-c", str(config)).returncode == 0

    created = _organizations(state).create_account(Email="vended@example.com", AccountName="vended")
    account = created["CreateAccountStatus"]["AccountId"]

    status = run("status", "--sandbox", "--wide", "-c", str(config))
    assert status.returncode == 1, status.stdout + status.stderr
    [row] = [line for line in status.stdout.splitlines() if line.startswith(account)]
    assert "UNWATCHED" in row
    assert f'- {{id: "{account}", name: "vended"}}' in status.stdout

    plan = run("plan", "--sandbox", "--json", "-c", str(config))
    assert plan.returncode == 0, plan.stderr
    document = json.loads(plan.stdout)
    assert [(s["action"], s["accounts"]) for s in document["steps"]] == [("create-instances", [account])]
    assert any(account in w and "default recipients" in w for w in document["warnings"])

    rollout = run("rollout", "--sandbox", "--yes", "-c", str(config))
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    after = run("status", "--sandbox", "--json", "-c", str(config))
    assert after.returncode == 0, after.stdout + after.stderr
    [watched] = [row for row in json.loads(after.stdout) if row["account_id"] == account]
    assert watched["in_sync"] and watched["recipients_deployed"] == "security@example.com"
