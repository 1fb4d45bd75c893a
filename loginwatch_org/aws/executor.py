"""Runs a plan's steps against CloudFormation StackSets and reports every account's outcome.

What AWS does that this handles (CloudFormation API reference):
- Operations are asynchronous: DescribeStackSetOperation is polled with backoff while the status is QUEUED,
  RUNNING or STOPPING.
- OperationInProgressException: another operation holds the stack set (managed execution off); wait for
  the pending operations and submit again, never fail the rollout for it. StaleRequestException ("another
  operation has been performed on this stack set since the specified operation was performed") is the same
  race seen from the other side, and is retried the same way.
- OperationIdAlreadyExistsException: a step with this OperationId was submitted before (an interrupted
  run); it is picked up and waited on instead of submitted twice.
- An operation can SUCCEED while some accounts failed (failure tolerance): ListStackSetOperationResults and
  ListStackInstances are read after every rollout, and any account not CURRENT makes the rollout fail.
- ListStackSetOperationResults is eventually consistent: a result still PENDING/RUNNING after its operation
  finished is read again (bounded), never reported as a failure.
- UpdateStackSet without targets updates every instance, orphans and disabled accounts included: it is never
  sent without accounts.
- Drift detection is an operation like the others: it runs with the config's preferences, and its outcome
  (FAILED, STOPPED, accounts whose detection failed) is reported per account.
- Ctrl-C: the operations AWS already accepted keep running; ``RolloutInterrupted`` names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

from loginwatch_org.aws import paging
from loginwatch_org.aws.errors import AwsProblem, error_code, explained
from loginwatch_org.aws.reader import auto_deployment, call_as_args, call_as_value
from loginwatch_org.aws.staging import TemplateStager
from loginwatch_org.config import StackSetSettings
from loginwatch_org.errors import RolloutInterrupted
from loginwatch_org.plan import (
    CreateInstances,
    CreateStackSet,
    DeleteInstances,
    DeleteStackSet,
    Plan,
    PlanError,
    UpdateInstances,
    UpdateStackSet,
    action_name,
)
from loginwatch_org.state import OWNER_TAG_KEY, OWNER_TAG_VALUE, PENDING_OPERATION_STATES, is_own_operation
from loginwatch_org.state import operation_id as make_operation_id

ProgressCallback = Callable[[str], None]
OperationStep = UpdateStackSet | CreateInstances | UpdateInstances | DeleteInstances

# Both mean "another operation got there first; wait and submit again".
# https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackInstances.html#API_CreateStackInstances_Errors
RETRY_LATER_CODES = frozenset({"OperationInProgressException", "StaleRequestException"})
# ListStackSetOperationResults "provides eventually consistent reads": a result can lag its operation.
# https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ListStackSetOperationResults.html
RESULT_STATES_IN_PROGRESS = frozenset({"PENDING", "RUNNING"})
RESULT_REREADS = 5


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


@dataclass(frozen=True)
class DriftResult:
    """A drift detection operation's outcome: AWS's per-account results beside the stack set's summary."""

    operation_id: str
    status: str
    # StackSetDriftDetectionDetails.DriftDetectionStatus: COMPLETED, FAILED, PARTIAL_SUCCESS, IN_PROGRESS, STOPPED.
    detection_status: str
    failed: tuple[AccountResult, ...] = ()
    reason: str = ""

    @property
    def complete(self) -> bool:
        return self.status == "SUCCEEDED" and self.detection_status == "COMPLETED" and not self.failed


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
        accepted: Callable[[str], None] | None = None,
        stager: TemplateStager | None = None,
    ) -> None:
        self._cfn = cloudformation
        self._accepted = accepted or (lambda _operation_id: None)
        self._settings = settings
        self._stager = stager or TemplateStager(None, None)
        self._sleep = sleep or time.sleep
        self._clock = clock or time.monotonic
        self._poll = poll or PollPolicy()
        self._progress = progress or (lambda _message: None)
        self._call_as = call_as_value(settings.call_as)
        self._call_as_args = call_as_args(settings.call_as)
        self._template_body = ""

    # -- public -------------------------------------------------------------------------------------------

    def apply(self, plan: Plan) -> ApplyResult:
        """Run the plan's steps in order. On Ctrl-C, ``RolloutInterrupted`` names the operations AWS accepted:
        they keep running, and rerunning the command waits for them."""
        self._template_body = plan.template_body
        result = ApplyResult()
        submitted: list[tuple[str, str]] = []
        accepted: list[str] = []
        try:
            with explained(self._call_as):
                for step in plan.steps:
                    match step:
                        case CreateStackSet():
                            self._create_stack_set(step)
                        case DeleteStackSet():
                            self._finish(submitted, result)
                            submitted = []
                            if result.failed_accounts:
                                # DeleteStackSet would fail on the instances left, hiding why they are left.
                                result.notes.append(f"stack set {step.name} kept: some instances could not be deleted")
                                continue
                            self._delete_stack_set(step)
                        case UpdateStackSet() | CreateInstances() | UpdateInstances() | DeleteInstances():
                            operation_id, resumed = self._submit(step)
                            accepted.append(operation_id)
                            self._accepted(operation_id)
                            submitted.append((operation_id, action_name(step)))
                            if resumed:
                                result.resumed.append(operation_id)
                        case _:
                            assert_never(step)
                self._finish(submitted, result)
        except KeyboardInterrupt:
            raise RolloutInterrupted(submitted=tuple(accepted)) from None
        return result

    def wait_for(self, operation_ids: Sequence[str]) -> list[OperationResult]:
        """Wait for operations submitted earlier (by an interrupted run, or by anyone else) and collect their
        results. On Ctrl-C, ``RolloutInterrupted`` names those of ours: they keep running."""
        result = ApplyResult()
        try:
            with explained(self._call_as):
                self._finish([(op, "resume") for op in operation_ids], result)
        except KeyboardInterrupt:
            raise RolloutInterrupted(submitted=tuple(op for op in operation_ids if is_own_operation(op))) from None
        return result.operations

    def detect_drift(self, salt: str) -> DriftResult:
        """Run drift detection with the config's operation preferences and wait for it.

        Without OperationPreferences AWS checks one account at a time and stops at the first failure (the defaults
        of https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackSetOperationPreferences.html);
        drift detection is an operation, so it queues behind (and ahead of) rollouts under managed execution, and
        "you can only run a single drift detection operation on a given stack set at one time".
        https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DetectStackSetDrift.html
        ``salt`` makes the OperationId fresh for each run (the newest operation on the stack set serves)."""
        op_id = make_operation_id("x", None, ["drift", salt])
        try:
            with explained(self._call_as):
                self._progress(f"detecting drift, operation {op_id}")
                try:
                    response = self._with_queue_retry(
                        lambda: self._cfn.detect_stack_set_drift(
                            **self._common(), OperationId=op_id, OperationPreferences=self._preferences()
                        )
                    )
                    op_id = str(response.get("OperationId") or op_id)
                except Exception as error:
                    if error_code(error) != "OperationIdAlreadyExistsException":
                        raise
                status, reason = self._wait_all([op_id])[op_id]
                operation = self._cfn.describe_stack_set_operation(
                    StackSetName=self._settings.name, OperationId=op_id, **self._call_as_args
                )["StackSetOperation"]
                # StackSetOperation.StackSetDriftDetectionDetails: the detection's own outcome.
                # https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackSetDriftDetectionDetails.html
                detection = operation.get("StackSetDriftDetectionDetails", {}).get("DriftDetectionStatus", "")
                failed = tuple(self._failed_results(op_id, status))
        except KeyboardInterrupt:
            raise RolloutInterrupted(submitted=(op_id,)) from None
        # An endpoint that leaves the details out has only the operation's status to go by.
        return DriftResult(
            op_id, status, detection or ("COMPLETED" if status == "SUCCEEDED" else status), failed, reason
        )

    # -- steps --------------------------------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        return {"StackSetName": self._settings.name, **self._call_as_args}

    def _template_source(self) -> dict[str, str]:
        """The template inline, or staged in S3 in the stack set's Region when it is too large for that."""
        return self._stager.source(self._template_body, self._settings.admin_region)

    def _create_stack_set(self, step: CreateStackSet) -> None:
        settings = self._settings
        kwargs: dict[str, Any] = {
            **self._common(),
            "Description": settings.description,
            **self._template_source(),
            "Parameters": _parameters(step.parameters),
            "Capabilities": ["CAPABILITY_IAM"],
            "ManagedExecution": {"Active": True},
            "Tags": [{"Key": OWNER_TAG_KEY, "Value": OWNER_TAG_VALUE}],
        }
        if settings.permission_model == "service-managed":
            kwargs["PermissionModel"] = "SERVICE_MANAGED"
            kwargs["AutoDeployment"] = auto_deployment(settings)
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

    def _submit(self, step: OperationStep) -> tuple[str, bool]:
        """Submit one operation step; returns its OperationId and whether it had been submitted before."""
        kwargs: dict[str, Any] = {
            **self._common(),
            "OperationId": step.operation_id,
            "OperationPreferences": self._preferences(creating=isinstance(step, CreateInstances)),
        }
        match step:
            case UpdateStackSet():
                if not step.accounts or not step.regions:
                    # Without targets AWS updates every instance, kept orphans and disabled accounts included.
                    # https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStackSet.html
                    raise PlanError(f"refusing to send UpdateStackSet {step.operation_id} without target accounts")
                kwargs.update(
                    **self._template_source(),
                    Parameters=_parameters(step.parameters),
                    Capabilities=["CAPABILITY_IAM"],
                    Tags=[{"Key": key, "Value": value} for key, value in step.tags.items()],
                    Description=self._settings.description,
                    **self._roles(),
                    **self._targets(step.accounts, step.regions),
                )
                if step.enable_managed_execution:
                    kwargs["ManagedExecution"] = {"Active": True}
                call = self._cfn.update_stack_set
            case CreateInstances():
                kwargs.update(self._targets(step.accounts, step.regions))
                kwargs["ParameterOverrides"] = _parameters(step.overrides)
                call = self._cfn.create_stack_instances
            case UpdateInstances():
                kwargs.update(self._targets(step.accounts, step.regions))
                kwargs["ParameterOverrides"] = _parameters(step.overrides)
                call = self._cfn.update_stack_instances
            case DeleteInstances():
                kwargs.update(self._targets(step.accounts, step.regions))
                kwargs["RetainStacks"] = step.retain_stacks
                call = self._cfn.delete_stack_instances
            case _:
                assert_never(step)
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

    def _preferences(self, *, creating: bool = False) -> dict[str, Any]:
        preferences = self._settings.operation_preferences
        concurrency = preferences.create_concurrent_percentage if creating else preferences.max_concurrent_percentage
        # MaxConcurrentPercentage and FailureTolerancePercentage apply per Region, rounded down (at least one
        # account at a time); SOFT_FAILURE_TOLERANCE keeps that concurrency whatever the failures.
        # https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackSetOperationPreferences.html
        return {
            "RegionConcurrencyType": preferences.region_concurrency.upper(),
            "MaxConcurrentPercentage": concurrency,
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
                if error_code(error) not in RETRY_LATER_CODES or self._clock() > deadline:
                    raise
                # Another operation holds (or just changed) the stack set; AWS says to wait and submit again.
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
            failed = tuple(self._failed_results(operation_id, status, result.notes))
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

    def _failed_results(
        self, operation_id: str, status: str, notes: list[str] | None = None
    ) -> Iterator[AccountResult]:
        """Accounts the finished operation did not succeed in. A result still PENDING/RUNNING after the operation
        finished is the eventually consistent list lagging, so it is read again (a bounded number of times);
        one that never settles is noted, and the final ListStackInstances read decides about that account."""
        results = self._results(operation_id)
        delays = self._delays()
        for _ in range(RESULT_REREADS):
            if status in PENDING_OPERATION_STATES or not any(r.status in RESULT_STATES_IN_PROGRESS for r in results):
                break
            self._sleep(next(delays))
            results = self._results(operation_id)
        unsettled = [r for r in results if r.status in RESULT_STATES_IN_PROGRESS]
        if unsettled and notes is not None:
            notes.append(
                f"operation {operation_id} is {status} but AWS still lists {len(unsettled)} result(s) as "
                "in progress; the accounts' final status is read from their stack instances"
            )
        for account in results:
            if account.status not in ("SUCCEEDED", "") and account.status not in RESULT_STATES_IN_PROGRESS:
                yield account

    def _results(self, operation_id: str) -> list[AccountResult]:
        summaries = paging.items(
            self._cfn.list_stack_set_operation_results,
            "Summaries",
            StackSetName=self._settings.name,
            OperationId=operation_id,
            MaxResults=100,
            **self._call_as_args,
        )
        return [
            AccountResult(
                summary.get("Account", ""),
                summary.get("Region", ""),
                summary.get("Status", ""),
                summary.get("StatusReason", ""),
            )
            for summary in summaries
        ]


def _parameters(values: Any) -> list[dict[str, str]]:
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]
