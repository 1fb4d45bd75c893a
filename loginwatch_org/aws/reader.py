"""Reads what is deployed into a ``Snapshot``, with as few calls as the organisation's size allows.

A converged organisation costs one DescribeStackSet, one ListStackInstances per 100 instances and one
ListStackSetOperations: each instance's overrides are read from the digest in its LastOperationId. Only
instances whose last operation says nothing we can trust (not ours, or a digest that differs from the
config) are described, concurrently and bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loginwatch_org.aws.errors import AwsProblem, error_code, explained
from loginwatch_org.state import (
    OWNER_TAG_KEY,
    OWNER_TAG_VALUE,
    PENDING_OPERATION_STATES,
    DeployedInstance,
    DeployedStackSet,
    PendingOperation,
    Snapshot,
    digest_from_operation_id,
    overrides_digest,
)
from loginwatch_org.templates import template_digest

DESCRIBE_WORKERS = 8
# DescribeAccount per account costs one call; ListAccounts returns at most 20 accounts a page.
ORGANIZATION_PAGE = 20


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


class StackSetReader:
    def __init__(self, cloudformation: Any, *, call_as: str = "self", organizations: Any | None = None) -> None:
        self._cfn = cloudformation
        self._org = organizations
        self._call_as = call_as_value(call_as)
        self._call_as_args = call_as_args(call_as)

    def read(
        self,
        name: str,
        desired_overrides: Mapping[str, Mapping[str, str]] | None = None,
        *,
        check_organization: bool = True,
    ) -> Snapshot:
        """Snapshot of stack set ``name``. ``desired_overrides`` (account -> overrides) says which instances'
        overrides are worth a describe: those we cannot show to be right from their LastOperationId."""
        desired = desired_overrides or {}
        with explained(self._call_as):
            stack_set = self._describe_stack_set(name)
            if stack_set is None:
                unknown = self._outside_organization(desired.keys()) if check_organization else (frozenset(), ())
                return Snapshot(None, accounts_outside_organization=unknown[0], warnings=unknown[1])
            if not stack_set.owned:
                raise AwsProblem(
                    f"Stack set '{name}' exists but is not managed by loginwatch-org (it lacks the tag "
                    f"{OWNER_TAG_KEY}={OWNER_TAG_VALUE}). Refusing to change it: choose another stack_set.name, "
                    "or tag it if it really is this tool's."
                )
            summaries = list(self._list_instances(name))
            instances = self._with_overrides(name, summaries, desired)
            pending, foreign, latest = self._operations(name)
            have_instance = {instance.account_id for instance in instances}
            to_check = [account for account in desired if account not in have_instance]
            outside, warnings = self._outside_organization(to_check) if check_organization else (frozenset(), ())
        return Snapshot(stack_set, tuple(instances), pending, latest, outside, warnings, foreign)

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
        )

    def _pages(self, method: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            call = dict(kwargs, **self._call_as_args)
            if token:
                call["NextToken"] = token
            response = getattr(self._cfn, method)(**call)
            yield from response.get(key, [])
            token = response.get("NextToken")
            if not token:
                return

    def _list_instances(self, name: str) -> Iterator[dict[str, Any]]:
        return self._pages("list_stack_instances", "Summaries", StackSetName=name, MaxResults=100)

    def _with_overrides(
        self, name: str, summaries: list[dict[str, Any]], desired: Mapping[str, Mapping[str, str]]
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
            if wanted is not None and digest != overrides_digest(wanted):
                to_describe.append(len(instances) - 1)
        if to_describe:
            with ThreadPoolExecutor(max_workers=DESCRIBE_WORKERS) as pool:
                described = list(pool.map(lambda i: self._describe_overrides(name, instances[i]), to_describe))
            for index, overrides in zip(to_describe, described, strict=True):
                instances[index] = _replace_overrides(instances[index], overrides)
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

    def _outside_organization(self, accounts: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
        """Which of ``accounts`` the organisation lacks: describe each, or list the organisation, whichever
        costs fewer calls."""
        wanted = sorted(set(accounts))
        if not wanted or self._org is None:
            return frozenset(), ()
        try:
            if len(wanted) <= ORGANIZATION_PAGE:
                missing = set()
                for account in wanted:
                    try:
                        self._org.describe_account(AccountId=account)
                    except Exception as error:
                        if error_code(error) != "AccountNotFoundException":
                            raise
                        missing.add(account)
                return frozenset(missing), ()
            members: set[str] = set()
            token: str | None = None
            while True:
                response = self._org.list_accounts(**({"NextToken": token} if token else {}))
                members.update(account["Id"] for account in response.get("Accounts", []))
                token = response.get("NextToken")
                if not token:
                    break
            return frozenset(set(wanted) - members), ()
        except Exception as error:
            if error_code(error) in (
                "AccessDeniedException",
                "AWSOrganizationsNotInUseException",
                "AccessDenied",
            ):
                return frozenset(), (f"could not check organisation membership ({error_code(error)}); continuing",)
            raise


def _replace_overrides(instance: DeployedInstance, overrides: dict[str, str]) -> DeployedInstance:
    from dataclasses import replace

    return replace(instance, overrides=overrides, overrides_digest=overrides_digest(overrides))
