"""Reads what is deployed into a ``Snapshot``, with as few calls as the organisation's size allows.

A converged organisation costs one DescribeStackSet, one ListStackInstances per 100 instances and one
ListStackSetOperations: each instance's overrides are read from the digest in its LastOperationId. Only
instances whose last operation says nothing we can trust (not ours, or a digest that differs from the
config) are described, concurrently and bounded.

The organisation's accounts in the stack set's scope (with their State) come from the command's
``OrganizationReader``, read in a thread of their own while the stack instance pages are read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from typing import Any

from loginwatch_org.aws import paging
from loginwatch_org.aws.errors import AwsProblem, error_code, explained
from loginwatch_org.aws.organization import OrganizationReader, OrganizationScope, refused
from loginwatch_org.aws.workers import worker_pool
from loginwatch_org.config import StackSetSettings
from loginwatch_org.cost import body_resource_types
from loginwatch_org.state import (
    OWNER_TAG_KEY,
    OWNER_TAG_VALUE,
    PENDING_OPERATION_STATES,
    DeployedInstance,
    DeployedStackSet,
    OrganizationView,
    PendingOperation,
    Snapshot,
    digest_from_operation_id,
    overrides_digest,
)
from loginwatch_org.templates import template_digest

DESCRIBE_WORKERS = 8


def canonical_template_digest(body: str) -> str:
    """Digest of a template body as AWS returns it; JSON is re-serialised so formatting doesn't count."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return template_digest(body)
    return template_digest(json.dumps(parsed, separators=(",", ":"), sort_keys=True))


def call_as_value(call_as: str) -> str:
    return "DELEGATED_ADMIN" if call_as == "delegated-admin" else "SELF"


def call_as_args(call_as: str) -> dict[str, str]:
    """The CallAs argument of every StackSet call. SELF is the API's default, and CallAs is valid only for
    service-managed stack sets, so it is sent only when acting as delegated administrator."""
    value = call_as_value(call_as)
    return {"CallAs": value} if value == "DELEGATED_ADMIN" else {}


def auto_deployment(settings: StackSetSettings) -> dict[str, bool]:
    """CreateStackSet's AutoDeployment. With new_accounts: defaults, StackSets deploys the watch to an account as
    soon as it joins a targeted OU, with the stack set's parameter values (the config's defaults), and deletes the
    instance of an account that leaves them (RetainStacksOnAccountRemoval=false: a stack outside the stack set would
    keep emailing with recipients nobody manages any more).
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_AutoDeployment.html"""
    if settings.auto_deployment:
        return {"Enabled": True, "RetainStacksOnAccountRemoval": False}
    return {"Enabled": False}


class StackSetReader:
    def __init__(
        self, cloudformation: Any, *, call_as: str = "self", organization: OrganizationReader | None = None
    ) -> None:
        """``organization``: the command's reader of the organisation, shared by every unit it reads."""
        self._cfn = cloudformation
        self._org = organization
        self._call_as = call_as_value(call_as)
        self._call_as_args = call_as_args(call_as)

    def read(
        self,
        name: str,
        desired_overrides: Mapping[str, Mapping[str, str]] | None = None,
        *,
        check_organization: bool = True,
        scope: OrganizationScope | None = None,
        verify: bool = False,
    ) -> Snapshot:
        """Snapshot of stack set ``name``. ``desired_overrides`` (account -> overrides) says which instances'
        overrides are worth a describe: those we cannot show to be right from their LastOperationId. With
        ``verify`` every instance is described: an OperationId is chosen by whoever calls the API, so the digest it
        carries is a claim, not a proof. ``scope`` (default: the whole organisation) is read concurrently."""
        desired = desired_overrides or {}
        scope = scope or OrganizationScope()
        with worker_pool(1) as background, explained(self._call_as):
            organization: Future[OrganizationView | None] | None = None
            if check_organization and self._org is not None:
                organization = background.submit(self._org.accounts, scope)
            stack_set = self._describe_stack_set(name)
            if stack_set is not None and not stack_set.owned:
                raise AwsProblem(
                    f"Stack set '{name}' exists but is not managed by loginwatch-org (it lacks the tag "
                    f"{OWNER_TAG_KEY}={OWNER_TAG_VALUE}). Refusing to change it: choose another stack_set.name, "
                    "or tag it if it really is this tool's."
                )
            summaries = list(self._list_instances(name)) if stack_set is not None else []
            instances: list[DeployedInstance] = []
            pending: tuple[PendingOperation, ...] = ()
            foreign: tuple[PendingOperation, ...] = ()
            latest: str | None = None
            if stack_set is not None:
                wanted = _with_defaults(desired, scope, summaries)
                instances = self._with_overrides(name, summaries, wanted, stack_set, verify=verify)
                pending, foreign, latest = self._operations(name)
            # Awaited last: every StackSets read above ran beside the organisation's listing.
            view, warnings = self._organization_result(organization)
            have_instance = {instance.account_id for instance in instances}
            outside: frozenset[str] = frozenset()
            if check_organization:
                in_scope = view.accounts if view is not None else {}
                to_check = [a for a in desired if a not in have_instance and a not in in_scope]
                if view is not None:
                    outside, more = self._outside_organization(to_check, view)
                    warnings = (*warnings, *more)
        if stack_set is None:
            return Snapshot(None, accounts_outside_organization=outside, warnings=warnings, organization=view)
        return Snapshot(stack_set, tuple(instances), pending, latest, outside, warnings, foreign, view)

    def newest_operation(self, name: str) -> str | None:
        """The newest operation on stack set ``name`` (None when it has none, or does not exist): what makes a
        new OperationId fresh without reading every instance."""
        with explained(self._call_as):
            if self._describe_stack_set(name) is None:
                return None
            return self._operations(name)[2]

    def _describe_stack_set(self, name: str) -> DeployedStackSet | None:
        try:
            response = self._cfn.describe_stack_set(StackSetName=name, **self._call_as_args)
        except Exception as error:
            if error_code(error) == "StackSetNotFoundException":
                return None
            raise
        data = response["StackSet"]
        if data.get("Status") == "DELETED":
            return None
        return DeployedStackSet(
            name=data["StackSetName"],
            stack_set_id=data.get("StackSetId", ""),
            template_digest=canonical_template_digest(data.get("TemplateBody", "")),
            parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in data.get("Parameters", [])},
            tags={t["Key"]: t["Value"] for t in data.get("Tags", [])},
            permission_model=data.get("PermissionModel", "SELF_MANAGED"),
            managed_execution=bool(data.get("ManagedExecution", {}).get("Active", False)),
            auto_deployment=bool(data["AutoDeployment"].get("Enabled", False)) if "AutoDeployment" in data else None,
            resource_types=body_resource_types(data.get("TemplateBody", "")),
        )

    def _pages(self, method: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return paging.items(getattr(self._cfn, method), key, **kwargs, **self._call_as_args)

    def _list_instances(self, name: str) -> Iterator[dict[str, Any]]:
        return self._pages("list_stack_instances", "Summaries", StackSetName=name, MaxResults=100)

    def _with_overrides(
        self,
        name: str,
        summaries: list[dict[str, Any]],
        desired: Mapping[str, Mapping[str, str]],
        stack_set: DeployedStackSet | None = None,
        *,
        verify: bool = False,
    ) -> list[DeployedInstance]:
        instances: list[DeployedInstance] = []
        to_describe: list[int] = []
        for summary in summaries:
            account = summary["Account"]
            digest = digest_from_operation_id(summary.get("LastOperationId"))
            instances.append(
                DeployedInstance(
                    account_id=account,
                    region=summary["Region"],
                    status=summary.get("Status", ""),
                    detailed_status=summary.get("StackInstanceStatus", {}).get("DetailedStatus"),
                    status_reason=summary.get("StatusReason") or None,
                    last_operation_id=summary.get("LastOperationId"),
                    overrides_digest=digest,
                    drift_status=summary.get("DriftStatus"),
                    stack_id=summary.get("StackId"),
                )
            )
            wanted = desired.get(account)
            if verify or (wanted is not None and digest != overrides_digest(wanted)):
                to_describe.append(len(instances) - 1)
        if to_describe:
            with worker_pool(DESCRIBE_WORKERS) as pool:
                described = list(pool.map(lambda i: self._describe_overrides(name, instances[i]), to_describe))
            inherited = dict(stack_set.parameters) if stack_set is not None else {}
            for index, overrides in zip(to_describe, described, strict=True):
                wanted = desired.get(instances[index].account_id) or {}
                instances[index] = _replace_overrides(instances[index], _effective(overrides, wanted, inherited))
        return instances

    def _describe_overrides(self, name: str, instance: DeployedInstance) -> dict[str, str]:
        response = self._cfn.describe_stack_instance(
            StackSetName=name,
            StackInstanceAccount=instance.account_id,
            StackInstanceRegion=instance.region,
            **self._call_as_args,
        )
        overrides = response["StackInstance"].get("ParameterOverrides", [])
        return {p["ParameterKey"]: p.get("ParameterValue", "") for p in overrides}

    def _operations(self, name: str) -> tuple[tuple[PendingOperation, ...], tuple[PendingOperation, ...], str | None]:
        """Pending operations (ours, to resume; everybody else's, to wait for) and the newest operation of all.

        ListStackSetOperations documents no order and is eventually consistent
        (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ListStackSetOperations.html):
        every page is read, and an operation listed as pending is confirmed with DescribeStackSetOperation, so a
        finished operation the list has not caught up with is not waited for again."""
        summaries = list(self._pages("list_stack_set_operations", "Summaries", StackSetName=name, MaxResults=100))
        listed_pending = [op for op in summaries if op.get("Status") in PENDING_OPERATION_STATES]
        pending: list[PendingOperation] = []
        for op in listed_pending:
            status = self._cfn.describe_stack_set_operation(
                StackSetName=name, OperationId=op["OperationId"], **self._call_as_args
            )["StackSetOperation"].get("Status", "")
            if status in PENDING_OPERATION_STATES:
                pending.append(PendingOperation(op["OperationId"], op.get("Action", ""), status))
        newest = max(summaries, key=lambda op: (str(op.get("CreationTimestamp", "")), op["OperationId"]), default=None)
        return (
            tuple(op for op in pending if op.own),
            tuple(op for op in pending if not op.own),
            newest["OperationId"] if newest else None,
        )

    # -- the organisation ------------------------------------------------------------------------------------

    def _organization_result(
        self, organization: Future[OrganizationView | None] | None
    ) -> tuple[OrganizationView | None, tuple[str, ...]]:
        if organization is None:
            return None, ()
        try:
            return organization.result(), ()
        except Exception as error:
            if refused(error):
                return None, (
                    f"could not read the organisation's accounts ({error_code(error)}): accounts missing from the "
                    "config and suspended accounts are not known; grant organizations:ListAccounts, "
                    "ListAccountsForParent, ListOrganizationalUnitsForParent and DescribeOrganization",
                )
            raise

    def _outside_organization(
        self, accounts: list[str], view: OrganizationView
    ) -> tuple[frozenset[str], tuple[str, ...]]:
        assert self._org is not None
        try:
            return self._org.outside(accounts, known=view), ()
        except Exception as error:
            if refused(error):
                return frozenset(), (f"could not check organisation membership ({error_code(error)}); continuing",)
            raise


def _with_defaults(
    desired: Mapping[str, Mapping[str, str]], scope: OrganizationScope, summaries: list[dict[str, Any]]
) -> Mapping[str, Mapping[str, str]]:
    """``desired`` plus, with new_accounts: defaults, the default overrides for instances of accounts the config
    does not list (an auto-deployment's, or an earlier rollout's), so their overrides are checked too."""
    defaults = scope.default_overrides
    if defaults is None:
        return desired
    extra = {
        summary["Account"]: defaults
        for summary in summaries
        if summary["Account"] not in desired and summary["Account"] not in scope.listed
    }
    return {**extra, **desired} if extra else desired


def _effective(overrides: Mapping[str, str], wanted: Mapping[str, str], inherited: Mapping[str, str]) -> dict[str, str]:
    """What the instance's stack really gets: its overrides, and the stack set's value for each parameter it does
    not override. An instance StackSets auto-deployment (or the console) created without overrides carries the
    stack set's values, which are the config's defaults.
    ParameterOverrides: https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackInstances.html"""
    effective = dict(overrides)
    for key in wanted:
        if key not in effective and key in inherited:
            effective[key] = inherited[key]
    return effective


def _replace_overrides(instance: DeployedInstance, overrides: dict[str, str]) -> DeployedInstance:
    from dataclasses import replace

    return replace(instance, overrides=overrides, overrides_digest=overrides_digest(overrides))
