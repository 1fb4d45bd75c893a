"""Sign-ins recorded outside us-east-1 reach the account's watch through a regional forwarder, as on AWS."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loginwatch_org.aws.staging import TemplateStager
from loginwatch_org.config import Config, load_config
from loginwatch_org.sandbox.control import Sandbox as Running
from loginwatch_org.sandbox.simulate import signin_record, simulate_login
from loginwatch_org.templates import REGISTRY, build_template, template_body
from tests.sandbox.emulator import DEV, MANAGEMENT, SENDER, SHARED, Sandbox, forwarder_template

RECORDED_IN = "us-east-2"


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Config:
    return load_config(
        write_config(
            f"""
            management_account:
              id: "{MANAGEMENT}"
            stack_set:
              organizational_units: [r-ab12]
            delivery:
              sender: {SENDER}
            defaults:
              recipients: [security@example.com]
            accounts:
              - id: "{DEV}"
                name: dev
            """
        )
    )


def _deploy(sandbox: Sandbox, account: str, region: str, name: str, body: str) -> None:
    session = sandbox.member(account)
    cloudformation = session.client("cloudformation", region_name=region, endpoint_url=sandbox.endpoint_url)
    # A body too large to send inline goes through S3, as the rollout sends it.
    s3 = session.client("s3", region_name=region, endpoint_url=sandbox.endpoint_url)
    stager = TemplateStager(lambda _region: s3, account)
    cloudformation.create_stack(StackName=name, **stager.source(body, region), Capabilities=["CAPABILITY_IAM"])
    status = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    assert status == "CREATE_COMPLETE", status


def _running(sandbox: Sandbox) -> Running:
    return Running.from_state(sandbox.state_file)


def _capture(sandbox: Sandbox, account: str) -> Callable[[], list[dict[str, Any]]]:
    """Every sign-in event the us-east-1 default bus of ``account`` receives, as a queue target receives it."""
    session = sandbox.member(account)
    sqs_client = session.client("sqs", endpoint_url=sandbox.endpoint_url)
    queue = sqs_client.create_queue(QueueName="captured")["QueueUrl"]
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events_client = session.client("events", endpoint_url=sandbox.endpoint_url)
    events_client.put_rule(Name="capture", EventPattern=json.dumps({"source": ["aws.signin"]}))
    events_client.put_targets(Rule="capture", Targets=[{"Id": "queue", "Arn": queue_arn}])

    def received() -> list[dict[str, Any]]:
        messages = sqs_client.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    return received


def test_a_sign_in_recorded_in_us_east_2_is_mailed_by_the_us_east_1_watch(sandbox: Sandbox, config: Config) -> None:
    _deploy(sandbox, DEV, "us-east-1", "loginwatch", template_body(build_template(config)))
    _deploy(sandbox, DEV, RECORDED_IN, "loginwatch-forwarder", template_body(REGISTRY["forwarder"].build(config)))

    outcome = simulate_login(_running(sandbox), DEV, "iam-user", region=RECORDED_IN)

    [email] = outcome.emails
    assert email["to"] == ["security@example.com"]
    # The event the watch got originated in us-east-2 (not re-stamped by the forwarding), and was forwarded.
    assert f"{RECORDED_IN}, forwarded to the watch in us-east-1" in (email["text"] or "")


def test_the_watch_receives_the_original_event(sandbox: Sandbox, config: Config) -> None:
    _deploy(sandbox, DEV, RECORDED_IN, "loginwatch-forwarder", template_body(REGISTRY["forwarder"].build(config)))
    received = _capture(sandbox, DEV)
    put = sandbox.member(DEV).client("events", region_name=RECORDED_IN, endpoint_url=sandbox.endpoint_url)
    detail = signin_record(DEV, "iam-user", region=RECORDED_IN)
    when = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    entry = {"Time": when, "Source": "aws.signin", "DetailType": "AWS Console Sign In via CloudTrail"}
    [result] = put.put_events(Entries=[{**entry, "Detail": json.dumps(detail), "Resources": ["r-1"]}])["Entries"]

    [event] = received()
    assert event["id"] == result["EventId"]
    assert event["region"] == RECORDED_IN
    assert event["account"] == DEV
    assert event["time"] == "2026-05-04T03:02:01Z"
    assert (event["source"], event["detail-type"]) == ("aws.signin", "AWS Console Sign In via CloudTrail")
    assert event["detail"] == detail
    assert event["resources"] == ["r-1"]


def test_a_role_that_may_not_put_on_the_watch_bus_dead_letters_the_sign_in(sandbox: Sandbox, config: Config) -> None:
    _deploy(sandbox, DEV, "us-east-1", "loginwatch", template_body(build_template(config)))
    elsewhere = "arn:${AWS::Partition}:events:us-west-2:${AWS::AccountId}:event-bus/default"
    _deploy(sandbox, DEV, RECORDED_IN, "loginwatch-forwarder", forwarder_template(bus_allowed=elsewhere))

    outcome = simulate_login(_running(sandbox), DEV, "iam-user", region=RECORDED_IN)

    assert outcome.emails == []
    sqs_client = sandbox.member(DEV).client("sqs", region_name=RECORDED_IN, endpoint_url=sandbox.endpoint_url)
    [queue] = sqs_client.list_queues()["QueueUrls"]
    [message] = sqs_client.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(message["Body"])["region"] == RECORDED_IN
    assert message["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "NO_PERMISSIONS"


def test_an_event_forwarded_once_is_not_forwarded_again(sandbox: Sandbox, config: Config) -> None:
    # us-east-2 forwards to us-east-1, and us-east-1 forwards to us-west-2: EventBridge routes one hop only.
    _deploy(sandbox, DEV, RECORDED_IN, "loginwatch-forwarder", template_body(REGISTRY["forwarder"].build(config)))
    onward = forwarder_template().replace("us-east-1:", "us-west-2:")
    _deploy(sandbox, DEV, "us-east-1", "onward", onward)
    session = sandbox.member(DEV)
    west = session.client("sqs", region_name="us-west-2", endpoint_url=sandbox.endpoint_url)
    queue = west.create_queue(QueueName="captured")["QueueUrl"]
    arn = west.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    west_events = session.client("events", region_name="us-west-2", endpoint_url=sandbox.endpoint_url)
    west_events.put_rule(Name="capture", EventPattern=json.dumps({"source": ["aws.signin"]}))
    west_events.put_targets(Rule="capture", Targets=[{"Id": "queue", "Arn": arn}])

    simulate_login(_running(sandbox), DEV, "iam-user", region=RECORDED_IN)
    assert west.receive_message(QueueUrl=queue).get("Messages", []) == []
    simulate_login(_running(sandbox), DEV, "iam-user", region="us-east-1")
    [message] = west.receive_message(QueueUrl=queue)["Messages"]
    assert json.loads(message["Body"])["region"] == "us-east-1"


def test_the_management_accounts_plain_stack_watch_mails_a_root_sign_in(sandbox: Sandbox, config: Config) -> None:
    _deploy(sandbox, MANAGEMENT, "us-east-1", "loginwatch", template_body(build_template(config)))

    outcome = simulate_login(_running(sandbox), MANAGEMENT, "root")

    [email] = outcome.emails
    assert email["account"] == MANAGEMENT
    assert "root" in (email["subject"] or "").lower()
    # No watch in another account hears it.
    assert simulate_login(_running(sandbox), SHARED, "root").emails == []
