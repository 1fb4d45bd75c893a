"""The watch and its forwarders when one mail account sends for the whole organisation, and what ``validate`` says.

In mail mode the watch function may not send at all: it may only assume the mail account's sending role, its own
role sits on the path that role trusts, and every dead-letter alarm also reaches the mail account's alarm bus.
Without a mail account nothing changes (the committed exports, built from the example config, prove it).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from typer.testing import CliRunner

from loginwatch_org.cli import app
from loginwatch_org.config import Config, load_config
from loginwatch_org.mail_setup import (
    CONFIGURATION_SET_ENVIRONMENT,
    MAIL_ROLE_ENVIRONMENT,
    WATCH_ROLE_PATH,
    alarm_bus_arn,
    alerts_configuration_set,
    mail_role_arn,
    sending_setup,
)
from loginwatch_org.stack_plan import management_stacks
from loginwatch_org.templates import (
    TEMPLATE_BODY_LIMIT,
    TEMPLATE_URL_LIMIT,
    build_forwarder,
    build_template,
    render,
    shared_parameters,
    template_body,
)
from loginwatch_org.templates.mail import build_mail_template
from tests.conftest import EXAMPLE_CONFIG, own_ses_example

MAIL_ACCOUNT = "999988887777"
IDENTITY = f"arn:aws:ses:eu-west-1:{MAIL_ACCOUNT}:identity/example.com"
PAGING = "arn:aws:sns:us-east-1:999988887777:security-paging"

CONFIG = f"""
stack_set:
  name: loginwatch
  organizational_units: [r-ab12]
  regions: [us-east-1]
  forward_from: [eu-west-1, ap-southeast-2]
delivery:
  sender: alerts@example.com
  mail_account: "{MAIL_ACCOUNT}"
  ses_identity_arn: {IDENTITY}
defaults:
  recipients: [security@example.com]
management_account:
  id: "123456789012"
  name: management
accounts:
  - id: "111122223333"
    name: payments-prod
"""

PER_ACCOUNT = """
stack_set:
  name: loginwatch
  organizational_units: [r-ab12]
delivery:
  sender: alerts@example.com
  configuration_set: tracking_1
defaults:
  recipients: [security@example.com]
accounts:
  - id: "111122223333"
    name: payments-prod
"""

runner = CliRunner()


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Config:
    return load_config(write_config(CONFIG))


@pytest.fixture
def watch(config: Config) -> dict[str, Any]:
    return build_template(config).to_dict()


def _policy_statements(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource in template["Resources"].values():
        for policy in resource.get("Properties", {}).get("Policies", []):
            yield from policy["PolicyDocument"]["Statement"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _resolve(value: Any, parameters: dict[str, str]) -> Any:
    """Evaluate Ref, Fn::Join, Fn::Split and Fn::Select as CloudFormation does, for the values given."""
    if isinstance(value, list):
        return [_resolve(item, parameters) for item in value]
    if not isinstance(value, dict):
        return value
    [(function, argument)] = value.items()
    if function == "Ref":
        return parameters[argument]
    delimiter_or_index, operand = _resolve(argument[0], parameters), _resolve(argument[1], parameters)
    if function == "Fn::Join":
        return delimiter_or_index.join(operand)
    if function == "Fn::Split":
        return operand.split(delimiter_or_index)
    assert function == "Fn::Select", function
    return operand[int(delimiter_or_index)]


def _notifier_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    [policy] = template["Resources"]["NotifierRole"]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def test_the_notifier_role_is_on_the_path_the_sending_role_trusts(config: Config, watch: dict[str, Any]) -> None:
    role = watch["Resources"]["NotifierRole"]["Properties"]
    assert role["Path"] == WATCH_ROLE_PATH
    # The role ARN a member's function runs under must match the mail account's trust condition.
    mail = build_mail_template(config).to_dict()
    [trust] = mail["Resources"]["MailSenderRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    pattern = trust["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"].replace("${AWS::Partition}", "aws")
    member_role = f"arn:aws:iam::111122223333:role{role['Path']}StackSet-loginwatch-NotifierRole-ABC"
    assert fnmatch.fnmatchcase(member_role, pattern)
    assert not fnmatch.fnmatchcase("arn:aws:iam::111122223333:role/StackSet-loginwatch-NotifierRole-ABC", pattern)


def test_the_function_sends_through_the_mail_account(config: Config, watch: dict[str, Any]) -> None:
    variables = watch["Resources"]["NotifierFunction"]["Properties"]["Environment"]["Variables"]
    assert variables[MAIL_ROLE_ENVIRONMENT] == {"Ref": "MailRoleArn"}
    assert variables["SOURCE_ARN"] == {"Ref": "SesIdentityArn"}
    # Sent with the mail stack's configuration set, whose bounces and complaints reach the alarm recipients.
    assert variables[CONFIGURATION_SET_ENVIRONMENT] == alerts_configuration_set(config) == "loginwatch-alerts"
    parameters = watch["Parameters"]
    assert parameters["MailRoleArn"]["Default"] == mail_role_arn(config)
    assert parameters["SesIdentityArn"]["Default"] == IDENTITY
    # Shared stack set values, not per-account overrides: the same for every account.
    shared = shared_parameters(config)
    assert shared["MailRoleArn"] == mail_role_arn(config) == f"arn:aws:iam::{MAIL_ACCOUNT}:role/loginwatch-mail-sender"
    assert shared["SesIdentityArn"] == IDENTITY


def test_the_function_may_only_assume_the_mail_role_and_not_send(watch: dict[str, Any]) -> None:
    every_action = [action for statement in _policy_statements(watch) for action in _actions(statement)]
    assert not [action for action in every_action if action.lower().startswith("ses:")]
    assume = [s for s in _notifier_statements(watch) if "sts:AssumeRole" in _actions(s)]
    assert assume == [
        {
            "Sid": "BecomeTheMailAccountSender",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": {"Ref": "MailRoleArn"},
        }
    ]


def test_the_dead_letter_alarm_reaches_the_mail_accounts_bus(config: Config, watch: dict[str, Any]) -> None:
    resources = watch["Resources"]
    rule = resources["DeadLetterAlarmForwarding"]
    assert rule["Condition"] == "HasAlarmBus"
    assert rule["Properties"]["EventPattern"]["resources"] == [{"Fn::GetAtt": ["DeadLetterAlarm", "Arn"]}]
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": "DeadLetterAlarmBusArn"}
    assert watch["Parameters"]["DeadLetterAlarmBusArn"]["Default"] == alarm_bus_arn(config)
    assert shared_parameters(config)["DeadLetterAlarmBusArn"] == alarm_bus_arn(config)
    # The mail stack's bus is the one forwarded to.
    assert alarm_bus_arn(config) == f"arn:aws:events:eu-west-1:{MAIL_ACCOUNT}:event-bus/loginwatch-dead-letter-alarms"
    # alarm_topic_arn still works beside it.
    assert resources["DeadLetterAlarm"]["Properties"]["AlarmActions"]["Fn::If"][0] == "HasAlarmAction"


def test_forwarders_report_to_the_mail_account_too(config: Config) -> None:
    forwarder = build_forwarder(config).to_dict()
    rule = forwarder["Resources"]["DeadLetterAlarmForwarding"]
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Ref": "DeadLetterAlarmBusArn"}
    assert forwarder["Parameters"]["DeadLetterAlarmBusArn"]["Default"] == alarm_bus_arn(config)


def test_the_watch_topic_in_us_east_1_never_reaches_a_forwarder(config: Config) -> None:
    # CloudWatch refuses an alarm action in another region, so a forwarder given the watch's topic fails.
    paging = config.model_copy(update={"delivery": config.delivery.model_copy(update={"alarm_topic_arn": PAGING})})
    stacks = management_stacks(paging)
    forwarders = [stack for stack in stacks if stack.template == "forwarder"]
    assert {stack.region for stack in forwarders} == {"eu-west-1", "ap-southeast-2"}
    for stack in forwarders:
        assert PAGING not in stack.parameters.values()
        assert stack.parameters == {"DeadLetterAlarmBusArn": alarm_bus_arn(config)}
    [watch] = [stack for stack in stacks if stack.template == "watch"]
    assert watch.parameters["DeadLetterAlarmAction"] == PAGING


def test_a_stack_set_gets_exactly_the_parameters_its_template_declares(
    config: Config, write_config: Callable[[str], Path]
) -> None:
    for each in (config, load_config(write_config(PER_ACCOUNT)), load_config(EXAMPLE_CONFIG)):
        assert set(shared_parameters(each)) == set(build_template(each).to_dict()["Parameters"])


def test_per_account_sending_with_a_configuration_set_may_use_it(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(PER_ACCOUNT))
    watch = build_template(config).to_dict()
    [send] = [s for s in _notifier_statements(watch) if s["Action"] == "ses:SendEmail"]
    _, with_arn, own = send["Resource"]["Fn::If"]
    here = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/${ConfigurationSetName}"
    assert own[-1] == {"Fn::Sub": here}
    assert with_arn[0] == {"Ref": "SesIdentityArn"}
    # Sending authorization: the configuration set of the identity's owner, in the identity's Region.
    owner = "arn:aws:ses:eu-west-1:444455556666:identity/example.com"
    values = {"SesIdentityArn": owner, "ConfigurationSetName": "tracking_1"}
    assert _resolve(with_arn[1], values) == "arn:aws:ses:eu-west-1:444455556666:configuration-set/tracking_1"
    assert watch["Parameters"]["ConfigurationSetName"]["Default"] == "tracking_1"
    assert "Path" not in watch["Resources"]["NotifierRole"]["Properties"]
    assert MAIL_ROLE_ENVIRONMENT not in watch["Resources"]["NotifierFunction"]["Properties"]["Environment"]["Variables"]
    assert (
        CONFIGURATION_SET_ENVIRONMENT
        not in watch["Resources"]["NotifierFunction"]["Properties"]["Environment"]["Variables"]
    )


def test_without_a_mail_account_each_account_sends_itself() -> None:
    watch = build_template(own_ses_example()).to_dict()
    assert "Path" not in watch["Resources"]["NotifierRole"]["Properties"]
    assert [s["Action"] for s in _notifier_statements(watch) if "ses:SendEmail" in _actions(s)] == ["ses:SendEmail"]
    assert not [s for s in _notifier_statements(watch) if "sts:AssumeRole" in _actions(s)]
    assert "DeadLetterAlarmForwarding" not in watch["Resources"]
    assert not {"MailRoleArn", "DeadLetterAlarmBusArn"} & set(watch["Parameters"])


@pytest.mark.parametrize(
    ("builder", "regions"),
    [(build_template, ["us-east-1"]), (build_forwarder, ["eu-west-1", "ap-southeast-2"])],
    ids=["watch", "forwarder"],
)
def test_mail_mode_templates_lint_clean(config: Config, builder: Callable[[Config], Any], regions: list[str]) -> None:
    built = builder(config)
    # The watch is staged in S3 when too large to send inline; a forwarder, sent to every Region, never is.
    limit = TEMPLATE_URL_LIMIT if builder is build_template else TEMPLATE_BODY_LIMIT
    assert len(template_body(built).encode("utf-8")) <= limit
    for text in (render(built), template_body(built)):
        matches = lint(text, regions=regions)
        assert matches == [], "\n".join(str(match) for match in matches)


def test_per_account_template_with_a_configuration_set_lints_clean(write_config: Callable[[str], Path]) -> None:
    matches = lint(render(build_template(load_config(write_config(PER_ACCOUNT)))), regions=["us-east-1"])
    assert matches == [], "\n".join(str(match) for match in matches)


# -- validate ------------------------------------------------------------------------------------------------------


def test_validate_explains_the_sending_setup(config: Config, write_config: Callable[[str], Path]) -> None:
    path = write_config(CONFIG)
    result = runner.invoke(app, ["validate", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert f"Sending: {sending_setup(config)}" in result.output
    assert "production access for that account in eu-west-1 only" in result.output
    assert "reach nobody" not in result.output


def test_validate_says_when_undeliverable_alerts_reach_nobody(write_config: Callable[[str], Path]) -> None:
    result = runner.invoke(app, ["validate", "--config", str(write_config(PER_ACCOUNT))])
    assert result.exit_code == 0, result.output
    assert "Note: undeliverable alerts reach nobody" in result.output
    assert "every member account needs it" in result.output
    paging = PER_ACCOUNT.replace("  configuration_set: tracking_1", f"  alarm_topic_arn: {PAGING}")
    quiet = runner.invoke(app, ["validate", "--config", str(write_config(paging, "paging.yaml")), "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert "reach nobody" not in quiet.stdout and '"sending_setup": "Each member account' in quiet.stdout
