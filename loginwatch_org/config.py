"""The organisation's watch, as written in ``config/accounts.yaml``: pydantic models and their loader.

Pure: no AWS calls. Every model is strict (unknown keys are errors) and frozen, so a loaded config can be
passed around and hashed without anyone changing it under the planner's feet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from loginwatch_org.errors import UsageError
from loginwatch_org.yamlsource import SourceMap, YamlError, load_yaml

DEFAULT_CONFIG_PATH = Path("config/accounts.yaml")

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

MAX_RECIPIENTS = 50
MAX_RECIPIENTS_LENGTH = 3000

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


def _ou(value: str) -> str:
    if not _OU_OR_ROOT.match(value):
        raise ValueError(f"'{value}' is neither an organisational unit id (ou-...) nor a root id (r-...)")
    return value


AccountId = Annotated[str, AfterValidator(_account_id)]
Email = Annotated[str, AfterValidator(_email)]
Recipients = Annotated[list[Email], Field(min_length=1), AfterValidator(_recipients)]
Region = Annotated[str, AfterValidator(_region)]
OrganizationalUnit = Annotated[str, AfterValidator(_ou)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class OperationPreferences(_Model):
    """How fast StackSets may go, and how many failures it tolerates before stopping an operation."""

    max_concurrent_percentage: int = Field(default=25, ge=1, le=100)
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
    organizational_units: list[OrganizationalUnit] = Field(default_factory=list)
    administration_role_arn: str | None = None
    execution_role_name: str = "AWSCloudFormationStackSetExecutionRole"
    operation_preferences: OperationPreferences = Field(default_factory=OperationPreferences)

    @model_validator(mode="after")
    def _check(self) -> StackSetSettings:
        if not _STACK_SET_NAME.match(self.name):
            raise ValueError(
                f"name '{self.name}': a stack set name starts with a letter and holds only letters, digits "
                "and hyphens (at most 128)"
            )
        if len(set(self.regions)) != len(self.regions):
            raise ValueError("regions: a region is listed twice")
        if self.permission_model == "service-managed" and not self.organizational_units:
            raise ValueError(
                "organizational_units: a service-managed stack set deploys to organisational units; list the "
                "root id (r-...) or the OUs (ou-...) that hold the accounts"
            )
        if self.permission_model == "self-managed" and self.call_as == "delegated-admin":
            raise ValueError("call_as: delegated-admin applies only to service-managed stack sets")
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
    def identity_partition(self) -> str:
        match = _SES_IDENTITY_ARN.match(self.ses_identity_arn or "")
        return match.group("partition") if match else "aws"


class Defaults(_Model):
    recipients: Recipients
    alert_on: AlertPolicy = "all"


class ManagementAccount(_Model):
    id: AccountId
    name: str = Field(default="management", min_length=1)


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
        seen: dict[str, int] = {}
        for index, account in enumerate(self.accounts):
            if account.id in seen:
                raise _LocatedValueError(
                    ("accounts", index, "id"),
                    f"account {account.id} is listed twice (also as accounts[{seen[account.id]}])",
                )
            seen[account.id] = index
            if (
                self.management_account is not None
                and account.id == self.management_account.id
                and self.stack_set.permission_model == "service-managed"
            ):
                raise _LocatedValueError(
                    ("accounts", index, "id"),
                    f"account {account.id} is the management account; service-managed stack sets never "
                    "deploy there, so it cannot be a member account here",
                )
        return self

    def targets(self) -> list[AccountWatch]:
        """The enabled member accounts with their effective settings, in config order."""
        return [
            AccountWatch(
                account_id=account.id,
                name=account.name,
                recipients=tuple(account.recipients or self.defaults.recipients),
                alert_on=account.alert_on or self.defaults.alert_on,
            )
            for account in self.accounts
            if account.enabled
        ]

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
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, data, source)) from None


def _field_name(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _describe(error: ValidationError, data: Any, source: SourceMap) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        path = tuple(part for part in item["loc"] if not _is_pydantic_marker(part))
        context_error = (item.get("ctx") or {}).get("error")
        if isinstance(context_error, _LocatedValueError):
            path = context_error.path
            message = context_error.message
        else:
            message = _message(item, path, source)
        line = source.line_of(path)
        where = f"{source.file}:{line}" if line else source.file
        problems.append(f"{where}: {_field_name(path)}: {message}")
    return problems


def _is_pydantic_marker(part: str | int) -> bool:
    # pydantic inserts validator names such as "function-after[_account_id()]" into error locations.
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _message(item: Any, path: tuple[str | int, ...], source: SourceMap) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{path[-1]}'; check its spelling against the README's configuration reference"
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
