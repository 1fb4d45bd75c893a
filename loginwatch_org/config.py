"""The organisation's watch, as written in ``config/accounts.yaml``: pydantic models and their loader.

Pure: no AWS calls. Every model is strict (unknown keys are errors) and frozen, so a loaded config can be
passed around and hashed without anyone changing it under the planner's feet.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from loginwatch_org import DEFAULT_CONFIG_PATH as DEFAULT_CONFIG_PATH
from loginwatch_org.errors import UsageError
from loginwatch_org.yamlsource import SourceMap, YamlError, load_yaml

AlertPolicy = Literal["all", "root-only", "failures-only", "root-and-failures", "no-mfa"]
ALERT_POLICIES: tuple[str, ...] = ("all", "root-only", "failures-only", "root-and-failures", "no-mfa")

# Commercial AWS Regions that can host CloudFormation StackSet instances. A region outside this list is
# far more often a typo than a region launched since this release.
AWS_REGIONS: frozenset[str] = frozenset(
    {
        "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
        "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
        "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-central-1", "ca-west-1", "eu-central-1",
        "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3",
        "il-central-1", "me-central-1", "me-south-1", "mx-central-1", "sa-east-1", "us-east-1",
        "us-east-2", "us-west-1", "us-west-2",
    }
)  # fmt: skip

# Regions launched before 20 March 2019 are enabled in every account and cannot be disabled; later ones are
# opt-in ("Default Regions" and "Opt-in Regions" in
# https://docs.aws.amazon.com/accounts/latest/reference/manage-acct-regions.html, and the opt-in status column
# of https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html). A sign-in can be
# recorded in any of these without anyone enabling anything, so ``forward_from: all`` covers them all.
DEFAULT_ENABLED_REGIONS: frozenset[str] = frozenset(
    {
        "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-southeast-1", "ap-southeast-2",
        "ca-central-1", "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3", "sa-east-1",
        "us-east-1", "us-east-2", "us-west-1", "us-west-2",
    }
)  # fmt: skip
ALL_DEFAULT_REGIONS = "all"
# Where forwarders send sign-ins, and so where the watch must be: CloudTrail records root sign-ins there.
WATCH_REGION = "us-east-1"

# The management account's plain stacks are named after the stack set plus one of these; a stack name "can't be
# longer than 128 characters" (StackName, https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html).
WATCH_STACK_SUFFIX = "-watch"
FORWARDER_STACK_SUFFIX = "-forwarder"
MAX_STACK_NAME = 128

MAX_RECIPIENTS = 50
MAX_RECIPIENTS_LENGTH = 3000
# "The maximum number of organizational units (OUs) supported by a CreateStackInstances operation is 50", and the
# same for UpdateStackInstances, DeleteStackInstances and UpdateStackSet; every operation names all of the config's.
# https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackInstances.html
MAX_ORGANIZATIONAL_UNITS = 50

_ACCOUNT_ID = re.compile(r"^\d{12}$")
# Deliberately simple: SES rejects what it cannot deliver; this catches typos before any AWS write.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_OU_OR_ROOT = re.compile(r"^(r-[0-9a-z]{4,32}|ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})$")
_STACK_SET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_SES_IDENTITY_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):ses:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):identity/(?P<identity>.+)$"
)
# Up to 64 letters, digits, hyphens and underscores:
# https://docs.aws.amazon.com/ses/latest/APIReference/API_ConfigurationSet.html
_CONFIGURATION_SET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")


def _account_id(value: str) -> str:
    if not _ACCOUNT_ID.match(value):
        raise ValueError(f"an AWS account id is exactly 12 digits, got '{value}'")
    return value


def _email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError(f"'{value}' is not a valid email address")
    return value


def _recipients(values: list[str]) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value.lower() in seen:
            raise ValueError(f"'{value}' is listed twice")
        seen.add(value.lower())
    # SES sends one message to at most 50 recipients, and the list travels in the function's environment,
    # which Lambda caps at 4 KB for all variables together.
    if len(values) > MAX_RECIPIENTS:
        raise ValueError(
            f"{len(values)} recipients; SES sends a message to at most {MAX_RECIPIENTS}: use a list address"
        )
    if len(",".join(values)) > MAX_RECIPIENTS_LENGTH:
        raise ValueError(f"the recipient list is longer than {MAX_RECIPIENTS_LENGTH} characters; use a list address")
    return values


def _region(value: str) -> str:
    if value not in AWS_REGIONS:
        raise ValueError(f"'{value}' is not an AWS Region (for example: us-east-1, eu-west-1)")
    return value


def _forward_region(value: str) -> str:
    return value if value == ALL_DEFAULT_REGIONS else _region(value)


def _one_or_list(value: Any) -> Any:
    # ``forward_from: all`` reads better than ``forward_from: [all]``; both mean the same.
    return [value] if isinstance(value, str) else value


def _ou(value: str) -> str:
    if not _OU_OR_ROOT.match(value):
        raise ValueError(f"'{value}' is neither an organisational unit id (ou-...) nor a root id (r-...)")
    return value


AccountId = Annotated[str, AfterValidator(_account_id)]
Email = Annotated[str, AfterValidator(_email)]
Recipients = Annotated[list[Email], Field(min_length=1), AfterValidator(_recipients)]
Region = Annotated[str, AfterValidator(_region)]
OrganizationalUnit = Annotated[str, AfterValidator(_ou)]
ForwardRegion = Annotated[str, AfterValidator(_forward_region)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class OperationPreferences(_Model):
    """How fast StackSets may go, and how many failures it tolerates before stopping an operation.

    Two speeds: an operation that changes running watches (a template or recipient change, a deletion) goes in
    halves, so a broken change that fails in more than the tolerance is stopped in each Region before the second
    half is touched; an operation that creates watches goes all at once, since a failed creation leaves an account
    no worse off than before (it had no watch) and is reported like any failure."""

    max_concurrent_percentage: int = Field(default=50, ge=1, le=100)
    create_concurrent_percentage: int = Field(default=100, ge=1, le=100)
    failure_tolerance_percentage: int = Field(default=10, ge=0, le=100)
    concurrency_mode: Literal["strict-failure-tolerance", "soft-failure-tolerance"] = "soft-failure-tolerance"
    region_concurrency: Literal["sequential", "parallel"] = "parallel"


class StackSetSettings(_Model):
    name: str = "loginwatch"
    description: str = "Emails every AWS console sign-in in this account to its owners (loginwatch-org)."
    permission_model: Literal["service-managed", "self-managed"] = "service-managed"
    call_as: Literal["self", "delegated-admin"] = "self"
    # Where the stack set itself lives (the StackSets administrator region), whatever the caller's default.
    admin_region: Region = "us-east-1"
    regions: list[Region] = Field(default_factory=lambda: ["us-east-1"], min_length=1)
    # Where sign-ins are forwarded from to the watch: ``all`` (every region enabled by default), plus any
    # opt-in region listed beside it, or an explicit list of regions.
    forward_from: Annotated[list[ForwardRegion], BeforeValidator(_one_or_list)] = Field(
        default_factory=lambda: [ALL_DEFAULT_REGIONS], min_length=1
    )
    organizational_units: list[OrganizationalUnit] = Field(default_factory=list)
    administration_role_arn: str | None = None
    execution_role_name: str = "AWSCloudFormationStackSetExecutionRole"
    operation_preferences: OperationPreferences = Field(default_factory=OperationPreferences)
    # What happens to an ACTIVE account of the organisation (in the stack set's scope) that ``accounts`` does not
    # list: ``defaults`` watches it with the default recipients and policy (service-managed: at once, through
    # StackSets automatic deployment), ``report`` only reports it. Either way plan and status name it with the line
    # to add.
    new_accounts: Literal["defaults", "report"] = "defaults"

    @property
    def auto_deployment(self) -> bool:
        """Whether StackSets deploys to accounts as they join the targeted OUs (service-managed only)."""
        return self.permission_model == "service-managed" and self.new_accounts == "defaults"

    @model_validator(mode="after")
    def _check(self) -> StackSetSettings:
        found = _Problems()
        here = ("stack_set",)
        if not _STACK_SET_NAME.match(self.name):
            found.add(
                here,
                f"name '{self.name}': a stack set name starts with a letter and holds only letters, digits "
                "and hyphens (at most 128)",
            )
        if len(set(self.regions)) != len(self.regions):
            found.add(here, "regions: a region is listed twice")
        if WATCH_REGION not in self.regions:
            # Root sign-ins and sign-ins through the global endpoint are recorded in us-east-1, and every
            # forwarder sends to the us-east-1 bus: without a watch there they would be accepted and dropped.
            # https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-aws-console-sign-in-events.html
            found.add(
                ("stack_set", "regions"),
                f"{', '.join(self.regions)} leaves out {WATCH_REGION}: root sign-ins and sign-ins through the "
                f"global endpoint are recorded there, and every forwarder sends to the {WATCH_REGION} watch; add "
                f"{WATCH_REGION} (another Region may hold a watch too)",
            )
        if self.permission_model == "service-managed" and not self.organizational_units:
            found.add(
                here,
                "organizational_units: a service-managed stack set deploys to organisational units; list the "
                "root id (r-...) or the OUs (ou-...) that hold the accounts",
            )
        if self.permission_model == "self-managed" and self.call_as == "delegated-admin":
            found.add(here, "call_as: delegated-admin applies only to service-managed stack sets")
        if len(self.organizational_units) > MAX_ORGANIZATIONAL_UNITS:
            found.add(
                here,
                f"organizational_units: {len(self.organizational_units)} listed; a StackSets operation takes at most "
                f"{MAX_ORGANIZATIONAL_UNITS}. List a parent OU (or the root id r-...) that holds them instead",
            )
        found.raise_any()
        return self

    @model_validator(mode="after")
    def _check_forward_from(self) -> StackSetSettings:
        found = _Problems()
        seen: set[str] = set()
        for index, value in enumerate(self.forward_from):
            path = ("stack_set", "forward_from", index)
            if value in seen:
                found.add(path, f"'{value}' is listed twice")
            seen.add(value)
            if value in self.regions or value == WATCH_REGION:
                found.add(path, f"{value} holds the watch itself; sign-ins recorded there reach it without a forwarder")
        if ALL_DEFAULT_REGIONS in seen:
            for index, value in enumerate(self.forward_from):
                if value in DEFAULT_ENABLED_REGIONS:
                    found.add(
                        ("stack_set", "forward_from", index),
                        f"{value} is enabled by default in every account, so '{ALL_DEFAULT_REGIONS}' already "
                        "includes it; list only opt-in regions beside it",
                    )
        found.raise_any()
        return self


class Delivery(_Model):
    sender: Email
    ses_identity_arn: str | None = None
    # An SNS topic told when an alert could not be delivered and waits in an account's dead-letter queue.
    alarm_topic_arn: str | None = None
    # One account of the organisation whose SES sends every alert: member functions assume its sending role,
    # so only that account needs SES production access. Without it, each account sends through its own SES.
    mail_account: AccountId | None = None
    # The identity's default configuration set, if it has one: SES then authorizes every send against the
    # configuration set too, and a role without ses:SendEmail on it is refused (AccessDenied).
    configuration_set: str | None = None
    # Who hears that an alert was dead-lettered in any account (the mail account's alarm topic emails them);
    # the default recipients when not given.
    alarm_recipients: Recipients | None = None

    @model_validator(mode="after")
    def _check(self) -> Delivery:
        if self.ses_identity_arn is not None:
            match = _SES_IDENTITY_ARN.match(self.ses_identity_arn)
            if match is None:
                raise _LocatedValueError(
                    ("delivery", "ses_identity_arn"),
                    f"ses_identity_arn '{self.ses_identity_arn}' is not an SES identity ARN "
                    "(arn:aws:ses:REGION:ACCOUNT:identity/NAME)",
                )
            # Sending authorization only covers From addresses of the identity: the address or its domain.
            identity = match.group("identity").lower()
            if identity not in (self.sender.lower(), self.sender.split("@")[1].lower()):
                raise _LocatedValueError(
                    ("delivery", "ses_identity_arn"),
                    f"ses_identity_arn names the identity '{identity}', which cannot send as {self.sender}; "
                    "use the sender's address or domain identity",
                )
            if self.mail_account is not None and match.group("account") != self.mail_account:
                raise _LocatedValueError(
                    ("delivery", "ses_identity_arn"),
                    f"ses_identity_arn is an identity of account {match.group('account')}, but the mail account "
                    f"{self.mail_account} sends every alert: name the identity verified in the mail account "
                    f"(arn:aws:ses:{match.group('region')}:{self.mail_account}:identity/{identity})",
                )
        elif self.mail_account is not None:
            domain = self.sender.split("@")[1]
            raise _LocatedValueError(
                ("delivery", "mail_account"),
                f"mail_account {self.mail_account} sends every alert, so name the SES identity verified there "
                f"with ses_identity_arn, e.g. arn:aws:ses:us-east-1:{self.mail_account}:identity/{domain} "
                "(its Region is where the mail account sends from)",
            )
        if self.alarm_topic_arn is not None and not _SNS_TOPIC_ARN.match(self.alarm_topic_arn):
            raise _LocatedValueError(
                ("delivery", "alarm_topic_arn"), f"alarm_topic_arn '{self.alarm_topic_arn}' is not an SNS topic ARN"
            )
        if self.configuration_set is not None and not _CONFIGURATION_SET.match(self.configuration_set):
            raise _LocatedValueError(
                ("delivery", "configuration_set"),
                f"configuration_set '{self.configuration_set}' is not an SES configuration set name (letters, "
                "digits, hyphens and underscores, at most 64)",
            )
        if self.alarm_recipients is not None and self.mail_account is None:
            raise _LocatedValueError(
                ("delivery", "alarm_recipients"),
                "alarm_recipients are emailed by the mail account's alarm topic: set mail_account too, or connect "
                "each account's dead-letter alarm to paging with alarm_topic_arn",
            )
        return self

    @property
    def identity_region(self) -> str | None:
        """The Region of ``ses_identity_arn``: where SES sends from (sending authorization is regional)."""
        match = _SES_IDENTITY_ARN.match(self.ses_identity_arn or "")
        return match.group("region") if match else None

    @property
    def identity_name(self) -> str | None:
        """The identity ``ses_identity_arn`` names: an address, or a domain that covers the sender."""
        match = _SES_IDENTITY_ARN.match(self.ses_identity_arn or "")
        return match.group("identity") if match else None

    @property
    def identity_partition(self) -> str:
        match = _SES_IDENTITY_ARN.match(self.ses_identity_arn or "")
        return match.group("partition") if match else "aws"


class Defaults(_Model):
    recipients: Recipients
    alert_on: AlertPolicy = "all"


class ManagementAccount(_Model):
    """The organisation's management account: StackSets cannot reach it with service-managed permissions, so it
    gets its watch and forwarders as plain stacks, with recipients and policy of its own (defaults otherwise)."""

    id: AccountId
    name: str = Field(default="management", min_length=1)
    recipients: Recipients | None = None
    alert_on: AlertPolicy | None = None
    enabled: bool = True


class Account(_Model):
    id: AccountId
    name: str = Field(min_length=1, max_length=128)
    recipients: Recipients | None = None
    alert_on: AlertPolicy | None = None
    enabled: bool = True


class Config(_Model):
    stack_set: StackSetSettings = Field(default_factory=StackSetSettings)
    delivery: Delivery
    defaults: Defaults
    management_account: ManagementAccount | None = None
    accounts: list[Account] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_accounts(self) -> Config:
        found = _Problems()
        seen: dict[str, int] = {}
        for index, account in enumerate(self.accounts):
            if account.id in seen:
                found.add(
                    ("accounts", index, "id"),
                    f"account {account.id} is listed twice (also as accounts[{seen[account.id]}])",
                )
            seen.setdefault(account.id, index)
            if (
                self.management_account is not None
                and account.id == self.management_account.id
                and self.stack_set.permission_model == "service-managed"
            ):
                found.add(
                    ("accounts", index, "id"),
                    f"account {account.id} is the management account; service-managed stack sets never "
                    "deploy there, so it cannot be a member account here",
                )
        found.raise_any()
        return self

    @model_validator(mode="after")
    def _check_management_stack_names(self) -> Config:
        longest = self.stack_set.name + FORWARDER_STACK_SUFFIX
        if self.management_account is not None and len(longest) > MAX_STACK_NAME:
            raise _LocatedValueError(
                ("stack_set", "name"),
                f"the management account's stacks are named after the stack set ({longest}), and CloudFormation "
                f"caps a stack name at {MAX_STACK_NAME} characters; use a name of at most "
                f"{MAX_STACK_NAME - len(FORWARDER_STACK_SUFFIX)}",
            )
        return self

    def targets(self) -> list[AccountWatch]:
        """The enabled member accounts with their effective settings, in config order."""
        return [self._watch(account) for account in self.accounts if account.enabled]

    def management_watch(self) -> AccountWatch | None:
        """The management account's effective settings; None when the config has none or disables it."""
        account = self.management_account
        return self._watch(account) if account is not None and account.enabled else None

    def _watch(self, account: Account | ManagementAccount) -> AccountWatch:
        return AccountWatch(
            account_id=account.id,
            name=account.name,
            recipients=tuple(account.recipients or self.defaults.recipients),
            alert_on=account.alert_on or self.defaults.alert_on,
        )

    def default_watch(self, account_id: str, name: str) -> AccountWatch | None:
        """How an account the config does not list is watched: with the defaults, or (``report``) not at all."""
        if self.stack_set.new_accounts != "defaults":
            return None
        return AccountWatch(account_id, name, tuple(self.defaults.recipients), self.defaults.alert_on)

    def forward_regions(self) -> tuple[str, ...]:
        """The regions that get a forwarder, sorted: ``forward_from`` resolved, without the watch's regions."""
        chosen: set[str] = set()
        for value in self.stack_set.forward_from:
            chosen |= DEFAULT_ENABLED_REGIONS if value == ALL_DEFAULT_REGIONS else {value}
        return tuple(sorted(chosen - {WATCH_REGION, *self.stack_set.regions}))

    def disabled_account_ids(self) -> frozenset[str]:
        return frozenset(account.id for account in self.accounts if not account.enabled)

    def account_names(self) -> dict[str, str]:
        names = {account.id: account.name for account in self.accounts}
        if self.management_account is not None:
            names[self.management_account.id] = self.management_account.name
        return names


@dataclass(frozen=True)
class AccountWatch:
    """What one account should have: who gets its alerts and which sign-ins alert."""

    account_id: str
    name: str
    recipients: tuple[str, ...]
    alert_on: str


class _LocatedValueError(ValueError):
    """A cross-field error that knows which field it is about (pydantic would blame the whole model)."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class _Problems(ValueError):
    """Every cross-field problem a validator found, each with the field it is about: one run of ``validate``
    names them all, where stopping at the first would take a run per mistake."""

    def __init__(self) -> None:
        super().__init__("")
        self.found: list[tuple[tuple[str | int, ...], str]] = []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.found.append((path, message))

    def raise_any(self) -> None:
        if self.found:
            self.args = (self.found[0][1],)
            raise self


class ConfigError(UsageError):
    """Invalid configuration: ``problems`` are ready-to-print lines naming file, line and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> Config:
    try:
        data, source = load_yaml(path)
    except YamlError as error:
        raise ConfigError([str(error)]) from None
    return parse_config(data, source)


def parse_config(data: Any, source: SourceMap) -> Config:
    if not isinstance(data, dict):
        raise ConfigError([f"{source.file}:1: the file must be a mapping with stack_set, delivery, defaults, accounts"])
    # Unknown keys first, every one at any depth: a misspelled section would otherwise surface only as the
    # complaints its absence causes, and pydantic stops at the first model that fails to build.
    problems = [
        _located(source, path, message, line=source.key_line(path)) for path, message in _unknown_keys(Config, data, ())
    ]
    # A section with a default that cannot be valid on its own (stack_set: a service-managed stack set
    # needs organizational_units) is validated as an empty mapping, so its problems name the section.
    absent = {name for name in _DEFAULTED_SECTIONS if name not in data}
    try:
        config = Config.model_validate({**data, **{key: {} for key in absent}})
    except ValidationError as error:
        described = problems + _describe(error, data, source, absent)
        described += [problem for problem in _skipped_checks(data, source, absent) if problem not in described]
        raise ConfigError(sorted(described, key=_line_number)) from None
    if problems:
        raise ConfigError(problems)
    return config


def _skipped_checks(data: dict[str, Any], source: SourceMap, absent: Iterable[str]) -> list[str]:
    """The cross-field checks pydantic skips when a field beside them is invalid (an after-validator runs only on
    a model whose fields all validated), run on the file as written, so the first run lists every mistake.
    A check that trips over a value of the wrong type is left out: that value has its own problem already."""

    def built(model: type[_Model], raw: Any) -> Any:
        if not isinstance(raw, dict):
            return None
        return model.model_construct(**{key: value for key, value in raw.items() if key in model.model_fields})

    # A missing section is reported as missing; what its defaults would fail adds nothing.
    stack_set = None if "stack_set" in absent else built(StackSetSettings, data.get("stack_set"))
    raw_accounts = data.get("accounts")
    accounts = [built(Account, item) for item in raw_accounts] if isinstance(raw_accounts, list) else None
    config = None
    if stack_set is not None and accounts is not None and all(a is not None for a in accounts):
        config = Config.model_construct(
            stack_set=stack_set,
            accounts=accounts,
            management_account=built(ManagementAccount, data.get("management_account")),
        )
    # The validators as plain functions (pydantic's decorator keeps them callable on the class).
    checks: list[tuple[Any, Any]] = [
        (StackSetSettings._check, stack_set),
        (StackSetSettings._check_forward_from, stack_set),
        (Delivery._check, built(Delivery, data.get("delivery"))),
        (Config._check_accounts, config),
        (Config._check_management_stack_names, config),
    ]
    found: list[str] = []
    for check, model in checks:
        if model is None:
            continue
        try:
            check(model)
        except _Problems as problems:
            found += [_located(source, path, message) for path, message in problems.found]
        except _LocatedValueError as problem:
            found.append(_located(source, problem.path, problem.message))
        except (TypeError, AttributeError, KeyError, IndexError, ValueError):
            continue
    return found


def _line_number(problem: str) -> float:
    """The line a problem names, to list problems top to bottom; one with no line (a missing section) comes after
    the lines that explain it, such as a misspelled key."""
    _, _, rest = problem.partition(":")
    number, _, _ = rest.partition(":")
    return int(number) if number.isdigit() else float("inf")


# Sections whose default is a model: a config that omits them still gets them checked.
_DEFAULTED_SECTIONS = ("stack_set",)


def _located(source: SourceMap, path: tuple[str | int, ...], message: str, line: int | None = None) -> str:
    line = line or source.line_of(path)
    where = f"{source.file}:{line}" if line else source.file
    return f"{where}: {_field_name(path)}: {message}"


def _unknown_keys(model: type[BaseModel], data: Any, path: tuple[str | int, ...]) -> Iterator[tuple[Any, str]]:
    """Every key of ``data`` that ``model`` (and the models nested in it) does not define, with a suggestion
    when one valid key is close."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            import difflib  # only for a config with a mistake in it

            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"valid keys here: {', '.join(fields)}"
            yield (*path, key), f"unknown key '{key}'; {hint}"
            continue
        for nested, is_list in _models_in(field.annotation):
            if is_list and isinstance(value, list):
                for index, item in enumerate(value):
                    yield from _unknown_keys(nested, item, (*path, key, index))
            elif not is_list:
                yield from _unknown_keys(nested, value, (*path, key))


def _models_in(annotation: Any, is_list: bool = False) -> Iterator[tuple[type[BaseModel], bool]]:
    """The models a field holds, directly or as list items, through Annotated and Optional."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, is_list
    elif origin is Annotated:
        yield from _models_in(get_args(annotation)[0], is_list)
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _models_in(arg, is_list)
    elif origin is list:
        yield from _models_in(get_args(annotation)[0], True)


def _field_name(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _describe(error: ValidationError, data: Any, source: SourceMap, absent: Iterable[str] = ()) -> list[str]:
    missing_sections = set(absent)
    problems: list[str] = []

    def add(path: tuple[str | int, ...], message: str) -> None:
        if path and path[0] in missing_sections:
            message = f"the section is missing ({message})"
            path = path[:1]
        problems.append(_located(source, path, message))

    for item in error.errors(include_url=False):
        if item["type"] == "extra_forbidden":
            continue  # reported, with a suggestion, by _unknown_keys
        path = tuple(part for part in item["loc"] if not _is_pydantic_marker(part))
        context_error = (item.get("ctx") or {}).get("error")
        if isinstance(context_error, _Problems):
            for found_path, found in context_error.found:
                add(found_path, found)
        elif isinstance(context_error, _LocatedValueError):
            add(context_error.path, context_error.message)
        else:
            add(path, _message(item, path, source))
    return problems


def _is_pydantic_marker(part: str | int) -> bool:
    # pydantic inserts validator names such as "function-after[_account_id()]" into error locations.
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _message(item: Any, path: tuple[str | int, ...], source: SourceMap) -> str:
    kind = item["type"]
    if kind == "missing":
        return "required but missing"
    if kind == "literal_error":
        expected = item.get("ctx", {}).get("expected", "")
        return f"'{item['input']}' is not allowed; use one of {expected}"
    if kind == "value_error":
        return str(item["msg"]).removeprefix("Value error, ")
    if kind == "too_short" and isinstance(item["input"], list):
        return "must not be empty"
    location = source.location(path)
    account_field = bool(path) and path[-1] in ("id", "mail_account")
    if kind == "string_type" and account_field and location is not None and not location.quoted:
        # Unquoted digits are a YAML number: leading zeros vanish and 0-prefixed octal digits change value.
        return (
            f"account ids must be quoted strings: YAML reads the unquoted {location.raw} as the number "
            f'{item["input"]}; write "{location.raw}"'
        )
    return str(item["msg"])
