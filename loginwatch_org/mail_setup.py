"""The mail account as the config implies it: the names every stack agrees on, and who sends what.

Pure, and free of troposphere: ``validate`` explains the sending setup without building a template, and the
watch, forwarder and mail templates, the planner and ``doctor`` derive the same names from here.
"""

from __future__ import annotations

from loginwatch_org.config import Config

# The IAM path of the watch functions' execution roles (the watch template puts its NotifierRole there).
# Only roles on this path, in accounts of this organisation, may assume the sending role.
WATCH_ROLE_PATH = "/loginwatch/"
# The environment variable that tells a watch function which role to assume to send.
MAIL_ROLE_ENVIRONMENT = "MAIL_ROLE_ARN"
# The environment variable that names the configuration set the notifier sends with.
CONFIGURATION_SET_ENVIRONMENT = "CONFIGURATION_SET"


def alerts_configuration_set(config: Config) -> str | None:
    """The configuration set every alert is sent with, so that its bounces, complaints and rejections reach
    whoever hears of dead letters: kept by the mail stack in mail-account mode, by each watch otherwise. None
    when the identity has a default configuration set of its own (its event destinations are the
    organisation's to keep, and a set named in a send replaces it)."""
    delivery = config.delivery
    if delivery.configuration_set is not None:
        return None
    return f"{config.stack_set.name[:40]}-alerts"


def mail_role_name(config: Config) -> str:
    """The sending role's name: fixed, so every watch can name its ARN without reading the mail stack."""
    return f"{config.stack_set.name[:52]}-mail-sender"  # IAM role names hold at most 64 characters


def mail_role_arn(config: Config) -> str | None:
    """The role watch functions assume to send (``MAIL_ROLE_ARN``); None without a mail account."""
    delivery = config.delivery
    if delivery.mail_account is None:
        return None
    return f"arn:{delivery.identity_partition}:iam::{delivery.mail_account}:role/{mail_role_name(config)}"


def alarm_bus_name(config: Config) -> str:
    return f"{config.stack_set.name}-dead-letter-alarms"


def alarm_bus_arn(config: Config) -> str | None:
    """The event bus every account's dead-letter alarm is forwarded to; None without a mail account."""
    delivery = config.delivery
    if delivery.mail_account is None or delivery.identity_region is None:
        return None
    return (
        f"arn:{delivery.identity_partition}:events:{delivery.identity_region}:{delivery.mail_account}:"
        f"event-bus/{alarm_bus_name(config)}"
    )


def mail_region(config: Config) -> str | None:
    """Where the mail stack is deployed: the Region of the SES identity it sends from."""
    return config.delivery.identity_region if config.delivery.mail_account is not None else None


def alarm_recipients(config: Config) -> tuple[str, ...]:
    """Who is emailed when an alert is dead-lettered anywhere: ``delivery.alarm_recipients`` or the defaults."""
    return tuple(config.delivery.alarm_recipients or config.defaults.recipients)


def sending_setup(config: Config) -> str:
    """One paragraph for ``validate`` and ``doctor``: who sends, and what must be true in SES for it to work."""
    delivery = config.delivery
    regions = ", ".join(config.stack_set.regions)
    if delivery.mail_account is None:
        if delivery.ses_identity_arn:
            where = (
                f"through the identity {delivery.ses_identity_arn} (sending authorization, Region "
                f"{delivery.identity_region}); its owner must allow every member account to send for it"
            )
        else:
            where = f"from {delivery.sender} verified in its own SES in each watched Region ({regions})"
        return (
            f"Each member account sends its own alerts {where}. SES production access is per account and Region, "
            "and every member account needs it (sending authorization does not avoid this): until then SES "
            "refuses mail to unverified recipients and alerts are dead-lettered. For more than a few accounts, "
            "set delivery.mail_account so that one account sends for all."
        )
    configuration = (
        f" Sends are also authorized on its configuration set {delivery.configuration_set}."
        if delivery.configuration_set
        else " If that identity has a default configuration set, name it in delivery.configuration_set."
    )
    return (
        f"The mail account {delivery.mail_account} sends every alert as {delivery.sender} from the SES identity "
        f"{delivery.ses_identity_arn}: verify that identity there, in {delivery.identity_region}, and request SES "
        f"production access for that account in {delivery.identity_region} only; member accounts need neither. "
        f"Watch functions assume {mail_role_arn(config)}, which only roles on {WATCH_ROLE_PATH} in accounts of "
        f"this organisation may assume.{configuration} Alerts that cannot be delivered in any account are emailed "
        f"to {', '.join(alarm_recipients(config))}; each of them confirms SNS's subscription email once."
    )
