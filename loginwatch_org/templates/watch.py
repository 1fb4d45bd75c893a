"""One account's watch as a CloudFormation template, built with troposphere.

Pure and deterministic: the same config renders to the same bytes, so a digest of the body tells the
planner whether the deployed stack set is current, and ``templates/`` can be reviewed in a diff.

Sign-in event -> EventBridge rule (filtered by the account's alert policy, so ignored sign-ins never run
code) -> SNS topic -> Lambda (``loginwatch_org/notifier.py``, inlined) -> SES. Every hop that can fail
ends in one encrypted dead-letter queue, and an alarm watches that queue.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any, Literal

from troposphere import (
    AWSHelperFn,
    Equals,
    GetAtt,
    If,
    Join,
    Not,
    Output,
    Parameter,
    Ref,
    Select,
    Split,
    Sub,
    Template,
    awslambda,
    cloudwatch,
    events,
    iam,
    logs,
    sns,
    sqs,
)

from loginwatch_org.config import ALERT_POLICIES, Config

# CreateStackSet/UpdateStackSet reject a TemplateBody over 51,200 bytes.
TEMPLATE_BODY_LIMIT = 51_200
LAMBDA_RUNTIME = "python3.14"
LOG_RETENTION_DAYS = 90

SIGNIN_DETAIL_TYPE = "AWS Console Sign In via CloudTrail"
# The sign-in events a person would want to hear about. CheckMfa follows every MFA sign-in's ConsoleLogin,
# so only its failures (a wrong or stolen second factor) alert; a success would double every email.
WATCHED_EVENTS: tuple[str, ...] = (
    "ConsoleLogin",
    "SwitchRole",
    "PasswordUpdated",
    "ExternalIdPDirectoryLogin",
)
FAILURE_EVENTS: tuple[str, ...] = (*WATCHED_EVENTS, "CheckMfa")

# Per-account parameters: what a StackSet instance overrides. Everything else is shared by all accounts.
RECIPIENTS_PARAMETER = "Recipients"
ALERT_POLICY_PARAMETER = "AlertOn"
SENDER_PARAMETER = "Sender"
SES_IDENTITY_PARAMETER = "SesIdentityArn"
ALARM_ACTION_PARAMETER = "DeadLetterAlarmAction"

Format = Literal["yaml", "json"]


def event_pattern(policy: str) -> dict[str, Any]:
    """The EventBridge pattern that lets through exactly the sign-ins ``policy`` alerts on."""
    failures: list[dict[str, Any]] = [
        {"eventName": [name], "responseElements": {name: ["Failure"]}} for name in FAILURE_EVENTS
    ]
    root = {"eventName": list(WATCHED_EVENTS), "userIdentity": {"type": ["Root"]}}
    detail: dict[str, Any] = {"eventSource": ["signin.amazonaws.com"]}
    if policy == "all":
        detail["$or"] = [{"eventName": list(WATCHED_EVENTS)}, failures[-1]]
    elif policy == "root-only":
        detail.update(root)
    elif policy == "failures-only":
        detail["$or"] = failures
    elif policy == "root-and-failures":
        detail["$or"] = [root, *failures]
    elif policy == "no-mfa":
        # CloudTrail records MFAUsed only for root and IAM users; federated sign-ins carry no MFA fact.
        # Only successful sign-ins: a failed one got nobody in, whatever MFAUsed says.
        detail.update(
            {
                "eventName": ["ConsoleLogin"],
                "userIdentity": {"type": ["Root", "IAMUser"]},
                "additionalEventData": {"MFAUsed": [{"equals-ignore-case": "no"}]},
                "responseElements": {"ConsoleLogin": ["Success"]},
            }
        )
    else:
        raise ValueError(f"unknown alert policy {policy!r}")
    return {"source": ["aws.signin"], "detail-type": [SIGNIN_DETAIL_TYPE], "detail": detail}


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
            "loginwatch-org: emails every AWS console sign-in in this account to its owners "
            "(EventBridge -> SNS -> Lambda -> SES, failures to a dead-letter queue)."
        )
    )
    template.set_version("2010-09-09")

    recipients = template.add_parameter(
        Parameter(
            RECIPIENTS_PARAMETER,
            Type="String",
            Description="Comma-separated email addresses that receive this account's sign-in alerts.",
            Default=",".join(config.defaults.recipients),
            AllowedPattern=r"^[^,\s@]+@[^,\s@]+(,[^,\s@]+@[^,\s@]+)*$",
            ConstraintDescription="a comma-separated list of email addresses, without spaces",
        )
    )
    template.add_parameter(
        Parameter(
            ALERT_POLICY_PARAMETER,
            Type="String",
            Description="Which sign-ins alert: " + ", ".join(ALERT_POLICIES) + ".",
            Default=config.defaults.alert_on,
            AllowedValues=list(ALERT_POLICIES),
        )
    )
    sender = template.add_parameter(
        Parameter(
            SENDER_PARAMETER,
            Type="String",
            Description="The SES-verified address alerts are sent from.",
            Default=config.delivery.sender,
            AllowedPattern=r"^[^,\s@]+@[^,\s@]+$",
        )
    )
    ses_identity = template.add_parameter(
        Parameter(
            SES_IDENTITY_PARAMETER,
            Type="String",
            Description=(
                "Optional SES identity ARN in another account (sending authorization); "
                "empty to send from an identity in this account."
            ),
            Default=config.delivery.ses_identity_arn or "",
            AllowedPattern=r"^$|^arn:aws[a-z-]*:ses:[a-z0-9-]+:\d{12}:identity/.+$",
        )
    )
    alarm_action = template.add_parameter(
        Parameter(
            ALARM_ACTION_PARAMETER,
            Type="String",
            Description="Optional SNS topic ARN notified when an alert lands in the dead-letter queue.",
            Default=config.delivery.alarm_topic_arn or "",
            AllowedPattern=r"^$|^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$",
        )
    )

    for policy in ALERT_POLICIES[:-1]:  # the last policy is the Fn::If chain's fallback
        template.add_condition(_condition_name(policy), Equals(Ref(ALERT_POLICY_PARAMETER), policy))
    template.add_condition("UseSesIdentityArn", Not(Equals(Ref(ses_identity), "")))
    template.add_condition("HasAlarmAction", Not(Equals(Ref(alarm_action), "")))

    dead_letters = template.add_resource(
        sqs.Queue(
            "DeadLetterQueue",
            SqsManagedSseEnabled=True,
            MessageRetentionPeriod=14 * 24 * 3600,  # the maximum: time to notice and replay
        )
    )
    topic = template.add_resource(sns.Topic("AlertTopic", DisplayName="loginwatch sign-in alerts"))
    rule = template.add_resource(
        events.Rule(
            "SignInRule",
            Description="Console sign-ins in this account, filtered by the account's alert policy.",
            State="ENABLED",
            EventPattern=_pattern_for_parameter(),
            Targets=[
                events.Target(
                    Id="alert-topic",
                    Arn=Ref(topic),
                    DeadLetterConfig=events.DeadLetterConfig(Arn=GetAtt(dead_letters, "Arn")),
                    RetryPolicy=events.RetryPolicy(MaximumRetryAttempts=185, MaximumEventAgeInSeconds=86400),
                )
            ],
        )
    )
    template.add_resource(
        sns.TopicPolicy(
            "AlertTopicPolicy",
            Topics=[Ref(topic)],
            PolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "OnlyTheSignInRulePublishes",
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sns:Publish",
                        "Resource": Ref(topic),
                        "Condition": {"ArnEquals": {"aws:SourceArn": GetAtt(rule, "Arn")}},
                    }
                ],
            },
        )
    )
    template.add_resource(
        sqs.QueuePolicy(
            "DeadLetterQueuePolicy",
            Queues=[Ref(dead_letters)],
            PolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "UndeliverableEventsFromTheRule",
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": GetAtt(dead_letters, "Arn"),
                        "Condition": {"ArnEquals": {"aws:SourceArn": GetAtt(rule, "Arn")}},
                    },
                    {
                        "Sid": "UndeliverableMessagesFromTheTopic",
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": GetAtt(dead_letters, "Arn"),
                        "Condition": {"ArnEquals": {"aws:SourceArn": Ref(topic)}},
                    },
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "sqs:*",
                        "Resource": GetAtt(dead_letters, "Arn"),
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ],
            },
        )
    )
    log_group = template.add_resource(logs.LogGroup("NotifierLogGroup", RetentionInDays=LOG_RETENTION_DAYS))
    sender_domain = Select(1, Split("@", Ref(sender)))
    role = template.add_resource(
        iam.Role(
            "NotifierRole",
            AssumeRolePolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:SourceAccount": Ref("AWS::AccountId")}},
                    }
                ],
            },
            Policies=[
                iam.Policy(
                    PolicyName="send-sign-in-alerts",
                    PolicyDocument={
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "WriteOwnLogs",
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                "Resource": GetAtt(log_group, "Arn"),
                            },
                            {
                                "Sid": "SendFromTheConfiguredIdentityOnly",
                                "Effect": "Allow",
                                "Action": "ses:SendEmail",
                                "Resource": If(
                                    "UseSesIdentityArn",
                                    [Ref(ses_identity)],
                                    [
                                        Sub(
                                            "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${Sender}"
                                        ),
                                        Join(
                                            "",
                                            [
                                                Sub(
                                                    "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/"
                                                ),
                                                sender_domain,
                                            ],
                                        ),
                                    ],
                                ),
                                "Condition": {"StringEquals": {"ses:FromAddress": Ref(sender)}},
                            },
                            {
                                "Sid": "ParkFailedAlerts",
                                "Effect": "Allow",
                                "Action": "sqs:SendMessage",
                                "Resource": GetAtt(dead_letters, "Arn"),
                            },
                            {
                                # The account alias names the account in the email. IAM offers no
                                # resource type for this action, so "*" is the narrowest possible.
                                "Sid": "ReadAccountAlias",
                                "Effect": "Allow",
                                "Action": "iam:ListAccountAliases",
                                "Resource": "*",
                            },
                        ],
                    },
                )
            ],
        )
    )
    function = template.add_resource(
        awslambda.Function(
            "NotifierFunction",
            Description="Turns a console sign-in event into an email and sends it with SES.",
            Runtime=LAMBDA_RUNTIME,
            Architectures=["arm64"],
            MemorySize=128,
            Timeout=30,
            Handler="index.handler",
            Role=GetAtt(role, "Arn"),
            Code=awslambda.Code(ZipFile=notifier_source()),
            Environment=awslambda.Environment(
                Variables={
                    "SENDER": Ref(sender),
                    "RECIPIENTS": Ref(recipients),
                    "SOURCE_ARN": Ref(ses_identity),
                }
            ),
            DeadLetterConfig=awslambda.DeadLetterConfig(TargetArn=GetAtt(dead_letters, "Arn")),
            LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        )
    )
    template.add_resource(
        awslambda.EventInvokeConfig(
            "NotifierRetries",
            FunctionName=Ref(function),
            Qualifier="$LATEST",
            MaximumRetryAttempts=2,
            MaximumEventAgeInSeconds=6 * 3600,
        )
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
    template.add_resource(
        cloudwatch.Alarm(
            "DeadLetterAlarm",
            AlarmDescription="A sign-in alert could not be delivered; it waits in the dead-letter queue.",
            Namespace="AWS/SQS",
            MetricName="ApproximateNumberOfMessagesVisible",
            Dimensions=[cloudwatch.MetricDimension(Name="QueueName", Value=GetAtt(dead_letters, "QueueName"))],
            Statistic="Maximum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData="notBreaching",
            AlarmActions=If("HasAlarmAction", [Ref(alarm_action)], Ref("AWS::NoValue")),
        )
    )

    template.add_output(Output("AlertTopicArn", Value=Ref(topic)))
    template.add_output(Output("NotifierFunctionName", Value=Ref(function)))
    template.add_output(Output("DeadLetterQueueUrl", Value=Ref(dead_letters)))
    return template


def render(template: Template, fmt: Format = "yaml") -> str:
    """The reviewable text form: what ``export`` writes and ``templates/`` holds."""
    if fmt == "json":
        return str(template.to_json(indent=2, sort_keys=False)) + "\n"
    return str(template.to_yaml(clean_up=True, long_form=False))


def template_body(template: Template) -> str:
    """The compact form sent to StackSets: smallest bytes, and stable for digests."""
    return json.dumps(template.to_dict(), separators=(",", ":"), sort_keys=True)


def template_digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def shared_parameters(config: Config) -> dict[str, str]:
    """Stack-set-level parameter values: the same for every account."""
    return {
        SENDER_PARAMETER: config.delivery.sender,
        SES_IDENTITY_PARAMETER: config.delivery.ses_identity_arn or "",
        RECIPIENTS_PARAMETER: ",".join(config.defaults.recipients),
        ALERT_POLICY_PARAMETER: config.defaults.alert_on,
        ALARM_ACTION_PARAMETER: config.delivery.alarm_topic_arn or "",
    }
