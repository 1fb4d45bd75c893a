"""Reads and applies plain CloudFormation stacks: the management account's watch and forwarders, which
service-managed StackSets cannot deploy.

What AWS does that this handles (CloudFormation API reference,
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/):
- DescribeStacks by name answers a stack that does not exist, or was deleted, with a ValidationError
  "Stack with id NAME does not exist" (API_DescribeStacks.html): read as "no stack". By unique stack id it still
  describes a deleted stack, as DELETE_COMPLETE; deletions are polled by id, so the stack that was deleted is the
  one the plan saw, not one created since under the same name.
- GetTemplate returns the template as submitted (API_GetTemplate.html); boto3 hands a JSON body back already
  decoded, so it is re-serialised and digested by ``canonical_template_digest``: formatting never counts as a
  change.
- CreateStack and UpdateStack refuse a template with IAM resources unless CAPABILITY_IAM is acknowledged, and one
  with custom-named IAM resources (the mail stack's sending role) unless CAPABILITY_NAMED_IAM is
  (InsufficientCapabilitiesException, API_CreateStack.html, API_UpdateStack.html); both always are, and every
  stack carries the owner tag. A stack without the owner tag is never updated or deleted.
- UpdateStack with nothing to change fails with ValidationError "No updates are to be performed." (some
  endpoints prefix it, e.g. "CloudFormation failed to preprocess the stack: ..."): the stack is converged.
- ClientRequestToken (API_CreateStack.html, API_UpdateStack.html, API_DeleteStack.html): "Specify this token
  if you plan to retry requests so that CloudFormation knows that you're not attempting to create a stack with
  the same name". Every request carries a token derived from the step and the state it was planned from, so a
  retried call or a rerun after Ctrl-C is recognised as the same request; TokenAlreadyExistsException ("A client
  request token already exists") means it was accepted before, and AlreadyExistsException on CreateStack that a
  stack of ours appeared since the read: both are waited for, never submitted twice.
- Stack operations are asynchronous: DescribeStacks is polled with backoff while the status ends in
  _IN_PROGRESS. UpdateStack on a stack still in progress fails with a ValidationError ("... is in
  UPDATE_IN_PROGRESS state and can not be updated"): wait for it, then submit again.
- Terminal failures (ROLLBACK_COMPLETE, UPDATE_ROLLBACK_COMPLETE, *_FAILED; stack status codes,
  https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html) are reported
  with the first failed resource event of the operation (DescribeStackEvents lists newest first,
  API_DescribeStackEvents.html; ResourceStatusReason, API_StackEvent.html), which names the cause rather than
  the cascade that follows it.
- A stack in ROLLBACK_COMPLETE accepts only DeleteStack (same page): ReplaceFailedStack deletes it, waits for
  DELETE_COMPLETE, and creates it again.
- Throttling ("Throttling", "ThrottlingException", "RequestLimitExceeded"; API_Operations common errors,
  https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/CommonErrors.html) that outlasts botocore's
  own retries is waited out with the poll backoff; the request tokens make retrying a write safe.
- STS GetCallerIdentity names the account of the credentials and needs no permission
  (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

from loginwatch_org.aws import paging
from loginwatch_org.aws.errors import AwsProblem, error_code, error_message, explained
from loginwatch_org.aws.executor import PollPolicy, ProgressCallback
from loginwatch_org.aws.organization import OrganizationReader
from loginwatch_org.aws.reader import canonical_template_digest
from loginwatch_org.aws.staging import TemplateStager
from loginwatch_org.aws.workers import worker_pool
from loginwatch_org.config import DEFAULT_ENABLED_REGIONS
from loginwatch_org.cost import body_resource_types
from loginwatch_org.errors import RolloutInterrupted
from loginwatch_org.stack_plan import (
    CreateStack,
    DeleteStack,
    ReplaceFailedStack,
    StackPlan,
    StackStep,
    UpdateStack,
    stack_label,
)
from loginwatch_org.stack_state import DeployedStack, is_in_progress
from loginwatch_org.state import OWNER_TAG_KEY, OWNER_TAG_VALUE

# A region -> CloudFormation client of the account the stacks live in.
ClientFactory = Callable[[str], Any]

DESCRIBE_WORKERS = 8
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
# One stack of a few resources settles in minutes; an hour means something is stuck.
STACK_POLL = PollPolicy(first_delay=2.0, max_delay=15.0, factor=1.5, timeout=3600.0)
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded"})
NO_UPDATES = "No updates are to be performed"
_BUSY = re.compile(r"is in (?P<status>[A-Z_]+_IN_PROGRESS) state")
SUCCESS_STATUS = {
    "create-stack": "CREATE_COMPLETE",
    "update-stack": "UPDATE_COMPLETE",
    "delete-stack": "DELETE_COMPLETE",
}
OPERATION_STARTS = frozenset({"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"})
# How far back DescribeStackEvents is read for a failure's cause (100 events a page, newest first).
EVENT_PAGES = 5


def caller_account(sts: Any) -> str:
    """The account the credentials belong to: the management account's stacks can only be deployed from it."""
    with explained():
        return str(sts.get_caller_identity()["Account"])


def organization_id(organization: OrganizationReader) -> str:
    """The organisation's id (o-...), which the mail stack admits."""
    with explained():
        return str(organization.describe()["Id"])


def stack_not_found(error: BaseException) -> bool:
    return error_code(error) == "ValidationError" and "does not exist" in error_message(error)


# -- reading ----------------------------------------------------------------------------------------------------


class StackReader:
    def __init__(self, cloudformation_for: ClientFactory, *, workers: int = DESCRIBE_WORKERS) -> None:
        self._client_for = cloudformation_for
        self._workers = workers

    def read(self, keys: Iterable[tuple[str, str]]) -> tuple[DeployedStack, ...]:
        """The stacks among ``keys`` ((region, name) pairs) that exist, in the order of ``keys``. Costs one
        DescribeStacks per key and one GetTemplate per stack found, concurrently."""
        wanted = list(keys)
        # Clients are made here, one per region, before the threads share them (making one is not thread-safe).
        clients = {region: self._client_for(region) for region in dict.fromkeys(region for region, _ in wanted)}
        with explained(), worker_pool(self._workers) as pool:
            found = list(pool.map(lambda key: self._read_one(clients[key[0]], *key), wanted))
        return tuple(stack for stack in found if stack is not None)

    def _read_one(self, cloudformation: Any, region: str, name: str) -> DeployedStack | None:
        try:
            data = _describe(cloudformation.describe_stacks, name)
        except Exception as error:
            if error_code(error) in ("InvalidClientTokenId", "UnrecognizedClientException") and (
                region not in DEFAULT_ENABLED_REGIONS
            ):
                raise AwsProblem(
                    f"Cannot read stack {name} in {region}: {region} is an opt-in region, and AWS rejects calls "
                    f"there until the account enables it ({error_code(error)}). Enable it in the account's "
                    "settings (AWS Regions), or remove it from stack_set.forward_from."
                ) from error
            raise
        if data is None:
            return None
        body = cloudformation.get_template(StackName=data["StackId"])["TemplateBody"]
        return deployed_stack(region, data, body)


def deployed_stack(region: str, data: Mapping[str, Any], template: Any) -> DeployedStack:
    """A ``DeployedStack`` from DescribeStacks' stack and GetTemplate's body (a string, or JSON boto3 decoded)."""
    body = template if isinstance(template, str) else json.dumps(template)
    changed = data.get("LastUpdatedTime") or data.get("CreationTime") or ""
    return DeployedStack(
        name=data["StackName"],
        region=region,
        status=data.get("StackStatus", ""),
        template_digest=canonical_template_digest(body),
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in data.get("Parameters", [])},
        tags={t["Key"]: t["Value"] for t in data.get("Tags", [])},
        stack_id=data.get("StackId", ""),
        status_reason=data.get("StackStatusReason") or None,
        last_changed=changed.isoformat() if hasattr(changed, "isoformat") else str(changed),
        resource_types=body_resource_types(body),
    )


def _describe(describe_stacks: Callable[..., Any], name_or_id: str) -> dict[str, Any] | None:
    try:
        stacks = describe_stacks(StackName=name_or_id)["Stacks"]
    except Exception as error:
        if stack_not_found(error):
            return None
        raise
    return dict(stacks[0]) if stacks else None


# -- applying ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackResult:
    name: str
    region: str
    action: str
    ok: bool
    status: str
    reason: str = ""


@dataclass
class _Pending:
    """A request AWS accepted, waited on until the stack leaves *_IN_PROGRESS."""

    name: str
    region: str
    action: str
    stack: str  # name or unique id: what DescribeStacks is asked about
    token: str
    then: ReplaceFailedStack | None = None  # the creation that follows a replacement's deletion

    @property
    def label(self) -> str:
        return f"{self.action} {stack_label(self.region, self.name)}"


@dataclass
class _Run:
    submitted: list[str] = field(default_factory=list)
    results: list[StackResult] = field(default_factory=list)


class StackExecutor:
    """Applies a ``StackPlan``: every request is submitted, then all are waited on together (stacks in
    different regions do not wait for one another)."""

    def __init__(
        self,
        cloudformation_for: ClientFactory,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        poll: PollPolicy | None = None,
        progress: ProgressCallback | None = None,
        accepted: Callable[[str], None] | None = None,
        stager: TemplateStager | None = None,
    ) -> None:
        self._client_for = cloudformation_for
        self._stager = stager or TemplateStager(None, None)
        self._accepted = accepted or (lambda _request: None)
        self._clients: dict[str, Any] = {}
        self._sleep = sleep or time.sleep
        self._clock = clock or time.monotonic
        self._poll = poll or STACK_POLL
        self._progress = progress or (lambda _message: None)

    # -- public -------------------------------------------------------------------------------------------

    def apply(self, plan: StackPlan) -> list[StackResult]:
        """Run the plan's steps. Ctrl-C raises ``RolloutInterrupted`` naming the requests already accepted:
        they run on in AWS, and rerunning the same command waits for them."""
        run = _Run()
        try:
            with explained():
                pending = [item for step in plan.steps if (item := self._submit(step, plan, run)) is not None]
                replacements = self._wait(pending, run)
                recreated = [
                    self._create(step, plan.template_bodies[step.template], step.create_token, run)
                    for step in replacements
                ]
                self._wait(recreated, run)
        except KeyboardInterrupt:
            raise RolloutInterrupted(submitted=tuple(run.submitted)) from None
        return run.results

    def wait_for(self, stacks: Sequence[DeployedStack]) -> list[StackResult]:
        """Wait for stacks an earlier run (or someone) left in progress, before planning again."""
        run = _Run()
        pending = [_Pending(s.name, s.region, "wait", s.stack_id or s.name, "") for s in stacks if s.in_progress]
        try:
            with explained():
                self._wait(pending, run)
        except KeyboardInterrupt:
            raise RolloutInterrupted() from None
        return run.results

    # -- submitting ---------------------------------------------------------------------------------------

    def _submit(self, step: StackStep, plan: StackPlan, run: _Run) -> _Pending | None:
        match step:
            case CreateStack():
                return self._create(step, plan.template_bodies[step.template], step.token, run)
            case UpdateStack():
                return self._update(step, plan.template_bodies[step.template], run)
            case DeleteStack():
                return self._delete(step.name, step.region, step.stack_id, step.token, run)
            case ReplaceFailedStack():
                pending = self._delete(step.name, step.region, step.stack_id, step.delete_token, run)
                if pending is not None:
                    pending.then = step
                return pending
            case _:
                assert_never(step)

    def _create(self, step: CreateStack | ReplaceFailedStack, body: str, token: str, run: _Run) -> _Pending | None:
        kwargs = {
            "StackName": step.name,
            **self._stager.source(body, step.region),
            "Parameters": _parameters(step.parameters),
            "Capabilities": CAPABILITIES,
            "Tags": _tags(step.tags),
            "ClientRequestToken": token,
        }
        pending = _Pending(step.name, step.region, "create-stack", step.name, token)
        self._progress(f"creating stack {stack_label(step.region, step.name)}")
        try:
            response = self._call(step.region, "create_stack", **kwargs)
        except Exception as error:
            if error_code(error) not in ("TokenAlreadyExistsException", "AlreadyExistsException"):
                raise
            # Accepted before (an interrupted run), or created since the plan's read: wait for it, if it is ours.
            current = self._call_describe(step.region, step.name)
            if current is None:
                raise
            if not _owned(current):
                run.results.append(_refused(step.name, step.region, "create-stack", current))
                return None
            self._progress(f"stack {stack_label(step.region, step.name)} was submitted before; waiting for it")
            pending.stack = current["StackId"]
        else:
            pending.stack = str(response.get("StackId") or step.name)
        run.submitted.append(pending.label)
        self._accepted(pending.label)
        return pending

    def _update(self, step: UpdateStack, body: str, run: _Run) -> _Pending | None:
        current = self._owned_or_refuse(step.name, step.region, step.stack_id, "update-stack", run)
        if current is None:
            return None
        kwargs = {
            "StackName": step.stack_id,
            **self._stager.source(body, step.region),
            "Parameters": _parameters(step.parameters),
            "Capabilities": CAPABILITIES,
            "Tags": _tags(step.tags),
            "ClientRequestToken": step.token,
        }
        pending = _Pending(step.name, step.region, "update-stack", step.stack_id, step.token)
        self._progress(f"updating stack {stack_label(step.region, step.name)}: {'; '.join(step.reasons)}")
        deadline = self._clock() + self._poll.timeout
        while True:
            try:
                self._call(step.region, "update_stack", **kwargs)
                break
            except Exception as error:
                message = error_message(error)
                if error_code(error) == "ValidationError" and NO_UPDATES in message:
                    status = str(current.get("StackStatus", ""))
                    run.results.append(
                        StackResult(step.name, step.region, "update-stack", True, status, "no updates were needed")
                    )
                    return None
                if error_code(error) == "TokenAlreadyExistsException":
                    self._progress(f"stack {stack_label(step.region, step.name)} was submitted before; waiting for it")
                    break
                busy = _BUSY.search(message) if error_code(error) == "ValidationError" else None
                if busy is None or self._clock() > deadline:
                    raise
                self._progress(
                    f"stack {stack_label(step.region, step.name)} is {busy.group('status')}; waiting to update it"
                )
                self._settle(step.region, step.stack_id)
        run.submitted.append(pending.label)
        self._accepted(pending.label)
        return pending

    def _delete(self, name: str, region: str, stack_id: str, token: str, run: _Run) -> _Pending | None:
        if self._owned_or_refuse(name, region, stack_id, "delete-stack", run) is None:
            return None
        self._progress(f"deleting stack {stack_label(region, name)}")
        self._call(region, "delete_stack", StackName=stack_id, ClientRequestToken=token)
        pending = _Pending(name, region, "delete-stack", stack_id, token)
        run.submitted.append(pending.label)
        self._accepted(pending.label)
        return pending

    def _owned_or_refuse(self, name: str, region: str, stack_id: str, action: str, run: _Run) -> dict[str, Any] | None:
        """The stack as it is now, or None (and a refusal in the results) when it is not this tool's."""
        current = self._call_describe(region, stack_id)
        if current is None or current.get("StackStatus") == "DELETE_COMPLETE":
            if action == "delete-stack":
                run.results.append(StackResult(name, region, action, True, "DELETE_COMPLETE", "already deleted"))
                return None
            raise AwsProblem(f"Stack {stack_label(region, name)} disappeared since the plan was made; run again.")
        if not _owned(current):
            run.results.append(_refused(name, region, action, current))
            return None
        return current

    # -- waiting ------------------------------------------------------------------------------------------

    def _wait(self, pending: Sequence[_Pending | None], run: _Run) -> list[ReplaceFailedStack]:
        """Poll until every request settles; returns the creations that replacements still owe."""
        waiting = [item for item in pending if item is not None]
        follow_ups: list[ReplaceFailedStack] = []
        deadline = self._clock() + self._poll.timeout
        delays = self._delays()
        while waiting:
            still: list[_Pending] = []
            for item in waiting:
                current = self._call_describe(item.region, item.stack)
                status = "DELETE_COMPLETE" if current is None else str(current.get("StackStatus", ""))
                if is_in_progress(status):
                    still.append(item)
                    continue
                result = self._outcome(item, status, current)
                run.results.append(result)
                if item.then is not None and result.ok:
                    follow_ups.append(item.then)
            waiting = still
            if not waiting:
                break
            self._progress(f"waiting for {len(waiting)} stack(s): " + ", ".join(item.label for item in waiting))
            if self._clock() > deadline:
                raise AwsProblem(
                    f"Stacks still in progress after {self._poll.timeout:.0f}s: "
                    + ", ".join(item.label for item in waiting)
                    + ". Nothing is lost: run the same command again to keep waiting for them."
                )
            self._sleep(next(delays))
        return follow_ups

    def _settle(self, region: str, stack: str) -> None:
        deadline = self._clock() + self._poll.timeout
        delays = self._delays()
        while True:
            current = self._call_describe(region, stack)
            if current is None or not is_in_progress(str(current.get("StackStatus", ""))):
                return
            if self._clock() > deadline:
                raise AwsProblem(f"Stack {stack} in {region} is still {current.get('StackStatus')}; run again later.")
            self._sleep(next(delays))

    def _outcome(self, item: _Pending, status: str, current: Mapping[str, Any] | None) -> StackResult:
        wanted = SUCCESS_STATUS.get(item.action)
        # Waiting on a stack someone else started: any settled status but a failure will do.
        ok = status == wanted if wanted else not (status.endswith("_FAILED") or "ROLLBACK" in status)
        if ok:
            return StackResult(item.name, item.region, item.action, True, status)
        reason = self._failure_reason(item, current)
        return StackResult(item.name, item.region, item.action, False, status, reason)

    def _failure_reason(self, item: _Pending, current: Mapping[str, Any] | None) -> str:
        """The first failed resource event of the operation: the cause, not the cascade that followed it."""
        first: str | None = None
        entered = False
        for event in self._events(item.region, item.stack):
            event_token = event.get("ClientRequestToken") or ""
            if item.token and event_token and event_token != item.token:
                if entered:
                    break  # an older operation's events
                continue  # a newer operation's events
            entered = True
            status = str(event.get("ResourceStatus", ""))
            if (
                event.get("ResourceType") == "AWS::CloudFormation::Stack"
                and event.get("LogicalResourceId") == item.name
            ):
                if status in OPERATION_STARTS:
                    break  # the start of the operation: nothing older is ours
                continue
            if status.endswith("_FAILED") and event.get("ResourceStatusReason"):
                # Newest first, so the last one seen is the first to have failed.
                first = (
                    f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}): {event['ResourceStatusReason']}"
                )
        if first is not None:
            return first
        return str((current or {}).get("StackStatusReason") or "no failed resource event found; see the stack's events")

    def _events(self, region: str, stack: str) -> Iterator[dict[str, Any]]:
        def describe(**kwargs: Any) -> Any:
            return self._call(region, "describe_stack_events", **kwargs)

        return paging.items(describe, "StackEvents", EVENT_PAGES, StackName=stack)

    # -- calls --------------------------------------------------------------------------------------------

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            self._clients[region] = self._client_for(region)
        return self._clients[region]

    def _call_describe(self, region: str, stack: str) -> dict[str, Any] | None:
        return _describe(lambda **kwargs: self._call(region, "describe_stacks", **kwargs), stack)

    def _call(self, region: str, method: str, **kwargs: Any) -> Any:
        """One CloudFormation call, waiting out throttling that outlasted botocore's own retries."""
        deadline = self._clock() + self._poll.timeout
        delays = self._delays()
        while True:
            try:
                return getattr(self._client(region), method)(**kwargs)
            except Exception as error:
                if error_code(error) not in THROTTLING_CODES or self._clock() > deadline:
                    raise
                self._progress(f"CloudFormation in {region} is throttling requests; retrying")
                self._sleep(next(delays))

    def _delays(self) -> Iterator[float]:
        delay = self._poll.first_delay
        while True:
            yield delay
            delay = min(delay * self._poll.factor, self._poll.max_delay)


def _owned(stack: Mapping[str, Any]) -> bool:
    return any(t.get("Key") == OWNER_TAG_KEY and t.get("Value") == OWNER_TAG_VALUE for t in stack.get("Tags", []))


def _refused(name: str, region: str, action: str, current: Mapping[str, Any] | None) -> StackResult:
    return StackResult(
        name,
        region,
        action,
        False,
        str((current or {}).get("StackStatus", "")),
        f"refused: the stack is not managed by loginwatch-org (it lacks the tag {OWNER_TAG_KEY}={OWNER_TAG_VALUE})",
    )


def _parameters(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]


def _tags(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in values.items()]
