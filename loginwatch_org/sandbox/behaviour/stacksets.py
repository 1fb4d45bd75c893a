"""StackSets: what moto's stack sets do differently from AWS.

* ``ManagedExecution`` remembered as requested, as DescribeStackSet reports it; the caller's
  ``OperationId`` used (and a reused one refused), and each instance's ``LastOperationId`` reported.
* Service-managed: ``DeploymentTargets`` with ``AccountFilterType`` and nested OUs on
  create/update/delete, no instance in the management account, parameter overrides and stack set
  updates that really update the stack in each account, ``RetainStacks``, trusted access.
* Self-managed: instance stacks named like AWS names them.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from moto.cloudformation.exceptions import (
    CloudFormationError,
    StackInstanceNotFound,
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
from moto.core.responses import ActionResult, EmptyResult
from moto.organizations.models import OrganizationsBackend, organizations_backends
from moto.utilities.utils import get_partition

from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()

__all__ = ["PATCHES", "STACKSETS_SERVICE_PRINCIPAL", "select_target_accounts"]

#: Organizations trusted-access principal that CloudFormation StackSets uses.
STACKSETS_SERVICE_PRINCIPAL: Final = "member.org.stacksets.cloudformation.amazonaws.com"

Operation = Literal["create", "update", "delete"]
# Accounts a request names; ``None`` when it names none.
Accounts = list[str] | None

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


@PATCHES.wrap(StackSet, "create_stack_instances")
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


class OperationIdAlreadyExists(CloudFormationError):
    code = "OperationIdAlreadyExistsException"


_requested_operation = threading.local()


def with_operation_id(original: Any) -> Any:
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


# CreateStackInstances: moto's own handler, with the caller's OperationId.
PATCHES.wrap(CloudFormationResponse, "create_stack_instances")(with_operation_id)


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


@PATCHES.replace(CloudFormationResponse, "update_stack_instances", with_operation_id)
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


@PATCHES.replace(CloudFormationResponse, "delete_stack_instances", with_operation_id)
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


@PATCHES.replace(CloudFormationResponse, "update_stack_set", with_operation_id)
def _response_update_stack_set(self: CloudFormationResponse) -> ActionResult:
    """UpdateStackSet reads ``DeploymentTargets``, and an update of the template or parameters first
    marks every instance OUTDATED.

    AWS: "If the stack set update includes changes to the template (that is, if the TemplateBody or
    TemplateURL properties are specified), or the Parameters property, CloudFormation marks all stack
    instances with a status of OUTDATED prior to updating the stack instances in the specified accounts
    and AWS Regions."  The instances the update does not target stay OUTDATED until an operation
    updates them, so a rollout interrupted after its UpdateStackSet leaves them visibly behind.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStackSet.html
    """
    name = self._get_param("StackSetName")
    stack_set = self.cloudformation_backend.describe_stack_set(name)
    template_body = self._get_param("TemplateBody")
    template_url = self._get_param("TemplateURL")
    if template_url:
        template_body = self._get_stack_from_s3_url(template_url)
    targets = _requested_accounts(self, stack_set, "update")
    if template_body or template_url or any(key.split(".")[0] == "Parameters" for key in self.querystring):
        for instance in stack_set.stack_instances:
            instance._sandbox_status = "OUTDATED"  # type: ignore[attr-defined]
    operation = self.cloudformation_backend.update_stack_set(
        stackset_name=name,
        template=template_body,
        description=self._get_param("Description"),
        parameters=self._get_param("Parameters", []),
        tags={item["Key"]: item["Value"] for item in self._get_param("Tags", [])},
        admin_role=self._get_param("AdministrationRoleARN"),
        execution_role=self._get_param("ExecutionRoleName"),
        # ``None``: every instance (AWS updates them all when no accounts are named).
        accounts=targets,  # type: ignore[arg-type]
        regions=list(self._get_param("Regions") or []),
        operation_id=self._get_param("OperationId") or str(uuid.uuid4()),
    )
    _record_managed_execution(self, stack_set)
    return ActionResult({"OperationId": operation["OperationId"]})


@PATCHES.wrap(StackSet, "_create_operation")
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


@PATCHES.replace(StackSet, "managed_execution", property)
def _managed_execution(self: StackSet) -> dict[str, Any]:
    """DescribeStackSet reports the ManagedExecution the stack set was given (moto always says inactive).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ManagedExecution.html
    """
    return {"Active": bool(getattr(self, "_sandbox_managed_execution", False))}


@PATCHES.wrap(CloudFormationResponse, "create_stack_set")
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
    instance._sandbox_status = "CURRENT"  # type: ignore[attr-defined]


@PATCHES.replace(StackSet, "update")
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


@PATCHES.replace(StackInstances, "update")
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


@PATCHES.replace(StackInstances, "delete")
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


@PATCHES.wrap(StackInstance, "__init__")
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


@PATCHES.wrap(StackInstance, "to_dict")
def _make_stack_instance_to_dict(original: Any) -> Any:
    """A stack instance reports its real stack's id, only its own parameter overrides, and whether it
    is up to date with the stack set (moto always says CURRENT).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstanceSummary.html
    """

    @functools.wraps(original)
    def to_dict(self: StackInstance) -> dict[str, Any]:
        described: dict[str, Any] = original(self)
        described["StackId"] = self.stack.stack_id
        described["ParameterOverrides"] = _overrides_of(self)
        described["Status"] = getattr(self, "_sandbox_status", "CURRENT")
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


@PATCHES.replace(CloudFormationResponse, "activate_organizations_access")
def _activate_org_access(self: CloudFormationResponse) -> EmptyResult:
    """ActivateOrganizationsAccess turns on StackSets trusted access (moto lacks the action).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ActivateOrganizationsAccess.html
    """
    org = _org_of(self.current_account, self.region)
    if org.org is None:
        raise ValidationError(message="The account is not the management account of an organization")
    org.enable_aws_service_access(ServicePrincipal=STACKSETS_SERVICE_PRINCIPAL)
    return EmptyResult()


@PATCHES.replace(CloudFormationResponse, "deactivate_organizations_access")
def _deactivate_org_access(self: CloudFormationResponse) -> EmptyResult:
    """DeactivateOrganizationsAccess turns StackSets trusted access off (moto lacks the action)."""
    org = _org_of(self.current_account, self.region)
    if _trusted_access_enabled(org):
        org.disable_aws_service_access(ServicePrincipal=STACKSETS_SERVICE_PRINCIPAL)
    return EmptyResult()


@PATCHES.replace(CloudFormationResponse, "describe_organizations_access")
def _describe_org_access(self: CloudFormationResponse) -> ActionResult:
    """DescribeOrganizationsAccess reports whether StackSets trusted access is on (moto lacks it)."""
    org = _org_of(self.current_account, self.region)
    return ActionResult({"Status": "ENABLED" if _trusted_access_enabled(org) else "DISABLED"})


@PATCHES.wrap(CloudFormationBackend, "create_stack_set")
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
