"""One account's watch as a CloudFormation template, built with troposphere.

Pure and deterministic: the same config renders to the same bytes, so a digest of the body tells the
planner whether the deployed stack set is current, and ``templates/`` can be reviewed in a diff.

Sign-in event -> EventBridge rule (filtered by the account's alert policy, so ignored sign-ins never run
code) -> SNS topic -> Lambda (``loginwatch_org/notifier.py``, inlined) -> SES. Every hop that can fail
ends in one encrypted dead-letter queue, and an alarm watches that queue.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from troposphere import (
    AWSHelperFn,
    Equals,
    GetAtt,
    If,
    Join,
    Not,
    Output,
    Ref,
    Select,
    Split,
    Sub,
    Template,
    awslambda,
    sns,
)

from loginwatch_org.config import ALERT_POLICIES, Config
from loginwatch_org.templates import blocks, parameters
from loginwatch_org.templates.parameters import ALERT_POLICY_PARAMETER
from loginwatch_org.templates.patterns import event_pattern

TOPIC_ENCRYPTION = (
    "CKV_AWS_26",
    "EventBridge can publish to an encrypted topic only under a customer managed key whose policy admits it "
    "(about 1 USD a month in every account); the messages are sign-in metadata CloudTrail already holds, "
    "carried over TLS and kept no longer than delivery takes.",
)


def notifier_source() -> str:
    """The Lambda's code: the real module file, inlined so the template is the only artefact to review."""
    return resources.files("loginwatch_org").joinpath("notifier.py").read_text(encoding="utf-8")


def _condition_name(policy: str) -> str:
    return "AlertOn" + "".join(part.capitalize() for part in policy.split("-"))


def _pattern_for_parameter() -> AWSHelperFn | dict[str, Any]:
    # Fn::If chain: the deployed rule carries only the pattern of the account's policy.
    policies = list(ALERT_POLICIES)
    chosen: AWSHelperFn | dict[str, Any] = event_pattern(policies[-1])
    for policy in reversed(policies[:-1]):
        chosen = If(_condition_name(policy), event_pattern(policy), chosen)
    return chosen


def build_template(config: Config) -> Template:
    template = Template(
        Description=(
            "loginwatch-org: emails every AWS console and Identity Center sign-in in this account to its owners "
            "(EventBridge -> SNS -> Lambda -> SES, failures to a dead-letter queue)."
        )
    )
    template.set_version("2010-09-09")

    recipients = parameters.add_recipients(template, config.defaults.recipients)
    parameters.add_alert_policy(template, config.defaults.alert_on)
    sender = parameters.add_sender(template, config.delivery.sender)
    ses_identity = parameters.add_ses_identity(template, config.delivery.ses_identity_arn or "")
    alarm_action = parameters.add_alarm_action(
        template,
        config.delivery.alarm_topic_arn or "",
        "Optional SNS topic ARN notified when an alert lands in the dead-letter queue.",
    )

    for policy in ALERT_POLICIES[:-1]:  # the last policy is the Fn::If chain's fallback
        template.add_condition(_condition_name(policy), Equals(Ref(ALERT_POLICY_PARAMETER), policy))
    template.add_condition("UseSesIdentityArn", Not(Equals(Ref(ses_identity), "")))

    dead_letters = blocks.dead_letter_queue(template)
    topic = template.add_resource(
        sns.Topic(
            "AlertTopic",
            Metadata=blocks.checkov_skips(TOPIC_ENCRYPTION),
            DisplayName="loginwatch sign-in alerts",
        )
    )
    rule = blocks.signin_rule(
        template,
        "SignInRule",
        description="Sign-ins in this account, recorded here or forwarded from other regions, filtered by its policy.",
        pattern=_pattern_for_parameter(),
        target_id="alert-topic",
        target_arn=Ref(topic),
        dead_letters=dead_letters,
    )
    template.add_resource(
        sns.TopicPolicy(
            "AlertTopicPolicy",
            Topics=[Ref(topic)],
            PolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    blocks.service_statement(
                        "OnlyTheSignInRulePublishes", "events", "sns:Publish", Ref(topic), GetAtt(rule, "Arn")
                    )
                ],
            },
        )
    )
    blocks.dead_letter_queue_policy(
        template,
        dead_letters,
        [
            blocks.service_statement(
                "UndeliverableEventsFromTheRule",
                "events",
                "sqs:SendMessage",
                GetAtt(dead_letters, "Arn"),
                GetAtt(rule, "Arn"),
            ),
            blocks.service_statement(
                "UndeliverableMessagesFromTheTopic", "sns", "sqs:SendMessage", GetAtt(dead_letters, "Arn"), Ref(topic)
            ),
        ],
    )
    sender_domain = Select(1, Split("@", Ref(sender)))
    identity_arn = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/"
    send_email = blocks.identity_statement(
        "SendFromTheConfiguredIdentityOnly",
        "ses:SendEmail",
        If(
            "UseSesIdentityArn",
            [Ref(ses_identity)],
            [Sub(identity_arn + "${Sender}"), Join("", [Sub(identity_arn), sender_domain])],
        ),
    )
    send_email["Condition"] = {"StringEquals": {"ses:FromAddress": Ref(sender)}}
    function = blocks.notifier(
        template,
        description="Turns a sign-in event into an email and sends it with SES.",
        code=notifier_source(),
        environment={"SENDER": Ref(sender), "RECIPIENTS": Ref(recipients), "SOURCE_ARN": Ref(ses_identity)},
        grants=[
            send_email,
            blocks.identity_statement("ParkFailedAlerts", "sqs:SendMessage", GetAtt(dead_letters, "Arn")),
            # The account alias names the account in the email. IAM offers no resource type for this
            # action, so "*" is the narrowest possible.
            blocks.identity_statement("ReadAccountAlias", "iam:ListAccountAliases", "*"),
        ],
        dead_letters=dead_letters,
        policy_name="send-sign-in-alerts",
    )
    template.add_resource(
        awslambda.Permission(
            "TopicInvokesNotifier",
            Action="lambda:InvokeFunction",
            FunctionName=GetAtt(function, "Arn"),
            Principal="sns.amazonaws.com",
            SourceArn=Ref(topic),
        )
    )
    template.add_resource(
        sns.SubscriptionResource(
            "NotifierSubscription",
            TopicArn=Ref(topic),
            Protocol="lambda",
            Endpoint=GetAtt(function, "Arn"),
            RedrivePolicy={"deadLetterTargetArn": GetAtt(dead_letters, "Arn")},
        )
    )
    blocks.dead_letter_alarm(
        template,
        dead_letters,
        alarm_action,
        "A sign-in alert could not be delivered; it waits in the dead-letter queue.",
    )

    template.add_output(Output("AlertTopicArn", Value=Ref(topic)))
    template.add_output(Output("NotifierFunctionName", Value=Ref(function)))
    template.add_output(Output("DeadLetterQueueUrl", Value=Ref(dead_letters)))
    return template
