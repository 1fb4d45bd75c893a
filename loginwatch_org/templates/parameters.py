"""Template parameters: their names (what a StackSet instance overrides) and the functions that add them.

Each ``add_*`` function adds one parameter to the template and returns its handle, for ``Ref``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from troposphere import Parameter, Template

from loginwatch_org.config import ALERT_POLICIES, Config
from loginwatch_org.mail_setup import alarm_bus_arn, mail_role_arn
from loginwatch_org.templates.blocks import HAS_ALARM_ACTION
from loginwatch_org.templates.mail import CONFIGURATION_SET_PARAMETER

# Per-account parameters: what a StackSet instance overrides. Everything else is shared by all accounts.
RECIPIENTS_PARAMETER = "Recipients"
ALERT_POLICY_PARAMETER = "AlertOn"
SENDER_PARAMETER = "Sender"
SES_IDENTITY_PARAMETER = "SesIdentityArn"
ALARM_ACTION_PARAMETER = "DeadLetterAlarmAction"
# With a mail account (the same for every account): the role the notifier assumes to send, and the bus its
# dead-letter alarms are forwarded to.
MAIL_ROLE_PARAMETER = "MailRoleArn"
ALARM_BUS_PARAMETER = "DeadLetterAlarmBusArn"
# A forwarder's own alarm topic. Named apart from ALARM_ACTION_PARAMETER so that the watch's topic (in us-east-1)
# is never handed to forwarders in other regions: CloudWatch refuses an alarm action in another region.
REGIONAL_ALARM_ACTION_PARAMETER = "RegionalAlarmAction"
# The StackSets administrator account: the only principal besides the sign-in rule that may publish to a
# watch's topic, to send test alerts (``loginwatch-org test-alert``). Empty: no test entry point.
ADMIN_ACCOUNT_PARAMETER = "AdminAccountId"

# The condition that is true when the alarm bus parameter names a bus.
HAS_ALARM_BUS = "HasAlarmBus"

__all__ = [
    "ALARM_ACTION_PARAMETER",
    "ALARM_BUS_PARAMETER",
    "ALERT_POLICY_PARAMETER",
    "CONFIGURATION_SET_PARAMETER",
    "HAS_ALARM_ACTION",
    "HAS_ALARM_BUS",
    "MAIL_ROLE_PARAMETER",
    "RECIPIENTS_PARAMETER",
    "REGIONAL_ALARM_ACTION_PARAMETER",
    "SENDER_PARAMETER",
    "SES_IDENTITY_PARAMETER",
    "add_alarm_action",
    "add_alarm_bus",
    "add_alert_policy",
    "add_configuration_set",
    "add_mail_role",
    "add_recipients",
    "add_sender",
    "add_ses_identity",
    "shared_parameters",
]


def add_recipients(template: Template, default: Sequence[str]) -> Parameter:
    return template.add_parameter(
        Parameter(
            RECIPIENTS_PARAMETER,
            Type="String",
            Description="Comma-separated email addresses that receive this account's sign-in alerts.",
            Default=",".join(default),
            AllowedPattern=r"^[^,\s@]+@[^,\s@]+(,[^,\s@]+@[^,\s@]+)*$",
            ConstraintDescription="a comma-separated list of email addresses, without spaces",
        )
    )


def add_alert_policy(template: Template, default: str) -> Parameter:
    return template.add_parameter(
        Parameter(
            ALERT_POLICY_PARAMETER,
            Type="String",
            Description="Which sign-ins alert: " + ", ".join(ALERT_POLICIES) + ".",
            Default=default,
            AllowedValues=list(ALERT_POLICIES),
        )
    )


def add_sender(template: Template, default: str) -> Parameter:
    return template.add_parameter(
        Parameter(
            SENDER_PARAMETER,
            Type="String",
            Description="The SES-verified address alerts are sent from.",
            Default=default,
            AllowedPattern=r"^[^,\s@]+@[^,\s@]+$",
        )
    )


def add_ses_identity(template: Template, default: str) -> Parameter:
    return template.add_parameter(
        Parameter(
            SES_IDENTITY_PARAMETER,
            Type="String",
            Description=(
                "Optional SES identity ARN in another account (sending authorization); "
                "empty to send from an identity in this account."
            ),
            Default=default,
            AllowedPattern=r"^$|^arn:aws[a-z-]*:ses:[a-z0-9-]+:\d{12}:identity/.+$",
        )
    )


def add_alarm_action(
    template: Template, default: str, description: str, name: str = ALARM_ACTION_PARAMETER
) -> Parameter:
    return template.add_parameter(
        Parameter(
            name,
            Type="String",
            Description=description,
            Default=default,
            AllowedPattern=r"^$|^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$",
        )
    )


def add_mail_role(template: Template, default: str) -> Parameter:
    return template.add_parameter(
        Parameter(
            MAIL_ROLE_PARAMETER,
            Type="String",
            Description="The mail account's sending role, which the notifier assumes to send every alert.",
            Default=default,
            AllowedPattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$",
        )
    )


def add_alarm_bus(template: Template, default: str) -> Parameter:
    return template.add_parameter(
        Parameter(
            ALARM_BUS_PARAMETER,
            Type="String",
            Description=(
                "The mail account's event bus that emails the alarm recipients when an alert lands in the "
                "dead-letter queue; empty to forward nothing."
            ),
            Default=default,
            AllowedPattern=r"^$|^arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/[\w.-]+$",
        )
    )


def add_admin_account(template: Template, default: str) -> Parameter:
    return template.add_parameter(
        Parameter(
            ADMIN_ACCOUNT_PARAMETER,
            Type="String",
            Description=(
                "The StackSets administrator account, which may publish test alerts to the topic; "
                "empty to admit no test alerts."
            ),
            Default=default,
            AllowedPattern=r"^$|^\d{12}$",
        )
    )


def add_configuration_set(template: Template, default: str) -> Parameter:
    return template.add_parameter(
        Parameter(
            CONFIGURATION_SET_PARAMETER,
            Type="String",
            Description="The SES identity's default configuration set (SES authorizes sends on it too).",
            Default=default,
            AllowedPattern=r"^[A-Za-z0-9_-]{1,64}$",
        )
    )


def admin_account_id(config: Config) -> str:
    """The account that administers the stack set, as far as the config tells; empty when it does not.

    Self-managed: the account of ``administration_role_arn`` (the role lives in the administrator account).
    Otherwise, with ``call_as: self``, the management account, when the config names it. A delegated
    administrator's account is not in the config, so such a stack set admits no test alerts.
    """
    role = (config.stack_set.administration_role_arn or "").split(":")
    if config.stack_set.permission_model == "self-managed" and len(role) > 4 and re.fullmatch(r"\d{12}", role[4]):
        return role[4]
    if config.stack_set.call_as == "self" and config.management_account is not None:
        return config.management_account.id
    return ""


def shared_parameters(config: Config) -> dict[str, str]:
    """Stack-set-level parameter values: the same for every account.

    Exactly the watch template's parameters: a stack set refuses a value for a parameter its template lacks.
    """
    delivery = config.delivery
    shared = {
        SENDER_PARAMETER: delivery.sender,
        SES_IDENTITY_PARAMETER: delivery.ses_identity_arn or "",
        RECIPIENTS_PARAMETER: ",".join(config.defaults.recipients),
        ALERT_POLICY_PARAMETER: config.defaults.alert_on,
        ALARM_ACTION_PARAMETER: delivery.alarm_topic_arn or "",
        ADMIN_ACCOUNT_PARAMETER: admin_account_id(config),
    }
    role = mail_role_arn(config)
    if role is not None:
        shared[MAIL_ROLE_PARAMETER] = role
        shared[ALARM_BUS_PARAMETER] = alarm_bus_arn(config) or ""
    elif delivery.configuration_set:
        shared[CONFIGURATION_SET_PARAMETER] = delivery.configuration_set
    return shared
