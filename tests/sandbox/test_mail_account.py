"""The sandbox's mail account: every alert leaves through it, and only the organisation may use its role."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from loginwatch_org.aws.staging import TemplateStager
from loginwatch_org.config import Config, load_config
from loginwatch_org.mail_setup import WATCH_ROLE_PATH, mail_role_arn
from loginwatch_org.sandbox.control import Sandbox as Running
from loginwatch_org.sandbox.simulate import simulate_login
from loginwatch_org.templates import build_template, template_body
from loginwatch_org.templates.mail import build_mail_template, mail_parameters
from tests.sandbox.emulator import DEV, ORGANISATION, REGION, SENDER, SHARED, Sandbox

MAIL = SHARED
# moto acts in this account for access keys it does not know: an AWS account outside the organisation.
OUTSIDER = "123456789012"


@pytest.fixture
def organisation() -> dict[str, Any]:
    return {**ORGANISATION, "mail_account": MAIL}


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Config:
    return load_config(
        write_config(
            f"""
            stack_set:
              organizational_units: [r-ab12]
            delivery:
              sender: {SENDER}
              mail_account: "{MAIL}"
              ses_identity_arn: arn:aws:ses:{REGION}:{MAIL}:identity/example.com
            defaults:
              recipients: [security@example.com]
            accounts:
              - id: "{DEV}"
                name: dev
            """
        )
    )


def _watch_sending_through_the_mail_account(config: Config) -> str:
    """The watch as a config with a mail account renders it: the function's role on the path the sending role
    trusts, the role to assume in its environment, its dead-letter alarm forwarded to the mail account's bus."""
    return template_body(build_template(config))


def _deploy(session: boto3.Session, sandbox: Sandbox, name: str, body: str, parameters: dict[str, str]) -> None:
    cloudformation = session.client("cloudformation", endpoint_url=sandbox.endpoint_url)
    account = session.client("sts", endpoint_url=sandbox.endpoint_url).get_caller_identity()["Account"]
    # A body too large to send inline goes through S3, as the rollout sends it.
    stager = TemplateStager(lambda _region: session.client("s3", endpoint_url=sandbox.endpoint_url), account)
    cloudformation.create_stack(
        StackName=name,
        **stager.source(body, REGION),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    status = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    assert status == "CREATE_COMPLETE", status


@pytest.fixture
def deployed(sandbox: Sandbox, config: Config) -> Sandbox:
    organization = sandbox.client(sandbox.management(), "organizations").describe_organization()["Organization"]
    body = template_body(build_mail_template(config))
    _deploy(sandbox.member(MAIL), sandbox, "loginwatch-mail", body, mail_parameters(config, organization["Id"]))
    _deploy(sandbox.member(DEV), sandbox, "loginwatch", _watch_sending_through_the_mail_account(config), {})
    return sandbox


def test_a_member_accounts_sign_in_is_mailed_by_the_mail_account(deployed: Sandbox) -> None:
    outcome = simulate_login(Running.from_state(deployed.state_file), DEV, "root")

    [email] = outcome.emails
    assert email["account"] == MAIL
    assert email["source"] == SENDER
    assert email["to"] == ["security@example.com"]
    assert DEV in (email["subject"] or "")


def test_alerts_are_sent_with_the_mail_accounts_configuration_set(deployed: Sandbox) -> None:
    # Its event destination sends bounces, complaints and rejections to the alarm topic.
    ses = deployed.client(deployed.member(MAIL), "ses")
    [configuration_set] = ses.list_configuration_sets()["ConfigurationSets"]
    assert configuration_set["Name"] == "loginwatch-alerts"
    outcome = simulate_login(Running.from_state(deployed.state_file), DEV, "root")
    [email] = outcome.emails
    assert email["account"] == MAIL


def test_the_sender_is_verified_in_the_mail_account_only(sandbox: Sandbox) -> None:
    def verified(session: boto3.Session) -> list[str]:
        identities = sandbox.client(session, "ses").list_identities()["Identities"]
        return [identity for identity in identities if identity == SENDER]

    assert verified(sandbox.member(MAIL)) == [SENDER]
    assert verified(sandbox.member(DEV)) == []
    assert verified(sandbox.management()) == []


def test_an_account_outside_the_organisation_cannot_assume_the_sending_role(deployed: Sandbox, config: Config) -> None:
    outsider = boto3.Session(aws_access_key_id="AKIAOUTSIDEREXAMPLE1", aws_secret_access_key="x", region_name=REGION)
    iam = outsider.client("iam", endpoint_url=deployed.endpoint_url)
    trust = (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        f'"Principal": {{"AWS": "arn:aws:iam::{OUTSIDER}:root"}}, "Action": "sts:AssumeRole"}}]}}'
    )
    role = iam.create_role(RoleName="watch-NotifierRole-1", Path=WATCH_ROLE_PATH, AssumeRolePolicyDocument=trust)
    sts = outsider.client("sts", endpoint_url=deployed.endpoint_url)
    assert sts.get_caller_identity()["Account"] == OUTSIDER
    granted = sts.assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="NotifierFunction")["Credentials"]
    as_watch = boto3.Session(
        aws_access_key_id=granted["AccessKeyId"],
        aws_secret_access_key=granted["SecretAccessKey"],
        aws_session_token=granted["SessionToken"],
        region_name=REGION,
    ).client("sts", endpoint_url=deployed.endpoint_url)
    mail_role = mail_role_arn(config)
    assert mail_role is not None

    with pytest.raises(ClientError) as refused:
        as_watch.assume_role(RoleArn=mail_role, RoleSessionName="NotifierFunction")

    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert f"arn:aws:iam::{OUTSIDER}:role{WATCH_ROLE_PATH}watch-NotifierRole-1" in str(refused.value)


def test_a_dead_lettered_alert_reaches_the_alarm_recipients_once_they_confirm_and_each_new_one_again(
    deployed: Sandbox,
) -> None:
    member = deployed.member(DEV)
    sqs = deployed.client(member, "sqs")
    cloudwatch = deployed.client(member, "cloudwatch")
    [queue] = [url for url in sqs.list_queues()["QueueUrls"] if "DeadLetterQueue" in url]
    sns = deployed.client(deployed.member(MAIL), "sns")
    [topic] = [t["TopicArn"] for t in sns.list_topics()["Topics"] if "DeadLetterAlarmTopic" in t["TopicArn"]]

    def alarm_emails() -> list[str]:
        return [
            email["text"] or ""
            for email in deployed.mailbox(MAIL)
            if email["source"] == "no-reply@sns.amazonaws.com" and email["subject"] == "AWS Notification Message"
        ]

    def alarm_state_becomes(state: str) -> None:
        deadline = time.monotonic() + 20
        while cloudwatch.describe_alarms()["MetricAlarms"][0]["StateValue"] != state:
            assert time.monotonic() < deadline, f"the dead-letter alarm never went to {state}"
            time.sleep(0.1)

    # SNS asked security@example.com to confirm; until then a dead-lettered alert emails nobody.
    [request] = [e for e in deployed.mailbox(MAIL) if e["subject"] == "AWS Notification - Subscription Confirmation"]
    assert request["to"] == ["security@example.com"]
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    alarm_state_becomes("ALARM")
    assert alarm_emails() == []
    with pytest.raises(ClientError):
        sns.confirm_subscription(TopicArn=topic, Token="not-the-token")

    token = (request["text"] or "").strip().splitlines()[-1]
    sns.confirm_subscription(TopicArn=topic, Token=token)
    alarm_state_becomes("OK")  # nothing more arrived for three periods, although one still waits
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    alarm_state_becomes("ALARM")

    [text] = alarm_emails()
    assert f"could not be delivered in AWS account {DEV} ({REGION})" in text
    assert "[2.0 (" in text  # how many wait
    assert f"loginwatch-org dead-letters {DEV} --replay" in text

    # Not once per episode: the next loss notifies again, with the new count, while the others still wait.
    alarm_state_becomes("OK")
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    alarm_state_becomes("ALARM")
    assert len(alarm_emails()) == 2 and "[3.0 (" in alarm_emails()[1]
    # Two arrivals in a row are one rise: one notification, counting both.
    alarm_state_becomes("OK")
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    alarm_state_becomes("ALARM")
    alarm_state_becomes("OK")
    assert len(alarm_emails()) == 3
    assert "[4.0 (" in alarm_emails()[2] or "[5.0 (" in alarm_emails()[2]
