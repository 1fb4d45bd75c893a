"""What is deployed: a snapshot of the stack set and its instances, read once per command.

Plain data, no AWS calls: the reader (``aws/reader.py``) fills it and the planner only reads it, so a plan can
be computed, printed and tested without touching AWS.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

OWNER_TAG_KEY = "managed-by"
OWNER_TAG_VALUE = "loginwatch-org"

# Instances whose last operation left them anything but CURRENT/SUCCEEDED are retried by the next rollout,
# except in suspended accounts: StackSets skips those until the account is reinstated.
HEALTHY_STATUS = "CURRENT"
SUSPENDED_DETAILED_STATUS = "SKIPPED_SUSPENDED_ACCOUNT"
PENDING_OPERATION_STATES = frozenset({"QUEUED", "RUNNING", "STOPPING"})
# StackInstance.StackInstanceStatus: "INOPERABLE: A DeleteStackInstances operation has failed and left the stack
# in an unstable state. Stacks in this state are excluded from further UpdateStackSet operations. You might need to
# perform a DeleteStackInstances operation, with RetainStacks set to true, to delete the stack instance, and then
# delete the stack manually."
# https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstance.html
INOPERABLE_STATUS = "INOPERABLE"
# StackInstanceComprehensiveStatus.DetailedStatus: PENDING and RUNNING mean an operation is about to deploy, or is
# deploying, the instance. Whoever started it, a second operation for the same instance would only queue behind it.
# https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstanceComprehensiveStatus.html
IN_PROGRESS_DETAILED_STATUSES = frozenset({"PENDING", "RUNNING"})

# Account.State in Organizations (ListAccounts, ListAccountsForParent, DescribeAccount): PENDING_ACTIVATION, ACTIVE,
# SUSPENDED, PENDING_CLOSURE, CLOSED. The older Status field "will be retired on September 9, 2026", so State is read
# first. https://docs.aws.amazon.com/organizations/latest/APIReference/API_Account.html
# https://docs.aws.amazon.com/organizations/latest/userguide/orgs_manage_accounts_account_state.html
ACTIVE_ACCOUNT_STATE = "ACTIVE"
SUSPENDED_ACCOUNT_STATE = "SUSPENDED"

# OperationIds this tool submits: "lw-<verb>-<overrides digest>-<step digest>". The overrides digest is what
# lets a plan trust ListStackInstances' LastOperationId instead of describing every instance (one call each).
OPERATION_PREFIX = "lw"
_OPERATION_ID = re.compile(r"^lw-(?P<verb>[a-z])-(?P<overrides>[0-9a-f]{16}|none)-(?P<step>[0-9a-f]{16})$")


def overrides_digest(overrides: Mapping[str, str]) -> str:
    canonical = json.dumps(dict(sorted(overrides.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def operation_id(verb: str, overrides: Mapping[str, str] | None, step_content: object) -> str:
    """A deterministic OperationId: the same step from the same state always gets the same id, so a rerun
    after an interruption finds the operation it already submitted instead of starting another."""
    step = hashlib.sha256(json.dumps(step_content, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]
    digest = overrides_digest(overrides) if overrides is not None else "none"
    return f"{OPERATION_PREFIX}-{verb}-{digest}-{step}"


def digest_from_operation_id(value: str | None) -> str | None:
    """The overrides digest an operation of ours set, or None when the id says nothing we can trust."""
    if not value:
        return None
    match = _OPERATION_ID.match(value)
    if match is None or match.group("overrides") == "none":
        return None
    return match.group("overrides")


def is_own_operation(value: str) -> bool:
    return _OPERATION_ID.match(value) is not None


@dataclass(frozen=True)
class DeployedStackSet:
    name: str
    stack_set_id: str
    template_digest: str
    parameters: Mapping[str, str]
    tags: Mapping[str, str]
    permission_model: str
    managed_execution: bool
    # AutoDeployment.Enabled of a service-managed stack set (None: self-managed, or not reported).
    auto_deployment: bool | None = None
    # How many resources of each type the deployed template holds: what each instance costs (``cost.py``).
    resource_types: Mapping[str, int] = field(default_factory=dict)

    @property
    def owned(self) -> bool:
        return self.tags.get(OWNER_TAG_KEY) == OWNER_TAG_VALUE


@dataclass(frozen=True)
class DeployedInstance:
    account_id: str
    region: str
    status: str
    detailed_status: str | None = None
    status_reason: str | None = None
    last_operation_id: str | None = None
    # None when unknown: neither the last operation's id nor a describe call told us.
    overrides: Mapping[str, str] | None = None
    overrides_digest: str | None = None
    drift_status: str | None = None
    # The stack's ARN in the member account: what an admin deletes by hand after an INOPERABLE instance is removed.
    stack_id: str | None = None

    @property
    def healthy(self) -> bool:
        return self.status == HEALTHY_STATUS and self.detailed_status in (None, "SUCCEEDED")

    @property
    def suspended(self) -> bool:
        return self.detailed_status == SUSPENDED_DETAILED_STATUS

    @property
    def inoperable(self) -> bool:
        return self.status == INOPERABLE_STATUS

    @property
    def in_progress(self) -> bool:
        """An operation (ours or anyone's) is deploying this instance right now."""
        return self.detailed_status in IN_PROGRESS_DETAILED_STATUSES and not self.inoperable


@dataclass(frozen=True)
class PendingOperation:
    operation_id: str
    action: str
    status: str

    @property
    def own(self) -> bool:
        return is_own_operation(self.operation_id)


@dataclass(frozen=True)
class OrganizationAccount:
    account_id: str
    name: str
    # Organizations' Account.State now (not when an operation ran): what decides whether an account is watched.
    state: str

    @property
    def active(self) -> bool:
        return self.state == ACTIVE_ACCOUNT_STATE

    @property
    def suspended(self) -> bool:
        return self.state == SUSPENDED_ACCOUNT_STATE


@dataclass(frozen=True)
class OrganizationView:
    """The accounts the stack set can reach, read once per command: those under the targeted OUs (nested OUs
    included), or the whole organisation for a self-managed stack set or a root target."""

    accounts: Mapping[str, OrganizationAccount]
    # The management account is watched by plain stacks of its own, never as a stack instance.
    management_account_id: str | None = None

    def state_of(self, account_id: str) -> str | None:
        account = self.accounts.get(account_id)
        return account.state if account is not None else None

    def suspended(self) -> frozenset[str]:
        return frozenset(a for a, account in self.accounts.items() if account.suspended)

    def members(self) -> list[OrganizationAccount]:
        """Every account in scope but the management account, sorted by id."""
        return [self.accounts[a] for a in sorted(self.accounts) if a != self.management_account_id]


@dataclass(frozen=True)
class Snapshot:
    stack_set: DeployedStackSet | None
    instances: tuple[DeployedInstance, ...] = ()
    # Operations of ours still QUEUED/RUNNING/STOPPING: a rerun waits for them (an interrupted run submitted them).
    pending_operations: tuple[PendingOperation, ...] = ()
    # The newest operation on the stack set: part of every OperationId, so that new work after any change
    # never reuses an id that an earlier, finished operation had.
    latest_operation_id: str | None = None
    # Member accounts of the config that the organisation does not have (None: not checked).
    accounts_outside_organization: frozenset[str] = field(default_factory=frozenset)
    warnings: tuple[str, ...] = ()
    # Operations somebody else started (the console, another tool, drift detection) that are still pending:
    # rollout waits for them, plan reports them, and neither duplicates their work.
    foreign_operations: tuple[PendingOperation, ...] = ()
    # The organisation's accounts in the stack set's scope, with their state (None: not read, or refused).
    organization: OrganizationView | None = None

    def instances_by_account(self) -> dict[str, dict[str, DeployedInstance]]:
        result: dict[str, dict[str, DeployedInstance]] = {}
        for instance in self.instances:
            result.setdefault(instance.account_id, {})[instance.region] = instance
        return result
