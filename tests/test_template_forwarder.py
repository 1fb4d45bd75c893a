"""The regional forwarder: one template for every account, least privilege, and nothing lost silently."""

from __future__ import annotations

from typing import Any

import pytest

from loginwatch_org.config import Config, load_config
from loginwatch_org.templates import build_forwarder, template_body
from tests.conftest import EXAMPLE_CONFIG, own_ses_example

WATCH_BUS = {"Fn::Sub": "arn:${AWS::Partition}:events:us-east-1:${AWS::AccountId}:event-bus/default"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return build_forwarder(load_config(EXAMPLE_CONFIG)).to_dict()


def test_same_template_for_every_account_whatever_the_config() -> None:
    # No per-account parameter: one stack set operation covers the organisation. The watch's alarm topic is not
    # the forwarder's: its parameter has another name, so the shared value never reaches another region.
    config = own_ses_example()
    other = Config.model_validate(
        {
            **config.model_dump(),
            "delivery": {
                "sender": "other@example.org",
                "alarm_topic_arn": "arn:aws:sns:us-east-1:999988887777:paging",
            },
            "defaults": {"recipients": ["someone@example.org"], "alert_on": "no-mfa"},
        }
    )
    assert template_body(build_forwarder(config)) == template_body(build_forwarder(other))
    parameters = build_forwarder(other).to_dict()["Parameters"]
    assert set(parameters) == {"RegionalAlarmAction"}
    assert parameters["RegionalAlarmAction"]["Default"] == ""


def test_role_may_only_put_events_on_the_watch_bus(template: dict[str, Any]) -> None:
    role = template["Resources"]["ForwarderRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    [policy] = role["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == WATCH_BUS
    assert "ManagedPolicyArns" not in role


def test_rule_targets_the_watch_bus_through_the_role(template: dict[str, Any]) -> None:
    [target] = template["Resources"]["ForwardRule"]["Properties"]["Targets"]
    assert target["Arn"] == WATCH_BUS
    assert target["RoleArn"] == {"Fn::GetAtt": ["ForwarderRole", "Arn"]}


def test_undeliverable_events_wait_in_an_encrypted_queue_with_an_alarm(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    dlq = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    [target] = resources["ForwardRule"]["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": dlq}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    assert resources["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True

    allow, deny = resources["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ForwardRule", "Arn"]}}}
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    alarm = resources["DeadLetterAlarm"]["Properties"]
    visible, waiting, more_waiting = alarm["Metrics"]
    metric = visible["MetricStat"]["Metric"]
    assert (metric["Namespace"], metric["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert metric["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    assert (visible["MetricStat"]["Period"], visible["MetricStat"]["Stat"]) == (60, "Maximum")
    # Each rise of the waiting count alarms again; the value it reports is how many wait.
    assert waiting["Expression"] == "FILL(FILL(visible, REPEAT), 0)"
    assert more_waiting["Expression"] == "IF(DIFF(waiting) > 0, waiting, 0)" and more_waiting["ReturnData"] is True
    assert [q["ReturnData"] for q in alarm["Metrics"]] == [False, False, True]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["TreatMissingData"]) == (3, 1, "notBreaching")
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmAction", [{"Ref": "RegionalAlarmAction"}], {"Ref": "AWS::NoValue"}]
    }
