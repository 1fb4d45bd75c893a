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

Only what a trust policy in this product or in moto's organisation uses is modelled (``_policies`` says what);
anything else makes a statement not match, so the sandbox refuses rather than admits what it cannot judge. The
caller's own IAM policy (which AWS also checks for a cross-account AssumeRole) is not evaluated.

This patch judges the request (the caller and the trust policy); ``prerequisites`` patches STS's backend to
refuse a role that does not exist. They compose: a request passes this check first, then the backend's.

The server verifies the sender in the mail account only (``OrganizationSpec.sending_accounts``), so a watch
that does not assume the sending role is refused by SES, as on AWS.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.organizations.exceptions import AWSOrganizationsNotInUseException
from moto.organizations.models import organizations_backends
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse

from loginwatch_org.sandbox.behaviour import _policies
from loginwatch_org.sandbox.behaviour._core import Patches

__all__ = ["PATCHES", "AccessDenied", "Caller", "assume_role_allowed", "organization_of"]

PATCHES: Final = Patches()

_ASSUMED_ROLE: Final = re.compile(r"^arn:(?P<partition>[^:]+):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/")
_ROLE_ARN: Final = re.compile(r"^arn:(?P<partition>[^:]+):iam::(?P<account>\d{12}):role/(?:.*/)?(?P<name>[^/]+)$")
_ACCOUNT: Final = re.compile(r"^\d{12}$")


class AccessDenied(ServiceException):
    code = "AccessDenied"


@dataclass(frozen=True)
class Caller:
    """The request context of an AssumeRole caller, as IAM sees it."""

    account: str
    principal_arn: str  # a role session's is the role's ARN, path included
    organization_id: str | None


@PATCHES.wrap(TokenResponse, "assume_role")
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
        organization_id=organization_of(account, partition),
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


def organization_of(account: str, partition: str) -> str | None:
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
    policy = _policies.document(role.assume_role_policy_document)
    return None if assume_role_allowed(policy, caller, external_id) else denied


def assume_role_allowed(policy: Mapping[str, Any], caller: Caller, external_id: str | None = None) -> bool:
    """Whether the trust ``policy`` lets ``caller`` assume the role: an Allow matches and no Deny does."""
    context = {
        "aws:principalarn": caller.principal_arn,
        "aws:principalaccount": caller.account,
        "aws:principalorgid": caller.organization_id,
        "sts:externalid": external_id,
    }
    return _policies.allowed([policy], "sts:AssumeRole", None, context, lambda p: _principal_matches(p, caller))


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    for value in _policies.values(principal.get("AWS")):
        if value == "*" or value == caller.principal_arn:
            return True
        # An account (its id or its root ARN) delegates to that account's own IAM policies.
        if _ACCOUNT.match(value) and value == caller.account:
            return True
        if value.endswith(":root") and value.split(":")[4:5] == [caller.account]:
            return True
    return False  # Service and Federated principals never sign an AssumeRole request themselves
