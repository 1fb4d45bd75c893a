"""``doctor`` through the real command line against a sandbox: passing, then failing as prerequisites break."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loginwatch_org.config import load_config
from loginwatch_org.sandbox.behaviour.prerequisites import ORGANIZATION_TRAIL
from tests.conftest import own_ses_example_text
from tests.test_sandbox_cli import Workspace, _workspace, member_client, sandbox_client

MANAGEMENT = "999988887777"  # the example config's management account, which the sandbox uses
MEMBER = "111122223333"
TOPIC = f"arn:aws:sns:us-east-1:{MANAGEMENT}:security-paging"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Workspace]:
    with _workspace(tmp_path / "ws") as workspace:
        yield workspace


def _with_alarm_topic(workspace: Workspace) -> Path:
    # Each account sends with its own SES, and its dead-letter alarm pages TOPIC.
    text = own_ses_example_text()
    sender = "  sender: alerts@example.com"
    assert sender in text
    return workspace.config(text=text.replace(sender, f"{sender}\n  alarm_topic_arn: {TOPIC}", 1))


def _checks(output: str) -> dict[str, str]:
    return {check["check"]: check["status"] for check in json.loads(output)["checks"]}


def test_doctor_passes_then_fails_when_the_trail_or_production_access_is_gone(sandbox: Workspace) -> None:
    config = _with_alarm_topic(sandbox)
    state = sandbox.up(config)
    sns = sandbox_client(state, "sns")
    topic = sns.create_topic(Name="security-paging")["TopicArn"]
    assert topic == TOPIC

    # A topic nobody is subscribed to pages nobody.
    lonely = sandbox.run("doctor", "--sandbox", "-c", str(config))
    assert lonely.returncode == 1, lonely.stdout + lonely.stderr
    assert f"[FAIL] Dead-letter alarm action: {TOPIC} has no confirmed subscription" in lonely.stdout
    assert f"fix: aws sns subscribe --topic-arn {TOPIC}" in lonely.stdout

    queue = sandbox_client(state, "sqs").create_queue(QueueName="paging")["QueueUrl"]
    queue_arn = sandbox_client(state, "sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    passing = sandbox.run("doctor", "--sandbox", "-c", str(config))
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "[FAIL]" not in passing.stdout and "[CANNOT CHECK]" not in passing.stdout
    assert "7 of 7 check(s) passed." in passing.stdout
    as_json = sandbox.run("doctor", "--sandbox", "--json", "-c", str(config))
    assert as_json.returncode == 0, as_json.stderr
    assert set(_checks(as_json.stdout).values()) == {"pass"}

    sandbox_client(state, "cloudtrail").delete_trail(Name=ORGANIZATION_TRAIL)
    no_trail = sandbox.run("doctor", "--sandbox", "-c", str(config))
    assert no_trail.returncode == 1, no_trail.stdout + no_trail.stderr
    assert "[FAIL] CloudTrail trail for sign-in events: us-east-1: no trail" in no_trail.stdout
    assert "fix: from the management account: aws cloudtrail create-trail" in no_trail.stdout
    assert "6 of 7 check(s) passed." in no_trail.stdout

    member_client(state, MEMBER, "sesv2").put_account_details(
        MailType="TRANSACTIONAL",
        WebsiteURL="https://example.com",
        UseCaseDescription="console sign-in alerts",
        ProductionAccessEnabled=False,
    )
    sandboxed = sandbox.run("doctor", "--sandbox", "--json", "-c", str(config))
    assert sandboxed.returncode == 1, sandboxed.stdout + sandboxed.stderr
    checks = {c["check"]: c for c in json.loads(sandboxed.stdout)["checks"]}
    production = checks["SES production access"]
    assert production["status"] == "fail"
    assert f"1 account/Region(s): {MEMBER}/us-east-1" in production["detail"]
    assert "aws sesv2 put-account-details --production-access-enabled" in production["fix"]
    assert checks["CloudTrail trail for sign-in events"]["status"] == "fail"
    assert checks["SES sender identity verified"]["status"] == "pass"
    assert checks["SES recipients not suppressed"]["status"] == "pass"

    # An address on the sending account's suppression list: SES would accept its alerts and drop them.
    member_client(state, MEMBER, "sesv2").put_suppressed_destination(
        EmailAddress="security@example.com", Reason="BOUNCE"
    )
    suppressed = sandbox.run("doctor", "--sandbox", "--json", "-c", str(config))
    check = {c["check"]: c for c in json.loads(suppressed.stdout)["checks"]}["SES recipients not suppressed"]
    assert check["status"] == "fail"
    assert f"security@example.com (BOUNCE, in {MEMBER}/us-east-1)" in check["detail"]
    assert "aws sesv2 delete-suppressed-destination --email-address security@example.com" in check["fix"]


def test_doctor_says_what_it_cannot_read(sandbox: Workspace) -> None:
    config = sandbox.config(text=own_ses_example_text())
    sandbox.up(config)
    # No such role in the members: their SES and Regions cannot be read, and doctor says so rather than guess.
    result = sandbox.run("doctor", "--sandbox", "--member-role", "NoSuchRole", "-c", str(config))
    assert result.returncode == 1
    assert "[CANNOT CHECK] SES production access: " in result.stdout
    assert f"{MEMBER}/us-east-1" in result.stdout
    assert "cannot assume role NoSuchRole (AccessDenied: " in result.stdout
    assert "allow sesv2:GetAccount to the caller" in result.stdout
    assert "[PASS] CloudTrail trail for sign-in events" in result.stdout
    assert "[FAIL] Dead-letter alarm action: delivery.alarm_topic_arn is not set" in result.stdout


def test_doctor_self_managed_with_sending_authorization(sandbox: Workspace) -> None:
    identity_arn = f"arn:aws:ses:us-east-1:{MANAGEMENT}:identity/alerts@example.com"
    text = own_ses_example_text()
    for old, new in [
        ("permission_model: service-managed", "permission_model: self-managed"),
        ("  organizational_units: [r-ab12]", ""),
        ("  sender: alerts@example.com", f"  sender: alerts@example.com\n  ses_identity_arn: {identity_arn}"),
    ]:
        assert old in text
        text = text.replace(old, new, 1)
    config = sandbox.config(text=text)
    state = sandbox.up(config)

    def checks() -> dict[str, dict[str, str]]:
        result = sandbox.run("doctor", "--sandbox", "--json", "-c", str(config))
        assert result.returncode == 1, result.stdout + result.stderr  # the example config sets no alarm topic
        return {c["check"]: c for c in json.loads(result.stdout)["checks"]}

    before = checks()
    assert "StackSets trusted access with Organizations" not in before
    assert before["StackSets administration role"]["status"] == "pass"
    assert before["StackSets execution roles"]["status"] == "pass"
    # Mail is sent through the one identity, so SES is read there, not in each member account.
    assert before["SES production access"]["detail"].endswith(f"in {MANAGEMENT}/us-east-1")
    authorization = before["SES sending authorization"]
    assert authorization["status"] == "fail"
    assert "create-email-identity-policy --email-identity alerts@example.com" in authorization["fix"]

    statement = {"Effect": "Allow", "Principal": "*", "Action": "ses:SendEmail", "Resource": identity_arn}
    sandbox_client(state, "sesv2").create_email_identity_policy(
        EmailIdentity="alerts@example.com",
        PolicyName="organization",
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    member_client(state, MEMBER, "iam").delete_role(RoleName="AWSCloudFormationStackSetExecutionRole")
    after = checks()
    assert after["SES sending authorization"]["status"] == "pass"
    execution = after["StackSets execution roles"]
    assert execution["status"] == "fail"
    assert execution["detail"] == f"role AWSCloudFormationStackSetExecutionRole is missing in 1 account(s): {MEMBER}"


def test_with_the_mail_account_on_the_sandbox_has_what_the_config_names_and_doctor_is_green(
    sandbox: Workspace,
) -> None:
    # The example config's recommended set-up: one mail account sending for all through a domain identity.
    config = sandbox.config()
    assert load_config(config).delivery.mail_account is not None
    sandbox.up(config)
    result = sandbox.run("doctor", "--sandbox", "--json", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    checks = _checks(result.stdout)
    assert set(checks.values()) == {"pass"}, checks
    assert "SES sender identity verified" in checks
