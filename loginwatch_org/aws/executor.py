"""Runs a plan's steps against CloudFormation StackSets and reports every account's outcome.

What AWS does that this handles (CloudFormation API reference):
- Operations are asynchronous: DescribeStackSetOperation is polled with backoff while the status is QUEUED,
  RUNNING or STOPPING.
- OperationInProgressException: another operation holds the stack set (managed execution off); wait for
  the pending operations and submit again, never fail the rollout for it.
- OperationIdAlreadyExistsException: a step with this OperationId was submitted before (an interrupted
  run); it is picked up and waited on instead of submitted twice.
- An operation can SUCCEED while some accounts failed (failure tolerance): ListStackSetOperationResults and
  ListStackInstances are read after every rollout, and any account not CURRENT makes the rollout fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from loginwatch_org.aws.errors import AwsProblem, error_code, explained
from loginwatch_org.aws.reader import call_as_args, call_as_value
from loginwatch_org.config import StackSetSettings
from loginwatch_org.plan import (
    CreateInstances,
    CreateStackSet,
    DeleteInstances,
    DeleteStackSet,
    Plan,
    Step,
    UpdateInstances,
    UpdateStackSet,
    action_name,
)
from loginwatch_org.state import OWNER_TAG_KEY, OWNER_TAG_VALUE, PENDING_OPERATION_STATES

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class PollPolicy:
    first_delay: float = 2.0
    max_delay: float = 20.0
    factor: float = 1.5
    timeout: float = 3 * 3600.0  # a 5,000-account operation at 25% concurrency can take hours


@dataclass(frozen=True)
class AccountResult:
    account_id: str
    region: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class OperationResult:
    operation_id: str
    action: str
    status: str
    reason: str = ""
    failed: tuple[AccountResult, ...] = ()


@dataclass
class ApplyResult:
    operations: list[OperationResult] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed_accounts(self) -> list[AccountResult]:
        return [account for operation in self.operations for account in operation.failed]


class StackSetExecutor:
    def __init__(
        self,
        cloudformation: Any,
        settings: StackSetSettings,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        poll: PollPolicy | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._cfn = cloudformation
        self._settings = settings
        self._sleep = sleep or time.sleep
        self._clock = clock or time.monotonic
        self._poll = poll or PollPolicy()
        self._progress = progress or (lambda _message: None)
        self._call_as = call_as_value(settings.call_as)
        self._call_as_args = call_as_args(settings.call_as)
        self._template_body = ""

    # -- public -------------------------------------------------------------------------------------------

    def apply(self, plan: Plan) -> ApplyResult:
        self._template_body = plan.template_body
        result = ApplyResult()
        submitted: list[tuple[str, str]] = []
        with explained(self._call_as):
            for step in plan.steps:
                if isinstance(step, CreateStackSet):
                    self._create_stack_set(step)
                elif isinstance(step, DeleteStackSet):
                    self._finish(submitted, result)
                    submitted = []
                    if result.failed_accounts:
                        # DeleteStackSet would fail on the instances left, hiding why they are left.
                        result.notes.append(f"stack set {step.name} kept: some instances could not be deleted")
                        continue
                    self._delete_stack_set(step)
                else:
                    operation_id, resumed = self._submit(step)
                    submitted.append((operation_id, action_name(step)))
                    if resumed:
                        result.resumed.append(operation_id)
            self._finish(submitted, result)
        return result

    def wait_for(self, operation_ids: Sequence[str]) -> list[OperationResult]:
        """Wait for operations submitted earlier (by an interrupted run) and collect their results."""
        result = ApplyResult()
        with explained(self._call_as):
            self._finish([(op, "resume") for op in operation_ids], result)
        return result.operations

    # -- steps --------------------------------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        return {"StackSetName": self._settings.name, **self._call_as_args}

    def _create_stack_set(self, step: CreateStackSet) -> None:
        settings = self._settings
        kwargs: dict[str, Any] = {
            **self._common(),
            "Description": settings.description,
            "TemplateBody": self._template_body,
            "Parameters": _parameters(step.parameters),
            "Capabilities": ["CAPABILITY_IAM"],
            "ManagedExecution": {"Active": True},
            "Tags": [{"Key": OWNER_TAG_KEY, "Value": OWNER_TAG_VALUE}],
        }
        if settings.permission_model == "service-managed":
            kwargs["PermissionModel"] = "SERVICE_MANAGED"
            # New accounts are enrolled by this tool's rollout, with their own recipients.
            kwargs["AutoDeployment"] = {"Enabled": False}
        else:
            kwargs["PermissionModel"] = "SELF_MANAGED"
            kwargs.update(self._roles())
        self._progress(f"creating stack set {settings.name}")
        try:
            self._cfn.create_stack_set(**kwargs)
        except Exception as error:
            if error_code(error) != "NameAlreadyExistsException":
                raise

    def _delete_stack_set(self, step: DeleteStackSet) -> None:
        self._progress(f"deleting stack set {step.name}")
        self._with_queue_retry(lambda: self._cfn.delete_stack_set(**self._common()))

    def _submit(self, step: Step) -> tuple[str, bool]:
        """Submit one operation step; returns its OperationId and whether it had been submitted before."""
        assert isinstance(step, UpdateStackSet | CreateInstances | UpdateInstances | DeleteInstances)
        kwargs: dict[str, Any] = {
            **self._common(),
            "OperationId": step.operation_id,
            "OperationPreferences": self._preferences(),
        }
        if isinstance(step, UpdateStackSet):
            kwargs.update(
                TemplateBody=self._template_body,
                Parameters=_parameters(step.parameters),
                Capabilities=["CAPABILITY_IAM"],
                ManagedExecution={"Active": True},
                Tags=[{"Key": key, "Value": value} for key, value in step.tags.items()],
                Description=self._settings.description,
                **self._roles(),
            )
            if step.accounts:
                kwargs.update(self._targets(step.accounts, step.regions))
            call = self._cfn.update_stack_set
        elif isinstance(step, CreateInstances | UpdateInstances):
            kwargs.update(self._targets(step.accounts, step.regions))
            kwargs["ParameterOverrides"] = _parameters(step.overrides)
            call = (
                self._cfn.create_stack_instances
                if isinstance(step, CreateInstances)
                else (self._cfn.update_stack_instances)
            )
        else:
            kwargs.update(self._targets(step.accounts, step.regions))
            kwargs["RetainStacks"] = step.retain_stacks
            call = self._cfn.delete_stack_instances
        self._progress(f"{action_name(step)}: {len(step.accounts)} account(s), operation {step.operation_id}")
        try:
            response = self._with_queue_retry(lambda: call(**kwargs))
        except Exception as error:
            if error_code(error) == "OperationIdAlreadyExistsException":
                self._progress(f"operation {step.operation_id} was submitted by an earlier run; waiting for it")
                return step.operation_id, True
            raise
        return str(response.get("OperationId") or step.operation_id), False

    def _roles(self) -> dict[str, str]:
        """Self-managed roles; UpdateStackSet must repeat them, or a custom administration role is lost."""
        settings = self._settings
        if settings.permission_model != "self-managed":
            return {}
        roles = {"ExecutionRoleName": settings.execution_role_name}
        if settings.administration_role_arn:
            roles["AdministrationRoleARN"] = settings.administration_role_arn
        return roles

    def _targets(self, accounts: Sequence[str], regions: Sequence[str]) -> dict[str, Any]:
        if self._settings.permission_model == "service-managed":
            # INTERSECTION: only the listed accounts, and only where they sit under the stack set's OUs.
            return {
                "DeploymentTargets": {
                    "OrganizationalUnitIds": list(self._settings.organizational_units),
                    "Accounts": list(accounts),
                    "AccountFilterType": "INTERSECTION",
                },
                "Regions": list(regions),
            }
        return {"Accounts": list(accounts), "Regions": list(regions)}

    def _preferences(self) -> dict[str, Any]:
        preferences = self._settings.operation_preferences
        return {
            "RegionConcurrencyType": preferences.region_concurrency.upper(),
            "MaxConcurrentPercentage": preferences.max_concurrent_percentage,
            "FailureTolerancePercentage": preferences.failure_tolerance_percentage,
            "ConcurrencyMode": preferences.concurrency_mode.upper().replace("-", "_"),
        }

    # -- waiting ------------------------------------------------------------------------------------------

    def _with_queue_retry(self, call: Callable[[], Any]) -> Any:
        deadline = self._clock() + self._poll.timeout
        delays = self._delays()
        while True:
            try:
                return call()
            except Exception as error:
                if error_code(error) != "OperationInProgressException" or self._clock() > deadline:
                    raise
                # Another operation holds the stack set; AWS says to wait until it finishes.
                self._progress("another operation is in progress on the stack set; waiting to submit")
                self._sleep(next(delays))

    def _delays(self) -> Iterator[float]:
        delay = self._poll.first_delay
        while True:
            yield delay
            delay = min(delay * self._poll.factor, self._poll.max_delay)

    def _finish(self, submitted: list[tuple[str, str]], result: ApplyResult) -> None:
        if not submitted:
            return
        statuses = self._wait_all([operation_id for operation_id, _ in submitted])
        for operation_id, action in submitted:
            status, reason = statuses[operation_id]
            failed = tuple(self._failed_results(operation_id))
            result.operations.append(OperationResult(operation_id, action, status, reason, failed))

    def _wait_all(self, operation_ids: list[str]) -> dict[str, tuple[str, str]]:
        deadline = self._clock() + self._poll.timeout
        delays = self._delays()
        done: dict[str, tuple[str, str]] = {}
        while True:
            for operation_id in operation_ids:
                if operation_id in done:
                    continue
                operation = self._cfn.describe_stack_set_operation(
                    StackSetName=self._settings.name, OperationId=operation_id, **self._call_as_args
                )["StackSetOperation"]
                status = operation.get("Status", "")
                if status not in PENDING_OPERATION_STATES:
                    done[operation_id] = (status, operation.get("StatusReason", ""))
            pending = [op for op in operation_ids if op not in done]
            self._progress(f"{len(done)}/{len(operation_ids)} operation(s) finished")
            if not pending:
                return done
            if self._clock() > deadline:
                raise AwsProblem(
                    f"Operations still pending after {self._poll.timeout:.0f}s: {', '.join(pending)}. Nothing is "
                    "lost: run the rollout again to keep waiting for them."
                )
            self._sleep(next(delays))

    def _failed_results(self, operation_id: str) -> Iterator[AccountResult]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "StackSetName": self._settings.name,
                "OperationId": operation_id,
                **self._call_as_args,
                "MaxResults": 100,
            }
            if token:
                kwargs["NextToken"] = token
            response = self._cfn.list_stack_set_operation_results(**kwargs)
            for summary in response.get("Summaries", []):
                if summary.get("Status") not in ("SUCCEEDED", None):
                    yield AccountResult(
                        summary.get("Account", ""),
                        summary.get("Region", ""),
                        summary.get("Status", ""),
                        summary.get("StatusReason", ""),
                    )
            token = response.get("NextToken")
            if not token:
                return


def _parameters(values: Any) -> list[dict[str, str]]:
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]
