"""One account's watch as a CloudFormation template, built with troposphere.

Pure and deterministic: the same config renders to the same bytes, so a digest of the body tells the
planner whether the deployed stack set is current, and ``templates/`` can be reviewed in a diff.

Sign-in event -> EventBridge rule (filtered by the account's alert policy, so ignored sign-ins never run
code) -> SNS topic -> Lambda (``loginwatch_org/notifier.py``, inlined) -> SES. Every hop that can fail
ends in one encrypted dead-letter queue, and an alarm watches that queue.

With ``delivery.mail_account`` (mail mode) the function does not send with this account's SES: it assumes the
mail account's sending role (``templates/mail.py``), which alone may send, and its role sits on the path that
role trusts. The dead-letter alarm is then also forwarded to the mail account, which emails the alarm
recipients. Without it, each account sends with its own SES (sending authorization through
``ses_identity_arn`` included).
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
    Parameter,
    Ref,
    Select,
    Split,
    Sub,
    Template,
    sns,
)

from loginwatch_org.config import ALERT_POLICIES, Config
from loginwatch_org.mail_setup import (
    CONFIGURATION_SET_ENVIRONMENT,
    MAIL_ROLE_ENVIRONMENT,
    WATCH_ROLE_PATH,
    alarm_bus_arn,
    alerts_configuration_set,
    mail_role_arn,
)
from loginwatch_org.templates import blocks, parameters
from loginwatch_org.templates.inline_code import without_commentary
from loginwatch_org.templates.mail import add_alarm_forwarding, report_delivery_problems
from loginwatch_org.templates.parameters import (
    ADMIN_ACCOUNT_PARAMETER,
    ALERT_POLICY_PARAMETER,
    CONFIGURATION_SET_PARAMETER,
    HAS_ALARM_BUS,
)
from loginwatch_org.templates.patterns import event_pattern

TOPIC_ENCRYPTION = (
    "CKV_AWS_26",
    "EventBridge needs a customer managed key (1 USD a month per account) to publish encrypted; messages are "
    "sign-in metadata CloudTrail already holds, over TLS, kept only until delivered.",
)


# True when the AdminAccountId parameter names an account: only then does the topic admit test alerts.
ADMIN_MAY_TEST = "AdminMayTest"


def notifier_source() -> str:
    """The Lambda's code: the real module file without its comments and docstrings, inlined so the template is
    the only artefact to review."""
    return without_commentary(resources.files("loginwatch_org").joinpath("notifier.py").read_text(encoding="utf-8"))


def _condition_name(policy: str) -> str:
    return "AlertOn" + "".join(part.capitalize() for part in policy.split("-"))


def _pattern_for_parameter() -> AWSHelperFn | dict[str, Any]:
    # Fn::If chain: the deployed rule carries only the pattern of the account's policy.
    policies = list(ALERT_POLICIES)
    chosen: AWSHelperFn | dict[str, Any] = event_pattern(policies[-1])
    for policy in reversed(policies[:-1]):
        chosen = If(_condition_name(policy), event_pattern(policy), chosen)
    return chosen


def _send_email(
    sender: Parameter, ses_identity: Parameter, configuration_set: Parameter | None, own_set: str | None
) -> dict[str, Any]:
    """Per-account sending: ses:SendEmail from the configured identity, as the configured sender only, with the
    watch's own configuration set (``own_set``) when it keeps one."""
    sender_domain = Select(1, Split("@", Ref(sender)))
    identity_arn = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/"
    # What may be sent from: the identity ses_identity_arn names, else this account's address and domain.
    shared: list[AWSHelperFn] = [Ref(ses_identity)]
    own: list[AWSHelperFn] = [Sub(identity_arn + "${Sender}"), Join("", [Sub(identity_arn), sender_domain])]
    if configuration_set is not None:
        # An identity's default configuration set applies to every send from it, and SES then also authorizes
        # the send on the configuration set (AccessDenied on ".../configuration-set/NAME" without it).
        # https://docs.aws.amazon.com/ses/latest/dg/managing-configuration-sets.html#default-config-sets
        # The set is the identity owner's: this account's, or that of ses_identity_arn (partition, Region and
        # account are its 2nd, 4th and 5th fields). The ARN is padded with colons so that no Fn::Select can fail
        # when the parameter is empty and this branch goes unused.
        fields = Split(":", Join("", [Ref(ses_identity), "::::"]))
        owner = [Select(index, fields) for index in (1, 3, 4)]
        shared.append(
            Join(
                "", ["arn:", owner[0], ":ses:", owner[1], ":", owner[2], ":configuration-set/", Ref(configuration_set)]
            )
        )
        own.append(
            Sub(
                "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/${"
                + CONFIGURATION_SET_PARAMETER
                + "}"
            )
        )
    if own_set is not None:
        # A send naming a configuration set is authorized on it too; the set is this account's, whoever owns the
        # identity.
        here_set = Sub("arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/" + own_set)
        shared.append(here_set)
        own.append(here_set)
    resources = If("UseSesIdentityArn", shared, own)
    statement = blocks.identity_statement("SendFromTheConfiguredIdentityOnly", "ses:SendEmail", resources)
    statement["Condition"] = {"StringEquals": {"ses:FromAddress": Ref(sender)}}
    return statement


def alert_topic_name(config: Config) -> str:
    """The watch topic's fixed name, so the administrator can compute its ARN in every account and region.

    Derived from the stack set's name, so two stack sets in one account never claim the same topic.
    """
    return f"{config.stack_set.name}-sign-in-alerts"


def admin_test_statement(topic: AWSHelperFn) -> dict[str, Any]:
    """The administrator account may publish test alerts to the topic, and do nothing else with it.

    A cross-account publisher needs the topic policy's grant (and its own IAM permission):
    https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html. The root ARN names the
    account, whose own IAM policies then decide which of its principals may publish.
    """
    return {
        "Sid": "AdministratorSendsTestAlerts",
        "Effect": "Allow",
        "Principal": {"AWS": Sub(f"arn:${{AWS::Partition}}:iam::${{{ADMIN_ACCOUNT_PARAMETER}}}:root")},
        "Action": "sns:Publish",
        "Resource": topic,
    }


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
    # Mail mode: the role and the bus are the same for every account, so they are stack set parameters and
    # the body stays one for the whole organisation.
    mail_role = mail_role_arn(config)
    mail_role_parameter = parameters.add_mail_role(template, mail_role) if mail_role is not None else None
    alarm_bus = parameters.add_alarm_bus(template, alarm_bus_arn(config) or "") if mail_role is not None else None
    admin_account = parameters.add_admin_account(template, parameters.admin_account_id(config))
    configuration_set = (
        parameters.add_configuration_set(template, config.delivery.configuration_set)
        if mail_role is None and config.delivery.configuration_set
        else None
    )

    for policy in ALERT_POLICIES[:-1]:  # the last policy is the Fn::If chain's fallback
        template.add_condition(_condition_name(policy), Equals(Ref(ALERT_POLICY_PARAMETER), policy))
    if mail_role is None:  # only per-account sending names the identity in a policy
        template.add_condition("UseSesIdentityArn", Not(Equals(Ref(ses_identity), "")))
    if alarm_bus is not None:
        template.add_condition(HAS_ALARM_BUS, Not(Equals(Ref(alarm_bus), "")))
    template.add_condition(ADMIN_MAY_TEST, Not(Equals(Ref(admin_account), "")))

    dead_letters = blocks.dead_letter_queue(template)
    # A fixed name makes the ARN computable for test alerts; setting it replaces a topic deployed without one,
    # and CloudFormation repoints the rule, policies and subscription that Ref it.
    topic = blocks.topic(
        template, "AlertTopic", "loginwatch sign-in alerts", TOPIC_ENCRYPTION, name=alert_topic_name(config)
    )
    # Without a mail account the watch sends from this account's SES and keeps the configuration set itself:
    # SES's notices (a bounce, a complaint, a rejection after acceptance) go to a topic of their own that
    # drops them into the dead-letter queue, so they raise its alarm and `dead-letters` names the address.
    own_set = alerts_configuration_set(config) if mail_role is None else None
    notices = (
        blocks.topic(template, "DeliveryNoticeTopic", "loginwatch delivery notices", TOPIC_ENCRYPTION)
        if own_set is not None
        else None
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
                    ),
                    If(ADMIN_MAY_TEST, admin_test_statement(Ref(topic)), Ref("AWS::NoValue")),
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
            *(
                [
                    blocks.service_statement(
                        "DeliveryNoticesFromSes", "sns", "sqs:SendMessage", GetAtt(dead_letters, "Arn"), Ref(notices)
                    )
                ]
                if notices is not None
                else []
            ),
        ],
    )
    if notices is not None and own_set is not None:
        template.add_resource(
            sns.TopicPolicy(
                "DeliveryNoticeTopicPolicy",
                Topics=[Ref(notices)],
                PolicyDocument={
                    "Version": "2012-10-17",
                    "Statement": [report_delivery_problems(template, own_set, notices)],
                },
            )
        )
        template.add_resource(
            sns.SubscriptionResource(
                "DeliveryNoticeSubscription",
                TopicArn=Ref(notices),
                Protocol="sqs",
                Endpoint=GetAtt(dead_letters, "Arn"),
            )
        )
    buffer = blocks.buffer_queue(template, dead_letters)
    blocks.dead_letter_queue_policy(
        template,
        buffer,
        [blocks.service_statement("SignInsFromTheTopic", "sns", "sqs:SendMessage", GetAtt(buffer, "Arn"), Ref(topic))],
        title="BufferQueuePolicy",
    )
    environment: dict[str, blocks.Value] = {
        "SENDER": Ref(sender),
        "RECIPIENTS": Ref(recipients),
        # In mail mode ses_identity_arn is the mail account's identity (the config insists), which the
        # notifier names as its source while it sends as the mail account.
        "SOURCE_ARN": Ref(ses_identity),
        "BUFFER_QUEUE_URL": Ref(buffer),
        "DEAD_LETTER_QUEUE_URL": Ref(dead_letters),
    }
    if mail_role_parameter is not None:
        environment[MAIL_ROLE_ENVIRONMENT] = Ref(mail_role_parameter)
        mail_set = alerts_configuration_set(config)  # the mail stack's
        if mail_set is not None:
            environment[CONFIGURATION_SET_ENVIRONMENT] = mail_set
        # The function's own role may not send at all: it may only become the mail account's sending role.
        send = blocks.identity_statement("BecomeTheMailAccountSender", "sts:AssumeRole", Ref(mail_role_parameter))
    else:
        if own_set is not None:
            environment[CONFIGURATION_SET_ENVIRONMENT] = own_set
        send = _send_email(sender, ses_identity, configuration_set, own_set)
    function = blocks.notifier(
        template,
        description="Turns a sign-in event into an email and sends it with SES.",
        code=notifier_source(),
        environment=environment,
        grants=[
            send,
            blocks.identity_statement("ParkFailedAlerts", "sqs:SendMessage", GetAtt(dead_letters, "Arn")),
            # Read the buffer, hold or delay what SES cannot take yet, requeue what some recipients still lack.
            blocks.identity_statement("ReadAndRetryTheBuffer", blocks.BUFFER_READER_ACTIONS, GetAtt(buffer, "Arn")),
            # The account alias names the account in the email. IAM offers no resource type for this
            # action, so "*" is the narrowest possible.
            blocks.identity_statement("ReadAccountAlias", "iam:ListAccountAliases", "*"),
        ],
        dead_letters=dead_letters,
        policy_name="send-sign-in-alerts",
        # The mail account's sending role trusts only roles on this path. Changing a role's path replaces it.
        role_path=WATCH_ROLE_PATH if mail_role is not None else None,
    )
    template.add_resource(
        sns.SubscriptionResource(
            "BufferSubscription",
            TopicArn=Ref(topic),
            Protocol="sqs",
            Endpoint=GetAtt(buffer, "Arn"),
            RedrivePolicy={"deadLetterTargetArn": GetAtt(dead_letters, "Arn")},
        )
    )
    blocks.queue_reader(template, buffer, function)
    alarm = blocks.dead_letter_alarm(
        template,
        dead_letters,
        alarm_action,
        "A sign-in alert could not be delivered; it waits in the dead-letter queue.",
    )
    if alarm_bus is not None:
        add_alarm_forwarding(template, alarm.title, Ref(alarm_bus), HAS_ALARM_BUS)

    template.add_output(Output("AlertTopicArn", Value=Ref(topic)))
    template.add_output(Output("NotifierFunctionName", Value=Ref(function)))
    template.add_output(Output("DeadLetterQueueUrl", Value=Ref(dead_letters)))
    return template
