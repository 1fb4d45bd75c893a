"""The sandbox's mail account: one account's SES sends every alert, through a role the watches assume.

What moto lacks. moto's STS AssumeRole never reads the role: any caller gets credentials for any role ARN,
even one that does not exist ("the role does not need to exist", moto's own docstring). On AWS the role must
exist and its trust policy must allow the caller; the mail account's sending role admits only watch roles of
accounts in the organisation (``aws:PrincipalOrgID`` plus ``aws:PrincipalArn``), and the sandbox must refuse an
account outside it as AWS does. So AssumeRole calls that reach the sandbox's API evaluate the role's trust
policy with the principal and condition keys AWS puts in the request context:
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html

Only what a trust policy in this product or in moto's organisation uses is modelled (Allow and Deny statements,
``AWS`` principals, the string and ARN operators with their ``IfExists`` forms, and the keys below); anything
else makes a statement not match, so the sandbox refuses rather than admits what it cannot judge. The caller's
own IAM policy (which AWS also checks for a cross-account AssumeRole) is not evaluated.

Hooks for the sandbox core:

* ``patches()``: what to install into moto; each item has ``owner``, ``name`` and ``make(original)``, like the
  behaviour core's patches, so ``apply()`` can install and ``revert()`` remove them with the others.
* ``seed_mail_account(...)``: the sender's identity verified only in the mail account, as the README asks.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.organizations.exceptions import AWSOrganizationsNotInUseException
from moto.organizations.models import organizations_backends
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse

__all__ = ["AccessDenied", "Caller", "Patch", "assume_role_allowed", "patches", "seed_mail_account"]

_ASSUMED_ROLE: Final = re.compile(r"^arn:(?P<partition>[^:]+):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/")
_ROLE_ARN: Final = re.compile(r"^arn:(?P<partition>[^:]+):iam::(?P<account>\d{12}):role/(?:.*/)?(?P<name>[^/]+)$")
_ACCOUNT: Final = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class Patch:
    """Replace (or add) ``owner.name`` with ``make(original)``."""

    owner: Any
    name: str
    make: Callable[[Any], Any]


class AccessDenied(ServiceException):
    code = "AccessDenied"


@dataclass(frozen=True)
class Caller:
    """The request context of an AssumeRole caller, as IAM sees it."""

    account: str
    principal_arn: str  # a role session's is the role's ARN, path included
    organization_id: str | None


def patches() -> list[Patch]:
    return [Patch(TokenResponse, "assume_role", _make_assume_role)]


def seed_mail_account(
    mail_account: str, sender: str, regions: Iterable[str], member_accounts: Iterable[str] = ()
) -> None:
    """Verify ``sender`` in the mail account's SES in each Region and in no member account, so a watch that
    did not assume the sending role is refused by SES as it would be on AWS (unverified identity)."""
    from moto.ses.models import ses_backends

    regions = list(regions)
    for region in regions:
        ses_backends[mail_account][region].verify_email_identity(sender)
    for account in member_accounts:
        if account == mail_account:
            continue
        for region in regions:
            backend = ses_backends[account][region]
            if sender in backend.email_identities:
                backend.delete_identity(sender)


def _make_assume_role(original: Callable[[TokenResponse], ActionResult]) -> Callable[[TokenResponse], ActionResult]:
    @functools.wraps(original)
    def assume_role(self: TokenResponse) -> ActionResult:
        role_arn = str(self._get_param("RoleArn") or "")
        caller = _caller(self)
        external_id = self._get_param("ExternalId")
        refusal = _refusal(role_arn, caller, external_id)
        if refusal is not None:
            raise AccessDenied(refusal)
        return original(self)

    return assume_role


def _caller(response: TokenResponse) -> Caller:
    account = response.current_account
    partition = response.partition
    _, arn, account = sts_backends[account][partition].get_caller_identity(response.access_key, response.region)
    return Caller(
        account=account,
        principal_arn=_principal_arn(arn, partition),
        organization_id=_organization_of(account, partition),
    )


def _principal_arn(arn: str, partition: str) -> str:
    """aws:PrincipalArn: for a role session, the role's ARN with its path (the session ARN has no path)."""
    match = _ASSUMED_ROLE.match(arn)
    if match is None:
        return arn
    try:
        return str(iam_backends[match["account"]][partition].get_role(match["role"]).arn)
    except Exception:  # a session of a role deleted since: its ARN without a path is the best guess
        return f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"


def _organization_of(account: str, partition: str) -> str | None:
    """aws:PrincipalOrgID: the organisation the account belongs to (as member or management), if any."""
    try:
        described = organizations_backends[account][partition].describe_organization()
    except AWSOrganizationsNotInUseException:
        return None
    return str(described["Organization"]["Id"])


def _refusal(role_arn: str, caller: Caller, external_id: str | None) -> str | None:
    """Why AWS would refuse ``caller`` this role, or None when its trust policy admits the caller."""
    denied = f"User: {caller.principal_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    match = _ROLE_ARN.match(role_arn)
    if match is None:
        return denied
    try:
        role = iam_backends[match["account"]][match["partition"]].get_role(match["name"])
    except Exception:
        return denied
    if str(role.arn) != role_arn:  # same name, other path: not this role
        return denied
    document = role.assume_role_policy_document
    try:
        policy = json.loads(document) if isinstance(document, str) else document
    except ValueError:  # IAM hands policy documents out URL-encoded
        policy = json.loads(urllib.parse.unquote(document))
    return None if assume_role_allowed(policy, caller, external_id) else denied


def assume_role_allowed(policy: Mapping[str, Any], caller: Caller, external_id: str | None = None) -> bool:
    """Whether the trust ``policy`` lets ``caller`` assume the role: an Allow matches and no Deny does."""
    statements = policy.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    context = {
        "aws:principalarn": caller.principal_arn,
        "aws:principalaccount": caller.account,
        "aws:principalorgid": caller.organization_id,
        "sts:externalid": external_id,
    }
    allowed = False
    for statement in statements:
        if not isinstance(statement, Mapping) or not _statement_matches(statement, caller, context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _statement_matches(statement: Mapping[str, Any], caller: Caller, context: Mapping[str, str | None]) -> bool:
    actions = _values(statement.get("Action"))
    if "NotAction" in statement or "NotPrincipal" in statement:
        return False  # not modelled
    if not any(_wildcard_match(action.lower(), "sts:assumerole") for action in actions):
        return False
    return _principal_matches(statement.get("Principal"), caller) and _conditions_hold(
        statement.get("Condition") or {}, context
    )


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    for value in _values(principal.get("AWS")):
        if value == "*" or value == caller.principal_arn:
            return True
        # An account (its id or its root ARN) delegates to that account's own IAM policies.
        if _ACCOUNT.match(value) and value == caller.account:
            return True
        if value.endswith(":root") and value.split(":")[4:5] == [caller.account]:
            return True
    return False  # Service and Federated principals never sign an AssumeRole request themselves


def _conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str | None]) -> bool:
    for operator, tests in conditions.items():
        if not isinstance(tests, Mapping):
            return False
        for key, expected in tests.items():
            if not _condition_holds(operator, context.get(key.lower()), _values(expected)):
                return False
    return True


def _condition_holds(operator: str, actual: str | None, expected: Sequence[str]) -> bool:
    name = operator
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    negated = "Not" in name
    compare = _COMPARISONS.get(name.replace("Not", ""))
    if compare is None:
        return False  # an operator the sandbox does not know never holds
    if actual is None:
        # A missing key fails every positive test and passes every negated one; IfExists passes too.
        return if_exists or negated
    hit = any(compare(actual, value) for value in expected)
    return not hit if negated else hit


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return [str(value)]


def _wildcard_match(actual: str, pattern: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, actual, flags=re.DOTALL) is not None


def _arn_like(actual: str, pattern: str) -> bool:
    # Each of the six colon-separated parts is matched on its own; wildcards never cross a colon boundary.
    actual_parts, pattern_parts = actual.split(":", 5), pattern.split(":", 5)
    if len(actual_parts) != 6 or len(pattern_parts) != 6:
        return False
    return all(_wildcard_match(a, p) for a, p in zip(actual_parts, pattern_parts, strict=True))


_COMPARISONS: Final[dict[str, Callable[[str, str], bool]]] = {
    "StringEquals": lambda actual, value: actual == value,
    "StringEqualsIgnoreCase": lambda actual, value: actual.lower() == value.lower(),
    "StringLike": lambda actual, value: _wildcard_match(actual, value),
    "ArnEquals": lambda actual, value: actual == value,
    "ArnLike": _arn_like,
}
