"""``test-alert`` through the real command line against the sandbox: the email it printed, the evidence when
the chain is broken, and the topic policy that admits only the administrator account."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from loginwatch_org.config import load_config
from tests.test_sandbox_cli import SENDER, Example, Workspace, moved_sender, rolled_out_example

ACCOUNT = "111122223333"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    with rolled_out_example(tmp_path_factory.mktemp("test-alert")) as shared:
        assert shared.rollout.returncode == 0, shared.rollout.stdout + shared.rollout.stderr
        yield shared


def test_test_alert_prints_the_test_email(example: Example) -> None:
    result = example.workspace.run("test-alert", ACCOUNT, "--sandbox", "-c", str(example.config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"^delivered +{ACCOUNT} \(payments-prod\) us-east-1: SES accepted the email", result.stdout, re.M)
    assert (
        f"Subject: [TEST] Test alert for {ACCOUNT} (payments-prod) from the loginwatch administrator" in result.stdout
    )
    assert "nobody signed in" in result.stdout
    assert "Sent by:" in result.stdout and "999988887777" in result.stdout


def test_all_watched_accounts_get_one_each_with_progress(example: Example) -> None:
    result = example.workspace.run("test-alert", "--all", "--json", "--sandbox", "-c", str(example.config))
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    rows = document["test_alerts"]
    assert document["all_succeeded"] is True
    assert sorted(row["account"] for row in rows) == sorted(
        [
            "111122223333",
            "222233334444",
            "333344445555",
            "555566667777",
            "666677778888",
            "777788889999",
            "888899990000",
            "121212121212",
            "999988887777",  # the management account's own watch
        ]
    )
    assert {row["outcome"] for row in rows} == {"delivered"}
    # One SES message per recipient, so a rejected address never blocks the others.
    watches = {watch.account_id: watch for watch in load_config(example.config).targets()}
    management = load_config(example.config).management_watch()
    assert management is not None
    watches[management.account_id] = management
    assert all(len(row["ses_message_ids"]) == len(watches[row["account"]].recipients) for row in rows)
    assert any(len(watches[row["account"]].recipients) > 1 for row in rows)
    assert result.stderr.count("test-alert: ") == len(rows)
    assert f"test-alert: {len(rows)}/{len(rows)} " in result.stderr


def test_the_management_accounts_own_watch_takes_a_test_alert(example: Example) -> None:
    result = example.workspace.run("test-alert", "999988887777", "--sandbox", "-c", str(example.config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^delivered +999988887777 \(org-management\) us-east-1: SES accepted", result.stdout, re.M)
    assert "Subject: [TEST] Test alert for 999988887777 (org-management)" in result.stdout


def test_all_as_text_is_a_line_per_account_and_one_sample_email(example: Example) -> None:
    result = example.workspace.run("test-alert", "--all", "--sandbox", "-c", str(example.config))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert sum(1 for line in lines if line.startswith("delivered ")) == 9
    assert "9 of 9 test alert(s) delivered." in result.stdout
    assert result.stdout.count("Email accepted by SES") == 1  # one sample in full
    others = lines[lines.index("The other emails accepted by SES:") + 1 :]
    assert len(others) == 8 and all("[TEST] Test alert for" in line for line in others)
    assert len(lines) < 60


def test_an_unverified_sender_is_reported_with_the_notifiers_error(example: Example, tmp_path: Path) -> None:
    # The sandbox verifies the config's sender only; the deployed function still sends as the old one.
    config = tmp_path / "accounts.yaml"
    config.write_text(moved_sender(example.config.read_text(encoding="utf-8")), encoding="utf-8")
    result = example.workspace.run("test-alert", ACCOUNT, "--sandbox", "-c", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(rf"^failed +{ACCOUNT} ", result.stdout, re.M)
    assert "MessageRejected" in result.stdout and SENDER in result.stdout
    assert "Email accepted" not in result.stdout
    assert "0 of 1 test alert(s) delivered." in result.stdout


def test_a_topic_that_does_not_admit_the_administrator_refuses_the_test(example: Example) -> None:
    # A watch deployed with AdminAccountId empty (or before test alerts existed) has only the rule's statement.
    state = json.loads(example.workspace.state_file.read_text(encoding="utf-8"))
    management = boto3.Session(
        aws_access_key_id=state["credentials"]["aws_access_key_id"],
        aws_secret_access_key=state["credentials"]["aws_secret_access_key"],
        region_name="us-east-1",
    )
    granted = management.client("sts", endpoint_url=state["endpoint_url"]).assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole", RoleSessionName="test"
    )["Credentials"]
    sns = boto3.client(
        "sns",
        region_name="us-east-1",
        endpoint_url=state["endpoint_url"],
        aws_access_key_id=granted["AccessKeyId"],
        aws_secret_access_key=granted["SecretAccessKey"],
        aws_session_token=granted["SessionToken"],
    )
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:loginwatch-sign-in-alerts"
    deployed = sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"]
    policy = json.loads(deployed)
    assert [s.get("Sid") for s in policy["Statement"]] == ["OnlyTheSignInRulePublishes", "AdministratorSendsTestAlerts"]
    policy["Statement"] = policy["Statement"][:1]
    sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(policy))
    try:
        result = example.workspace.run("test-alert", ACCOUNT, "--sandbox", "-c", str(example.config))
    finally:
        sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=deployed)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(rf"^failed +{ACCOUNT} .*SNS refused the test message: AuthorizationError", result.stdout, re.M)
    assert "AdminAccountId" in result.stdout
    assert example.workspace.run("test-alert", ACCOUNT, "--sandbox", "-c", str(example.config)).returncode == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "name one watched ACCOUNT or pass --all"),
        ((ACCOUNT, "--all"), "name one watched ACCOUNT or pass --all"),
        (("444455556666",), "account '444455556666' is not watched"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    workspace = Workspace(tmp_path)  # refused before any sandbox starts
    result = workspace.run("test-alert", *args, "-c", str(workspace.config()))
    assert result.returncode == 2
    assert says in result.stderr
