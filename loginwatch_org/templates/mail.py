"""The mail account's stack: one SES sender for the whole organisation, and a person told about stuck alerts.

Deployed as a plain CloudFormation stack in ``delivery.mail_account``, in the Region of
``delivery.ses_identity_arn`` (SES sends from the identity's Region).

Sending. SES production access is per account and Region, and sending authorization does not avoid it: both
the identity owner and the delegate sender must be out of the SES sandbox, and a delegate's sends count
against the delegate's own quota. So member accounts do not send at all: their watch functions assume
``MailSenderRole`` here and send as the mail account, which alone needs production access.
https://docs.aws.amazon.com/ses/latest/dg/sending-authorization-delegate-sender-tasks-email.html
https://docs.aws.amazon.com/ses/latest/dg/sending-authorization-delegate-sender-tasks.html
https://docs.aws.amazon.com/ses/latest/dg/request-production-access.html

Undeliverable alerts. CloudWatch documents alarm actions that reach other accounts only for Lambda, whose
resource policy would need one statement per member account. Instead every member account's dead-letter
alarm state change (which CloudWatch always delivers to EventBridge) is forwarded by a rule in that account
(``add_alarm_forwarding``) to one event bus here that admits the organisation (``aws:PrincipalOrgID``); a rule
on that bus publishes a readable sentence to one topic whose email subscriptions are
``delivery.alarm_recipients``: one confirmation per person, not one per account. Bus-to-bus forwarding also
works across Regions, so one bus serves every Region the watch runs in.
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-actions-Lambda.html
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html
https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-events-eventbuspolicy.html
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-region.html

Pure and deterministic, like the watch template.
"""

from __future__ import annotations

import hashlib
from typing import Any

from troposphere import (
    AWSHelperFn,
    Equals,
    GetAtt,
    If,
    Not,
    Output,
    Parameter,
    Ref,
    Sub,
    Template,
    events,
    iam,
    ses,
    sns,
)

from loginwatch_org.config import Config
from loginwatch_org.mail_setup import (
    WATCH_ROLE_PATH,
    alarm_bus_name,
    alarm_recipients,
    alerts_configuration_set,
    mail_role_name,
)
from loginwatch_org.templates import blocks

# checkov reads only the principal of a trust policy, not its conditions.
ORGANISATION_TRUST = (
    "CKV_AWS_60",
    "The principal '*' is bound by aws:PrincipalOrgID (this organisation only) and aws:PrincipalArn (only roles "
    "under the watch functions' path); see the trust policy's conditions.",
)
ALARM_TOPIC_ENCRYPTION = (
    "CKV_AWS_26",
    "EventBridge can publish to an encrypted topic only under a customer managed key whose policy admits it; "
    "the notice names an account and an alarm, nothing more, and travels over TLS.",
)

ORGANIZATION_PARAMETER = "OrganizationId"
SENDER_PARAMETER = "Sender"
SES_IDENTITY_PARAMETER = "SesIdentityArn"
CONFIGURATION_SET_PARAMETER = "ConfigurationSetName"

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
# Role chaining (a Lambda role's session assuming another role) caps the session at one hour.
# https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html (DurationSeconds)
SESSION_SECONDS = 3600


def mail_parameters(config: Config, organization_id: str) -> dict[str, str]:
    """The stack's parameter values; the organisation id comes from Organizations (DescribeOrganization)."""
    return {
        ORGANIZATION_PARAMETER: organization_id,
        SENDER_PARAMETER: config.delivery.sender,
        SES_IDENTITY_PARAMETER: config.delivery.ses_identity_arn or "",
        CONFIGURATION_SET_PARAMETER: config.delivery.configuration_set or "",
    }


def _recipient_id(address: str) -> str:
    # Stable per address, so adding or removing one person never re-subscribes the others.
    return "AlarmRecipient" + hashlib.sha256(address.lower().encode("utf-8")).hexdigest()[:12]


def build_mail_template(config: Config) -> Template:
    template = Template(
        Description=(
            "loginwatch-org mail account: the role every member account's watch assumes to send its alerts "
            "with this account's SES, and the email to people when an alert could not be delivered."
        )
    )
    template.set_version("2010-09-09")

    organization = template.add_parameter(
        Parameter(
            ORGANIZATION_PARAMETER,
            Type="String",
            Description="The AWS Organizations id (o-...) whose watch functions may send and report.",
            AllowedPattern=r"^o-[a-z0-9]{10,32}$",
        )
    )
    sender = template.add_parameter(
        Parameter(
            SENDER_PARAMETER,
            Type="String",
            Description="The only From address the sending role may use.",
            Default=config.delivery.sender,
            AllowedPattern=r"^[^,\s@]+@[^,\s@]+$",
        )
    )
    identity_options: dict[str, Any] = {}
    if config.delivery.ses_identity_arn:
        identity_options["Default"] = config.delivery.ses_identity_arn
    identity = template.add_parameter(
        Parameter(
            SES_IDENTITY_PARAMETER,
            Type="String",
            Description="The SES identity (address or domain) verified in this account, in this Region.",
            AllowedPattern=r"^arn:aws[a-z-]*:ses:[a-z0-9-]+:\d{12}:identity/.+$",
            **identity_options,
        )
    )
    configuration_set = template.add_parameter(
        Parameter(
            CONFIGURATION_SET_PARAMETER,
            Type="String",
            Description="The identity's default configuration set, if it has one (SES authorizes sends on it too).",
            Default=config.delivery.configuration_set or "",
            AllowedPattern=r"^[A-Za-z0-9_-]{0,64}$",
        )
    )
    template.add_condition("HasConfigurationSet", Not(Equals(Ref(configuration_set), "")))

    send_resources: list[AWSHelperFn] = [
        Ref(identity),
        If(
            "HasConfigurationSet",
            # An identity's default configuration set applies to every send from it, and SES then also
            # authorizes the send on the configuration set resource: without it, AccessDenied on
            # ".../configuration-set/NAME" (reported in https://github.com/aws/aws-cdk/issues/34402).
            # https://docs.aws.amazon.com/ses/latest/dg/managing-configuration-sets.html#default-config-sets
            Sub(
                "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/"
                "${" + CONFIGURATION_SET_PARAMETER + "}"
            ),
            Ref("AWS::NoValue"),
        ),
    ]
    own_set = alerts_configuration_set(config)
    if own_set is not None:
        # A send naming a configuration set is authorized on it too.
        send_resources.append(
            Sub("arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/" + own_set)
        )
    watch_roles = "arn:${AWS::Partition}:iam::*:role" + WATCH_ROLE_PATH + "*"
    role = template.add_resource(
        iam.Role(
            "MailSenderRole",
            Metadata=blocks.checkov_skips(ORGANISATION_TRUST),
            RoleName=mail_role_name(config),
            Description="Assumed by loginwatch watch functions of this organisation to email sign-in alerts.",
            MaxSessionDuration=SESSION_SECONDS,
            AssumeRolePolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        # aws:PrincipalOrgID: the caller's account belongs to this organisation.
                        # aws:PrincipalArn: for a role session it is the role's ARN (with its path), so only
                        # the watch functions' roles qualify, not every principal of every account.
                        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalorgid
                        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
                        "Sid": "WatchFunctionsOfThisOrganisationOnly",
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Action": "sts:AssumeRole",
                        "Condition": {
                            "StringEquals": {"aws:PrincipalOrgID": Ref(organization)},
                            "ArnLike": {"aws:PrincipalArn": Sub(watch_roles)},
                        },
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
                                **blocks.identity_statement(
                                    "SendAsTheConfiguredSenderOnly",
                                    ["ses:SendEmail", "ses:SendRawEmail"],
                                    send_resources,
                                ),
                                "Condition": {"StringEquals": {"ses:FromAddress": Ref(sender)}},
                            }
                        ],
                    },
                )
            ],
        )
    )

    # The bus is named by its fixed name rather than Ref (ordering comes from GetAtt and DependsOn): the sandbox's
    # emulator resolves a Ref to an event bus to an object, not to its name as CloudFormation does.
    bus = template.add_resource(events.EventBus("DeadLetterAlarmBus", Name=alarm_bus_name(config)))
    template.add_resource(
        events.EventBusPolicy(
            "DeadLetterAlarmBusPolicy",
            EventBusName=alarm_bus_name(config),
            StatementId="organisation-dead-letter-alarms",
            Statement={
                "Sid": "organisation-dead-letter-alarms",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "events:PutEvents",
                "Resource": GetAtt(bus, "Arn"),
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": Ref(organization)}},
            },
        )
    )
    topic = blocks.topic(
        template, "DeadLetterAlarmTopic", "loginwatch: a sign-in alert could not be delivered", ALARM_TOPIC_ENCRYPTION
    )
    rule = template.add_resource(
        events.Rule(
            "DeadLetterAlarmRule",
            Description="Any account's loginwatch dead-letter alarm going into ALARM, to the alarm recipients.",
            DependsOn=[bus.title],
            EventBusName=alarm_bus_name(config),
            State="ENABLED",
            EventPattern={
                # Only events EventBridge itself produced: PutEvents callers cannot claim an aws.* source.
                "source": ["aws.cloudwatch"],
                "detail-type": [ALARM_STATE_CHANGE],
                "detail": {"state": {"value": ["ALARM"]}},
            },
            Targets=[
                events.Target(
                    Id="alarm-recipients",
                    Arn=Ref(topic),
                    RetryPolicy=events.RetryPolicy(
                        MaximumRetryAttempts=blocks.RULE_RETRY_ATTEMPTS,
                        MaximumEventAgeInSeconds=blocks.RULE_MAX_EVENT_AGE,
                    ),
                    InputTransformer=events.InputTransformer(
                        InputPathsMap={
                            "account": "$.account",
                            "region": "$.region",
                            "alarm": "$.detail.alarmName",
                            "time": "$.time",
                            "reason": "$.detail.state.reason",
                        },
                        # The alarm goes into ALARM again each time more alerts wait; the datapoint in its reason
                        # is how many.
                        InputTemplate=(
                            '"More console sign-in alerts could not be delivered in AWS account <account> (<region>) '
                            "and wait in its loginwatch dead-letter queue: alarm <alarm> went into ALARM at <time>. "
                            "The datapoint is how many wait: <reason> Fix the cause (most often SES: the identity, "
                            "production access or the sending role), then run: loginwatch-org dead-letters <account> "
                            '--replay"'
                        ),
                    ),
                )
            ],
        )
    )
    publishers = [
        blocks.service_statement("OnlyTheAlarmRulePublishes", "events", "sns:Publish", Ref(topic), GetAtt(rule, "Arn"))
    ]
    if own_set is not None:
        publishers.append(report_delivery_problems(template, own_set, topic))
    template.add_resource(
        sns.TopicPolicy(
            "DeadLetterAlarmTopicPolicy",
            Topics=[Ref(topic)],
            PolicyDocument={"Version": "2012-10-17", "Statement": publishers},
        )
    )
    for address in sorted(alarm_recipients(config), key=str.lower):
        # Each person confirms once, from the email SNS sends; until then nothing reaches them.
        template.add_resource(
            sns.SubscriptionResource(_recipient_id(address), TopicArn=Ref(topic), Protocol="email", Endpoint=address)
        )

    template.add_output(Output("MailSenderRoleArn", Value=GetAtt(role, "Arn")))
    template.add_output(Output("DeadLetterAlarmBusArn", Value=GetAtt(bus, "Arn")))
    template.add_output(Output("DeadLetterAlarmTopicArn", Value=Ref(topic)))
    return template


# What SES reports about an alert after accepting it: the recipient's server refused it for good (bounce), the
# recipient marked it as spam (complaint), SES refused it after accepting (reject, e.g. a virus), or its content
# could not be rendered. Each reaches the alarm recipients, who can fix the address.
# https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns.html
DELIVERY_PROBLEM_EVENTS = ["bounce", "complaint", "reject", "renderingFailure"]


def report_delivery_problems(template: Template, name: str, topic: sns.Topic) -> dict[str, Any]:
    """The configuration set every alert is sent with, whose delivery problems go to ``topic``; returns the
    topic-policy statement that lets SES publish them (SES needs that grant on the topic:
    https://docs.aws.amazon.com/ses/latest/dg/event-publishing-add-event-destination-sns.html)."""
    configuration_set = template.add_resource(ses.ConfigurationSet("AlertConfigurationSet", Name=name))
    template.add_resource(
        ses.ConfigurationSetEventDestination(
            "AlertDeliveryProblems",
            ConfigurationSetName=Ref(configuration_set),
            EventDestination=ses.EventDestination(
                Name="to-alarm-recipients",
                Enabled=True,
                MatchingEventTypes=DELIVERY_PROBLEM_EVENTS,
                SnsDestination=ses.SnsDestination(TopicARN=Ref(topic)),
            ),
        )
    )
    arn = Sub("arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/" + name)
    return blocks.service_statement("SesReportsDeliveryProblems", "ses", "sns:Publish", Ref(topic), arn)


def add_alarm_forwarding(
    template: Template, alarm: AWSHelperFn | str, bus_arn: AWSHelperFn | str, condition: str | None = None
) -> events.Rule:
    """Member side: forward ``alarm``'s (the logical id, or a ``Ref``) ALARM state changes to the mail account's bus.

    A target bus whose policy admits the organisation rather than named accounts needs a role in the sending
    account that may put events on it.
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutPermission.html
    """
    alarm_name = alarm if isinstance(alarm, str) else alarm.data["Ref"]
    options: dict[str, Any] = {"Condition": condition} if condition else {}
    role = template.add_resource(
        iam.Role(
            "DeadLetterAlarmForwarderRole",
            AssumeRolePolicyDocument=blocks.service_trust("events"),
            Policies=[
                iam.Policy(
                    PolicyName="forward-dead-letter-alarm",
                    PolicyDocument={
                        "Version": "2012-10-17",
                        "Statement": [
                            blocks.identity_statement("ToTheMailAccountAlarmBusOnly", "events:PutEvents", bus_arn)
                        ],
                    },
                )
            ],
            **options,
        )
    )
    rule: events.Rule = template.add_resource(
        events.Rule(
            "DeadLetterAlarmForwarding",
            Description="This account's dead-letter alarm going into ALARM, to the mail account's alarm bus.",
            State="ENABLED",
            EventPattern={
                "source": ["aws.cloudwatch"],
                "detail-type": [ALARM_STATE_CHANGE],
                "resources": [GetAtt(alarm_name, "Arn")],
                "detail": {"state": {"value": ["ALARM"]}},
            },
            Targets=[events.Target(Id="mail-account-alarm-bus", Arn=bus_arn, RoleArn=GetAtt(role, "Arn"))],
            **options,
        )
    )
    return rule
