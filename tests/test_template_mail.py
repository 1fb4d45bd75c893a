from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern
from troposphere import Ref, Template, cloudwatch

from loginwatch_org.config import Config, load_config
from loginwatch_org.mail_setup import (
    MAIL_ROLE_ENVIRONMENT,
    WATCH_ROLE_PATH,
    alarm_bus_arn,
    alarm_recipients,
    mail_region,
    mail_role_arn,
    sending_setup,
)
from loginwatch_org.templates import REGISTRY, TEMPLATE_BODY_LIMIT, render, template_body
from loginwatch_org.templates.mail import add_alarm_forwarding, build_mail_template, mail_parameters
from tests.conftest import EXAMPLE_CONFIG, ROOT, own_ses_example

MAIL_ACCOUNT = "999988887777"
IDENTITY = f"arn:aws:ses:eu-west-1:{MAIL_ACCOUNT}:identity/example.com"

CONFIG = f"""
stack_set:
  name: loginwatch
  organizational_units: [r-ab12]
delivery:
  sender: alerts@example.com
  mail_account: "{MAIL_ACCOUNT}"
  ses_identity_arn: {IDENTITY}
  alarm_recipients: [oncall@example.com, Security@example.com]
defaults:
  recipients: [security@example.com]
accounts:
  - id: "111122223333"
    name: payments-prod
"""

# A dead-letter alarm's state change as CloudWatch sends it to EventBridge (shape from
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html).
ALARM_ARN = "arn:aws:cloudwatch:us-west-2:111122223333:alarm:StackSet-loginwatch-1-DeadLetterAlarm-ABC"
ALARM_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
    "detail-type": "CloudWatch Alarm State Change",
    "source": "aws.cloudwatch",
    "account": "111122223333",
    "time": "2026-10-02T17:04:40Z",
    "region": "us-west-2",
    "resources": [ALARM_ARN],
    "detail": {
        "alarmName": "StackSet-loginwatch-1-DeadLetterAlarm-ABC",
        "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": "2026-10-02T17:04:40.985+0000"},
        "previousState": {"value": "OK", "reason": "Threshold Crossed", "timestamp": "2026-10-02T17:00:40.985+0000"},
        "configuration": {"description": "A sign-in alert could not be delivered."},
    },
}


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Config:
    return load_config(write_config(CONFIG))


@pytest.fixture
def template(config: Config) -> dict[str, Any]:
    return build_mail_template(config).to_dict()


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _every_policy_statement(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("AssumeRolePolicyDocument", "PolicyDocument"):
            if key in properties:
                yield from _statements(properties[key])
        for policy in properties.get("Policies", []):
            yield from _statements(policy["PolicyDocument"])
        if "Statement" in properties:
            yield from _statements(properties)


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    return bool(EventPattern.load(json.dumps(pattern)).matches_event(event))


def test_sending_role_trusts_only_watch_roles_of_this_organisation(template: dict[str, Any]) -> None:
    [trust] = _statements(template["Resources"]["MailSenderRole"]["Properties"]["AssumeRolePolicyDocument"])
    assert trust["Effect"] == "Allow" and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringEquals"] == {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}
    assert trust["Condition"]["ArnLike"] == {
        "aws:PrincipalArn": {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::*:role{WATCH_ROLE_PATH}*"}
    }
    assert WATCH_ROLE_PATH.startswith("/") and WATCH_ROLE_PATH.endswith("/") and len(WATCH_ROLE_PATH) > 2


def test_no_wildcard_principal_without_the_organisation_condition(template: dict[str, Any]) -> None:
    wildcards = 0
    for statement in _every_policy_statement(template):
        principal = statement.get("Principal")
        if principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*"):
            wildcards += 1
            assert statement["Effect"] == "Allow"
            assert statement["Condition"]["StringEquals"]["aws:PrincipalOrgID"] == {"Ref": "OrganizationId"}, statement
    assert wildcards == 2  # the sending role's trust and the alarm bus


def test_sending_role_may_only_send_as_the_sender_from_the_identity(template: dict[str, Any]) -> None:
    [policy] = template["Resources"]["MailSenderRole"]["Properties"]["Policies"]
    [send] = _statements(policy["PolicyDocument"])
    assert send["Effect"] == "Allow"
    assert sorted(send["Action"]) == ["ses:SendEmail", "ses:SendRawEmail"]
    assert send["Condition"] == {"StringEquals": {"ses:FromAddress": {"Ref": "Sender"}}}
    identity, configuration_set, own_set = send["Resource"]
    assert identity == {"Ref": "SesIdentityArn"}
    assert configuration_set["Fn::If"][0] == "HasConfigurationSet"
    assert "configuration-set/${ConfigurationSetName}" in configuration_set["Fn::If"][1]["Fn::Sub"]
    assert configuration_set["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    # The stack's own configuration set, which every alert is sent with.
    assert own_set == {
        "Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/loginwatch-alerts"
    }
    parameters = template["Parameters"]
    assert parameters["SesIdentityArn"]["Default"] == IDENTITY
    assert parameters["Sender"]["Default"] == "alerts@example.com"
    assert parameters["ConfigurationSetName"]["Default"] == ""


def test_a_configured_configuration_set_is_allowed_too(write_config: Callable[[str], Path]) -> None:
    text = CONFIG.replace("  alarm_recipients:", "  configuration_set: tracking_1\n  alarm_recipients:")
    config = load_config(write_config(text))
    assert build_mail_template(config).to_dict()["Parameters"]["ConfigurationSetName"]["Default"] == "tracking_1"
    assert mail_parameters(config, "o-abcdefghij")["ConfigurationSetName"] == "tracking_1"


def test_every_action_is_named_and_nothing_but_sending_is_granted(template: dict[str, Any]) -> None:
    for statement in _every_policy_statement(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), statement
        assert set(actions) <= {
            "ses:SendEmail",
            "ses:SendRawEmail",
            "sts:AssumeRole",
            "events:PutEvents",
            "sns:Publish",
        }


def test_alarm_bus_rule_emails_every_alarm_recipient_once(template: dict[str, Any], config: Config) -> None:
    resources = template["Resources"]
    rule = resources["DeadLetterAlarmRule"]["Properties"]
    assert rule["EventBusName"] == resources["DeadLetterAlarmBus"]["Properties"]["Name"]
    assert resources["DeadLetterAlarmRule"]["DependsOn"] == ["DeadLetterAlarmBus"]
    assert _matches(rule["EventPattern"], ALARM_EVENT)
    recovered = {**ALARM_EVENT, "detail": {**ALARM_EVENT["detail"], "state": {"value": "OK"}}}
    assert not _matches(rule["EventPattern"], recovered)
    forged = {**ALARM_EVENT, "source": "my.app"}
    assert not _matches(rule["EventPattern"], forged)
    [target] = rule["Targets"]
    assert target["Arn"] == {"Ref": "DeadLetterAlarmTopic"}
    for path in target["InputTransformer"]["InputPathsMap"].values():
        value: Any = ALARM_EVENT
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        assert isinstance(value, str) and value
    publish, _ses_reports = _statements(resources["DeadLetterAlarmTopicPolicy"]["Properties"]["PolicyDocument"])
    assert publish["Principal"] == {"Service": "events.amazonaws.com"}
    assert publish["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["DeadLetterAlarmRule", "Arn"]}}}
    subscriptions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"]
    assert sorted(s["Endpoint"] for s in subscriptions) == sorted(alarm_recipients(config))
    assert {s["Protocol"] for s in subscriptions} == {"email"}
    assert all(s["TopicArn"] == {"Ref": "DeadLetterAlarmTopic"} for s in subscriptions)


def test_alarm_recipients_default_to_the_default_recipients(write_config: Callable[[str], Path]) -> None:
    config = load_config(
        write_config(CONFIG.replace("  alarm_recipients: [oncall@example.com, Security@example.com]\n", ""))
    )
    assert alarm_recipients(config) == ("security@example.com",)
    resources = build_mail_template(config).to_dict()["Resources"]
    assert [r["Properties"]["Endpoint"] for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"] == [
        "security@example.com"
    ]


def test_a_recipient_keeps_its_subscription_when_others_change(
    template: dict[str, Any], write_config: Callable[[str], Path]
) -> None:
    fewer = load_config(
        write_config(CONFIG.replace("[oncall@example.com, Security@example.com]", "[Security@example.com]"))
    )
    kept = {
        k for k, r in template["Resources"].items() if r.get("Properties", {}).get("Endpoint") == "Security@example.com"
    }
    assert kept and kept <= set(build_mail_template(fewer).to_dict()["Resources"])


def test_names_every_watch_needs_are_derived_from_the_config(config: Config) -> None:
    assert mail_role_arn(config) == f"arn:aws:iam::{MAIL_ACCOUNT}:role/loginwatch-mail-sender"
    assert alarm_bus_arn(config) == f"arn:aws:events:eu-west-1:{MAIL_ACCOUNT}:event-bus/loginwatch-dead-letter-alarms"
    assert mail_region(config) == "eu-west-1"
    template = build_mail_template(config).to_dict()
    assert template["Resources"]["MailSenderRole"]["Properties"]["RoleName"] == mail_role_arn(config).rsplit("/", 1)[1]
    assert template["Resources"]["DeadLetterAlarmBus"]["Properties"]["Name"] == alarm_bus_arn(config).rsplit("/", 1)[1]


def test_without_a_mail_account_there_is_nothing_to_assume() -> None:
    config = own_ses_example()
    assert mail_role_arn(config) is None and alarm_bus_arn(config) is None and mail_region(config) is None


def test_the_notifier_reads_the_variable_the_watch_sets() -> None:
    source = (ROOT / "loginwatch_org" / "notifier.py").read_text(encoding="utf-8")
    assert f'os.environ.get("{MAIL_ROLE_ENVIRONMENT}"' in source


def test_mail_template_is_registered_and_its_export_is_current() -> None:
    spec = REGISTRY["mail"]
    committed = (ROOT / spec.path()).read_text(encoding="utf-8")
    assert committed == render(spec.build(load_config(EXAMPLE_CONFIG))), (
        "templates/mail.yaml is stale: regenerate it from config/accounts.yaml"
    )


def test_body_fits_the_template_limit(config: Config) -> None:
    assert len(template_body(build_mail_template(config)).encode("utf-8")) <= TEMPLATE_BODY_LIMIT


def _lint(tmp_path: Path, template: Template, fmt: str) -> None:
    path = tmp_path / f"template.{fmt}"
    path.write_text(render(template, fmt), encoding="utf-8")  # type: ignore[arg-type]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_cfn_lint_finds_nothing(tmp_path: Path, config: Config, fmt: str) -> None:
    _lint(tmp_path, build_mail_template(config), fmt)


def _member_template() -> Template:
    template = Template()
    template.set_version("2010-09-09")
    template.add_resource(
        cloudwatch.Alarm(
            "DeadLetterAlarm",
            Namespace="AWS/SQS",
            MetricName="ApproximateNumberOfMessagesVisible",
            Statistic="Maximum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    )
    add_alarm_forwarding(template, "DeadLetterAlarm", "arn:aws:events:us-east-1:999988887777:event-bus/lw-alarms")
    return template


def test_member_side_forwarding_lints_and_forwards_only_its_own_alarm(tmp_path: Path) -> None:
    template = _member_template()
    _lint(tmp_path, template, "yaml")
    resources = template.to_dict()["Resources"]
    rule = resources["DeadLetterAlarmForwarding"]["Properties"]
    pattern = json.loads(
        json.dumps(rule["EventPattern"]).replace(
            json.dumps({"Fn::GetAtt": ["DeadLetterAlarm", "Arn"]}), json.dumps(ALARM_ARN)
        )
    )
    assert _matches(pattern, ALARM_EVENT)
    assert not _matches(pattern, {**ALARM_EVENT, "resources": [ALARM_ARN.replace("DeadLetterAlarm", "CpuAlarm")]})
    [target] = rule["Targets"]
    assert target["RoleArn"] == {"Fn::GetAtt": ["DeadLetterAlarmForwarderRole", "Arn"]}
    [policy] = resources["DeadLetterAlarmForwarderRole"]["Properties"]["Policies"]
    [put] = _statements(policy["PolicyDocument"])
    assert put["Action"] == "events:PutEvents" and put["Resource"] == target["Arn"]


def test_member_side_forwarding_follows_a_condition() -> None:
    template = _member_template()
    conditional = Template()
    conditional.add_condition("HasAlarmBus", {"Fn::Equals": ["a", "a"]})
    add_alarm_forwarding(conditional, Ref("DeadLetterAlarm"), "arn:aws:events:us-east-1:1:event-bus/x", "HasAlarmBus")
    resources = conditional.to_dict()["Resources"]
    assert {r["Condition"] for r in resources.values()} == {"HasAlarmBus"}
    assert all("Condition" not in r for r in template.to_dict()["Resources"].values())


def test_sending_setup_names_the_one_account_that_needs_production_access(config: Config) -> None:
    paragraph = sending_setup(config)
    assert f"mail account {MAIL_ACCOUNT}" in paragraph
    assert IDENTITY in paragraph and "production access for that account in eu-west-1 only" in paragraph
    assert "oncall@example.com" in paragraph and "\n" not in paragraph


def test_sending_setup_without_a_mail_account_says_every_account_needs_it() -> None:
    paragraph = sending_setup(own_ses_example())
    assert "every member account needs it" in paragraph and "delivery.mail_account" in paragraph


def test_bounces_complaints_and_rejections_of_alerts_reach_the_alarm_recipients(
    template: dict[str, Any], config: Config
) -> None:
    resources = template["Resources"]
    assert resources["AlertConfigurationSet"]["Properties"]["Name"] == "loginwatch-alerts"
    destination = resources["AlertDeliveryProblems"]["Properties"]
    assert destination["ConfigurationSetName"] == {"Ref": "AlertConfigurationSet"}
    event_destination = destination["EventDestination"]
    assert event_destination["Enabled"] is True
    assert sorted(event_destination["MatchingEventTypes"]) == ["bounce", "complaint", "reject", "renderingFailure"]
    assert event_destination["SnsDestination"] == {"TopicARN": {"Ref": "DeadLetterAlarmTopic"}}
    # SES may publish to the alarm topic for this configuration set only.
    _alarm_rule, ses_reports = _statements(resources["DeadLetterAlarmTopicPolicy"]["Properties"]["PolicyDocument"])
    assert ses_reports["Principal"] == {"Service": "ses.amazonaws.com"} and ses_reports["Action"] == "sns:Publish"
    assert ses_reports["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"].endswith(
        "configuration-set/loginwatch-alerts"
    )


def test_an_identity_with_its_own_configuration_set_keeps_it(write_config: Callable[[str], Path]) -> None:
    text = CONFIG.replace("  alarm_recipients:", "  configuration_set: tracking_1\n  alarm_recipients:")
    resources = build_mail_template(load_config(write_config(text))).to_dict()["Resources"]
    assert "AlertConfigurationSet" not in resources and "AlertDeliveryProblems" not in resources
