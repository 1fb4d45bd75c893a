"""The AWS behaviour the sandbox adds on top of moto.

moto emulates the AWS APIs, but a few things this product relies on either are not implemented or
act differently from AWS.  Every such difference is corrected here, and only here, as a small patch
that names the AWS behaviour it adds and where AWS documents it:

* StackSets: ``ManagedExecution`` remembered as requested, as DescribeStackSet reports it; the caller's
  ``OperationId`` used (and a reused one refused), and each instance's ``LastOperationId`` reported.
* StackSets (service-managed): ``DeploymentTargets`` with ``AccountFilterType`` and nested OUs on
  create/update/delete, no instance in the management account, parameter overrides and stack set
  updates that really update the stack in each account, ``RetainStacks``, trusted access.
* StackSets (self-managed): instance stacks named like AWS names them.
* CloudFormation: resource types moto skips (SNS subscription and topic policy, SQS queue policy,
  Lambda event invoke config, CloudWatch alarm), resources that depend on a parameter through
  ``Fn::Sub`` or a condition, inline Lambda code and log group on update, SNS topics updated in place.
* EventBridge: SNS topics as rule targets, disabled rules.
* SNS: the notification record a Lambda subscriber receives.
* Lambda: running the function's own deployed code without docker, with its execution role's
  credentials, in the account it is deployed in.
* SES: keeping both the text and the HTML part of a message.

``apply()`` installs all patches (calling it again only updates the endpoint the functions call
back into) and ``revert()`` puts moto back as it was.  Nothing else in the sandbox changes moto.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal, Self, cast

from moto.awslambda.models import LambdaFunction
from moto.awslambda.utils import get_backend as get_lambda_backend
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.exceptions import (
    CloudFormationError,
    StackInstanceNotFound,
    UnformattedGetAttTemplateException,
    ValidationError,
)
from moto.cloudformation.models import (
    CloudFormationBackend,
    Stack,
    StackInstance,
    StackInstances,
    StackSet,
    cloudformation_backends,
)
from moto.cloudformation.responses import CloudFormationResponse
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import camelcase_to_underscores
from moto.events.models import Rule
from moto.events.utils import EventTemplateParser
from moto.organizations.models import OrganizationsBackend, organizations_backends
from moto.ses.responses import EmailResponse
from moto.sesv2.responses import SESV2Response
from moto.sns.models import Subscription, Topic, sns_backends
from moto.sqs.models import sqs_backends
from moto.sts.models import sts_backends
from moto.utilities.arns import parse_arn
from moto.utilities.utils import get_partition

from loginwatch_org.sandbox import prerequisites

__all__ = [
    "STACKSETS_SERVICE_PRINCIPAL",
    "apply",
    "is_applied",
    "revert",
    "select_target_accounts",
]

logger = logging.getLogger(__name__)

#: Organizations trusted-access principal that CloudFormation StackSets uses.
STACKSETS_SERVICE_PRINCIPAL: Final = "member.org.stacksets.cloudformation.amazonaws.com"

# A function gets this long on top of its configured timeout: starting a Python interpreter and
# importing boto3 takes time AWS does not charge to the function either (its runtime is warm).
_COLD_START_ALLOWANCE_SECONDS: Final = 10.0
# Lambda returns the last 4 KB of the log when a caller asks for the log tail.
_LOG_TAIL_BYTES: Final = 4096

Operation = Literal["create", "update", "delete"]
# Accounts a request names; ``None`` when it names none.
Accounts = list[str] | None


# ---------------------------------------------------------------------------------------------
# Patch bookkeeping
# ---------------------------------------------------------------------------------------------

_MISSING: Final = object()


@dataclass(frozen=True)
class _Patch:
    """Replace (or add) ``owner.name`` with ``make(original)``."""

    owner: Any
    name: str
    make: Callable[[Any], Any]


@dataclass
class _Applied:
    owner: Any
    name: str
    original: Any


_lock = threading.Lock()
_applied: list[_Applied] = []
_endpoint_url: str | None = None
# Credentials minted for a function's execution role, reused for every invocation of it.
_role_credentials: dict[tuple[str, str], tuple[str, str, str]] = {}


def apply(endpoint_url: str | None = None) -> None:
    """Install every behaviour patch into moto (idempotent).

    ``endpoint_url`` is where Lambda functions run by the sandbox send their AWS calls; it is the
    sandbox's own address.  Calling ``apply`` again only updates it.
    """
    global _endpoint_url
    with _lock:
        if endpoint_url is not None:
            _endpoint_url = endpoint_url
        if _applied:
            return
        for patch in _patches():
            original = vars(patch.owner).get(patch.name, _MISSING)
            setattr(patch.owner, patch.name, patch.make(original))
            _applied.append(_Applied(patch.owner, patch.name, original))


def revert() -> None:
    """Put moto back the way it was before ``apply``."""
    global _endpoint_url
    with _lock:
        while _applied:
            done = _applied.pop()
            if done.original is _MISSING:
                delattr(done.owner, done.name)
            else:
                setattr(done.owner, done.name, done.original)
        _endpoint_url = None
        _role_credentials.clear()


def is_applied() -> bool:
    """Whether the behaviour patches are currently installed."""
    return bool(_applied)


def _patches() -> list[_Patch]:
    return [
        # StackSets
        _Patch(StackSet, "create_stack_instances", _make_create_stack_instances),
        _Patch(CloudFormationResponse, "create_stack_instances", _with_operation_id),
        _Patch(
            CloudFormationResponse,
            "update_stack_instances",
            lambda _: _with_operation_id(_response_update_stack_instances),
        ),
        _Patch(
            CloudFormationResponse,
            "delete_stack_instances",
            lambda _: _with_operation_id(_response_delete_stack_instances),
        ),
        _Patch(CloudFormationResponse, "update_stack_set", lambda _: _with_operation_id(_response_update_stack_set)),
        _Patch(StackSet, "_create_operation", _make_create_operation),
        _Patch(StackSet, "update", lambda _: _stack_set_update),
        _Patch(StackInstances, "update", lambda _: _stack_instances_update),
        _Patch(StackInstances, "delete", lambda _: _stack_instances_delete),
        _Patch(StackInstance, "__init__", _make_stack_instance_init),
        _Patch(StackInstance, "to_dict", _make_stack_instance_to_dict),
        _Patch(CloudFormationResponse, "activate_organizations_access", lambda _: _activate_org_access),
        _Patch(CloudFormationResponse, "deactivate_organizations_access", lambda _: _deactivate_org_access),
        _Patch(CloudFormationResponse, "describe_organizations_access", lambda _: _describe_org_access),
        _Patch(CloudFormationBackend, "create_stack_set", _make_create_stack_set),
        _Patch(CloudFormationResponse, "create_stack_set", _make_response_create_stack_set),
        _Patch(StackSet, "managed_execution", lambda _: property(_managed_execution)),
        # CloudFormation resources
        _Patch(cfn_parsing, "resource_class_from_type", _make_resource_class_from_type),
        _Patch(cfn_parsing.ResourceMap, "build_resource_diff", _make_build_resource_diff),
        _Patch(LambdaFunction, "create_from_cloudformation_json", _make_lambda_cfn_create),
        _Patch(LambdaFunction, "update_from_cloudformation_json", lambda _: classmethod(_lambda_cfn_update)),
        _Patch(Topic, "update_from_cloudformation_json", _make_topic_cfn_update),
        # EventBridge -> SNS -> Lambda -> SES
        _Patch(Rule, "send_to_targets", _make_send_to_targets),
        _Patch(Subscription, "publish", _make_subscription_publish),
        _Patch(LambdaFunction, "_invoke_lambda", lambda _: _invoke_lambda),
        _Patch(EmailResponse, "send_email", _make_ses_v1_send_email),
        _Patch(SESV2Response, "send_email", _make_ses_v2_send_email),
        *(_Patch(*patch) for patch in prerequisites.PATCHES),
    ]


# ---------------------------------------------------------------------------------------------
# StackSets: which accounts an operation targets
# ---------------------------------------------------------------------------------------------


def select_target_accounts(
    *,
    organizational_unit_ids: Sequence[str],
    accounts: Sequence[str],
    filter_type: str | None,
    operation: Operation,
    child_ous: Mapping[str, Sequence[str]],
    accounts_by_parent: Mapping[str, Sequence[str]],
    management_account: str,
) -> list[str]:
    """The accounts a service-managed StackSets operation acts on, in a stable order.

    AWS: an OU target covers the accounts in that OU and all of its child OUs; ``AccountFilterType``
    combines them with ``Accounts`` (INTERSECTION: only listed accounts within the OUs;
    DIFFERENCE: the OUs' accounts except the listed ones; UNION, the default: the OUs' accounts
    plus the listed ones, not allowed on create; NONE: the OUs' accounts, ``Accounts`` ignored);
    the management account never gets an instance.  On create, listing both OUs and accounts
    requires an explicit filter type.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeploymentTargets.html
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/account-level-targets.html
    """
    kind = (filter_type or "").upper() or None
    if kind not in (None, "INTERSECTION", "DIFFERENCE", "UNION", "NONE"):
        raise ValidationError(
            message=f"1 validation error detected: Value '{filter_type}' at "
            "'deploymentTargets.accountFilterType' failed to satisfy constraint: "
            "Member must satisfy enum value set: [NONE, INTERSECTION, DIFFERENCE, UNION]"
        )
    if operation == "create" and organizational_unit_ids and accounts:
        if kind is None:
            raise ValidationError(
                message="AccountFilterType is required when both OrganizationalUnitIds and Accounts "
                "are specified for a create operation"
            )
        if kind == "UNION":
            raise ValidationError(message="AccountFilterType UNION is not supported for create operations")
    if kind in ("INTERSECTION", "DIFFERENCE") and not accounts:
        raise ValidationError(message=f"Accounts must be specified when AccountFilterType is {kind}")

    in_ous: list[str] = []
    pending = list(organizational_unit_ids)
    seen: set[str] = set()
    while pending:
        ou_id = pending.pop(0)
        if ou_id in seen:
            continue
        seen.add(ou_id)
        in_ous.extend(a for a in accounts_by_parent.get(ou_id, ()) if a not in in_ous)
        pending.extend(child_ous.get(ou_id, ()))

    if not organizational_unit_ids:
        selected = list(accounts)
    elif kind == "INTERSECTION":
        selected = [a for a in in_ous if a in accounts]
    elif kind == "DIFFERENCE":
        selected = [a for a in in_ous if a not in accounts]
    elif kind == "NONE":
        selected = in_ous
    else:  # UNION, the default
        selected = in_ous + [a for a in accounts if a not in in_ous]
    return [a for a in dict.fromkeys(selected) if a != management_account]


def _accounts_in(org: OrganizationsBackend, targets: Mapping[str, Any], op: Operation) -> list[str]:
    child_ous: dict[str, list[str]] = {}
    for ou in org.ou:
        if ou.parent_id:
            child_ous.setdefault(ou.parent_id, []).append(ou.id)
    accounts_by_parent: dict[str, list[str]] = {}
    for account in org.accounts:
        accounts_by_parent.setdefault(account.parent_id, []).append(account.id)
    management = org.org.master_account_id if org.org is not None else org.account_id
    return select_target_accounts(
        organizational_unit_ids=list(targets.get("OrganizationalUnitIds") or []),
        accounts=list(targets.get("Accounts") or []),
        filter_type=targets.get("AccountFilterType"),
        operation=op,
        child_ous=child_ous,
        accounts_by_parent=accounts_by_parent,
        management_account=management,
    )


def _make_create_stack_instances(original: Any) -> Any:
    """CreateStackInstances on a service-managed stack set honours ``DeploymentTargets`` in full.

    moto deploys to every account of the OUs (one level of child OUs) plus any ``Accounts``, and
    ignores ``AccountFilterType`` and the management account exclusion.
    """

    @functools.wraps(original)
    def create_stack_instances(
        self: StackSet,
        accounts: list[str],
        regions: list[str],
        deployment_targets: dict[str, Any] | None,
        parameters: list[dict[str, Any]],
    ) -> str:
        if self.permission_model == "SERVICE_MANAGED" and deployment_targets:
            if accounts:
                # AWS: "You can specify Accounts or DeploymentTargets, but not both."
                raise ValidationError(message="You can specify Accounts or DeploymentTargets, but not both")
            if "OrganizationalUnitIds" in deployment_targets:
                resolved = _accounts_in(self.instances.org_backend, deployment_targets, "create")
                # The OUs are resolved to accounts already: hand moto accounts only.
                no_ous: dict[str, list[str]] = {"OrganizationalUnitIds": []}
                operation_id: str = original(self, resolved, regions, no_ous, parameters)
                return operation_id
        result: str = original(self, accounts, regions, deployment_targets, parameters)
        return result

    return create_stack_instances


def _requested_accounts(request: CloudFormationResponse, stack_set: StackSet, op: Operation) -> Accounts:
    """``Accounts`` (self-managed) or the accounts ``DeploymentTargets`` selects (service-managed);
    ``None`` when the request names no accounts at all."""
    accounts: list[str] = list(request._get_param("Accounts") or [])
    targets = request._get_param("DeploymentTargets")
    if not targets:
        return accounts or None
    if accounts:
        raise ValidationError(message="You can specify Accounts or DeploymentTargets, but not both")
    if stack_set.permission_model != "SERVICE_MANAGED" or not targets.get("OrganizationalUnitIds"):
        return list(targets.get("Accounts") or [])
    selected = _accounts_in(stack_set.instances.org_backend, targets, op)
    # An OU target only reaches the accounts in it that already have an instance (AWS: "the
    # overridden parameter values only apply to the accounts that are currently in the target OUs").
    existing = {i.account_id for i in stack_set.stack_instances}
    return [a for a in selected if a in existing]


def _response_update_stack_instances(self: CloudFormationResponse) -> ActionResult:
    """UpdateStackInstances reads ``DeploymentTargets`` (moto only reads ``Accounts``).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStackInstances.html
    """
    name = self._get_param("StackSetName")
    stack_set = self.cloudformation_backend.describe_stack_set(name)
    accounts = _requested_accounts(self, stack_set, "update") or []
    regions = list(self._get_param("Regions") or [])
    # ``None`` means "not given" (leave every override as it is); an empty list resets them all.
    given = any(key.split(".")[0] == "ParameterOverrides" for key in self.querystring)
    overrides = list(self._get_param("ParameterOverrides") or []) if given else None
    operation = stack_set.update_instances(accounts, regions, overrides)  # type: ignore[arg-type]
    return ActionResult({"OperationId": operation["OperationId"]})


def _response_delete_stack_instances(self: CloudFormationResponse) -> ActionResult:
    """DeleteStackInstances reads ``DeploymentTargets`` and ``RetainStacks``.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeleteStackInstances.html
    """
    name = self._get_param("StackSetName")
    stack_set = self.cloudformation_backend.describe_stack_set(name)
    accounts = _requested_accounts(self, stack_set, "delete") or []
    regions = list(self._get_param("Regions") or [])
    retain = str(self._get_param("RetainStacks", False)).lower() == "true"
    stack_set.instances.delete(accounts, regions, retain_stacks=retain)  # type: ignore[call-arg]
    operation = stack_set._create_operation(
        operation_id=self._get_param("OperationId") or str(uuid.uuid4()),
        action="DELETE",
        status="SUCCEEDED",
        accounts=accounts,
        regions=regions,
    )
    return ActionResult({"OperationId": operation["OperationId"]})


def _response_update_stack_set(self: CloudFormationResponse) -> ActionResult:
    """UpdateStackSet reads ``DeploymentTargets``.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStackSet.html
    """
    name = self._get_param("StackSetName")
    stack_set = self.cloudformation_backend.describe_stack_set(name)
    template_body = self._get_param("TemplateBody")
    template_url = self._get_param("TemplateURL")
    if template_url:
        template_body = self._get_stack_from_s3_url(template_url)
    operation = self.cloudformation_backend.update_stack_set(
        stackset_name=name,
        template=template_body,
        description=self._get_param("Description"),
        parameters=self._get_param("Parameters", []),
        tags={item["Key"]: item["Value"] for item in self._get_param("Tags", [])},
        admin_role=self._get_param("AdministrationRoleARN"),
        execution_role=self._get_param("ExecutionRoleName"),
        # ``None``: every instance (AWS updates them all when no accounts are named).
        accounts=_requested_accounts(self, stack_set, "update"),  # type: ignore[arg-type]
        regions=list(self._get_param("Regions") or []),
        operation_id=self._get_param("OperationId") or str(uuid.uuid4()),
    )
    _record_managed_execution(self, stack_set)
    return ActionResult({"OperationId": operation["OperationId"]})


class OperationIdAlreadyExists(CloudFormationError):
    code = "OperationIdAlreadyExistsException"


_requested_operation = threading.local()


def _with_operation_id(original: Any) -> Any:
    """StackSet writes use the caller's ``OperationId`` and refuse one the stack set has seen before
    (moto makes up a new id every time).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackInstances.html
    """

    @functools.wraps(original)
    def handle(self: CloudFormationResponse) -> ActionResult:
        requested = self._get_param("OperationId")
        if requested:
            stack_set = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
            if any(op["OperationId"] == requested for op in stack_set.operations):
                raise OperationIdAlreadyExists(f"The operation id {requested} already exists")
        _requested_operation.value = requested
        try:
            result = original(self)
        finally:
            _requested_operation.value = None
        return ActionResult({"OperationId": requested}) if requested else result

    return handle


def _make_create_operation(original: Any) -> Any:
    """Every operation is recorded as each targeted instance's ``LastOperationId``, as
    ListStackInstances reports it.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstanceSummary.html
    """

    @functools.wraps(original)
    def create_operation(
        self: StackSet,
        operation_id: str,
        action: str,
        status: str,
        accounts: list[str] | None = None,
        regions: list[str] | None = None,
    ) -> dict[str, Any]:
        operation_id = getattr(_requested_operation, "value", None) or operation_id
        operation: dict[str, Any] = original(self, operation_id, action, status, accounts, regions)
        for instance in self.stack_instances:
            if (not accounts or instance.account_id in accounts) and (not regions or instance.region_name in regions):
                instance._sandbox_last_operation_id = operation_id  # type: ignore[attr-defined]
        return operation

    return create_operation


def _record_managed_execution(response: CloudFormationResponse, stack_set: StackSet) -> None:
    requested = response._get_param("ManagedExecution")
    if isinstance(requested, dict) and "Active" in requested:
        stack_set._sandbox_managed_execution = str(requested["Active"]).lower() == "true"  # type: ignore[attr-defined]


def _managed_execution(self: StackSet) -> dict[str, Any]:
    """DescribeStackSet reports the ManagedExecution the stack set was given (moto always says inactive).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ManagedExecution.html
    """
    return {"Active": bool(getattr(self, "_sandbox_managed_execution", False))}


def _make_response_create_stack_set(original: Any) -> Any:
    @functools.wraps(original)
    def create_stack_set(self: CloudFormationResponse) -> ActionResult:
        result = original(self)
        _record_managed_execution(self, self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName")))
        return result  # type: ignore[no-any-return]

    return create_stack_set


def _overrides_of(instance: StackInstance) -> list[dict[str, str]]:
    # moto stores the stack set's own parameters (a dict) when an instance has no overrides.
    if not isinstance(instance.parameters, list):
        return []
    return [
        {"ParameterKey": p["ParameterKey"], "ParameterValue": p["ParameterValue"]}
        for p in instance.parameters
        if "ParameterValue" in p
    ]


def _redeploy(instance: StackInstance, template: str, stack_set_parameters: Mapping[str, str]) -> None:
    """Update the instance's stack in its account with the template and its effective parameters."""
    parameters = dict(stack_set_parameters)
    parameters.update({p["ParameterKey"]: p["ParameterValue"] for p in _overrides_of(instance)})
    instance.template = template
    instance.stack.update(template=template, parameters=parameters)


def _stack_set_update(
    self: StackSet,
    template: str,
    description: str,
    parameters: dict[str, str],
    tags: dict[str, str],
    admin_role: str,
    execution_role: str,
    accounts: list[str] | None,
    regions: list[str],
    operation_id: str,
) -> dict[str, Any]:
    """UpdateStackSet updates the stacks of the stack set's instances.

    AWS applies the new template and parameters to the stack instances in the given accounts and
    Regions (all instances when none are given), keeping each instance's parameter overrides.
    moto stores the new template but never updates a stack, replaces the overrides with the stack
    set's parameters, and goes on creating new instances from the old template.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStackSet.html
    """
    self.template = template or self.template
    self.description = description if description is not None else self.description
    self.parameters = parameters or self.parameters
    self.tags = tags or self.tags
    self.administration_role_arn = admin_role or self.administration_role_arn
    self.execution_role_name = execution_role or self.execution_role_name
    self.instances.template = self.template
    self.instances.parameters = self.parameters
    targets = [
        i
        for i in self.stack_instances
        if (accounts is None or i.account_id in accounts) and (not regions or i.region_name in regions)
    ]
    for instance in targets:
        _redeploy(instance, self.template, self.parameters)
    operation: dict[str, Any] = self._create_operation(
        operation_id=operation_id or str(uuid.uuid4()),
        action="UPDATE",
        status="SUCCEEDED",
        accounts=sorted({i.account_id for i in targets}),
        regions=sorted({i.region_name for i in targets}),
    )
    return operation


def _stack_instances_update(
    self: StackInstances,
    accounts: list[str],
    regions: list[str],
    parameters: list[dict[str, Any]] | None,
) -> None:
    """UpdateStackInstances changes the overrides and updates each instance's stack.

    AWS: a listed parameter with a value overrides it; with ``UsePreviousValue`` it keeps its
    current override; an unlisted parameter goes back to the stack set's value; no list at all
    leaves every override as it is.  Only parameters the template declares can be overridden.
    moto only records the new list and leaves the deployed stacks untouched.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStackInstances.html
    """
    declared = _declared_parameters(self.template)
    for key in (p.get("ParameterKey") for p in parameters or []):
        if key not in declared:
            raise ValidationError(message=f"Parameter '{key}' is not declared in the stack set's template")
    instances = []
    for account in accounts:
        for region in regions:
            instance = self.get_instance(account, region)
            if instance is None:
                raise StackInstanceNotFound()
            instances.append(instance)
    for instance in instances:
        if parameters is not None:
            previous = {p["ParameterKey"]: p["ParameterValue"] for p in _overrides_of(instance)}
            overrides: list[dict[str, str]] = []
            for p in parameters:
                key = p["ParameterKey"]
                if str(p.get("UsePreviousValue", "")).lower() == "true":
                    if key in previous:
                        overrides.append({"ParameterKey": key, "ParameterValue": previous[key]})
                else:
                    value = str(p.get("ParameterValue", ""))
                    overrides.append({"ParameterKey": key, "ParameterValue": value})
            instance.parameters = overrides
        _redeploy(instance, self.template, self.parameters)


def _declared_parameters(template: str) -> set[str]:
    """The parameter names a template declares."""
    parsed = Stack.parse_template(template)
    declared = parsed.get("Parameters") if isinstance(parsed, dict) else None
    return set(declared) if isinstance(declared, dict) else set()


def _stack_instances_delete(
    self: StackInstances, accounts: list[str], regions: list[str], retain_stacks: bool = False
) -> None:
    """DeleteStackInstances with ``RetainStacks`` leaves the stack in the account.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeleteStackInstances.html
    """
    doomed = [i for i in self.stack_instances if i.region_name in regions and i.account_id in accounts]
    for instance in doomed:
        if not retain_stacks:
            instance.delete()
        self.stack_instances.remove(instance)


def _make_stack_instance_init(original: Any) -> Any:
    """Self-managed instance stacks are named ``StackSet-<stack set name>-<uuid>``, as in AWS.

    moto names them ``StackSet:<name>``, and resource names derive from the stack name: an SNS
    topic name may not contain ':' (CreateTopic: "uppercase and lowercase ASCII letters, numbers,
    underscores, and hyphens"), and a ':' in a function name breaks every Lambda ARN.
    https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html
    """

    @functools.wraps(original)
    def __init__(
        self: StackInstance,
        account_id: str,
        region_name: str,
        stackset_id: str,
        stack_name: str,
        name: str,
        template: str,
        parameters: list[dict[str, Any]] | dict[str, str] | None,
        permission_model: str,
    ) -> None:
        if permission_model != "SELF_MANAGED":
            original(
                self,
                account_id,
                region_name,
                stackset_id,
                stack_name,
                name,
                template,
                parameters,
                permission_model,
            )
            return
        self.account_id = account_id
        self.region_name = region_name
        self.stackset_id = stackset_id
        self.stack_name = stack_name
        self.name = name
        self.template = template
        # Overrides only; moto passes the stack set's own parameters (a dict) when there are none.
        self.parameters = parameters if isinstance(parameters, list) else []
        self.permission_model = permission_model
        if isinstance(parameters, dict):
            params = dict(parameters)
        else:
            params = {p["ParameterKey"]: p["ParameterValue"] for p in parameters or []}
        self.stack = cloudformation_backends[account_id][region_name].create_stack(
            name=f"StackSet-{name}-{uuid.uuid4()}", template=template, parameters=params
        )

    return __init__


def _make_stack_instance_to_dict(original: Any) -> Any:
    """A stack instance reports its real stack's id and only its own parameter overrides."""

    @functools.wraps(original)
    def to_dict(self: StackInstance) -> dict[str, Any]:
        described: dict[str, Any] = original(self)
        described["StackId"] = self.stack.stack_id
        described["ParameterOverrides"] = _overrides_of(self)
        last_operation = getattr(self, "_sandbox_last_operation_id", None)
        if last_operation:
            described["LastOperationId"] = last_operation
        return described

    return to_dict


# ---------------------------------------------------------------------------------------------
# StackSets: trusted access with Organizations
# ---------------------------------------------------------------------------------------------


def _org_of(account_id: str, region: str) -> OrganizationsBackend:
    return organizations_backends[account_id][get_partition(region)]


def _trusted_access_enabled(org: OrganizationsBackend) -> bool:
    return any(s.get("ServicePrincipal") == STACKSETS_SERVICE_PRINCIPAL for s in org.services)


def _activate_org_access(self: CloudFormationResponse) -> EmptyResult:
    """ActivateOrganizationsAccess turns on StackSets trusted access (moto lacks the action).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ActivateOrganizationsAccess.html
    """
    org = _org_of(self.current_account, self.region)
    if org.org is None:
        raise ValidationError(message="The account is not the management account of an organization")
    org.enable_aws_service_access(ServicePrincipal=STACKSETS_SERVICE_PRINCIPAL)
    return EmptyResult()


def _deactivate_org_access(self: CloudFormationResponse) -> EmptyResult:
    """DeactivateOrganizationsAccess turns StackSets trusted access off (moto lacks the action)."""
    org = _org_of(self.current_account, self.region)
    if _trusted_access_enabled(org):
        org.disable_aws_service_access(ServicePrincipal=STACKSETS_SERVICE_PRINCIPAL)
    return EmptyResult()


def _describe_org_access(self: CloudFormationResponse) -> ActionResult:
    """DescribeOrganizationsAccess reports whether StackSets trusted access is on (moto lacks it)."""
    org = _org_of(self.current_account, self.region)
    return ActionResult({"Status": "ENABLED" if _trusted_access_enabled(org) else "DISABLED"})


def _make_create_stack_set(original: Any) -> Any:
    """A service-managed stack set needs StackSets trusted access in the organization first.

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-orgs-activate-trusted-access.html
    """

    @functools.wraps(original)
    def create_stack_set(self: CloudFormationBackend, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("permission_model") == "SERVICE_MANAGED":
            org = _org_of(self.account_id, self.region_name)
            if not _trusted_access_enabled(org):
                raise ValidationError(
                    message="You must enable organizations access to operate a service managed stack set"
                )
        return original(self, *args, **kwargs)

    return create_stack_set


# ---------------------------------------------------------------------------------------------
# CloudFormation: resource types moto skips
# ---------------------------------------------------------------------------------------------


class _AddedResource:
    """Base of the resource types the sandbox adds.

    Deliberately not a moto ``CloudFormationModel``: moto registers every subclass of that for
    good, while these are known only through the patched type lookup, and gone after ``revert()``.
    """

    # The Fn::GetAtt attribute the type offers (None: none); ``attribute_value`` answers it.
    cfn_attribute: ClassVar[str | None] = None

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == cls.cfn_attribute

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name != self.cfn_attribute:
            raise UnformattedGetAttTemplateException()
        return self.attribute_value()

    def attribute_value(self) -> str:
        raise NotImplementedError

    def is_created(self) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Self:
        raise NotImplementedError

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Self,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Self:
        # Replacement: these resources have nothing worth keeping across an update.
        original_resource.delete(account_id, region_name)
        created = (new_resource_name, cloudformation_json, account_id, region_name)
        return cls.create_from_cloudformation_json(*created)

    def delete(self, account_id: str, region_name: str) -> None:
        raise NotImplementedError


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class SnsSubscriptionResource(_AddedResource):
    """AWS::SNS::Subscription (moto skips it, so nothing is ever subscribed to the topic).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sns-subscription.html
    """

    # The scope first: moto validates a filter policy against the scope already set.
    _ATTRIBUTES: Final = (
        "FilterPolicyScope",
        "FilterPolicy",
        "RawMessageDelivery",
        "RedrivePolicy",
        "DeliveryPolicy",
        "SubscriptionRoleArn",
    )

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    cfn_attribute = "Arn"

    def attribute_value(self) -> str:
        return self.arn

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SnsSubscriptionResource:
        props = cloudformation_json["Properties"]
        topic = parse_arn(props["TopicArn"])
        backend = sns_backends[topic.account][topic.region]
        subscription = backend.subscribe(props["TopicArn"], props.get("Endpoint", ""), props["Protocol"])
        for attribute in cls._ATTRIBUTES:
            if attribute in props:
                backend.set_subscription_attributes(subscription.arn, attribute, _json_text(props[attribute]))
        return cls(subscription.arn)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        cls(resource_name).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        parsed = parse_arn(self.arn)
        sns_backends[parsed.account][parsed.region].unsubscribe(self.arn)


class _PolicyAttachment(_AddedResource):
    """A policy document attached to each listed resource (a topic or queue policy); deleting it puts the
    resources' default policy back, as AWS does."""

    targets_property: ClassVar[str]
    cfn_attribute = "Id"

    def __init__(self, policy_id: str, targets: list[str]) -> None:
        self.policy_id = policy_id
        self.targets = targets

    def attribute_value(self) -> str:
        return self.policy_id

    @property
    def physical_resource_id(self) -> str:
        return self.policy_id

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Self:
        props = cloudformation_json["Properties"]
        targets = list(props.get(cls.targets_property) or [])
        for target in targets:
            cls._attach(target, _json_text(props["PolicyDocument"]), account_id, region_name)
        return cls(resource_name, targets)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        targets = list(cloudformation_json.get("Properties", {}).get(cls.targets_property) or [])
        cls(resource_name, targets).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        for target in self.targets:
            with contextlib.suppress(Exception):
                self._detach(target, account_id, region_name)

    @classmethod
    def _attach(cls, target: str, policy: str, account_id: str, region_name: str) -> None:
        raise NotImplementedError

    @classmethod
    def _detach(cls, target: str, account_id: str, region_name: str) -> None:
        raise NotImplementedError


class SnsTopicPolicyResource(_PolicyAttachment):
    """AWS::SNS::TopicPolicy: sets the policy of each listed topic (moto skips it).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sns-topicpolicy.html
    """

    targets_property = "Topics"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::TopicPolicy"

    @classmethod
    def _attach(cls, target: str, policy: str, account_id: str, region_name: str) -> None:
        parsed = parse_arn(target)
        sns_backends[parsed.account][parsed.region].set_topic_attribute(target, "policy", policy)

    @classmethod
    def _detach(cls, target: str, account_id: str, region_name: str) -> None:
        parsed = parse_arn(target)
        topic = sns_backends[parsed.account][parsed.region].get_topic(target)
        topic._policy_json = topic._create_default_topic_policy(parsed.region, parsed.account, topic.name)


class SqsQueuePolicyResource(_PolicyAttachment):
    """AWS::SQS::QueuePolicy: sets the policy of each listed queue (moto skips it).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sqs-queuepolicy.html
    """

    targets_property = "Queues"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @classmethod
    def _attach(cls, target: str, policy: str, account_id: str, region_name: str) -> None:
        # https://sqs.<region>.amazonaws.com/<account>/<name>
        parts = target.rstrip("/").split("/")
        queue_account = parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else account_id
        match = re.search(r"sqs\.([a-z0-9-]+)\.", target)
        queue_region = match.group(1) if match else region_name
        sqs_backends[queue_account][queue_region].set_queue_attributes(parts[-1], {"Policy": policy})

    @classmethod
    def _detach(cls, target: str, account_id: str, region_name: str) -> None:
        cls._attach(target, "", account_id, region_name)


class LambdaEventInvokeConfigResource(_AddedResource):
    """AWS::Lambda::EventInvokeConfig: a function's asynchronous invocation settings (moto skips it).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-eventinvokeconfig.html
    """

    _SETTINGS: Final = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")

    def __init__(self, function_name: str, qualifier: str) -> None:
        self.function_name = function_name
        self.qualifier = qualifier

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::EventInvokeConfig"

    @property
    def physical_resource_id(self) -> str:
        return f"{self.function_name}:{self.qualifier}"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> LambdaEventInvokeConfigResource:
        props = cloudformation_json["Properties"]
        config = {key: props[key] for key in cls._SETTINGS if key in props}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in config:
                config[key] = int(config[key])
        backend = get_lambda_backend(account_id, region_name)
        backend.put_function_event_invoke_config(props["FunctionName"], config)
        return cls(props["FunctionName"], str(props.get("Qualifier", "$LATEST")))

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        props = cloudformation_json.get("Properties", {})
        cls(props.get("FunctionName", ""), "$LATEST").delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        with contextlib.suppress(Exception):
            backend = get_lambda_backend(account_id, region_name)
            backend.delete_function_event_invoke_config(self.function_name)


class CloudWatchAlarmResource(_AddedResource):
    """AWS::CloudWatch::Alarm on a single metric (moto skips the type).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudwatch-alarm.html
    """

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    cfn_attribute = "Arn"

    def attribute_value(self) -> str:
        return self.arn

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CloudWatchAlarmResource:
        props = cloudformation_json["Properties"]
        name = props.get("AlarmName") or resource_name

        def number(key: str) -> int | None:
            return int(props[key]) if key in props else None

        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name,
            namespace=props.get("Namespace", ""),
            metric_name=props.get("MetricName", ""),
            comparison_operator=props["ComparisonOperator"],
            evaluation_periods=int(props["EvaluationPeriods"]),
            datapoints_to_alarm=number("DatapointsToAlarm"),
            period=int(props.get("Period", 60)),
            threshold=float(props.get("Threshold", 0)),
            statistic=props.get("Statistic", ""),
            extended_statistic=props.get("ExtendedStatistic"),
            description=props.get("AlarmDescription", ""),
            dimensions=list(props.get("Dimensions") or []),
            alarm_actions=list(props.get("AlarmActions") or []),
            ok_actions=list(props.get("OKActions") or []),
            insufficient_data_actions=list(props.get("InsufficientDataActions") or []),
            unit=props.get("Unit"),
            actions_enabled=str(props.get("ActionsEnabled", True)).lower() == "true",
            treat_missing_data=props.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=props.get("ThresholdMetricId"),
            rule=None,
            tags=list(props.get("Tags") or []) or None,
        )
        return cls(name, alarm.alarm_arn)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: CloudWatchAlarmResource,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CloudWatchAlarmResource:
        # An alarm keeps its generated name across updates; PutMetricAlarm overwrites it in place.
        props = cloudformation_json["Properties"]
        if props.get("AlarmName") not in (None, original_resource.name):
            return super().update_from_cloudformation_json(
                original_resource, new_resource_name, cloudformation_json, account_id, region_name
            )
        same_name = (original_resource.name, cloudformation_json, account_id, region_name)
        return cls.create_from_cloudformation_json(*same_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        cls(resource_name, "").delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])


_ADDED_RESOURCE_TYPES: Final[dict[str, type[_AddedResource]]] = {
    model.cloudformation_type(): model
    for model in (
        SnsSubscriptionResource,
        SnsTopicPolicyResource,
        SqsQueuePolicyResource,
        LambdaEventInvokeConfigResource,
        CloudWatchAlarmResource,
    )
}


def _make_resource_class_from_type(original: Any) -> Any:
    @functools.wraps(original)
    def resource_class_from_type(resource_type: str) -> type[CloudFormationModel]:
        added = _ADDED_RESOURCE_TYPES.get(resource_type)
        if added is not None:
            return cast(type[CloudFormationModel], added)
        found: type[CloudFormationModel] = original(resource_type)
        return found

    return resource_class_from_type


# ---------------------------------------------------------------------------------------------
# CloudFormation: stack updates
# ---------------------------------------------------------------------------------------------


def _parameters_used(node: Any, conditions: Mapping[str, Any], seen: set[str] | None = None) -> set[str]:
    """Every name a template fragment depends on: Ref, ``${...}`` in Fn::Sub, and what its
    conditions (``Condition`` and ``Fn::If``) depend on."""
    seen = set() if seen is None else seen
    if isinstance(node, list):
        return set().union(*(_parameters_used(item, conditions, seen) for item in node))
    if not isinstance(node, dict):
        return set()
    found: set[str] = set()
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            found.add(value)
        elif key == "Fn::Sub":
            text = value[0] if isinstance(value, list) and value else value
            if isinstance(text, str):
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            if isinstance(value, list):
                found |= _parameters_used(value[1:], conditions, seen)
        elif key == "Condition" and isinstance(value, str):
            found |= _condition_uses(value, conditions, seen)
        elif key == "Fn::If" and isinstance(value, list) and value:
            found |= _condition_uses(str(value[0]), conditions, seen)
            found |= _parameters_used(value[1:], conditions, seen)
        else:
            found |= _parameters_used(value, conditions, seen)
    return found


def _condition_uses(name: str, conditions: Mapping[str, Any], seen: set[str]) -> set[str]:
    if name in seen:
        return set()
    seen.add(name)
    return _parameters_used(conditions.get(name), conditions, seen)


def _make_build_resource_diff(original: Any) -> Any:
    """A parameter change updates every resource whose properties depend on that parameter.

    AWS re-evaluates the whole template; moto only notices a direct ``Ref`` to the parameter,
    missing values built with ``Fn::Sub`` and values chosen by a condition.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks.html
    """

    @functools.wraps(original)
    def build_resource_diff(
        self: cfn_parsing.ResourceMap,
        other_template: dict[str, Any],
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        diff: dict[str, Any] = original(self, other_template, parameters)
        if not parameters:
            return diff
        changed = {p for p in parameters if self.input_parameters.get(p) != parameters[p]}
        if not changed:
            return diff
        old = self._resource_json_map
        conditions = other_template.get("Conditions") or {}
        for name, resource in other_template.get("Resources", {}).items():
            unchanged_so_far = name in old and name not in diff["Modify"]
            if unchanged_so_far and _parameters_used(resource, conditions) & changed:
                diff["Modify"].append(name)
        return diff

    return build_resource_diff


def _make_lambda_cfn_create(original: Any) -> Any:
    """A function's ``LoggingConfig.LogGroup`` is where its logs go (moto ignores the property).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-loggingconfig.html
    """
    create = original.__func__

    def create_from_cloudformation_json(
        cls: type[LambdaFunction],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> LambdaFunction:
        created = (resource_name, cloudformation_json, account_id, region_name)
        function: LambdaFunction = create(cls, *created, **kwargs)
        _apply_logging_config(function, cloudformation_json["Properties"])
        return function

    return classmethod(create_from_cloudformation_json)


def _apply_logging_config(function: LambdaFunction, properties: Mapping[str, Any]) -> None:
    group = (properties.get("LoggingConfig") or {}).get("LogGroup")
    function.logs_group_name = group or f"/aws/lambda/{function.function_name}"


def _lambda_cfn_update(
    cls: type[LambdaFunction],
    /,
    original_resource: LambdaFunction,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> LambdaFunction:
    """Updating a function defined with inline ``Code.ZipFile`` keeps working code.

    On create moto zips the inline source; on update it takes the source text for a base64 zip,
    so any update (even just an environment change) fails or leaves broken code behind.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-code.html
    """
    properties = dict(cloudformation_json["Properties"])
    original_resource.update_configuration(properties)
    code = dict(properties["Code"])
    if "ZipFile" in code:
        zipped = LambdaFunction._create_zipfile_from_plaintext_code(code["ZipFile"])
        code["ZipFile"] = base64.b64encode(zipped).decode()
    original_resource.update_function_code(code)
    _apply_logging_config(original_resource, properties)
    return original_resource


# Topic properties that are not topic attributes (moto's create sets every other one by name).
_TOPIC_NON_ATTRIBUTES: Final = frozenset({"TopicName", "FifoTopic", "Subscription", "Tags"})


def _make_topic_cfn_update(original: Any) -> Any:
    """An SNS topic keeps its ARN and subscriptions when an update does not rename it.

    AWS updates topic attributes without interruption; moto deletes the topic (and with it every
    subscription) and creates one under a new generated name the rule targets don't point at.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sns-topic.html
    """
    replace = original.__func__

    def update_from_cloudformation_json(
        cls: type[Topic],
        /,
        original_resource: Topic,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Topic:
        properties = cloudformation_json["Properties"]
        if properties.get("TopicName") not in (None, original_resource.name) or (
            str(properties.get("FifoTopic", False)).lower() == "true"
        ) != bool(original_resource.fifo_topic):
            replaced: Topic = replace(
                cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
            )
            return replaced
        for key, value in properties.items():
            if key not in _TOPIC_NON_ATTRIBUTES:
                setattr(original_resource, camelcase_to_underscores(key), value)
        return original_resource

    return classmethod(update_from_cloudformation_json)


# ---------------------------------------------------------------------------------------------
# EventBridge: SNS topics as targets
# ---------------------------------------------------------------------------------------------


class _RuleWithTargets:
    """A rule seen with only some of its targets, for moto's own delivery to the others."""

    def __init__(self, rule: Rule, targets: list[dict[str, Any]]) -> None:
        self._rule = rule
        self.targets = targets

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rule, name)


def _event_as_delivered(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event JSON a target receives: ISO 8601 time, no moto bookkeeping."""
    delivered = {k: copy.deepcopy(v) for k, v in event.items() if k != "ingestion-time"}
    when = delivered.get("time")
    if isinstance(when, int | float):
        delivered["time"] = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(when, datetime):
        delivered["time"] = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return delivered


def _json_path(path: str, document: Mapping[str, Any]) -> Any:
    from jsonpath_ng.ext import parse  # type: ignore[attr-defined]

    matches = parse(path).find(document)
    return matches[0].value if matches else None


def _target_input(target: Mapping[str, Any], event: Mapping[str, Any]) -> str:
    """What EventBridge sends a target: Input, InputPath, InputTransformer, or the whole event.

    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html
    """
    delivered = _event_as_delivered(event)
    if "Input" in target:
        return str(target["Input"])
    if "InputPath" in target:
        return json.dumps(_json_path(target["InputPath"], delivered))
    if "InputTransformer" in target:
        transformer = target["InputTransformer"]
        paths = transformer.get("InputPathsMap") or {}
        try:
            parsed = EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"),
                input_paths_map=paths,
                event=cast(Any, {**delivered, "ingestion-time": event.get("ingestion-time")}),
            )
            return json.dumps(parsed)
        except ValueError:
            # Not a JSON template: EventBridge sends the text with the placeholders filled in.
            text = str(transformer.get("InputTemplate", ""))
            for name, path in paths.items():
                value = _json_path(path, delivered)
                text = text.replace(f"<{name}>", value if isinstance(value, str) else json.dumps(value))
            return text
    return json.dumps(delivered)


def _make_send_to_targets(original: Any) -> Any:
    """A matching event reaches the rule's SNS topic targets; a disabled rule matches nothing.

    moto raises NotImplementedError for an SNS target (so PutEvents fails) and delivers to the
    targets of disabled rules.  EventBridge publishes the event JSON (or the target's input) to
    the topic; delivery problems never fail PutEvents.
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sns-permissions
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html (State)
    """

    @functools.wraps(original)
    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        if str(self.state).upper() == "DISABLED":
            return
        sns_targets = [t for t in self.targets if parse_arn(t["Arn"]).service == "sns"]
        others = [t for t in self.targets if t not in sns_targets]
        if others:
            original(_RuleWithTargets(self, others), original_event, transform_input)
        if not sns_targets or not self.event_pattern.matches_event(original_event):
            return
        for target in sns_targets:
            topic = parse_arn(target["Arn"])
            try:
                if transform_input:
                    message = _target_input(target, original_event)
                else:
                    message = json.dumps(_event_as_delivered(original_event))
                sns_backends[topic.account][topic.region].publish(message=message, arn=target["Arn"])
            except Exception:
                logger.exception("Delivering an event from rule %s to %s failed", self.name, target["Arn"])

    return send_to_targets


# ---------------------------------------------------------------------------------------------
# SNS: the notification a Lambda subscriber receives
# ---------------------------------------------------------------------------------------------


def _make_subscription_publish(original: Any) -> Any:
    """A Lambda subscriber gets the real notification: its topic and subscription ARNs, message id,
    timestamp, subject (null when there is none) and message attributes.

    moto hands every function the same fixed sample record (``arn:aws:sns:EXAMPLE``, subject
    ``TestInvoke``, sample attributes), and looks the function up in the topic's account.
    https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html
    """

    @functools.wraps(original)
    def publish(
        self: Subscription,
        message: str,
        message_id: str,
        subject: str | None = None,
        message_attributes: dict[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
    ) -> None:
        if self.protocol != "lambda":
            original(
                self,
                message,
                message_id,
                subject,
                message_attributes,
                group_id,
                deduplication_id,
                message_structure,
            )
            return
        # The subscription's filter policy and per-protocol messages, exactly as moto applies them.
        matcher = self._filter_policy_matcher
        if matcher is not None and not matcher.matches(message_attributes, message):
            return
        if message_structure == "json":
            message = self._parse_message_structure(message, self.protocol)
        function = parse_arn(self.endpoint)
        name, _, qualifier = function.resource_id.partition(":")
        sns_url = f"https://sns.{self.topic.arn.split(':')[3]}.amazonaws.com"
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        notification = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": self.topic.arn,
            "Subject": subject,
            "Message": message,
            "Timestamp": timestamp,
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": f"{sns_url}/SimpleNotificationService-sandbox.pem",
            "UnsubscribeUrl": f"{sns_url}/?Action=Unsubscribe&SubscriptionArn={self.arn}",
            "MessageAttributes": {
                key: {"Type": value.get("Type"), "Value": value.get("Value")}
                for key, value in (message_attributes or {}).items()
            },
        }
        event = {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": self.arn,
                    "Sns": notification,
                }
            ]
        }
        backend = get_lambda_backend(function.account, function.region)
        target = backend._lambdas.get_function_by_name_or_arn_with_qualifier(name, qualifier or None)
        target.invoke(json.dumps(event), {}, {})

    return publish


# ---------------------------------------------------------------------------------------------
# Lambda: run the deployed code without docker
# ---------------------------------------------------------------------------------------------

# Runs inside the function's own process: import the handler from the extracted code, call it with
# the event from stdin and a Lambda-like context, write the result (or error) to a file.
_RUNNER: Final = r"""
import importlib, json, os, sys, time, traceback
task_root, result_path, handler, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sys.path.insert(0, task_root)
os.chdir(task_root)

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
    invoked_function_arn = os.environ["SANDBOX_FUNCTION_ARN"]
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    aws_request_id = os.environ["SANDBOX_REQUEST_ID"]
    log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
    log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    identity = None
    client_context = None

    @staticmethod
    def get_remaining_time_in_millis():
        return max(0, int((deadline - time.time()) * 1000))

ok = False
try:
    event = json.load(sys.stdin)
    module_name, _, function_name = handler.rpartition(".")
    function = getattr(importlib.import_module(module_name.replace("/", ".")), function_name)
    payload = json.dumps(function(event, Context()))
    ok = True
except Exception as error:
    # Report the function's own frames only, not this runner's.
    frames = error.__traceback__.tb_next if error.__traceback__ else None
    traceback.print_exception(type(error), error, frames)
    payload = json.dumps({
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_tb(frames),
    })
sys.stdout.flush()
sys.stderr.flush()
with open(result_path, "w", encoding="utf-8") as result:
    result.write(payload)
sys.exit(0 if ok else 1)
"""


def _execution_role_credentials(function: LambdaFunction) -> tuple[str, str, str]:
    """Temporary credentials of the function's execution role, in the role's account.

    moto picks the account of a request from its access key; a key minted by assuming a role
    belongs to the account in the role's ARN.
    """
    key = (function.account_id, function.role)
    if key not in _role_credentials:
        sts = sts_backends[function.account_id][get_partition(function.region)]
        assumed = sts.assume_role(
            region_name=function.region,
            role_session_name=function.function_name[:64],
            role_arn=function.role,
            policy="",
            duration=43200,
            external_id="",
        )
        _role_credentials[key] = (assumed.access_key_id, assumed.secret_access_key, assumed.session_token)
    return _role_credentials[key]


def _write_logs(function: LambdaFunction, stream: str, lines: Iterable[str]) -> None:
    backend = function.logs_backend
    backend.ensure_log_group(function.logs_group_name)
    backend.create_log_stream(function.logs_group_name, stream)
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": line} for line in lines]
    if events:
        backend.put_log_events(function.logs_group_name, stream, events)


def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    """Invoking a function runs its deployed code: the zip in the Lambda backend, its handler,
    its environment variables and its execution role, with AWS calls going back to the sandbox.

    moto runs functions only in docker.  Here the code runs in a Python subprocess (the sandbox's
    interpreter, whatever Python runtime the function names) with the reserved variables Lambda
    sets, and its output goes to the function's CloudWatch log group as in AWS.
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
    https://docs.aws.amazon.com/lambda/latest/dg/python-handler.html
    """
    request_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    stream = f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    runtime = str(self.run_time or "")
    if not runtime.startswith("python"):
        message = f"The sandbox runs Python functions only; {self.function_name} uses {runtime or 'an image'}"
        _write_logs(self, stream, [message])
        return json.dumps({"errorMessage": message, "errorType": "Runtime.Unsupported"}), True, message
    if _endpoint_url is None:
        raise RuntimeError("The sandbox endpoint is not known yet: call apply(endpoint_url=...) first")

    access_key, secret_key, session_token = _execution_role_credentials(self)
    timeout = float(self.timeout or 3)
    started = time.time()
    deadline = started + timeout
    with tempfile.TemporaryDirectory(prefix="lambda-") as scratch:
        task_root = os.path.join(scratch, "task")
        with zipfile.ZipFile(io.BytesIO(self.code_bytes)) as archive:
            archive.extractall(task_root)
        result_path = os.path.join(scratch, "result.json")
        # Reserved variables win over the function's own, as in Lambda; the shared AWS config and
        # credential files are hidden so the code can only ever use its role's sandbox credentials.
        environment = {str(k): str(v) for k, v in (self.environment_vars or {}).items()}
        environment.update(
            {
                "PATH": os.environ.get("PATH", os.defpath),
                "HOME": scratch,
                "LANG": "en_US.UTF-8",
                "TZ": "UTC",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "_HANDLER": str(self.handler),
                "LAMBDA_TASK_ROOT": task_root,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": self.logs_group_name,
                "AWS_LAMBDA_LOG_STREAM_NAME": stream,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ACCESS_KEY_ID": access_key,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                "AWS_SESSION_TOKEN": session_token,
                "AWS_ENDPOINT_URL": _endpoint_url,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "SANDBOX_FUNCTION_ARN": self.function_arn,
                "SANDBOX_REQUEST_ID": request_id,
            }
        )
        try:
            completed = subprocess.run(
                [sys.executable, "-c", _RUNNER, task_root, result_path, str(self.handler), str(deadline)],
                input=json.dumps(event if event is not None else {}),
                capture_output=True,
                text=True,
                env=environment,
                timeout=timeout + _COLD_START_ALLOWANCE_SECONDS,
                check=False,
            )
            output = completed.stdout + completed.stderr
            errored = completed.returncode != 0
            try:
                with open(result_path, encoding="utf-8") as handle:
                    payload = handle.read()
            except FileNotFoundError:
                payload = json.dumps({"errorMessage": "The function process exited without a result"})
                errored = True
        except subprocess.TimeoutExpired as expired:
            output = _text(expired.stdout) + _text(expired.stderr)
            output += f"\nTask timed out after {timeout:.2f} seconds"
            payload = json.dumps({"errorMessage": f"Task timed out after {timeout:.2f} seconds"})
            errored = True
    elapsed_ms = (time.time() - started) * 1000
    lines = [f"START RequestId: {request_id} Version: $LATEST", *output.splitlines()]
    lines += [
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms",
    ]
    _write_logs(self, stream, lines)
    if errored:
        logger.warning("Function %s failed:\n%s", self.function_name, output)
    tail = "\n".join(lines).encode()[-_LOG_TAIL_BYTES:].decode(errors="ignore")
    return payload, errored, tail


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# ---------------------------------------------------------------------------------------------
# SES: keep both parts of a message
# ---------------------------------------------------------------------------------------------


def _record_parts(messages: list[Any], message_id: str, text: str | None, html: str | None) -> None:
    for message in reversed(messages):
        if getattr(message, "id", None) == message_id:
            message.text_part = text
            message.html_part = html
            return


def _make_ses_v1_send_email(original: Any) -> Any:
    """SendEmail keeps the text and the HTML body (moto keeps only one of them).

    https://docs.aws.amazon.com/ses/latest/APIReference/API_Body.html
    """

    @functools.wraps(original)
    def send_email(self: EmailResponse) -> Any:
        result = original(self)
        body = (self._get_param("Message") or {}).get("Body") or {}
        text = self._get_param("Message.Body.Text.Data") or (body.get("Text") or {}).get("Data")
        html = self._get_param("Message.Body.Html.Data") or (body.get("Html") or {}).get("Data")
        if isinstance(result, ActionResult) and isinstance(result.result, dict):
            _record_parts(self.backend.sent_messages, str(result.result.get("MessageId")), text, html)
        return result

    return send_email


def _make_ses_v2_send_email(original: Any) -> Any:
    """SESv2 SendEmail keeps the text and the HTML body (moto keeps only one of them).

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_Body.html
    """

    @functools.wraps(original)
    def send_email(self: SESV2Response) -> Any:
        result = original(self)
        try:
            body = json.loads(self.body)["Content"]["Simple"]["Body"]
            message_id = json.loads(result)["MessageId"]
        except (KeyError, TypeError, ValueError):
            return result
        text = (body.get("Text") or {}).get("Data")
        html = (body.get("Html") or {}).get("Data")
        _record_parts(self.sesv2_backend.core_backend.sent_messages, message_id, text, html)
        return result

    return send_email
