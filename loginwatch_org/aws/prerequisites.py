"""Read the facts ``doctor`` checks. Read-only: every call here is a Describe/Get/List (and STS AssumeRole).

- The caller's own account is read with the caller's credentials; any other account (a watched member, the
  account of ``ses_identity_arn`` or of the alarm topic) through ``member_role``, assumed with STS (in accounts
  created by AWS Organizations the management account can assume ``OrganizationAccountAccessRole``:
  https://docs.aws.amazon.com/organizations/latest/userguide/orgs_manage_accounts_access-cross-account-role.html).
- One cached client per (account, service, Region); member accounts are read concurrently, eight at a time.
- A call that fails (access denied, role not assumable, ...) becomes an ``Unknown`` with the reason, so the check
  depending on it says "cannot-check"; only a failure to identify the caller at all (no credentials, no endpoint)
  raises ``AwsProblem``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from loginwatch_org import DEFAULT_MEMBER_ROLE
from loginwatch_org.aws.errors import error_code, error_message, explain
from loginwatch_org.aws.session import AwsTarget, client
from loginwatch_org.aws.workers import worker_pool
from loginwatch_org.config import Config
from loginwatch_org.doctor import (
    STACKSETS_SERVICE_PRINCIPAL,
    AlarmTopic,
    Facts,
    SesSender,
    Trail,
    Unknown,
    administration_role_name,
    deployed_regions,
    watched_accounts,
    watched_regions,
)
from loginwatch_org.mail_setup import mail_region

MEMBER_READERS = 8
# The Account Management API is global; its endpoint is in us-east-1.
ACCOUNT_API_REGION = "us-east-1"

T = TypeVar("T")


class _NoAccess(Exception):
    """An account whose role could not be assumed: every fact there is unknown for this reason."""


@dataclass(frozen=True)
class _Account:
    account_id: str
    target: AwsTarget


class Reader:
    """Clients for the caller's account and, through ``member_role``, for other accounts."""

    def __init__(
        self, target: AwsTarget, caller_account: str, partition: str, member_role: str, caller_arn: str = ""
    ) -> None:
        self._target = target
        self.caller_account = caller_account
        self.caller_arn = caller_arn
        self.partition = partition
        self._member_role = member_role
        self._lock = threading.Lock()
        # One boto3 session for every client: it loads each service model once (creating a client from a
        # fresh session is several times slower, and doctor creates a few per watched account).
        import boto3

        self._session = boto3.Session(profile_name=None if target.access_key_id else target.profile)
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._accounts: dict[str, AwsTarget | _NoAccess] = {caller_account: target}

    def client(self, account: str, service: str, region: str) -> Any:
        key = (account, service, region)
        with self._lock:
            if key in self._clients:
                return self._clients[key]
        account_target = replace(self._account_target(account), region=region)
        with self._lock:  # a boto3 session is not thread-safe; its clients are
            if key not in self._clients:
                self._clients[key] = client(account_target, service, session=self._session)
            return self._clients[key]

    def _account_target(self, account: str) -> AwsTarget:
        with self._lock:
            known = self._accounts.get(account)
        if known is None:
            known = self._assume(account)
            with self._lock:
                known = self._accounts.setdefault(account, known)
        if isinstance(known, _NoAccess):
            raise known
        return known

    def _assume(self, account: str) -> AwsTarget | _NoAccess:
        role_arn = f"arn:{self.partition}:iam::{account}:role/{self._member_role}"
        try:
            sts = self.client(self.caller_account, "sts", self._target.region or ACCOUNT_API_REGION)
            credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="loginwatch-org-doctor")["Credentials"]
        except Exception as error:  # any failure leaves this account unreadable, with the reason
            return _NoAccess(f"cannot assume role {self._member_role} ({_why(error)})")
        return replace(
            self._target,
            access_key_id=credentials["AccessKeyId"],
            secret_access_key=credentials["SecretAccessKey"],
            session_token=credentials["SessionToken"],
        )


def _why(error: BaseException) -> str:
    code = error_code(error)
    text = f"{code}: {error_message(error)}" if code else f"{type(error).__name__}: {error}"
    # One line: some endpoints answer an unknown call with a whole HTML page.
    first = text.strip().splitlines()[0] if text.strip() else text
    return first[:200]


def _read(call: Callable[[], T], what: str) -> T | Unknown:
    """The value of ``call``, or why it could not be read."""
    try:
        return call()
    except _NoAccess as error:
        return Unknown(str(error))
    except Exception as error:  # an unreadable fact is reported, never fatal
        return Unknown(f"{what} failed ({_why(error)})")


def administrator_reader(config: Config, target: AwsTarget, member_role: str) -> Reader:
    """Clients for the caller (the administrator, in the stack sets' Region) and, through ``member_role``, for
    the member accounts; who the caller is comes from GetCallerIdentity, which needs no permission."""
    admin_region = target.region or config.stack_set.admin_region
    try:
        identity = client(replace(target, region=admin_region), "sts").get_caller_identity()
    except Exception as error:
        raise explain(error) from error
    arn = str(identity["Arn"])
    return Reader(replace(target, region=admin_region), str(identity["Account"]), arn.split(":")[1], member_role, arn)


def gather(config: Config, target: AwsTarget, member_role: str = DEFAULT_MEMBER_ROLE) -> Facts:
    """Every fact the checks of ``loginwatch_org.doctor`` need, for this config."""
    admin_region = target.region or config.stack_set.admin_region
    reader = administrator_reader(config, target, member_role)
    caller = reader.caller_account
    settings = config.stack_set
    accounts = watched_accounts(config)
    service_managed = settings.permission_model == "service-managed"

    with worker_pool(MEMBER_READERS) as pool:
        per_account = dict(zip(accounts, pool.map(lambda a: _account_facts(reader, config, a), accounts), strict=True))
    return Facts(
        caller_account=caller,
        trusted_access=_trusted_access(reader, config, admin_region) if service_managed else None,
        delegated_admins=_delegated_admins(reader, admin_region) if settings.call_as == "delegated-admin" else None,
        administration_role=None if service_managed else _administration_role(reader, config),
        execution_roles=None
        if service_managed
        else {a: facts.execution_role for a, facts in per_account.items() if facts.execution_role is not None},
        trails=_trails(reader, {admin_region, *deployed_regions(config)}),
        ses=_ses_senders(reader, config, per_account),
        alarm_topic=_alarm_topic(reader, config),
        region_status={a: facts.regions for a, facts in per_account.items()},
    )


# --- StackSets ---------------------------------------------------------------------------------------------------


def _trusted_access(reader: Reader, config: Config, region: str) -> bool | Unknown:
    """DescribeOrganizationsAccess: ENABLED when StackSets trusted access is activated.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeOrganizationsAccess.html
    """
    call_as = "DELEGATED_ADMIN" if config.stack_set.call_as == "delegated-admin" else "SELF"
    cloudformation = reader.client(reader.caller_account, "cloudformation", region)
    status = _read(
        lambda: cloudformation.describe_organizations_access(CallAs=call_as)["Status"],
        "cloudformation:DescribeOrganizationsAccess",
    )
    return status if isinstance(status, Unknown) else status == "ENABLED"


def _delegated_admins(reader: Reader, region: str) -> frozenset[str] | Unknown:
    """ListDelegatedAdministrators for the StackSets principal (management account or a delegated admin).

    https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListDelegatedAdministrators.html
    """
    organizations = reader.client(reader.caller_account, "organizations", region)

    def read() -> frozenset[str]:
        pages = organizations.get_paginator("list_delegated_administrators").paginate(
            ServicePrincipal=STACKSETS_SERVICE_PRINCIPAL
        )
        return frozenset(admin["Id"] for page in pages for admin in page.get("DelegatedAdministrators", []))

    return _read(read, "organizations:ListDelegatedAdministrators")


def _role_exists(reader: Reader, account: str, role: str) -> bool | Unknown:
    """IAM GetRole; NoSuchEntity means the role is missing.

    https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRole.html
    """

    def read() -> bool:
        iam = reader.client(account, "iam", ACCOUNT_API_REGION)
        try:
            iam.get_role(RoleName=role)
        except Exception as error:
            if error_code(error) == "NoSuchEntity":
                return False
            raise
        return True

    return _read(read, "iam:GetRole")


def _administration_role(reader: Reader, config: Config) -> bool | Unknown:
    arn = config.stack_set.administration_role_arn
    account = arn.split(":")[4] if arn else reader.caller_account
    return _role_exists(reader, account, administration_role_name(config))


# --- per watched account -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AccountFacts:
    execution_role: bool | Unknown | None  # None: service-managed, no execution role to look for
    regions: Mapping[str, str | Unknown]
    ses: tuple[SesSender, ...]


def _account_facts(reader: Reader, config: Config, account: str) -> _AccountFacts:
    regions = watched_regions(config)
    self_managed = config.stack_set.permission_model == "self-managed"
    execution_role = _role_exists(reader, account, config.stack_set.execution_role_name) if self_managed else None
    statuses = _region_statuses(reader, account, deployed_regions(config))
    senders: tuple[SesSender, ...] = ()
    if config.delivery.ses_identity_arn is None:
        # Without sending authorization every account sends from an identity of its own, in each watch Region.
        recipients = _recipients_of(config, account)
        senders = tuple(
            _ses_sender(reader, account, region, config.delivery.sender, None, recipients) for region in regions
        )
    return _AccountFacts(execution_role, statuses, senders)


def _region_statuses(reader: Reader, account: str, regions: Iterable[str]) -> dict[str, str | Unknown]:
    """Account Management ListRegions, read in the account itself (no AccountId, so no trusted access needed).

    https://docs.aws.amazon.com/accounts/latest/reference/API_ListRegions.html
    """

    def read() -> dict[str, str]:
        api = reader.client(account, "account", ACCOUNT_API_REGION)
        pages = api.get_paginator("list_regions").paginate()
        return {r["RegionName"]: r["RegionOptStatus"] for page in pages for r in page.get("Regions", [])}

    found = _read(read, "account:ListRegions")
    if isinstance(found, Unknown):
        return dict.fromkeys(regions, found)
    return {region: found.get(region, "DISABLED") for region in regions}


# --- CloudTrail --------------------------------------------------------------------------------------------------


def _trails(reader: Reader, regions: Iterable[str]) -> tuple[Trail, ...] | Unknown:
    """DescribeTrails (with shadow trails, so multi-Region and organisation trails show up in every Region),
    then each trail's status and event selectors, asked in its home Region.

    https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_DescribeTrails.html
    https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_GetTrailStatus.html
    https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_GetEventSelectors.html
    """
    found: dict[str, dict[str, Any]] = {}
    for region in sorted(regions):
        cloudtrail = reader.client(reader.caller_account, "cloudtrail", region)
        listed = _read(
            lambda c=cloudtrail: c.describe_trails(includeShadowTrails=True)["trailList"],  # type: ignore[misc]
            "cloudtrail:DescribeTrails",
        )
        if isinstance(listed, Unknown):
            return listed
        for trail in listed:
            found.setdefault(str(trail["TrailARN"]), trail)
    return tuple(_trail(reader, arn, trail) for arn, trail in sorted(found.items()))


def _trail(reader: Reader, arn: str, trail: Mapping[str, Any]) -> Trail:
    home = str(trail.get("HomeRegion") or arn.split(":")[3])
    cloudtrail = reader.client(reader.caller_account, "cloudtrail", home)
    logging = _read(lambda: bool(cloudtrail.get_trail_status(Name=arn)["IsLogging"]), "cloudtrail:GetTrailStatus")
    selectors = _read(lambda: cloudtrail.get_event_selectors(TrailName=arn), "cloudtrail:GetEventSelectors")
    return Trail(
        name=str(trail.get("Name", arn)),
        home_region=home,
        multi_region=bool(trail.get("IsMultiRegionTrail")),
        organization=bool(trail.get("IsOrganizationTrail")),
        logging=logging,
        management_events=selectors if isinstance(selectors, Unknown) else logs_management_writes(selectors),
    )


def logs_management_writes(selectors: Mapping[str, Any]) -> bool:
    """Whether a GetEventSelectors answer records write management events (sign-ins are readOnly: false).

    Basic selectors: IncludeManagementEvents (default true) with ReadWriteType All or WriteOnly (default All).
    Advanced selectors: eventCategory = Management, not limited to read-only events, not excluding the sign-in
    event source. https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_AdvancedEventSelector.html
    """
    for selector in selectors.get("EventSelectors") or []:
        if selector.get("IncludeManagementEvents", True) and selector.get("ReadWriteType", "All") in (
            "All",
            "WriteOnly",
        ):
            return True
    for advanced in selectors.get("AdvancedEventSelectors") or []:
        fields = {f.get("Field"): f for f in advanced.get("FieldSelectors", [])}
        category = fields.get("eventCategory", {})
        if "Management" not in category.get("Equals", []):
            continue
        if "true" in fields.get("readOnly", {}).get("Equals", []):
            continue
        source = fields.get("eventSource", {})
        if "signin.amazonaws.com" in source.get("NotEquals", []) or (
            source.get("Equals") and "signin.amazonaws.com" not in source["Equals"]
        ):
            continue
        return True
    return False


# --- SES ---------------------------------------------------------------------------------------------------------


def _ses_senders(reader: Reader, config: Config, per_account: Mapping[str, _AccountFacts]) -> tuple[SesSender, ...]:
    arn = config.delivery.ses_identity_arn
    if arn is None:
        return tuple(sender for facts in per_account.values() for sender in facts.ses)
    parts = arn.split(":")
    identity = arn.split(":identity/", 1)[1]
    mail_account, region = config.delivery.mail_account, mail_region(config)
    if mail_account is not None and region is not None:
        # The mail account sends every alert with its own identity: only there does SES need to be ready, and
        # no sending-authorization policy is involved.
        return (_ses_sender(reader, mail_account, region, identity, None, _recipients_of(config, None)),)
    return (_ses_sender(reader, parts[4], parts[3], identity, arn, _recipients_of(config, None)),)


def read_senders(
    config: Config, target: AwsTarget, member_role: str = DEFAULT_MEMBER_ROLE, *, each_account: bool = False
) -> tuple[SesSender, ...] | None:
    """SES where alerts are sent from, read as ``gather`` reads it, suppression list included: the mail account or
    the shared identity's account always; with every account sending for itself, each watched account only when
    ``each_account`` (a role and a few calls per account), else None."""
    if config.delivery.ses_identity_arn is None and not each_account:
        return None
    reader = administrator_reader(config, target, member_role)
    if config.delivery.ses_identity_arn is not None:
        return _ses_senders(reader, config, {})
    regions = watched_regions(config)

    def senders_of(account: str) -> tuple[SesSender, ...]:
        recipients = _recipients_of(config, account)
        return tuple(_ses_sender(reader, account, r, config.delivery.sender, None, recipients) for r in regions)

    accounts = watched_accounts(config)
    with worker_pool(MEMBER_READERS) as pool:
        return tuple(sender for senders in pool.map(senders_of, accounts) for sender in senders)


def _recipients_of(config: Config, account: str | None) -> tuple[str, ...]:
    """Whom alerts sent from ``account`` go to (None: from every account). The dead-letter alarm's recipients are
    left out: SNS emails them, not SES."""
    management = config.management_watch()
    watches = [*config.targets(), *([management] if management is not None else [])]
    chosen = [watch for watch in watches if account is None or watch.account_id == account]
    return tuple(dict.fromkeys(address for watch in chosen for address in watch.recipients))


def _suppressed(ses: Any, recipients: Iterable[str]) -> dict[str, str]:
    """The recipients on the account-level suppression list, with SES's reason.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetSuppressedDestination.html
    """
    found: dict[str, str] = {}
    for address in recipients:
        try:
            entry = ses.get_suppressed_destination(EmailAddress=address)["SuppressedDestination"]
        except Exception as error:
            if error_code(error) == "NotFoundException":
                continue
            raise
        found[address] = str(entry.get("Reason") or "listed")
    return found


def _ses_sender(
    reader: Reader,
    account: str,
    region: str,
    identity: str,
    identity_arn: str | None,
    recipients: tuple[str, ...] = (),
) -> SesSender:
    """SESv2 GetAccount (production access, sending enabled) and GetEmailIdentity (verification, policies).

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetAccount.html
    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetEmailIdentity.html
    """
    try:
        ses = reader.client(account, "sesv2", region)
    except _NoAccess as error:
        unknown = Unknown(str(error))
        return SesSender(
            account, region, identity, unknown, unknown, unknown, unknown if identity_arn else None, unknown, unknown
        )
    details = _read(ses.get_account, "sesv2:GetAccount")
    names = [identity] if identity_arn or "@" not in identity else [identity, identity.split("@", 1)[1]]
    described = _read(lambda: _email_identity(ses, names), "sesv2:GetEmailIdentity")

    def from_details(key: str) -> bool | Unknown:
        return details if isinstance(details, Unknown) else bool(details.get(key))

    verified: bool | Unknown = (
        described if isinstance(described, Unknown) else bool(described.get("VerifiedForSendingStatus"))
    )
    authorizes: bool | Unknown | None = None
    if identity_arn:
        authorizes = described if isinstance(described, Unknown) else allows_send_email(described.get("Policies"))
    # GetEmailIdentity's ConfigurationSetName: the identity's default configuration set, absent when it has none.
    # https://docs.aws.amazon.com/ses/latest/dg/managing-configuration-sets-default-returning.html
    configuration_set: str | Unknown = (
        described if isinstance(described, Unknown) else str(described.get("ConfigurationSetName") or "")
    )
    suppressed = _read(lambda: _suppressed(ses, recipients), "sesv2:GetSuppressedDestination")
    return SesSender(
        account,
        region,
        identity,
        verified,
        from_details("ProductionAccessEnabled"),
        from_details("SendingEnabled"),
        authorizes,
        configuration_set,
        suppressed,
    )


def _email_identity(ses: Any, names: list[str]) -> dict[str, Any]:
    """The first of ``names`` (the address, then its domain) that is verified, else the first that exists."""
    existing: list[dict[str, Any]] = []
    for name in names:
        try:
            described: dict[str, Any] = ses.get_email_identity(EmailIdentity=name)
        except Exception as error:
            if error_code(error) == "NotFoundException":
                continue
            raise
        if described.get("VerifiedForSendingStatus"):
            return described
        existing.append(described)
    return existing[0] if existing else {}


def allows_send_email(policies: Mapping[str, str] | None) -> bool:
    """Whether a sending-authorization policy allows ses:SendEmail (what the notifier calls)."""
    for text in (policies or {}).values():
        try:
            document = json.loads(text)
        except ValueError:
            continue
        statements = document.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            if statement.get("Effect") != "Allow":
                continue
            actions = statement.get("Action", [])
            for action in [actions] if isinstance(actions, str) else actions:
                if action.lower() in ("ses:sendemail", "ses:send*", "ses:*", "*"):
                    return True
    return False


# --- the dead-letter alarm's topic -------------------------------------------------------------------------------


def _alarm_topic(reader: Reader, config: Config) -> AlarmTopic | Unknown | None:
    """SNS GetTopicAttributes: SubscriptionsConfirmed tells whether anyone hears the alarm.

    https://docs.aws.amazon.com/sns/latest/api/API_GetTopicAttributes.html
    """
    arn = config.delivery.alarm_topic_arn
    if arn is None:
        return None
    parts = arn.split(":")

    def read() -> AlarmTopic:
        sns = reader.client(parts[4], "sns", parts[3])
        try:
            attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        except Exception as error:
            if error_code(error) in ("NotFound", "NotFoundException"):
                return AlarmTopic(arn, exists=False, confirmed_subscriptions=0)
            raise
        return AlarmTopic(arn, exists=True, confirmed_subscriptions=int(attributes.get("SubscriptionsConfirmed", 0)))

    return _read(read, "sns:GetTopicAttributes")
