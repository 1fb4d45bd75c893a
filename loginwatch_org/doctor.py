"""``doctor``: are the prerequisites a watch needs on real AWS in place? Pure: facts in, results out.

The facts are read by ``loginwatch_org.aws.prerequisites`` (read-only AWS calls); here each check is one small
function from the config and the facts to a ``CheckResult`` (pass / fail / cannot-check, why, and the exact
fix). A fact that could not be read is an ``Unknown`` carrying the reason, and a check that depends on it says
``cannot-check`` with that reason rather than guessing. A new check is one more function in ``CHECKS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from loginwatch_org import suggest
from loginwatch_org.config import Config

Status = Literal["pass", "fail", "cannot-check"]

#: Organizations service principal of CloudFormation StackSets (trusted access, delegated administrators).
STACKSETS_SERVICE_PRINCIPAL = "member.org.stacksets.cloudformation.amazonaws.com"
DEFAULT_ADMINISTRATION_ROLE = "AWSCloudFormationStackSetAdministrationRole"
# AWS's own templates for the self-managed StackSets roles.
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-prereqs-self-managed.html
ADMINISTRATION_ROLE_TEMPLATE = (
    "https://s3.amazonaws.com/cloudformation-stackset-sample-templates-us-east-1/"
    "AWSCloudFormationStackSetAdministrationRole.yml"
)
EXECUTION_ROLE_TEMPLATE = (
    "https://s3.amazonaws.com/cloudformation-stackset-sample-templates-us-east-1/"
    "AWSCloudFormationStackSetExecutionRole.yml"
)
# Opt-in statuses under which resources can be created in a Region (AWS Account Management).
# https://docs.aws.amazon.com/accounts/latest/reference/API_Region.html
ENABLED_REGION_STATUSES = frozenset({"ENABLED", "ENABLED_BY_DEFAULT"})
# How many accounts a result names before it says "and N more".
NAMED_ACCOUNTS = 5


@dataclass(frozen=True)
class Unknown:
    """A fact that could not be read, and why (access denied, role not assumable, ...)."""

    reason: str


@dataclass(frozen=True)
class Trail:
    """One CloudTrail trail the caller can see (its own, or the organisation's)."""

    name: str
    home_region: str
    multi_region: bool
    organization: bool
    logging: bool | Unknown
    # Management events of both kinds, or at least write events (sign-in events are recorded as readOnly: false).
    management_events: bool | Unknown


@dataclass(frozen=True)
class SesSender:
    """SES where alerts are sent from: one account and Region, and the identity that sends."""

    account: str
    region: str
    identity: str
    verified: bool | Unknown
    production_access: bool | Unknown
    sending_enabled: bool | Unknown
    # Whether a sending-authorization policy lets others send with ses:SendEmail; None when none is needed.
    authorizes_sending: bool | Unknown | None = None
    # The identity's default configuration set ("" when it has none); None when it was not read.
    configuration_set: str | Unknown | None = None
    # Recipients it sends to that are on the account's suppression list, with SES's reason (BOUNCE or
    # COMPLAINT); None when not read.
    suppressed: Mapping[str, str] | Unknown | None = None


@dataclass(frozen=True)
class AlarmTopic:
    arn: str
    exists: bool
    confirmed_subscriptions: int


@dataclass(frozen=True)
class Facts:
    """Everything ``doctor`` read. ``None`` means the fact does not apply to this config."""

    caller_account: str
    trusted_access: bool | Unknown | None = None
    delegated_admins: frozenset[str] | Unknown | None = None
    administration_role: bool | Unknown | None = None
    execution_roles: Mapping[str, bool | Unknown] | None = None
    trails: tuple[Trail, ...] | Unknown = ()
    ses: tuple[SesSender, ...] = ()
    alarm_topic: AlarmTopic | Unknown | None = None
    # account -> Region -> opt-in status (ENABLED, ENABLED_BY_DEFAULT, DISABLED, ...)
    region_status: Mapping[str, Mapping[str, str | Unknown]] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    check: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def _passed(check: str, detail: str) -> CheckResult:
    return CheckResult(check, "pass", detail)


def _failed(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, "fail", detail, fix)


def _unknown(check: str, reasons: Iterable[str], actions: str) -> CheckResult:
    """A check whose facts could not be read: the fix is the access that reads them."""
    unique = list(dict.fromkeys(reasons))
    fix = (
        f"allow {actions} to the caller (in other accounts: to the role --member-role names, which the caller must "
        "be able to assume), then run doctor again"
    )
    return CheckResult(check, "cannot-check", "; ".join(unique), fix)


def _grouped(unknown: Iterable[tuple[str, Unknown]]) -> list[str]:
    """One line per reason, naming where it applies: many accounts usually share one reason."""
    where: dict[str, list[str]] = {}
    for place, fact in unknown:
        where.setdefault(fact.reason, []).append(place)
    return [f"{_named(places)}: {reason}" for reason, places in where.items()]


def _named(items: Iterable[str]) -> str:
    listed = list(items)
    shown = ", ".join(listed[:NAMED_ACCOUNTS])
    return shown + (f" and {len(listed) - NAMED_ACCOUNTS} more" if len(listed) > NAMED_ACCOUNTS else "")


def watched_accounts(config: Config) -> list[str]:
    return [target.account_id for target in config.targets()]


def watched_regions(config: Config) -> list[str]:
    """Every Region where a watch runs (and sends its email from, without a mail account)."""
    return list(config.stack_set.regions)


def deployed_regions(config: Config) -> list[str]:
    """Every Region where a watch or a forwarder runs: where sign-in events must be recorded and delivered, and
    which every account must have enabled."""
    return [*config.stack_set.regions, *(r for r in config.forward_regions() if r not in config.stack_set.regions)]


# --- StackSets ---------------------------------------------------------------------------------------------------


def check_trusted_access(config: Config, facts: Facts) -> CheckResult | None:
    """Service-managed stack sets need StackSets trusted access with Organizations.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-orgs-activate-trusted-access.html
    """
    name = "StackSets trusted access with Organizations"
    if config.stack_set.permission_model != "service-managed" or facts.trusted_access is None:
        return None
    fix = (
        "from the management account: aws cloudformation activate-organizations-access "
        f"(console: CloudFormation > StackSets > Activate trusted access), region {config.stack_set.admin_region}"
    )
    if isinstance(facts.trusted_access, Unknown):
        return _unknown(name, [facts.trusted_access.reason], "cloudformation:DescribeOrganizationsAccess")
    if facts.trusted_access:
        return _passed(name, "activated: StackSets can deploy to the organisation's accounts")
    return _failed(name, "not activated: a service-managed stack set cannot be created or deploy instances", fix)


def check_delegated_admin(config: Config, facts: Facts) -> CheckResult | None:
    """With ``call_as: delegated-admin`` the caller must be a registered StackSets delegated administrator.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-orgs-delegated-admin.html
    """
    name = "StackSets delegated administrator"
    if config.stack_set.call_as != "delegated-admin" or facts.delegated_admins is None:
        return None
    fix = (
        "from the management account: aws organizations register-delegated-administrator "
        f"--service-principal {STACKSETS_SERVICE_PRINCIPAL} --account-id {facts.caller_account}"
    )
    if isinstance(facts.delegated_admins, Unknown):
        return _unknown(name, [facts.delegated_admins.reason], "organizations:ListDelegatedAdministrators")
    if facts.caller_account in facts.delegated_admins:
        return _passed(name, f"{facts.caller_account} is registered for StackSets")
    registered = _named(sorted(facts.delegated_admins)) or "none"
    return _failed(
        name,
        f"the caller's account {facts.caller_account} is not a StackSets delegated administrator "
        f"(registered: {registered})",
        fix,
    )


def check_administration_role(config: Config, facts: Facts) -> CheckResult | None:
    """Self-managed stack sets are administered through a role in the administrator account.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-prereqs-self-managed.html
    """
    name = "StackSets administration role"
    if config.stack_set.permission_model != "self-managed" or facts.administration_role is None:
        return None
    role = administration_role_name(config)
    fix = (
        f"in account {facts.caller_account}: aws cloudformation create-stack --stack-name "
        f"{DEFAULT_ADMINISTRATION_ROLE} --template-url {ADMINISTRATION_ROLE_TEMPLATE} --capabilities "
        "CAPABILITY_NAMED_IAM (or set stack_set.administration_role_arn to the role you use)"
    )
    if isinstance(facts.administration_role, Unknown):
        return _unknown(name, [facts.administration_role.reason], "iam:GetRole")
    if facts.administration_role:
        return _passed(name, f"role {role} exists in {facts.caller_account}")
    return _failed(name, f"role {role} does not exist in {facts.caller_account}", fix)


def administration_role_name(config: Config) -> str:
    arn = config.stack_set.administration_role_arn
    return arn.rsplit("/", 1)[-1] if arn else DEFAULT_ADMINISTRATION_ROLE


def check_execution_roles(config: Config, facts: Facts) -> CheckResult | None:
    """Self-managed stack sets deploy through an execution role in every target account."""
    name = "StackSets execution roles"
    if config.stack_set.permission_model != "self-managed" or facts.execution_roles is None:
        return None
    role = config.stack_set.execution_role_name
    missing = sorted(account for account, found in facts.execution_roles.items() if found is False)
    unknown = {a: f for a, f in facts.execution_roles.items() if isinstance(f, Unknown)}
    fix = (
        f"in each account listed: aws cloudformation create-stack --stack-name {role} --template-url "
        f"{EXECUTION_ROLE_TEMPLATE} --parameters ParameterKey=AdministratorAccountId,"
        f"ParameterValue={facts.caller_account} --capabilities CAPABILITY_NAMED_IAM"
    )
    if missing:
        return _failed(name, f"role {role} is missing in {len(missing)} account(s): {_named(missing)}", fix)
    if unknown:
        return _unknown(name, _grouped(sorted(unknown.items(), key=lambda item: item[0])), "iam:GetRole")
    return _passed(name, f"role {role} exists in all {len(facts.execution_roles)} watched account(s)")


# --- CloudTrail --------------------------------------------------------------------------------------------------


def check_cloudtrail(config: Config, facts: Facts) -> CheckResult:
    """Sign-in events reach EventBridge only through a CloudTrail trail that logs management events, so the trail
    must be logging in every Region where a watch runs and cover every watched account.

    EventBridge receives "... via CloudTrail" events only when a trail with logging enabled exists:
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html
    A multi-Region trail logs in every enabled Region; a single-Region trail only in its home Region:
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-create-and-update-a-trail-by-using-the-aws-cli-create-trail.html
    An organisation trail (IsOrganizationTrail) applies to every account in the organisation; only the management
    account can make one: https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_CreateTrail.html,
    https://docs.aws.amazon.com/awscloudtrail/latest/userguide/creating-trail-organization.html
    """
    name = "CloudTrail trail for sign-in events"
    regions = deployed_regions(config)
    fix = (
        "from the management account: aws cloudtrail create-trail --name organization-trail --s3-bucket-name BUCKET "
        "--is-multi-region-trail --is-organization-trail "
        f"--region {config.stack_set.admin_region} && aws cloudtrail "
        f"start-logging --name organization-trail --region {config.stack_set.admin_region} (console: CloudTrail > "
        "Trails > Create trail, 'Enable for all accounts in my organization', management events Read and Write)"
    )
    if isinstance(facts.trails, Unknown):
        return _unknown(
            name,
            [facts.trails.reason],
            "cloudtrail:DescribeTrails, cloudtrail:GetTrailStatus and cloudtrail:GetEventSelectors",
        )
    others = [a for a in watched_accounts(config) if a != facts.caller_account]
    reasons: list[str] = []
    usable: list[Trail] = []
    for trail in facts.trails:
        if isinstance(trail.logging, Unknown):
            reasons.append(f"{trail.name}: {trail.logging.reason}")
        elif isinstance(trail.management_events, Unknown):
            reasons.append(f"{trail.name}: {trail.management_events.reason}")
        elif trail.logging and trail.management_events:
            usable.append(trail)
    uncovered: list[str] = []
    for region in regions:
        covering = [t for t in usable if t.multi_region or t.home_region == region]
        if not covering:
            uncovered.append(f"{region}: no trail that is logging management events applies to this Region")
        elif others and not any(t.organization for t in covering):
            uncovered.append(
                f"{region}: {', '.join(t.name for t in covering)} records only account {facts.caller_account}, "
                f"not the {len(others)} other watched account(s); an organisation trail covers them all"
            )
    if not uncovered:
        names = ", ".join(sorted({t.name for t in usable}))
        return _passed(name, f"{names} logs management events of every watched account in {', '.join(regions)}")
    if reasons:
        return _unknown(
            name, reasons, "cloudtrail:DescribeTrails, cloudtrail:GetTrailStatus and cloudtrail:GetEventSelectors"
        )
    seen = ", ".join(
        f"{t.name} ({'multi-Region' if t.multi_region else t.home_region}"
        f"{', organisation' if t.organization else ''}"
        f"{'' if t.logging is True else ', not logging'}"
        f"{'' if t.management_events is True else ', no management write events'})"
        for t in facts.trails
    )
    detail = "; ".join(uncovered) + (f" (trails seen: {seen})" if seen else " (no trail exists)")
    return _failed(name, detail, fix)


# --- SES ---------------------------------------------------------------------------------------------------------


def _per_sender(
    name: str,
    facts: Facts,
    value: Callable[[SesSender], bool | Unknown | None],
    good: str,
    bad: str,
    fix: str,
    actions: str,
) -> CheckResult | None:
    relevant = [(s, value(s)) for s in facts.ses if value(s) is not None]
    if not relevant:
        return None
    failing = [f"{s.account}/{s.region}" for s, v in relevant if v is False]
    unknown = _grouped((f"{s.account}/{s.region}", v) for s, v in relevant if isinstance(v, Unknown))
    if failing:
        return _failed(name, f"{bad} in {len(failing)} account/Region(s): {_named(failing)}", fix)
    if unknown:
        return _unknown(name, unknown, actions)
    return _passed(name, f"{good} in {_named(sorted({f'{s.account}/{s.region}' for s, _ in relevant}))}")


def check_ses_identity(config: Config, facts: Facts) -> CheckResult | None:
    """The sender's identity (address or domain) must be verified in the Region that sends.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetEmailIdentity.html (VerifiedForSendingStatus)
    """
    identity = facts.ses[0].identity if facts.ses else config.delivery.sender
    fix = (
        f"in each account/Region listed: aws sesv2 create-email-identity --email-identity {identity} --region REGION, "
        "then follow the verification email or DNS records (console: Amazon SES > Configuration > Identities)"
    )
    return _per_sender(
        "SES sender identity verified",
        facts,
        lambda s: s.verified,
        f"{identity} is verified for sending",
        f"{identity} is not verified for sending",
        fix,
        "sesv2:GetEmailIdentity",
    )


def check_ses_production(config: Config, facts: Facts) -> CheckResult | None:
    """Out of the SES sandbox, which only delivers to verified recipients; and sending not paused.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetAccount.html (ProductionAccessEnabled,
    SendingEnabled); https://docs.aws.amazon.com/ses/latest/dg/request-production-access.html
    """
    fix = (
        "in each account/Region listed: aws sesv2 put-account-details --production-access-enabled --mail-type "
        "TRANSACTIONAL --website-url URL --use-case-description 'console sign-in alerts' --region REGION "
        "(console: Amazon SES > Account dashboard > Request production access); AWS reviews the request"
    )

    def usable(sender: SesSender) -> bool | Unknown:
        for fact in (sender.production_access, sender.sending_enabled):
            if isinstance(fact, Unknown):
                return fact
        return sender.production_access is True and sender.sending_enabled is True

    return _per_sender(
        "SES production access",
        facts,
        usable,
        "production access and sending enabled",
        "in the SES sandbox (mail to unverified recipients is rejected) or sending paused",
        fix,
        "sesv2:GetAccount",
    )


def check_ses_authorization(config: Config, facts: Facts) -> CheckResult | None:
    """With ``ses_identity_arn``, the identity needs a sending-authorization policy allowing ses:SendEmail.

    https://docs.aws.amazon.com/ses/latest/dg/sending-authorization-policies.html
    """
    arn = config.delivery.ses_identity_arn
    if arn is None or config.delivery.mail_account is not None:
        return None  # the mail account sends from its own identity: nobody sends for another
    identity = arn.split(":identity/", 1)[1]
    region = arn.split(":")[3]
    fix = (
        f"in the identity's account: aws sesv2 create-email-identity-policy --email-identity {identity} "
        '--policy-name loginwatch-org --policy \'{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
        '"Principal":"*","Action":"ses:SendEmail","Resource":"' + arn + '","Condition":{"StringEquals":'
        '{"aws:PrincipalOrgID":"o-ORGID"}}}]}\' --region ' + region
    )
    return _per_sender(
        "SES sending authorization",
        facts,
        lambda s: s.authorizes_sending,
        "a policy allows ses:SendEmail through the identity",
        "no sending-authorization policy allows ses:SendEmail",
        fix,
        "sesv2:GetEmailIdentity",
    )


def check_ses_configuration_set(config: Config, facts: Facts) -> CheckResult | None:
    """With a mail account, the identity's default configuration set must be the one the config names: SES also
    authorizes each send on the identity's default configuration set, and the sending role may use only that one.

    https://docs.aws.amazon.com/ses/latest/dg/managing-configuration-sets-default-returning.html
    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetEmailIdentity.html (ConfigurationSetName)
    """
    name = "SES identity's default configuration set"
    if config.delivery.mail_account is None:
        return None
    expected = config.delivery.configuration_set or ""
    read = [(s, s.configuration_set) for s in facts.ses if s.configuration_set is not None]
    if not read:
        return None
    unknown = _grouped((f"{s.account}/{s.region}", v) for s, v in read if isinstance(v, Unknown))
    if unknown:
        return _unknown(name, unknown, "sesv2:GetEmailIdentity")
    for sender, found in read:
        if found == expected:
            continue
        where = f"{sender.identity} in {sender.account}/{sender.region}"
        has = f"has the default configuration set {found}" if found else "has no default configuration set"
        wants = f"delivery.configuration_set is {expected}" if expected else "delivery.configuration_set is not set"
        fix = (
            f"set delivery.configuration_set: {found} (or remove the identity's default configuration set), then run "
            f"{suggest.command('rollout')}"
            if found
            else f"remove delivery.configuration_set, then run {suggest.command('rollout')}"
        )
        consequence = (
            ": the sending role may not use it and SES refuses every send (AccessDenied)"
            if found
            else ": the sending role is authorized on a configuration set the identity does not use"
        )
        return _failed(name, f"{where} {has}, but {wants}{consequence}", fix)
    shown = f"{expected}, as configured" if expected else "none, as configured"
    return _passed(name, f"{_named(sorted({s.identity for s, _ in read}))}: {shown}")


# --- delivery failures -------------------------------------------------------------------------------------------


def check_ses_suppression(config: Config, facts: Facts) -> CheckResult | None:
    """No recipient is on the sending account's suppression list: SES accepts a send to a suppressed address and
    never delivers it, so the notifier logs it as sent and nobody hears of it.

    https://docs.aws.amazon.com/ses/latest/dg/sending-email-suppression-list.html
    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetSuppressedDestination.html
    """
    return suppression_result(facts.ses)


def suppression_result(senders: Sequence[SesSender]) -> CheckResult | None:
    """``check_ses_suppression`` over the senders read (None when none had its suppression list read); ``status``
    names suppressed recipients with it too."""
    name = "SES recipients not suppressed"
    relevant = [s for s in senders if s.suppressed is not None]
    if not relevant:
        return None
    listed = [
        (address, reason, s)
        for s in relevant
        if isinstance(s.suppressed, Mapping)
        for address, reason in sorted(s.suppressed.items())
    ]
    if listed:
        named = "; ".join(f"{address} ({reason}, in {s.account}/{s.region})" for address, reason, s in listed)
        address, _reason, first = listed[0]
        fix = (
            "confirm each address receives mail, then, in the account and Region named: aws sesv2 "
            f"delete-suppressed-destination --email-address {address} --region {first.region} (and likewise for "
            "the others), or replace the address in the config"
        )
        return _failed(name, f"SES accepts and silently drops alerts to {len(listed)} recipient(s): {named}", fix)
    unknown = _grouped((f"{s.account}/{s.region}", s.suppressed) for s in relevant if isinstance(s.suppressed, Unknown))
    if unknown:
        return _unknown(name, unknown, "sesv2:GetSuppressedDestination")
    places = _named(sorted({f"{s.account}/{s.region}" for s in relevant}))
    return _passed(name, f"no recipient is on the suppression list in {places}")


def check_alarm_action(config: Config, facts: Facts) -> CheckResult:
    """The dead-letter alarm tells someone: without an action, an undeliverable alert waits unseen in a queue."""
    name = "Dead-letter alarm action"
    fix = (
        "set delivery.alarm_topic_arn to an SNS topic whose subscribers are paged (its policy must let CloudWatch "
        f"of the watched accounts publish), then run: {suggest.command('rollout')}"
    )
    topic = facts.alarm_topic
    if config.delivery.alarm_topic_arn is None and config.delivery.mail_account is not None:
        recipients = ", ".join(config.delivery.alarm_recipients or config.defaults.recipients)
        return _passed(
            name,
            f"every dead-letter alarm is forwarded to the mail account {config.delivery.mail_account}, which emails "
            f"{recipients} (each confirms SNS's subscription email once)",
        )
    if config.delivery.alarm_topic_arn is None:
        return _failed(
            name,
            "delivery.alarm_topic_arn is not set: an alert that cannot be delivered waits in the account's "
            "dead-letter queue and reaches nobody",
            fix,
        )
    arn = config.delivery.alarm_topic_arn
    if isinstance(topic, Unknown):
        return _unknown(name, [topic.reason], "sns:GetTopicAttributes")
    if topic is None:
        return _passed(name, f"alarms publish to {arn}")
    if not topic.exists:
        return _failed(name, f"{arn} does not exist", fix)
    if topic.confirmed_subscriptions == 0:
        return _failed(
            name,
            f"{arn} has no confirmed subscription: the alarm fires but nobody hears it",
            f"aws sns subscribe --topic-arn {arn} --protocol email --notification-endpoint ONCALL_ADDRESS, "
            "then confirm the subscription",
        )
    return _passed(name, f"alarms publish to {arn} ({topic.confirmed_subscriptions} confirmed subscription(s))")


# --- Regions -----------------------------------------------------------------------------------------------------


def check_regions_enabled(config: Config, facts: Facts) -> CheckResult | None:
    """Every watch Region must be enabled in every watched account (opt-in Regions start disabled).

    https://docs.aws.amazon.com/accounts/latest/reference/API_ListRegions.html
    """
    name = "Watch Regions enabled"
    if not facts.region_status:
        return None
    disabled: list[str] = []
    unknown: list[tuple[str, Unknown]] = []
    for account, statuses in sorted(facts.region_status.items()):
        for region, status in sorted(statuses.items()):
            if isinstance(status, Unknown):
                unknown.append((f"{account}/{region}", status))
            elif status not in ENABLED_REGION_STATUSES:
                disabled.append(f"{account}/{region} ({status})")
    fix = (
        "from the management account: aws account enable-region --account-id ACCOUNT --region-name REGION "
        "(console: Account > AWS Regions), or remove the Region from stack_set.regions or stack_set.forward_from"
    )
    if disabled:
        return _failed(name, f"{len(disabled)} account/Region(s) not enabled: {_named(disabled)}", fix)
    if unknown:
        return _unknown(name, _grouped(unknown), "account:ListRegions")
    return _passed(
        name,
        f"{', '.join(deployed_regions(config))} enabled in all {len(facts.region_status)} watched account(s)",
    )


Check = Callable[[Config, Facts], CheckResult | None]

#: Every check, in the order they are printed. A check that does not apply to the config returns None.
CHECKS: tuple[Check, ...] = (
    check_trusted_access,
    check_delegated_admin,
    check_administration_role,
    check_execution_roles,
    check_cloudtrail,
    check_ses_identity,
    check_ses_production,
    check_ses_authorization,
    check_ses_configuration_set,
    check_ses_suppression,
    check_alarm_action,
    check_regions_enabled,
)


def evaluate(config: Config, facts: Facts) -> list[CheckResult]:
    return [result for check in CHECKS if (result := check(config, facts)) is not None]


def all_passed(results: Iterable[CheckResult]) -> bool:
    return all(result.passed for result in results)


# --- rendering ---------------------------------------------------------------------------------------------------

_MARK = {"pass": "PASS", "fail": "FAIL", "cannot-check": "CANNOT CHECK"}


def render_text(results: list[CheckResult]) -> str:
    lines: list[str] = []
    for result in results:
        lines.append(f"[{_MARK[result.status]}] {result.check}: {result.detail}")
        if result.fix:
            lines.append(f"    fix: {result.fix}")
    passed = sum(result.passed for result in results)
    lines.append(f"{passed} of {len(results)} check(s) passed.")
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> str:
    return json.dumps(
        {"passed": all_passed(results), "checks": [asdict(result) for result in results]},
        indent=2,
    )
