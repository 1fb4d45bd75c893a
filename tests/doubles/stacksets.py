"""In-memory test double for the CloudFormation StackSets API of a boto3 ``cloudformation`` client.

``StackSetsDouble`` plays the cloud: an AWS Organization (OUs and accounts), the stack sets, their stack
instances and their operations.  ``StackSetsDouble.client()`` returns an object whose methods take the
same keyword arguments as the boto3 client methods, return boto3-shaped dictionaries and raise
``botocore.exceptions.ClientError`` with the error codes and HTTP status codes of the real service.

Each behaviour follows the AWS CloudFormation API Reference (the action pages CreateStackSet,
UpdateStackSet, DeleteStackSet, CreateStackInstances, UpdateStackInstances, DeleteStackInstances,
ListStackInstances, DescribeStackInstance, DescribeStackSetOperation, ListStackSetOperations,
ListStackSetOperationResults, DetectStackSetDrift, StopStackSetOperation, and the data types
StackInstanceSummary, StackSetOperation, StackSetOperationPreferences, ManagedExecution and
DeploymentTargets).  Comments name the page a rule comes from.  Request parameters are first checked
by botocore's own validator against the installed service model, exactly as a real client does
before sending a request, so misspelt or missing arguments fail the same way.

Unlike moto, operations are asynchronous and only move forward when they are observed:

* every write that starts an operation returns at once and the operation is ``QUEUED``;
* each ``describe_stack_set_operation`` call on an unfinished operation advances the oldest unfinished
  operation of that stack set by one step (the *queue-advance rule*): an operation is seen
  ``polls_per_state`` times as ``QUEUED``, then ``polls_per_state`` times as ``RUNNING``, then it
  finishes (``SUCCEEDED`` or ``FAILED``).  A stopped operation is seen ``polls_per_state`` times as
  ``STOPPING`` and then becomes ``STOPPED``.  Operations of a stack set run one at a time in request
  order, so waiting on a later operation also drives the earlier ones to completion.  A write refused
  with ``OperationInProgressException`` also advances the oldest unfinished operation by one step, so
  a caller that waits by retrying the write gets through.  Describing a finished operation, listing
  and other reads never advance anything; ``advance()`` and ``finish_all()`` let time pass in tests;
* stack instance changes are applied when the operation finishes, in batches sized by the operation
  preferences, and the failure tolerance decides between ``SUCCEEDED`` and ``FAILED``.

Also modelled, because the engine must cope with them:

* ``ListStackSetOperationResults`` and ``ListStackSetOperations`` "provide eventually consistent reads"
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ListStackSetOperationResults.html,
  https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ListStackSetOperations.html): with
  ``stale_reads=N`` the first N reads of a finished operation's results, and of its summary in the list,
  still show it as it was before it finished (``DescribeStackSetOperation`` is current).  The list's order
  is not documented: the double lists operations by OperationId, neither oldest nor newest first;
* INOPERABLE instances "are excluded from further UpdateStackSet operations"
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstance.html): an update
  that names one reports it FAILED and leaves it INOPERABLE; only ``DeleteStackInstances`` with
  ``RetainStacks=true`` removes it;
* ``StaleRequestException`` ("another operation has been performed on this StackSet since the specified
  operation was performed", HTTP 409, listed among the errors of every write,
  https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackInstances.html) is
  injected with ``fail_next``: the reference does not say when it happens, only that it can.

* suspended accounts (``suspended_accounts``, kept by reference): an operation that reaches one leaves its
  instance OUTDATED with DetailedStatus ``SKIPPED_SUSPENDED_ACCOUNT``, "skipped because the account was suspended
  at the time of the operation"
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstanceComprehensiveStatus.html);
  the reference does not say what the operation result reports for it, so the result is SUCCEEDED, the kindest
  reading, and callers must judge the instance instead;
* automatic deployment: ``add_account`` puts an account in an OU, and a service-managed stack set with
  ``AutoDeployment.Enabled`` whose targets include that OU (or the root) "automatically deploys additional stack
  instances ... in the specified Regions" through an operation of its own (a UUID OperationId, no parameter
  overrides: the stack set's values)
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_AutoDeployment.html).
* simulated time (``timing=Timing(...)``, ``tests/doubles/timing.py``): operations then move on by a simulated
  clock instead of by polls. Each operation is scheduled when it is submitted: it starts when the operations it
  must wait for have ended, visits its Regions in parallel or in sequence, and deploys each Region in waves of
  its concurrency (MaxConcurrentCount or MaxConcurrentPercentage per Region, rounded down, at least one; with
  STRICT_FAILURE_TOLERANCE at most the tolerance plus one), each stack instance taking
  ``Timing.instance_seconds``, each wave started when the concurrent-instance quota has room
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackSetOperationPreferences.html).
  Under managed execution, "If there are already running or queued operations, StackSets queues all incoming
  operations even if they are non-conflicting"
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ManagedExecution.html): the default
  reading, ``queued``, runs a stack set's operations one after another; ``concurrent`` (what the same page's
  first sentence would suggest alone) runs those on different stack instances side by side. A template change
  conflicts with everything. A Region's waves follow one another, each taking what the quota has free when the
  previous ends (StackSets starts an instance whenever a slot frees: with equal instance times, nearly the same).

Deliberately not modelled: template parsing and capabilities checks, ``TemplateURL``/``AccountsUrl``
contents, nested OUs, removal on an account leaving an OU, account gates
(always reported ``SKIPPED``), quotas other than the 50 OUs per operation (``DeploymentTargets.Accounts``
documents no maximum: https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeploymentTargets.html),
and, without ``timing``, concurrent execution of non-conflicting operations under managed execution (they are
queued, which is also what the reference says once one is running).
"""

from __future__ import annotations

import base64
import functools
import math
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import botocore.session
from botocore.exceptions import ClientError, ParamValidationError
from botocore.validate import ParamValidator

from tests.doubles.s3 import BotoS3Reader, FakeS3
from tests.doubles.timing import SlotPool, Timing

__all__ = ["API_METHODS", "StackSetsClient", "StackSetsDouble"]

# AWS's own limit, written here rather than taken from the product: the double checks the product.
TEMPLATE_BODY_LIMIT = 51_200

API_METHODS: tuple[str, ...] = (
    "create_stack_set",
    "describe_stack_set",
    "update_stack_set",
    "delete_stack_set",
    "list_stack_sets",
    "create_stack_instances",
    "update_stack_instances",
    "delete_stack_instances",
    "list_stack_instances",
    "describe_stack_instance",
    "describe_stack_set_operation",
    "list_stack_set_operation_results",
    "list_stack_set_operations",
    "detect_stack_set_drift",
    "stop_stack_set_operation",
)
_PAGINATED = frozenset(
    {
        "list_stack_sets",
        "list_stack_instances",
        "list_stack_set_operation_results",
        "list_stack_set_operations",
    }
)
_READ_PREFIXES = ("describe_", "list_", "get_")

# StackSetOperation.Status: QUEUED, RUNNING and STOPPING are the unfinished states.
_ACTIVE = frozenset({"QUEUED", "RUNNING", "STOPPING"})
_SELF_MANAGED = "SELF_MANAGED"
_SERVICE_MANAGED = "SERVICE_MANAGED"

# Constraints from the service model (Account, OrganizationalUnitId, ClientRequestToken, StackSetName shapes).
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
_OU_RE = re.compile(r"^(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32})$")
_TOKEN_RE = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]{0,127}$")
_NAME_RE = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]{0,127}$")

_DETAILED_STATUSES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "INOPERABLE",
        "SKIPPED_SUSPENDED_ACCOUNT",
        "FAILED_IMPORT",
    }
)
_DRIFT_STATUSES = frozenset({"DRIFTED", "IN_SYNC", "UNKNOWN", "NOT_CHECKED"})
_RESULT_STATUSES = frozenset({"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"})
_FILTER_TYPES = frozenset({"NONE", "INTERSECTION", "DIFFERENCE", "UNION"})

_TOLERANCE_CANCEL_REASON = "Cancelled since failure tolerance has exceeded"
_STOP_CANCEL_REASON = "Cancelled since the operation was stopped by the user"
# Reported by AWS when the (optional) account gate Lambda function does not exist.
_GATE_MISSING = "Function not found: arn:aws:lambda:{region}:{account}:function:AWSCloudFormationStackSetAccountGate"
# Real AWS wording, as quoted in hashicorp/terraform-provider-aws PR #37069 and cdklabs/cdk-stacksets
# issue #265 (ValidationError, HTTP 400) for CallAs=DELEGATED_ADMIN from an unregistered account.
_NOT_DELEGATED_ADMIN = "Account used is not a delegated administrator"
# Real AWS wording (hashicorp/terraform-provider-aws issue #32536) for CallAs=SELF from a member account.
_NOT_MANAGEMENT = (
    "You must be the management account or delegated admin account of an organization before operating a "
    "SERVICE_MANAGED stack set"
)
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_UUID_NAMESPACE = uuid.UUID("6f1c1d0e-5a5e-4c39-9d0e-2b8f3c2a9e11")


def _conflicting(a: _Operation, b: _Operation) -> bool:
    """Operations that cannot run at once under managed execution: a change of the stack set itself (its template
    or parameters) or a drift detection, against anything; otherwise two that target the same stack instance."""
    if a.template_change or b.template_change or "DETECT_DRIFT" in (a.action, b.action):
        return True
    return bool({(t.account, t.region) for t in a.targets} & {(t.account, t.region) for t in b.targets})


@functools.cache
def _service_model() -> Any:
    return botocore.session.get_session().get_service_model("cloudformation")


@functools.cache
def _http_status_by_code() -> dict[str, int]:
    """HTTP status of every modelled CloudFormation error, read from the service model."""
    model = _service_model()
    table: dict[str, int] = {}
    for name in model.shape_names:
        shape = model.shape_for(name)
        error = shape.metadata.get("error")
        if shape.metadata.get("exception") and error:
            table[str(error["code"])] = int(error["httpStatusCode"])
    return table


def _client_error(code: str, message: str, operation_name: str, request_id: str) -> ClientError:
    status = _http_status_by_code().get(code, 400)
    response = {
        "Error": {"Code": code, "Message": message, "Type": "Sender"},
        "ResponseMetadata": {
            "RequestId": request_id,
            "HTTPStatusCode": status,
            "HTTPHeaders": {},
            "RetryAttempts": 0,
        },
    }
    return ClientError(response, operation_name)


def _operation_name(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))


class _ApiError(Exception):
    """Raised inside the double; converted to ``ClientError`` at the client boundary."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> _ApiError:
    return _ApiError("ValidationError", message)


@dataclass(slots=True)
class _Fault:
    code: str
    message: str
    applied: bool


@dataclass(slots=True)
class _Instance:
    account: str
    region: str
    ou_id: str | None
    status: str = "OUTDATED"
    detailed_status: str = "PENDING"
    status_reason: str | None = None
    stack_id: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    last_operation_id: str | None = None
    drift_status: str = "NOT_CHECKED"
    last_drift_check: datetime | None = None


@dataclass(slots=True)
class _Target:
    account: str
    region: str
    ou_id: str | None
    status: str = "PENDING"
    reason: str | None = None


@dataclass(slots=True)
class _Operation:
    operation_id: str
    action: str
    targets: list[_Target]
    preferences: dict[str, Any]
    created: datetime
    status: str = "QUEUED"
    started: bool = False
    polls: int = 0
    stop_polls: int = 0
    stopped_while: str | None = None
    ended: datetime | None = None
    status_reason: str | None = None
    retain_stacks: bool | None = None
    deployment_targets: dict[str, Any] | None = None
    overrides: list[dict[str, Any]] | None = None
    template_change: bool = False
    administration_role_arn: str | None = None
    execution_role_name: str | None = None
    # Eventual consistency: what the list calls still show for a few reads after the operation finished.
    stale_status: str | None = None
    stale_results: list[tuple[str, str | None]] | None = None
    stale_result_reads: int = 0
    stale_list_reads: int = 0
    # With ``Timing``: the simulated seconds at which the operation starts and ends.
    start_at: float | None = None
    end_at: float | None = None


@dataclass(slots=True)
class _StackSet:
    name: str
    stack_set_id: str
    arn: str
    permission_model: str
    template_body: str
    parameters: dict[str, str]
    capabilities: list[str]
    tags: list[dict[str, str]]
    description: str | None
    auto_deployment: dict[str, Any] | None
    managed_execution: bool
    administration_role_arn: str | None
    execution_role_name: str | None
    client_request_token: str | None
    status: str = "ACTIVE"
    ou_ids: list[str] = field(default_factory=list)
    instances: dict[tuple[str, str], _Instance] = field(default_factory=dict)
    operations: dict[str, _Operation] = field(default_factory=dict)
    drift_details: dict[str, Any] = field(default_factory=lambda: {"DriftStatus": "NOT_CHECKED"})


class _Paginator:
    """Minimal stand-in for ``botocore.paginate.Paginator``: each page is one recorded API call."""

    def __init__(self, client: StackSetsClient, method: str) -> None:
        self._client = client
        self._method = method

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        config = dict(kwargs.pop("PaginationConfig", None) or {})
        unsupported = set(config) - {"PageSize", "StartingToken"}
        if unsupported:
            raise NotImplementedError(f"PaginationConfig keys not modelled: {sorted(unsupported)}")
        if "PageSize" in config:
            kwargs["MaxResults"] = config["PageSize"]
        token = config.get("StartingToken")
        call: Callable[..., dict[str, Any]] = getattr(self._client, self._method)
        while True:
            if token:
                kwargs["NextToken"] = token
            page = call(**kwargs)
            yield page
            token = page.get("NextToken")
            if not token:
                return


class StackSetsClient:
    """The StackSets part of a boto3 ``cloudformation`` client, backed by a ``StackSetsDouble``."""

    def __init__(self, double: StackSetsDouble) -> None:
        self._double = double

    def create_stack_set(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("create_stack_set", kwargs)

    def describe_stack_set(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("describe_stack_set", kwargs)

    def update_stack_set(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("update_stack_set", kwargs)

    def delete_stack_set(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("delete_stack_set", kwargs)

    def list_stack_sets(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("list_stack_sets", kwargs)

    def create_stack_instances(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("create_stack_instances", kwargs)

    def update_stack_instances(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("update_stack_instances", kwargs)

    def delete_stack_instances(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("delete_stack_instances", kwargs)

    def list_stack_instances(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("list_stack_instances", kwargs)

    def describe_stack_instance(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("describe_stack_instance", kwargs)

    def describe_stack_set_operation(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("describe_stack_set_operation", kwargs)

    def list_stack_set_operation_results(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("list_stack_set_operation_results", kwargs)

    def list_stack_set_operations(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("list_stack_set_operations", kwargs)

    def detect_stack_set_drift(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("detect_stack_set_drift", kwargs)

    def stop_stack_set_operation(self, **kwargs: Any) -> dict[str, Any]:
        return self._double._call("stop_stack_set_operation", kwargs)

    def can_paginate(self, operation_name: str) -> bool:
        return operation_name in _PAGINATED

    def get_paginator(self, operation_name: str) -> _Paginator:
        if operation_name not in _PAGINATED:
            raise NotImplementedError(f"No paginator for {operation_name} in the StackSets double")
        return _Paginator(self, operation_name)


class StackSetsDouble:
    """Fake CloudFormation StackSets service for one administrator account and Region.

    ``organization`` maps each OU id (or root id, ``r-...``) to the accounts placed directly in it; every
    account appears exactly once and a root id targets every account of the organisation.
    ``failing_accounts`` (account -> reason), ``drifted_accounts`` (every instance of the account drifts) and
    ``drifted_instances`` ((account, region): one stack changed by hand) are kept by reference, so tests can
    change them between operations.  ``caller_account`` is the account the client signs in as; when left
    as ``None`` the caller is whichever account the ``CallAs`` value implies.
    """

    def __init__(
        self,
        organization: Mapping[str, Sequence[str]],
        management_account: str,
        *,
        polls_per_state: int = 1,
        failing_accounts: dict[str, str] | None = None,
        page_size: int = 100,
        delegated_admin_registered: bool = True,
        drifted_accounts: set[str] | None = None,
        drifted_instances: set[tuple[str, str]] | None = None,
        caller_account: str | None = None,
        region: str = "us-east-1",
        stale_reads: int = 0,
        suspended_accounts: set[str] | None = None,
        timing: Timing | None = None,
        s3: FakeS3 | BotoS3Reader | None = None,
    ) -> None:
        if polls_per_state < 0:
            raise ValueError("polls_per_state must be >= 0")
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if not _ACCOUNT_RE.match(management_account):
            raise ValueError(f"management account {management_account!r} is not a 12-digit account id")
        self.management_account = management_account
        # Where TemplateURL is read from; without it, every TemplateURL is refused.
        self.s3 = s3
        self.polls_per_state = polls_per_state
        self.failing_accounts: dict[str, str] = failing_accounts if failing_accounts is not None else {}
        self.drifted_accounts: set[str] = drifted_accounts if drifted_accounts is not None else set()
        self.drifted_instances: set[tuple[str, str]] = drifted_instances if drifted_instances is not None else set()
        self.suspended_accounts: set[str] = suspended_accounts if suspended_accounts is not None else set()
        self.page_size = page_size
        self.delegated_admin_registered = delegated_admin_registered
        self.caller_account = caller_account
        self.region = region
        self.stale_reads = stale_reads
        self.calls: list[tuple[str, dict[str, Any]]] = []

        self._ou_members: dict[str, list[str]] = {}
        self._ou_of: dict[str, str] = {}
        for ou_id, members in organization.items():
            if not _OU_RE.match(ou_id):
                raise ValueError(f"{ou_id!r} is not an OU id (ou-xxxx-xxxxxxxx) or a root id (r-xxxx)")
            self._ou_members[ou_id] = list(members)
            for account in members:
                if not _ACCOUNT_RE.match(account):
                    raise ValueError(f"account {account!r} is not a 12-digit account id")
                if account in self._ou_of:
                    raise ValueError(f"account {account} is in both {self._ou_of[account]} and {ou_id}")
                self._ou_of[account] = ou_id
        self._all_accounts = list(self._ou_of)

        self._sets: dict[str, _StackSet] = {}
        self._deleted: list[_StackSet] = []
        self._now = _EPOCH
        self._uuid_counter = 0
        self._faults: dict[str, deque[_Fault]] = {}
        self._interrupt_countdown: int | None = None
        self._interrupt_applied = False
        self.timing = timing
        self._pools: dict[str, SlotPool] = {}
        # Units applied side by side call from several threads; AWS serialises nothing, but the double's
        # bookkeeping must stay whole.
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ test-facing helpers

    def client(self) -> StackSetsClient:
        return StackSetsClient(self)

    def count(self, method: str | None = None, *, kind: Literal["read", "write"] | None = None) -> int:
        """Number of recorded API calls, optionally of one method and/or of one kind.

        Reads are ``describe_*``, ``list_*`` and ``get_*`` calls; every other call is a write.
        """
        total = 0
        for name, _ in self.calls:
            if method is not None and name != method:
                continue
            if kind is not None and (kind == "read") != name.startswith(_READ_PREFIXES):
                continue
            total += 1
        return total

    def reset_calls(self) -> None:
        self.calls.clear()

    def fail_next(
        self, method_name: str, error_code: str, message: str = "", times: int = 1, *, applied: bool = False
    ) -> None:
        """Make the next ``times`` calls of ``method_name`` raise ``ClientError`` with ``error_code``.

        With ``applied=True`` the request still takes effect and only the response is lost, as when a
        connection drops after the service accepted the request.  There is no botocore retry layer in
        the double, so the error reaches the caller as it would once a real client's retries ran out.
        """
        if method_name not in API_METHODS:
            raise ValueError(f"unknown StackSets method {method_name!r}")
        queue = self._faults.setdefault(method_name, deque())
        for _ in range(times):
            queue.append(_Fault(error_code, message or f"Injected {error_code}", applied))

    def interrupt_after(self, n_calls: int, *, applied: bool = False) -> None:
        """Raise ``KeyboardInterrupt`` on the ``n_calls``-th next API call (1 = the very next call).

        By default the interrupted request never reaches the service; with ``applied=True`` it takes
        effect and the interrupt arrives before the response.  Operations already submitted stay as
        they are and keep progressing when they are polled again (or on ``finish_all``).
        """
        if n_calls < 1:
            raise ValueError("n_calls must be >= 1")
        self._interrupt_countdown = n_calls
        self._interrupt_applied = applied

    def instances(self, stack_set_name: str, region: str | None = None) -> dict[str, dict[str, Any]]:
        """Stack instances of a stack set keyed by account (pass ``region`` if there are several)."""
        stack_set = self._inspect(stack_set_name)
        regions = {inst.region for inst in stack_set.instances.values()}
        if region is None and len(regions) > 1:
            raise ValueError(f"instances span regions {sorted(regions)}; pass region=")
        result: dict[str, dict[str, Any]] = {}
        for inst in stack_set.instances.values():
            if region is not None and inst.region != region:
                continue
            result[inst.account] = {
                "account": inst.account,
                "region": inst.region,
                "status": inst.status,
                "detailed_status": inst.detailed_status,
                "status_reason": inst.status_reason,
                "organizational_unit_id": inst.ou_id,
                "overrides": dict(inst.overrides),
                "last_operation_id": inst.last_operation_id,
                "stack_id": inst.stack_id,
                "drift_status": inst.drift_status,
            }
        return result

    def operations(self, stack_set_name: str) -> list[dict[str, Any]]:
        """Operations of a stack set in request order."""
        stack_set = self._inspect(stack_set_name)
        return [
            {
                "operation_id": op.operation_id,
                "action": op.action,
                "status": op.status,
                "status_reason": op.status_reason,
                "preferences": dict(op.preferences),
                "retain_stacks": op.retain_stacks,
                "created": op.created,
                "ended": op.ended,
                "results": [
                    {"account": t.account, "region": t.region, "status": t.status, "reason": t.reason}
                    for t in op.targets
                ],
            }
            for op in stack_set.operations.values()
        ]

    def add_account(self, account: str, ou_id: str) -> list[str]:
        """An account joins ``ou_id`` (created, invited or moved there). Every service-managed stack set with
        automatic deployment on, targeting that OU or the root, starts an operation that deploys to it in the
        stack set's Regions; their OperationIds are returned."""
        if not _ACCOUNT_RE.match(account) or account in self._ou_of:
            raise ValueError(f"account {account!r} is not a new 12-digit account id")
        self._ou_members.setdefault(ou_id, []).append(account)
        self._ou_of[account] = ou_id
        self._all_accounts.append(account)
        started: list[str] = []
        for stack_set in list(self._sets.values()):
            enabled = bool((stack_set.auto_deployment or {}).get("Enabled"))
            reached = ou_id in stack_set.ou_ids or any(ou.startswith("r-") for ou in stack_set.ou_ids)
            regions = sorted({inst.region for inst in stack_set.instances.values()})
            if not (enabled and reached and regions):
                continue
            operation_id = self._new_uuid()
            targets = [_Target(account, region, ou_id) for region in regions]
            op = self._new_operation(stack_set, operation_id, "CREATE", targets, {})
            self._submit(stack_set, op)
            started.append(operation_id)
        return started

    def advance(self, polls: int = 1) -> None:
        """Let time pass: advance the oldest unfinished operation of every stack set ``polls`` times."""
        for _ in range(polls):
            for stack_set in list(self._sets.values()):
                head = self._head(stack_set)
                if head is not None:
                    self._advance(stack_set, head)

    def finish_all(self) -> None:
        """Drive every unfinished operation of every stack set to completion."""
        for stack_set in list(self._sets.values()):
            head = self._head(stack_set)
            while head is not None:
                self._advance(stack_set, head)
                head = self._head(stack_set)

    def _read_template_url(self, url: str) -> str:
        """CloudFormation reads the template from S3 when the call is made, and keeps its own copy."""
        body = self.s3.read_url(url) if self.s3 is not None else None
        if body is None:
            raise _invalid("TemplateURL must reference a valid S3 object to which you have access.")
        return body

    # ------------------------------------------------------------------ call plumbing

    def _call(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._locked_call(method, kwargs)

    def _locked_call(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        operation_name = _operation_name(method)
        # Client-side validation, as botocore does before a request is sent (not an API call).
        input_shape = _service_model().operation_model(operation_name).input_shape
        report = ParamValidator().validate(kwargs, input_shape)
        if report.has_errors():
            raise ParamValidationError(report=report.generate_report())

        body = kwargs.get("TemplateBody")
        if isinstance(body, str) and len(body.encode("utf-8")) > TEMPLATE_BODY_LIMIT:
            # The API's length constraint on TemplateBody, checked by the service (botocore checks only minimums).
            # https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackSet.html
            raise _ApiError(
                "ValidationError",
                "1 validation error detected: Value at 'templateBody' failed to satisfy constraint: Member must "
                f"have length less than or equal to {TEMPLATE_BODY_LIMIT}",
            )
        self.calls.append((method, dict(kwargs)))
        if self.timing is None:
            self._now += timedelta(seconds=1)
        else:
            now = self.timing.clock.now()
            # The caller's time: tasks side by side each stamp what they do at their own time.
            self._now = _EPOCH + timedelta(seconds=now)
            self._catch_up(now)
        request_id = self._new_uuid()

        interrupt = False
        if self._interrupt_countdown is not None:
            self._interrupt_countdown -= 1
            if self._interrupt_countdown == 0:
                self._interrupt_countdown = None
                if not self._interrupt_applied:
                    raise KeyboardInterrupt
                interrupt = True

        fault: _Fault | None = None
        queue = self._faults.get(method)
        if queue:
            fault = queue.popleft()
            if not fault.applied:
                raise _client_error(fault.code, fault.message, operation_name, request_id)

        handler: Callable[[dict[str, Any]], dict[str, Any]] = getattr(self, f"_api_{method}")
        try:
            result = handler(kwargs)
        except _ApiError as exc:
            if interrupt:
                raise KeyboardInterrupt from None
            raise _client_error(exc.code, exc.message, operation_name, request_id) from None
        if interrupt:
            raise KeyboardInterrupt
        if fault is not None:
            raise _client_error(fault.code, fault.message, operation_name, request_id)
        result["ResponseMetadata"] = {
            "RequestId": request_id,
            "HTTPStatusCode": 200,
            "HTTPHeaders": {},
            "RetryAttempts": 0,
        }
        return result

    def _new_uuid(self) -> str:
        self._uuid_counter += 1
        return str(uuid.uuid5(_UUID_NAMESPACE, str(self._uuid_counter)))

    def _inspect(self, name: str) -> _StackSet:
        stack_set = self._find(name)
        if stack_set is None:
            raise KeyError(f"no active stack set {name!r}")
        return stack_set

    def _find(self, name_or_id: str) -> _StackSet | None:
        stack_set = self._sets.get(name_or_id)
        if stack_set is not None:
            return stack_set
        for candidate in self._sets.values():
            if candidate.stack_set_id == name_or_id:
                return candidate
        return None

    def _call_as(self, kw: dict[str, Any]) -> str:
        call_as = str(kw.get("CallAs", "SELF"))
        if call_as not in ("SELF", "DELEGATED_ADMIN"):
            raise _invalid(f"Value '{call_as}' at 'callAs' failed to satisfy constraint: [SELF, DELEGATED_ADMIN]")
        if call_as == "DELEGATED_ADMIN" and (
            not self.delegated_admin_registered or self.caller_account == self.management_account
        ):
            raise _invalid(_NOT_DELEGATED_ADMIN)
        return call_as

    def _check_service_managed_caller(self, call_as: str) -> None:
        if call_as == "SELF" and self.caller_account not in (None, self.management_account):
            raise _invalid(_NOT_MANAGEMENT)

    def _stack_set(self, kw: dict[str, Any]) -> _StackSet:
        call_as = self._call_as(kw)
        name = kw["StackSetName"]
        stack_set = self._find(name)
        if stack_set is None:
            raise _ApiError("StackSetNotFoundException", f"StackSet {name} not found")
        if stack_set.permission_model == _SERVICE_MANAGED:
            self._check_service_managed_caller(call_as)
        return stack_set

    def _page(self, items: list[Any], kw: dict[str, Any], scope: str) -> tuple[list[Any], str | None]:
        max_results = kw.get("MaxResults")
        if max_results is not None and max_results > 100:
            # MaxResults shape: min 1, max 100 (the maximum is enforced by the service).
            raise _invalid(
                f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy "
                "constraint: Member must have value less than or equal to 100"
            )
        size = min(self.page_size, max_results or self.page_size)
        start = 0
        token = kw.get("NextToken")
        if token:
            try:
                decoded = base64.urlsafe_b64decode(token.encode()).decode()
                token_scope, offset = decoded.rsplit("|", 1)
                start = int(offset)
            except ValueError:
                raise _invalid("Invalid NextToken") from None
            if token_scope != scope or start < 0:
                raise _invalid("Invalid NextToken")
        end = start + size
        next_token = None
        if end < len(items):
            next_token = base64.urlsafe_b64encode(f"{scope}|{end}".encode()).decode()
        return items[start:end], next_token

    # ------------------------------------------------------------------ request validation helpers

    @staticmethod
    def _parameters(items: Sequence[Mapping[str, Any]], previous: Mapping[str, str] | None) -> dict[str, str]:
        result: dict[str, str] = {}
        for item in items:
            key = item.get("ParameterKey")
            if not key:
                raise _invalid("ParameterKey is required")
            use_previous = bool(item.get("UsePreviousValue"))
            if use_previous and "ParameterValue" in item:
                raise _invalid(f"Parameter {key}: specify either ParameterValue or UsePreviousValue, not both")
            if use_previous:
                if previous is None or key not in previous:
                    raise _invalid(f"Parameter {key} has no previous value to use")
                result[key] = previous[key]
            elif "ParameterValue" in item:
                result[key] = str(item["ParameterValue"])
            else:
                raise _invalid(f"Parameter {key} needs a ParameterValue or UsePreviousValue")
        return result

    @staticmethod
    def _check_overrides(stack_set: _StackSet, spec: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        # CreateStackInstances/UpdateStackInstances ParameterOverrides: only parameters of the stack set
        # can be overridden; a value and UsePreviousValue=true are mutually exclusive.
        checked: list[dict[str, Any]] = []
        for item in spec:
            key = item.get("ParameterKey")
            if not key:
                raise _invalid("ParameterKey is required")
            if key not in stack_set.parameters:
                raise _invalid(f"Parameter '{key}' is not a parameter of StackSet {stack_set.name}")
            use_previous = bool(item.get("UsePreviousValue"))
            if use_previous and "ParameterValue" in item:
                raise _invalid(f"Parameter {key}: specify either ParameterValue or UsePreviousValue, not both")
            if not use_previous and "ParameterValue" not in item:
                raise _invalid(f"Parameter {key} needs a ParameterValue or UsePreviousValue")
            checked.append(dict(item))
        return checked

    @staticmethod
    def _merge_overrides(current: Mapping[str, str], spec: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        # ParameterOverrides (CreateStackInstances/UpdateStackInstances): a listed value overrides,
        # UsePreviousValue keeps the present override, and a parameter left out of the list goes back
        # to the stack set's value.  Not passing ParameterOverrides at all keeps every override.
        merged: dict[str, str] = {}
        for item in spec:
            key = str(item["ParameterKey"])
            if item.get("UsePreviousValue"):
                if key in current:
                    merged[key] = current[key]
            else:
                merged[key] = str(item["ParameterValue"])
        return merged

    @staticmethod
    def _preferences(kw: dict[str, Any]) -> dict[str, Any]:
        # StackSetOperationPreferences: the count and percentage forms are mutually exclusive.
        prefs = dict(kw.get("OperationPreferences") or {})
        if "FailureToleranceCount" in prefs and "FailureTolerancePercentage" in prefs:
            raise _invalid("You can specify either FailureToleranceCount or FailureTolerancePercentage, but not both")
        if "MaxConcurrentCount" in prefs and "MaxConcurrentPercentage" in prefs:
            raise _invalid("You can specify either MaxConcurrentCount or MaxConcurrentPercentage, but not both")
        if prefs.get("FailureTolerancePercentage", 0) > 100 or prefs.get("MaxConcurrentPercentage", 1) > 100:
            raise _invalid("Percentages in OperationPreferences must be at most 100")
        mode = prefs.get("ConcurrencyMode")
        if mode is not None and mode not in ("STRICT_FAILURE_TOLERANCE", "SOFT_FAILURE_TOLERANCE"):
            raise _invalid(f"Invalid ConcurrencyMode {mode}")
        region_concurrency = prefs.get("RegionConcurrencyType")
        if region_concurrency is not None and region_concurrency not in ("SEQUENTIAL", "PARALLEL"):
            raise _invalid(f"Invalid RegionConcurrencyType {region_concurrency}")
        return prefs

    @staticmethod
    def _regions(kw: dict[str, Any], *, required: bool = True) -> list[str]:
        regions = list(dict.fromkeys(kw.get("Regions") or []))
        if required and not regions:
            # CreateStackInstances: "you must specify at least one value for Regions".
            raise _invalid("You must specify at least one Region")
        return regions

    def _operation_id(self, kw: dict[str, Any]) -> str:
        operation_id = kw.get("OperationId")
        if operation_id is None:
            return self._new_uuid()  # botocore fills the idempotency token when it is left out
        if not _TOKEN_RE.match(operation_id):
            raise _invalid(
                f"1 validation error detected: Value '{operation_id}' at 'operationId' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9][-a-zA-Z0-9]*"
            )
        return str(operation_id)

    def _check_can_start(self, stack_set: _StackSet, operation_id: str) -> None:
        # The operation ID is an idempotency token: an ID already used on this stack set is refused
        # (OperationIdAlreadyExistsException) whatever the state of the earlier operation, because the
        # operation it names still exists (ListStackSetOperations keeps reporting it).
        if operation_id in stack_set.operations:
            raise _ApiError(
                "OperationIdAlreadyExistsException",
                f"The operation id {operation_id} already exists for StackSet {stack_set.stack_set_id}",
            )
        # ManagedExecution: when inactive, StackSets performs one operation at a time and refuses new
        # ones (OperationInProgressException); when active, incoming operations are queued.
        if not stack_set.managed_execution and self._head(stack_set) is not None:
            raise self._busy(stack_set)

    def _busy(self, stack_set: _StackSet) -> _ApiError:
        """OperationInProgressException for a refused write; the refused caller is waiting, so time passes."""
        head = self._head(stack_set)
        if head is not None and self.timing is None:
            self._advance(stack_set, head)
        return _ApiError(
            "OperationInProgressException", f"Another Operation on StackSet {stack_set.arn} is in progress"
        )

    def _resolve(
        self, stack_set: _StackSet, kw: dict[str, Any], action: str
    ) -> tuple[list[tuple[str, str | None]], set[str]]:
        """Accounts (with the OU they were targeted through) and the accounts that were named explicitly."""
        accounts = kw.get("Accounts")
        targets = kw.get("DeploymentTargets")
        if accounts is not None and targets is not None:
            raise _invalid("You can specify Accounts or DeploymentTargets, but not both")
        if stack_set.permission_model == _SELF_MANAGED:
            if targets is not None:
                if targets.get("OrganizationalUnitIds") or targets.get("AccountFilterType"):
                    raise _invalid("StackSets with SELF_MANAGED permission model can only have accounts as target")
                if targets.get("AccountsUrl"):
                    raise NotImplementedError("DeploymentTargets.AccountsUrl is not modelled")
                accounts = targets.get("Accounts")
            if not accounts:
                raise _invalid("You must specify at least one value for either Accounts or DeploymentTargets")
            unique = list(dict.fromkeys(accounts))
            for account in unique:
                self._check_account(account)
            return [(account, None) for account in unique], set(unique)

        if accounts is not None:
            raise _invalid("StackSets with SERVICE_MANAGED permission model can only have OrganizationalUnit as target")
        if targets is None:
            raise _invalid("You must specify at least one value for either Accounts or DeploymentTargets")
        if targets.get("AccountsUrl"):
            raise NotImplementedError("DeploymentTargets.AccountsUrl is not modelled")
        ous = list(dict.fromkeys(targets.get("OrganizationalUnitIds") or []))
        named = list(dict.fromkeys(targets.get("Accounts") or []))
        filter_type = targets.get("AccountFilterType")
        for account in named:
            self._check_account(account)
        if len(ous) > 50:
            # CreateStackInstances/UpdateStackInstances/DeleteStackInstances/UpdateStackSet: at most 50 OUs.
            raise _invalid("The maximum number of organizational units supported by an operation is 50")
        for ou in ous:
            if not _OU_RE.match(ou) or ou not in self._ou_members:
                raise _invalid(f"OrganizationalUnitId {ou} is not found in the organization")
        if filter_type is not None and filter_type not in _FILTER_TYPES:
            raise _invalid(f"Invalid AccountFilterType {filter_type}")
        if action == "CREATE":
            if not ous:
                raise _invalid("OrganizationalUnitIds are required to create stack instances for SERVICE_MANAGED")
            # DeploymentTargets: for create operations with both OUs and accounts, AccountFilterType is
            # required, and UNION is not supported for CreateStackInstances.
            if named and filter_type is None:
                raise _invalid("AccountFilterType is required when both OrganizationalUnitIds and Accounts are given")
            if filter_type == "UNION":
                raise _invalid("AccountFilterType UNION is not supported for CreateStackInstances")
        if not ous and not named:
            raise _invalid("You must specify at least one value for either Accounts or DeploymentTargets")
        if filter_type is None:
            filter_type = "UNION" if named else "NONE"
        if filter_type in ("INTERSECTION", "DIFFERENCE") and (not ous or not named):
            raise _invalid(f"AccountFilterType {filter_type} needs both OrganizationalUnitIds and Accounts")

        in_ous: dict[str, str | None] = {}
        for ou in ous:
            members = self._all_accounts if ou.startswith("r-") else self._ou_members[ou]
            for account in members:
                in_ous.setdefault(account, ou)
        named_set = set(named)
        explicit: set[str] = set()
        if filter_type == "NONE":
            chosen = in_ous
        elif filter_type == "INTERSECTION":
            chosen = {account: ou for account, ou in in_ous.items() if account in named_set}
            explicit = set(chosen)
        elif filter_type == "DIFFERENCE":
            chosen = {account: ou for account, ou in in_ous.items() if account not in named_set}
        else:  # UNION
            chosen = dict(in_ous)
            for account in named:
                if account not in self._ou_of:
                    raise _invalid(f"Account {account} is not a member of the organization")
                chosen.setdefault(account, self._ou_of[account])
            explicit = named_set
        # DeploymentTargets: CloudFormation never deploys to the organization's management account.
        chosen.pop(self.management_account, None)
        explicit.discard(self.management_account)
        return list(chosen.items()), explicit

    @staticmethod
    def _check_account(account: str) -> None:
        if not isinstance(account, str) or not _ACCOUNT_RE.match(account):
            raise _invalid(
                f"1 validation error detected: Value '{account}' at 'accounts' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ^[0-9]{12}$"
            )

    def _existing_targets(
        self,
        stack_set: _StackSet,
        pairs: list[tuple[str, str | None]],
        regions: list[str],
        explicit: set[str],
        *,
        missing_is_error: bool,
    ) -> list[_Target]:
        targets: list[_Target] = []
        for region in regions:
            for account, _ in pairs:
                inst = stack_set.instances.get((account, region))
                if inst is None:
                    if missing_is_error and account in explicit:
                        raise _ApiError(
                            "StackInstanceNotFoundException",
                            f"Stack instance for account {account} in region {region} not found "
                            f"for StackSet {stack_set.stack_set_id}",
                        )
                    continue
                targets.append(_Target(account, region, inst.ou_id))
        if missing_is_error and not targets:
            raise _ApiError(
                "StackInstanceNotFoundException",
                f"No stack instances of StackSet {stack_set.stack_set_id} match the given targets",
            )
        return targets

    def _stack_id(self, stack_set: _StackSet, account: str, region: str) -> str:
        stack_uuid = self._new_uuid()
        stack_name = f"StackSet-{stack_set.name}-{stack_uuid}"
        return f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/{stack_uuid}"

    # ------------------------------------------------------------------ operation engine

    @staticmethod
    def _head(stack_set: _StackSet) -> _Operation | None:
        for op in stack_set.operations.values():
            if op.status in _ACTIVE:
                return op
        return None

    def _submit(self, stack_set: _StackSet, op: _Operation) -> dict[str, Any]:
        if op.action == "CREATE" and self.timing is not None:
            new = {(t.account, t.region) for t in op.targets} - set(stack_set.instances)
            quota = self.timing.instances_per_stack_set
            if len(stack_set.instances) + len(new) > quota:
                # Stack instances per stack set (Service Quotas: AWS CloudFormation).
                raise _ApiError(
                    "LimitExceededException",
                    f"The number of stack instances in StackSet {stack_set.stack_set_id} would exceed the "
                    f"limit of {quota}",
                )
        stack_set.operations[op.operation_id] = op
        if self.timing is not None:
            self._schedule(stack_set, op, self.timing)
        if op.action == "CREATE":
            # New stack instances are listed (OUTDATED, PENDING) as soon as the request is accepted.
            for target in op.targets:
                key = (target.account, target.region)
                if key not in stack_set.instances:
                    stack_set.instances[key] = _Instance(
                        target.account,
                        target.region,
                        target.ou_id,
                        last_operation_id=op.operation_id,
                        overrides=self._merge_overrides({}, op.overrides or []),
                    )
        if self._head(stack_set) is op and self.timing is None:
            self._start(stack_set, op)
        return {"OperationId": op.operation_id}

    # ------------------------------------------------------------------ simulated time (``Timing``)

    def _schedule(self, stack_set: _StackSet, op: _Operation, timing: Timing) -> None:
        """When the operation will start and end: after the operations it must wait for, in waves of its
        per-Region concurrency, each wave when the concurrent-instance quota has room for it."""
        now = timing.clock.now()
        earlier = [o for o in stack_set.operations.values() if o is not op and o.status in _ACTIVE]
        if timing.managed_execution == "concurrent":
            earlier = [o for o in earlier if _conflicting(o, op)]
        start = max([now] + [o.end_at for o in earlier if o.end_at is not None])
        sequential = op.preferences.get("RegionConcurrencyType", "SEQUENTIAL") != "PARALLEL"
        end = region_start = start
        for region, targets, _tolerance, batch in self._plan(op):
            pool_key = region if timing.per_region else "*"
            pool = self._pools.setdefault(pool_key, SlotPool(timing.concurrent_instances, timing.instance_seconds))
            at, left = region_start, len(targets)
            while left > 0:
                at, wave = pool.take(at, min(batch, left))
                pool.reserve(at, wave)
                at += timing.instance_seconds
                left -= wave
            end = max(end, at)
            if sequential:
                region_start = at
        op.start_at, op.end_at = start, end

    def _catch_up(self, now: float) -> None:
        """Everything that has happened by ``now``: operations started, and finished in the order they end."""
        for stack_set in list(self._sets.values()):
            active = [o for o in stack_set.operations.values() if o.status in _ACTIVE and o.end_at is not None]
            for op in sorted(active, key=lambda o: (o.end_at, o.created)):
                assert op.start_at is not None and op.end_at is not None
                if op.start_at > now:
                    continue
                if not op.started:
                    self._start(stack_set, op)
                if op.status == "QUEUED":
                    op.status = "RUNNING"
                if op.end_at <= now:
                    self._finish(stack_set, op)
                    op.ended = _EPOCH + timedelta(seconds=op.end_at)

    def _start(self, stack_set: _StackSet, op: _Operation) -> None:
        op.started = True
        if op.action == "DETECT_DRIFT":
            return
        if op.action == "UPDATE" and op.template_change:
            # UpdateStackSet: a template or parameter change marks every stack instance OUTDATED
            # before the targeted ones are updated.
            for every in stack_set.instances.values():
                if every.status != "INOPERABLE":
                    every.status = "OUTDATED"
        for target in op.targets:
            inst = stack_set.instances.get((target.account, target.region))
            if inst is None or (inst.status == "INOPERABLE" and op.action == "UPDATE"):
                continue
            inst.status = "OUTDATED"
            inst.detailed_status = "PENDING"
            inst.status_reason = None
            inst.last_operation_id = op.operation_id
            if op.overrides is not None:
                inst.overrides = self._merge_overrides(inst.overrides, op.overrides)

    def _advance(self, stack_set: _StackSet, op: _Operation) -> None:
        if not op.started:
            self._start(stack_set, op)
        p = self.polls_per_state
        if op.status == "STOPPING":
            op.stop_polls += 1
            if op.stop_polls > p:
                self._finish(stack_set, op)
            return
        op.polls += 1
        if op.polls > 2 * p:
            self._finish(stack_set, op)
        elif op.polls > p and op.status == "QUEUED":
            op.status = "RUNNING"
            plan = self._plan(op)
            if plan:
                _, first_targets, _, batch = plan[0]
                for target in first_targets[:batch]:
                    target.status = "RUNNING"
                    inst = stack_set.instances.get((target.account, target.region))
                    if inst is not None and op.action != "DETECT_DRIFT" and inst.status != "INOPERABLE":
                        inst.detailed_status = "RUNNING"

    @staticmethod
    def _plan(op: _Operation) -> list[tuple[str, list[_Target], int, int]]:
        """(region, targets, failure tolerance, batch size) in the order the operation visits Regions."""
        prefs = op.preferences
        by_region: dict[str, list[_Target]] = {}
        for target in op.targets:
            by_region.setdefault(target.region, []).append(target)
        order = [r for r in prefs.get("RegionOrder") or [] if r in by_region]
        order += [r for r in by_region if r not in order]
        plan: list[tuple[str, list[_Target], int, int]] = []
        for region in order:
            targets = by_region[region]
            n = len(targets)
            # StackSetOperationPreferences: tolerance and concurrency are per Region; percentages
            # round down (concurrency never below 1); defaults are tolerance 0 and concurrency 1.
            if "FailureTolerancePercentage" in prefs:
                tolerance = math.floor(prefs["FailureTolerancePercentage"] * n / 100)
            else:
                tolerance = int(prefs.get("FailureToleranceCount", 0))
            if "MaxConcurrentPercentage" in prefs:
                concurrency = max(1, math.floor(prefs["MaxConcurrentPercentage"] * n / 100))
            else:
                concurrency = int(prefs.get("MaxConcurrentCount", 1))
            # ConcurrencyMode STRICT_FAILURE_TOLERANCE (the default) caps concurrency at tolerance + 1.
            if prefs.get("ConcurrencyMode", "STRICT_FAILURE_TOLERANCE") == "STRICT_FAILURE_TOLERANCE":
                concurrency = min(concurrency, tolerance + 1)
            plan.append((region, targets, tolerance, max(1, concurrency)))
        return plan

    def _finish(self, stack_set: _StackSet, op: _Operation) -> None:
        if self.stale_reads:
            op.stale_status = op.status
            op.stale_results = [(t.status, t.reason) for t in op.targets]
            op.stale_result_reads = op.stale_list_reads = self.stale_reads
        stopping = op.status == "STOPPING"
        sequential = op.preferences.get("RegionConcurrencyType", "SEQUENTIAL") != "PARALLEL"
        failed_region: str | None = None
        # Reason to cancel everything not yet attempted: set when the operation is stopped, or when the
        # failure tolerance is exceeded in a Region and Regions are visited one after the other.
        halt_reason = _STOP_CANCEL_REASON if stopping and op.stopped_while == "QUEUED" else None
        for region, targets, tolerance, batch in self._plan(op):
            done = 0
            region_reason = halt_reason
            failures = 0
            while region_reason is None and done < len(targets):
                for target in targets[done : done + batch]:
                    if not self._apply(stack_set, op, target):
                        failures += 1
                done += batch
                if stopping:
                    # StopStackSetOperation: deployments already started finish, the rest are cancelled.
                    halt_reason = region_reason = _STOP_CANCEL_REASON
                elif failures > tolerance:
                    # StackSetOperation.Status FAILED: the tolerance was exceeded in this Region; the rest
                    # of the Region (and, with SEQUENTIAL Region concurrency, later Regions) is cancelled.
                    failed_region = failed_region or region
                    region_reason = _TOLERANCE_CANCEL_REASON
                    if sequential:
                        halt_reason = region_reason
            for target in targets[done:]:
                self._cancel(stack_set, op, target, region_reason or _TOLERANCE_CANCEL_REASON)

        op.ended = self._now
        if stopping:
            op.status = "STOPPED"
        elif failed_region is not None:
            op.status = "FAILED"
            op.status_reason = f"Failure tolerance exceeded in region {failed_region}"
        else:
            op.status = "SUCCEEDED"
        if op.action == "DETECT_DRIFT":
            self._record_drift(stack_set, op)
        nxt = self._head(stack_set)
        if nxt is not None and not nxt.started and self.timing is None:
            self._start(stack_set, nxt)

    def _apply(self, stack_set: _StackSet, op: _Operation, target: _Target) -> bool:
        key = (target.account, target.region)
        inst = stack_set.instances.get(key)
        reason = self.failing_accounts.get(target.account)
        if op.action == "DELETE":
            if inst is None:
                target.status = "SUCCEEDED"
                return True
            if reason is not None and not op.retain_stacks and inst.stack_id is not None:
                # StackInstanceStatus INOPERABLE: a DeleteStackInstances operation failed on the stack.
                inst.status = "INOPERABLE"
                inst.detailed_status = "INOPERABLE"
                inst.status_reason = reason
                target.status, target.reason = "FAILED", reason
                return False
            del stack_set.instances[key]
            target.status = "SUCCEEDED"
            return True
        if inst is None:
            target.status, target.reason = "FAILED", "Stack instance does not exist"
            return False
        if inst.status == "INOPERABLE" and op.action == "UPDATE":
            # StackInstance: INOPERABLE instances "are excluded from further UpdateStackSet operations"; only
            # DeleteStackInstances with RetainStacks=true gets rid of them.
            target.status, target.reason = "FAILED", "Stack instance is INOPERABLE"
            return False
        if op.action == "DETECT_DRIFT":
            if reason is not None:
                target.status, target.reason = "FAILED", reason
                return False
            drifted = (
                target.account in self.drifted_accounts or (target.account, target.region) in self.drifted_instances
            )
            inst.drift_status = "DRIFTED" if drifted else "IN_SYNC"
            inst.last_drift_check = self._now
            target.status = "SUCCEEDED"
            return True
        if target.account in self.suspended_accounts:
            inst.status = "OUTDATED"
            inst.detailed_status = "SKIPPED_SUSPENDED_ACCOUNT"
            inst.status_reason = None
            target.status, target.reason = "SUCCEEDED", None
            return True
        if reason is not None:
            # StackInstanceSummary: a stack that failed during the operation stays OUTDATED.
            inst.status = "OUTDATED"
            inst.detailed_status = "FAILED"
            inst.status_reason = reason
            target.status, target.reason = "FAILED", reason
            return False
        inst.status = "CURRENT"
        inst.detailed_status = "SUCCEEDED"
        inst.status_reason = None
        if inst.stack_id is None:
            inst.stack_id = self._stack_id(stack_set, target.account, target.region)
        target.status, target.reason = "SUCCEEDED", None
        return True

    @staticmethod
    def _cancel(stack_set: _StackSet, op: _Operation, target: _Target, reason: str) -> None:
        target.status, target.reason = "CANCELLED", reason
        if op.action == "DETECT_DRIFT":
            return
        inst = stack_set.instances.get((target.account, target.region))
        if (
            inst is not None
            and inst.status != "INOPERABLE"
            and (op.started or inst.last_operation_id == op.operation_id)
        ):
            inst.status = "OUTDATED"
            inst.detailed_status = "CANCELLED"
            inst.status_reason = reason

    def _record_drift(self, stack_set: _StackSet, op: _Operation) -> None:
        checked = [
            stack_set.instances[(t.account, t.region)]
            for t in op.targets
            if t.status == "SUCCEEDED" and (t.account, t.region) in stack_set.instances
        ]
        drifted = sum(1 for inst in checked if inst.drift_status == "DRIFTED")
        failed = sum(1 for t in op.targets if t.status == "FAILED")
        detection = {"SUCCEEDED": "PARTIAL_SUCCESS" if failed else "COMPLETED", "FAILED": "FAILED"}.get(
            op.status, "STOPPED"
        )
        stack_set.drift_details = {
            "DriftStatus": "DRIFTED" if drifted else "IN_SYNC",
            "DriftDetectionStatus": detection,
            "LastDriftCheckTimestamp": self._now,
            "TotalStackInstancesCount": len(stack_set.instances),
            "DriftedStackInstancesCount": drifted,
            "InSyncStackInstancesCount": len(checked) - drifted,
            "InProgressStackInstancesCount": 0,
            "FailedStackInstancesCount": failed,
        }

    def _new_operation(
        self,
        stack_set: _StackSet,
        operation_id: str,
        action: str,
        targets: list[_Target],
        prefs: dict[str, Any],
    ) -> _Operation:
        return _Operation(
            operation_id=operation_id,
            action=action,
            targets=targets,
            preferences=prefs,
            created=self._now,
            administration_role_arn=stack_set.administration_role_arn,
            execution_role_name=stack_set.execution_role_name,
        )

    # ------------------------------------------------------------------ response shapes

    def _describe_set(self, stack_set: _StackSet) -> dict[str, Any]:
        result: dict[str, Any] = {
            "StackSetName": stack_set.name,
            "StackSetId": stack_set.stack_set_id,
            "Status": stack_set.status,
            "TemplateBody": stack_set.template_body,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in stack_set.parameters.items()],
            "Capabilities": list(stack_set.capabilities),
            "Tags": [dict(tag) for tag in stack_set.tags],
            "StackSetARN": stack_set.arn,
            "StackSetDriftDetectionDetails": dict(stack_set.drift_details),
            "PermissionModel": stack_set.permission_model,
            "ManagedExecution": {"Active": stack_set.managed_execution},
            "Regions": sorted({inst.region for inst in stack_set.instances.values()}),
        }
        if stack_set.description is not None:
            result["Description"] = stack_set.description
        if stack_set.administration_role_arn is not None:
            result["AdministrationRoleARN"] = stack_set.administration_role_arn
        if stack_set.execution_role_name is not None:
            result["ExecutionRoleName"] = stack_set.execution_role_name
        if stack_set.permission_model == _SERVICE_MANAGED:
            result["AutoDeployment"] = dict(stack_set.auto_deployment or {})
            result["OrganizationalUnitIds"] = list(stack_set.ou_ids)
        return result

    def _instance_summary(self, stack_set: _StackSet, inst: _Instance) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "StackSetId": stack_set.stack_set_id,
            "Region": inst.region,
            "Account": inst.account,
            "Status": inst.status,
            "StackInstanceStatus": {"DetailedStatus": inst.detailed_status},
            "DriftStatus": inst.drift_status,
        }
        if inst.stack_id is not None:
            summary["StackId"] = inst.stack_id
        if inst.status_reason is not None:
            summary["StatusReason"] = inst.status_reason
        if stack_set.permission_model == _SERVICE_MANAGED and inst.ou_id is not None:
            summary["OrganizationalUnitId"] = inst.ou_id
        if inst.last_drift_check is not None:
            summary["LastDriftCheckTimestamp"] = inst.last_drift_check
        if inst.last_operation_id is not None:
            summary["LastOperationId"] = inst.last_operation_id
        return summary

    def _operation_summary(self, stack_set: _StackSet, op: _Operation, *, full: bool) -> dict[str, Any]:
        failed = sum(1 for t in op.targets if t.status == "FAILED")
        result: dict[str, Any] = {
            "OperationId": op.operation_id,
            "Action": op.action,
            "Status": op.status,
            "CreationTimestamp": op.created,
            "OperationPreferences": {"RegionOrder": [], **op.preferences},
            "StatusDetails": {
                "FailedStackInstancesCount": failed,
                "TotalStackInstancesCount": len(op.targets),
            },
        }
        if op.ended is not None:
            result["EndTimestamp"] = op.ended
        if op.status_reason is not None:
            result["StatusReason"] = op.status_reason
        if not full:
            return result
        result["StackSetId"] = stack_set.stack_set_id
        if op.action == "DELETE":
            result["RetainStacks"] = bool(op.retain_stacks)
        if op.administration_role_arn is not None:
            result["AdministrationRoleARN"] = op.administration_role_arn
        if op.execution_role_name is not None:
            result["ExecutionRoleName"] = op.execution_role_name
        if op.deployment_targets is not None:
            result["DeploymentTargets"] = dict(op.deployment_targets)
        if op.action == "DETECT_DRIFT" and op.status not in _ACTIVE:
            result["StackSetDriftDetectionDetails"] = dict(stack_set.drift_details)
        return result

    # ------------------------------------------------------------------ API: stack sets

    def _api_create_stack_set(self, kw: dict[str, Any]) -> dict[str, Any]:
        call_as = self._call_as(kw)
        name = kw["StackSetName"]
        if not _NAME_RE.match(name):
            # CreateStackSet StackSetName: alphanumerics and hyphens, starting with a letter, <= 128 chars.
            raise _invalid(f"StackSetName {name} must start with a letter and contain only letters, digits and -")
        permission_model = kw.get("PermissionModel", _SELF_MANAGED)
        if permission_model not in (_SELF_MANAGED, _SERVICE_MANAGED):
            raise _invalid(f"Invalid PermissionModel {permission_model}")
        token = kw.get("ClientRequestToken")
        existing = self._sets.get(name)
        if existing is not None:
            # ClientRequestToken: a retried CreateStackSet with the same token is not a second stack set.
            if token is not None and existing.client_request_token == token:
                return {"StackSetId": existing.stack_set_id}
            raise _ApiError("NameAlreadyExistsException", f"StackSet {name} already exists")
        if ("TemplateBody" in kw) == ("TemplateURL" in kw):
            if "StackId" in kw:
                raise NotImplementedError("Importing a stack into a stack set is not modelled")
            raise _invalid("Specify either TemplateBody or TemplateURL, but not both")
        auto_deployment = kw.get("AutoDeployment")
        if permission_model == _SERVICE_MANAGED:
            self._check_service_managed_caller(call_as)
            if auto_deployment is None:
                # CreateStackSet AutoDeployment: required if the permissions model is SERVICE_MANAGED.
                raise _invalid("AutoDeployment is required for a stack set with SERVICE_MANAGED permissions")
        set_uuid = self._new_uuid()
        self_managed = permission_model == _SELF_MANAGED
        stack_set = _StackSet(
            name=name,
            stack_set_id=f"{name}:{set_uuid}",
            arn=f"arn:aws:cloudformation:{self.region}:{self.management_account}:stackset/{name}:{set_uuid}",
            permission_model=permission_model,
            template_body=kw.get("TemplateBody") or self._read_template_url(kw["TemplateURL"]),
            parameters=self._parameters(kw.get("Parameters") or [], None),
            capabilities=list(kw.get("Capabilities") or []),
            tags=[dict(tag) for tag in kw.get("Tags") or []],
            description=kw.get("Description"),
            auto_deployment=dict(auto_deployment) if auto_deployment and not self_managed else None,
            managed_execution=bool((kw.get("ManagedExecution") or {}).get("Active", False)),
            administration_role_arn=(
                kw.get(
                    "AdministrationRoleARN",
                    f"arn:aws:iam::{self.management_account}:role/AWSCloudFormationStackSetAdministrationRole",
                )
                if self_managed
                else None
            ),
            execution_role_name=(
                kw.get("ExecutionRoleName", "AWSCloudFormationStackSetExecutionRole")
                if self_managed
                else kw.get("ExecutionRoleName")
            ),
            client_request_token=token,
        )
        self._sets[name] = stack_set
        return {"StackSetId": stack_set.stack_set_id}

    def _api_describe_stack_set(self, kw: dict[str, Any]) -> dict[str, Any]:
        return {"StackSet": self._describe_set(self._stack_set(kw))}

    def _api_list_stack_sets(self, kw: dict[str, Any]) -> dict[str, Any]:
        call_as = self._call_as(kw)
        status = kw.get("Status")
        every = [*self._deleted, *self._sets.values()]
        every.sort(key=lambda s: s.stack_set_id)
        chosen = [
            s
            for s in every
            if (status is None or s.status == status)
            # ListStackSets: as a delegated administrator only service-managed stack sets are listed.
            and (call_as == "SELF" or s.permission_model == _SERVICE_MANAGED)
        ]
        page, next_token = self._page(chosen, kw, f"sets:{call_as}:{status}")
        summaries = []
        for s in page:
            summary: dict[str, Any] = {
                "StackSetName": s.name,
                "StackSetId": s.stack_set_id,
                "Status": s.status,
                "PermissionModel": s.permission_model,
                "DriftStatus": s.drift_details.get("DriftStatus", "NOT_CHECKED"),
                "ManagedExecution": {"Active": s.managed_execution},
            }
            if s.description is not None:
                summary["Description"] = s.description
            if s.permission_model == _SERVICE_MANAGED:
                summary["AutoDeployment"] = dict(s.auto_deployment or {})
            if "LastDriftCheckTimestamp" in s.drift_details:
                summary["LastDriftCheckTimestamp"] = s.drift_details["LastDriftCheckTimestamp"]
            summaries.append(summary)
        result: dict[str, Any] = {"Summaries": summaries}
        if next_token:
            result["NextToken"] = next_token
        return result

    def _api_update_stack_set(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        prefs = self._preferences(kw)
        operation_id = self._operation_id(kw)
        template_sources = sum(1 for key in ("TemplateBody", "TemplateURL") if key in kw) + bool(
            kw.get("UsePreviousTemplate")
        )
        if template_sources != 1:
            # UpdateStackSet: exactly one of TemplateBody, TemplateURL or UsePreviousTemplate=true.
            raise _invalid("Specify exactly one of TemplateBody, TemplateURL or UsePreviousTemplate")
        if "PermissionModel" in kw and kw["PermissionModel"] != stack_set.permission_model and stack_set.instances:
            raise _invalid("You cannot modify PermissionModel while the stack set has stack instances")
        regions = self._regions(kw, required=False)
        has_targets = "Accounts" in kw or "DeploymentTargets" in kw
        if has_targets != bool(regions):
            # UpdateStackSet: accounts (or deployment targets) and Regions go together.
            raise _invalid("Specify both Regions and Accounts/DeploymentTargets, or neither")
        parameters = (
            self._parameters(kw["Parameters"], stack_set.parameters) if "Parameters" in kw else stack_set.parameters
        )
        if has_targets:
            pairs, explicit = self._resolve(stack_set, kw, "UPDATE")
            targets = self._existing_targets(stack_set, pairs, regions, explicit, missing_is_error=True)
        else:
            # Without targets, every stack instance is updated, except INOPERABLE ones.
            targets = [
                _Target(inst.account, inst.region, inst.ou_id)
                for inst in stack_set.instances.values()
                if inst.status != "INOPERABLE"
            ]
        managed = kw.get("ManagedExecution")
        if managed is not None and self._head(stack_set) is not None:
            # ManagedExecution: "You can't modify your stack set's execution configuration while there are running
            # or queued operations". Whether restating the same value counts is not said: the slower reading, it
            # does, so a request that carries ManagedExecution is refused while operations run or queue.
            raise self._busy(stack_set)
        self._check_can_start(stack_set, operation_id)

        # UpdateStackSet: the stack set itself is updated even if the operation later fails.
        if kw.get("TemplateBody") is not None:
            stack_set.template_body = kw["TemplateBody"]
        elif kw.get("TemplateURL") is not None:
            stack_set.template_body = self._read_template_url(kw["TemplateURL"])
        stack_set.parameters = parameters
        for key, attr in (("Description", "description"), ("ExecutionRoleName", "execution_role_name")):
            if key in kw:
                setattr(stack_set, attr, kw[key])
        if "Capabilities" in kw:
            stack_set.capabilities = list(kw["Capabilities"])
        if "Tags" in kw:
            stack_set.tags = [dict(tag) for tag in kw["Tags"]]
        if "AdministrationRoleARN" in kw and stack_set.permission_model == _SELF_MANAGED:
            stack_set.administration_role_arn = kw["AdministrationRoleARN"]
        if "AutoDeployment" in kw and stack_set.permission_model == _SERVICE_MANAGED:
            stack_set.auto_deployment = dict(kw["AutoDeployment"])
        if managed is not None:
            stack_set.managed_execution = bool(managed.get("Active", False))

        op = self._new_operation(stack_set, operation_id, "UPDATE", targets, prefs)
        op.template_change = "TemplateBody" in kw or "TemplateURL" in kw or "Parameters" in kw
        if stack_set.permission_model == _SERVICE_MANAGED and "DeploymentTargets" in kw:
            op.deployment_targets = dict(kw["DeploymentTargets"])
        return self._submit(stack_set, op)

    def _api_delete_stack_set(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        if self._head(stack_set) is not None:
            raise self._busy(stack_set)
        if stack_set.instances:
            # DeleteStackSet: all stack instances must be deleted first.
            raise _ApiError(
                "StackSetNotEmptyException",
                f"StackSet {stack_set.name} still has {len(stack_set.instances)} stack instance(s)",
            )
        stack_set.status = "DELETED"
        del self._sets[stack_set.name]
        self._deleted.append(stack_set)
        return {}

    # ------------------------------------------------------------------ API: stack instances

    def _api_create_stack_instances(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        regions = self._regions(kw)
        prefs = self._preferences(kw)
        operation_id = self._operation_id(kw)
        pairs, _ = self._resolve(stack_set, kw, "CREATE")
        overrides = self._check_overrides(stack_set, kw["ParameterOverrides"]) if "ParameterOverrides" in kw else None
        self._check_can_start(stack_set, operation_id)
        targets: list[_Target] = []
        for region in regions:
            for account, ou in pairs:
                inst = stack_set.instances.get((account, region))
                # An existing CURRENT instance is left alone; an OUTDATED one is retried
                # (CreateStackInstances OperationId: a new operation retries OUTDATED instances).
                if inst is not None and inst.status == "CURRENT":
                    continue
                targets.append(_Target(account, region, inst.ou_id if inst is not None else ou))
        op = self._new_operation(stack_set, operation_id, "CREATE", targets, prefs)
        op.overrides = overrides
        if stack_set.permission_model == _SERVICE_MANAGED:
            op.deployment_targets = dict(kw["DeploymentTargets"])
            for ou in kw["DeploymentTargets"].get("OrganizationalUnitIds") or []:
                if ou not in stack_set.ou_ids:
                    stack_set.ou_ids.append(ou)
        return self._submit(stack_set, op)

    def _api_update_stack_instances(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        regions = self._regions(kw)
        prefs = self._preferences(kw)
        operation_id = self._operation_id(kw)
        pairs, explicit = self._resolve(stack_set, kw, "UPDATE")
        overrides = self._check_overrides(stack_set, kw["ParameterOverrides"]) if "ParameterOverrides" in kw else None
        # UpdateStackInstances: only existing instances can be updated (StackInstanceNotFoundException).
        targets = self._existing_targets(stack_set, pairs, regions, explicit, missing_is_error=True)
        self._check_can_start(stack_set, operation_id)
        op = self._new_operation(stack_set, operation_id, "UPDATE", targets, prefs)
        op.overrides = overrides
        if stack_set.permission_model == _SERVICE_MANAGED:
            op.deployment_targets = dict(kw["DeploymentTargets"])
        return self._submit(stack_set, op)

    def _api_delete_stack_instances(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        regions = self._regions(kw)
        prefs = self._preferences(kw)
        operation_id = self._operation_id(kw)
        pairs, explicit = self._resolve(stack_set, kw, "DELETE")
        # DeleteStackInstances has no StackInstanceNotFoundException: absent instances are skipped.
        targets = self._existing_targets(stack_set, pairs, regions, explicit, missing_is_error=False)
        self._check_can_start(stack_set, operation_id)
        op = self._new_operation(stack_set, operation_id, "DELETE", targets, prefs)
        op.retain_stacks = bool(kw["RetainStacks"])
        if stack_set.permission_model == _SERVICE_MANAGED:
            targets_in = kw["DeploymentTargets"]
            op.deployment_targets = dict(targets_in)
            if not targets_in.get("Accounts"):
                for ou in targets_in.get("OrganizationalUnitIds") or []:
                    if ou in stack_set.ou_ids:
                        stack_set.ou_ids.remove(ou)
        return self._submit(stack_set, op)

    def _api_list_stack_instances(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        wanted: dict[str, str] = {}
        for item in kw.get("Filters") or []:
            name, value = item.get("Name"), item.get("Values")
            if name == "DETAILED_STATUS" and value not in _DETAILED_STATUSES:
                raise _invalid(f"Invalid value {value} for filter DETAILED_STATUS")
            if name == "DRIFT_STATUS" and value not in _DRIFT_STATUSES:
                raise _invalid(f"Invalid value {value} for filter DRIFT_STATUS")
            if name not in ("DETAILED_STATUS", "LAST_OPERATION_ID", "DRIFT_STATUS") or value is None:
                raise _invalid(f"Invalid stack instance filter {item}")
            wanted[name] = value
        account = kw.get("StackInstanceAccount")
        if account is not None:
            self._check_account(account)
        region = kw.get("StackInstanceRegion")
        chosen = [
            inst
            for inst in stack_set.instances.values()
            if (account is None or inst.account == account)
            and (region is None or inst.region == region)
            and ("DETAILED_STATUS" not in wanted or inst.detailed_status == wanted["DETAILED_STATUS"])
            and ("LAST_OPERATION_ID" not in wanted or inst.last_operation_id == wanted["LAST_OPERATION_ID"])
            and ("DRIFT_STATUS" not in wanted or inst.drift_status == wanted["DRIFT_STATUS"])
        ]
        scope = f"instances:{stack_set.stack_set_id}:{account}:{region}:{sorted(wanted.items())}"
        page, next_token = self._page(chosen, kw, scope)
        result: dict[str, Any] = {"Summaries": [self._instance_summary(stack_set, inst) for inst in page]}
        if next_token:
            result["NextToken"] = next_token
        return result

    def _api_describe_stack_instance(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        account, region = kw["StackInstanceAccount"], kw["StackInstanceRegion"]
        self._check_account(account)
        inst = stack_set.instances.get((account, region))
        if inst is None:
            raise _ApiError(
                "StackInstanceNotFoundException",
                f"Stack instance for account {account} in region {region} not found "
                f"for StackSet {stack_set.stack_set_id}",
            )
        described = self._instance_summary(stack_set, inst)
        described["ParameterOverrides"] = [
            {"ParameterKey": key, "ParameterValue": value} for key, value in inst.overrides.items()
        ]
        return {"StackInstance": described}

    # ------------------------------------------------------------------ API: operations

    def _operation(self, stack_set: _StackSet, kw: dict[str, Any]) -> _Operation:
        op = stack_set.operations.get(kw["OperationId"])
        if op is None:
            raise _ApiError("OperationNotFoundException", f"Operation {kw['OperationId']} not found")
        return op

    def _api_describe_stack_set_operation(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        op = self._operation(stack_set, kw)
        if op.status in _ACTIVE:
            # Queue-advance rule: polling an unfinished operation advances the oldest unfinished
            # operation of the stack set (the operation itself when it is first in line).
            head = self._head(stack_set)
            if head is not None and self.timing is None:
                self._advance(stack_set, head)
        return {"StackSetOperation": self._operation_summary(stack_set, op, full=True)}

    def _api_list_stack_set_operations(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        # ListStackSetOperations documents no order: by OperationId, neither oldest nor newest first.
        ordered = sorted(stack_set.operations.values(), key=lambda op: op.operation_id)
        page, next_token = self._page(ordered, kw, f"operations:{stack_set.stack_set_id}")
        summaries = []
        for op in page:
            summary = self._operation_summary(stack_set, op, full=False)
            if op.stale_list_reads > 0 and op.stale_status is not None:
                # Eventually consistent: the list has not caught up with the operation's end yet.
                op.stale_list_reads -= 1
                summary["Status"] = op.stale_status
                summary.pop("EndTimestamp", None)
            summaries.append(summary)
        result: dict[str, Any] = {"Summaries": summaries}
        if next_token:
            result["NextToken"] = next_token
        return result

    def _api_list_stack_set_operation_results(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        op = self._operation(stack_set, kw)
        wanted: str | None = None
        for item in kw.get("Filters") or []:
            if item.get("Name") != "OPERATION_RESULT_STATUS" or item.get("Values") not in _RESULT_STATUSES:
                raise _invalid(f"Invalid operation result filter {item}")
            wanted = item["Values"]
        shown = [(t, t.status, t.reason) for t in op.targets]
        if op.stale_results is not None and op.stale_result_reads > 0:
            # Eventually consistent: the results still read as they were before the operation finished.
            if not kw.get("NextToken"):
                op.stale_result_reads -= 1
            shown = [(t, status, reason) for t, (status, reason) in zip(op.targets, op.stale_results, strict=True)]
        chosen = [item for item in shown if wanted is None or item[1] == wanted]
        page, next_token = self._page(chosen, kw, f"results:{stack_set.stack_set_id}:{op.operation_id}:{wanted}")
        summaries = []
        for target, status, reason in page:
            summary: dict[str, Any] = {
                "Account": target.account,
                "Region": target.region,
                "Status": status,
            }
            if reason is not None:
                summary["StatusReason"] = reason
            if status in ("SUCCEEDED", "FAILED"):
                summary["AccountGateResult"] = {
                    "Status": "SKIPPED",
                    "StatusReason": _GATE_MISSING.format(region=target.region, account=target.account),
                }
            if stack_set.permission_model == _SERVICE_MANAGED and target.ou_id is not None:
                summary["OrganizationalUnitId"] = target.ou_id
            summaries.append(summary)
        result: dict[str, Any] = {"Summaries": summaries}
        if next_token:
            result["NextToken"] = next_token
        return result

    def _api_detect_stack_set_drift(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        prefs = self._preferences(kw)
        operation_id = self._operation_id(kw)
        self._check_can_start(stack_set, operation_id)
        targets = [
            _Target(inst.account, inst.region, inst.ou_id)
            for inst in stack_set.instances.values()
            if inst.stack_id is not None and inst.status != "INOPERABLE"
        ]
        op = self._new_operation(stack_set, operation_id, "DETECT_DRIFT", targets, prefs)
        return self._submit(stack_set, op)

    def _api_stop_stack_set_operation(self, kw: dict[str, Any]) -> dict[str, Any]:
        stack_set = self._stack_set(kw)
        op = self._operation(stack_set, kw)
        if op.status == "STOPPING":
            return {}
        if op.status not in _ACTIVE:
            raise _ApiError("InvalidOperationException", f"Operation {op.operation_id} is not in progress")
        if not op.started:
            # Still waiting behind another operation: nothing was deployed, everything is cancelled.
            for target in op.targets:
                self._cancel(stack_set, op, target, _STOP_CANCEL_REASON)
            op.status = "STOPPED"
            op.ended = self._now
            return {}
        op.stopped_while = op.status
        op.status = "STOPPING"
        return {}
