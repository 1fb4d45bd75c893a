"""Template parameters: their names (what a StackSet instance overrides) and the functions that add them.

Each ``add_*`` function adds one parameter to the template and returns its handle, for ``Ref``.
"""

from __future__ import annotations

from collections.abc import Sequence

from troposphere import Parameter, Template

from loginwatch_org.config import ALERT_POLICIES, Config

# Per-account parameters: what a StackSet instance overrides. Everything else is shared by all accounts.
RECIPIENTS_PARAMETER = "Recipients"
ALERT_POLICY_PARAMETER = "AlertOn"
SENDER_PARAMETER = "Sender"
SES_IDENTITY_PARAMETER = "SesIdentityArn"
ALARM_ACTION_PARAMETER = "DeadLetterAlarmAction"

# The condition that is true when the alarm action parameter names a topic.
HAS_ALARM_ACTION = "HasAlarmAction"


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


def add_alarm_action(template: Template, default: str, description: str) -> Parameter:
    return template.add_parameter(
        Parameter(
            ALARM_ACTION_PARAMETER,
            Type="String",
            Description=description,
            Default=default,
            AllowedPattern=r"^$|^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$",
        )
    )


def shared_parameters(config: Config) -> dict[str, str]:
    """Stack-set-level parameter values: the same for every account."""
    return {
        SENDER_PARAMETER: config.delivery.sender,
        SES_IDENTITY_PARAMETER: config.delivery.ses_identity_arn or "",
        RECIPIENTS_PARAMETER: ",".join(config.defaults.recipients),
        ALERT_POLICY_PARAMETER: config.defaults.alert_on,
        ALARM_ACTION_PARAMETER: config.delivery.alarm_topic_arn or "",
    }
