"""What moto does not do: stacks that fail, roll back, throttle, or are interrupted. Each test scripts the exact
CloudFormation conversation with botocore's Stubber, which also checks every request against the service model,
so the executor is held to the real API's shapes and to calling nothing more than the script allows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from loginwatch_org.aws.errors import AwsProblem
from loginwatch_org.aws.executor import PollPolicy
from loginwatch_org.aws.stacks import StackExecutor, StackResult
from loginwatch_org.aws.staging import TemplateStager
from loginwatch_org.config import Config
from loginwatch_org.errors import RolloutInterrupted
from loginwatch_org.stack_plan import (
    CreateStack,
    ReplaceFailedStack,
    StackPlan,
    UpdateStack,
    make_management_plan,
)
from loginwatch_org.stack_state import DeployedStack
from tests.doubles.s3 import FakeS3
from tests.test_stack_plan import TEMPLATES, base_config, changed, deployed_from, with_management

REGION = "us-east-1"
NAME = "loginwatch-watch"
OWNER_TAGS = [{"Key": "managed-by", "Value": "loginwatch-org"}]
NEW_ID = f"arn:aws:cloudformation:{REGION}:999900000000:stack/{NAME}/2"
START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

STAGING_ACCOUNT = "444400004444"


def _stager() -> TemplateStager:
    """Where the executor stages the watch's body (larger than CloudFormation takes inline): a fake S3 of the
    caller's, so the scripted calls carry its TemplateURL, the same for the same body."""
    return TemplateStager(FakeS3(STAGING_ACCOUNT).client, STAGING_ACCOUNT)


class Script:
    """A stubbed CloudFormation client in us-east-1 and the executor's sleeps."""

    def __init__(self) -> None:
        self.client = boto3.Session().client("cloudformation", region_name=REGION)
        self.stub = Stubber(self.client)
        self.sleeps: list[float] = []

    def executor(self, *, interrupt_after: int | None = None, poll: PollPolicy | None = None) -> StackExecutor:
        def sleep(seconds: float) -> None:
            if interrupt_after is not None and len(self.sleeps) >= interrupt_after:
                raise KeyboardInterrupt
            self.sleeps.append(seconds)

        now = [0.0]

        def clock() -> float:
            # Time moves only when the executor sleeps.
            return now[0] + sum(self.sleeps)

        def client_for(region: str) -> Any:
            assert region == REGION, f"no call may go to {region}"
            return self.client

        return StackExecutor(client_for, sleep=sleep, clock=clock, poll=poll, stager=_stager())

    def describe(self, stack: str, status: str, *, tags: list[dict[str, str]] | None = None, reason: str = "") -> None:
        data: dict[str, Any] = {
            "StackName": NAME,
            "StackId": stack if stack.startswith("arn:") else NEW_ID,
            "CreationTime": START,
            "StackStatus": status,
            "Tags": OWNER_TAGS if tags is None else tags,
        }
        if reason:
            data["StackStatusReason"] = reason
        self.stub.add_response("describe_stacks", {"Stacks": [data]}, {"StackName": stack})

    def error(self, method: str, code: str, message: str, params: dict[str, Any] | None = None) -> None:
        self.stub.add_client_error(method, code, message, 400, expected_params=params)

    def run(self, plan: StackPlan, **kwargs: Any) -> list[StackResult]:
        with self.stub:
            results = self.executor(**kwargs).apply(plan)
            self.stub.assert_no_pending_responses()
        return results


@pytest.fixture
def script() -> Iterator[Script]:
    yield Script()


def config() -> Config:
    return base_config()


def watch_plan(deployed: list[DeployedStack], wanted: Config | None = None) -> StackPlan:
    """A plan where only the watch needs anything: the forwarders are converged."""
    plan = make_management_plan(wanted or config(), deployed, registry=TEMPLATES)
    assert [step.region for step in plan.steps] == [REGION]
    return plan


def update_plan() -> tuple[StackPlan, UpdateStack]:
    deployed = deployed_from(config())
    plan = watch_plan(deployed, with_management(config(), recipients=["cfo@example.com"]))
    (step,) = plan.steps
    assert isinstance(step, UpdateStack)
    return plan, step


def update_params(step: UpdateStack, plan: StackPlan) -> dict[str, Any]:
    return {
        "StackName": step.stack_id,
        **_stager().source(plan.template_bodies["watch"], REGION),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in step.parameters.items()],
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        "Tags": OWNER_TAGS,
        "ClientRequestToken": step.token,
    }


def create_params(plan: StackPlan, token: str) -> dict[str, Any]:
    return {
        "StackName": NAME,
        **_stager().source(plan.template_bodies["watch"], REGION),
        "Parameters": ANY,
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        "Tags": OWNER_TAGS,
        "ClientRequestToken": token,
    }


def event(logical: str, kind: str, status: str, token: str, reason: str = "", age: int = 0) -> dict[str, Any]:
    data = {
        "StackId": "arn:aws:cloudformation:us-east-1:999900000000:stack/loginwatch-watch/1",
        "EventId": f"{logical}-{status}-{age}",
        "StackName": NAME,
        "LogicalResourceId": logical,
        "ResourceType": kind,
        "Timestamp": START - timedelta(seconds=age),
        "ResourceStatus": status,
        "ClientRequestToken": token,
    }
    if reason:
        data["ResourceStatusReason"] = reason
    return data


def test_a_stack_stuck_in_rollback_complete_is_deleted_then_created_again(script: Script) -> None:
    deployed = changed(deployed_from(config()), REGION, status="ROLLBACK_COMPLETE")
    plan = watch_plan(deployed)
    (step,) = plan.steps
    assert isinstance(step, ReplaceFailedStack)
    script.describe(step.stack_id, "ROLLBACK_COMPLETE")
    script.stub.add_response("delete_stack", {}, {"StackName": step.stack_id, "ClientRequestToken": step.delete_token})
    script.describe(step.stack_id, "DELETE_IN_PROGRESS")
    script.describe(step.stack_id, "DELETE_COMPLETE")
    script.stub.add_response("create_stack", {"StackId": NEW_ID}, create_params(plan, step.create_token))
    script.describe(NEW_ID, "CREATE_IN_PROGRESS")
    script.describe(NEW_ID, "CREATE_COMPLETE")
    assert script.run(plan) == [
        StackResult(NAME, REGION, "delete-stack", True, "DELETE_COMPLETE"),
        StackResult(NAME, REGION, "create-stack", True, "CREATE_COMPLETE"),
    ]


def test_a_replacement_whose_deletion_fails_is_not_created_again(script: Script) -> None:
    plan = watch_plan(changed(deployed_from(config()), REGION, status="ROLLBACK_COMPLETE"))
    (step,) = plan.steps
    assert isinstance(step, ReplaceFailedStack)
    script.describe(step.stack_id, "ROLLBACK_COMPLETE")
    script.stub.add_response("delete_stack", {}, None)
    script.describe(step.stack_id, "DELETE_FAILED", reason="The following resource(s) failed to delete: [Queue].")
    token = step.delete_token
    events = [
        event(NAME, "AWS::CloudFormation::Stack", "DELETE_FAILED", token, "The following resource(s) failed"),
        event("Queue", "AWS::SQS::Queue", "DELETE_FAILED", token, "Access denied for sqs:DeleteQueue", age=5),
        event(NAME, "AWS::CloudFormation::Stack", "DELETE_IN_PROGRESS", token, "User Initiated", age=9),
    ]
    script.stub.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": step.stack_id})
    assert script.run(plan) == [
        StackResult(
            NAME,
            REGION,
            "delete-stack",
            False,
            "DELETE_FAILED",
            "Queue (AWS::SQS::Queue): Access denied for sqs:DeleteQueue",
        )
    ]


def test_an_update_that_rolls_back_reports_the_first_failed_resource(script: Script) -> None:
    plan, step = update_plan()
    script.describe(step.stack_id, "UPDATE_COMPLETE")
    script.stub.add_response("update_stack", {"StackId": step.stack_id}, update_params(step, plan))
    script.describe(step.stack_id, "UPDATE_IN_PROGRESS")
    script.describe(step.stack_id, "UPDATE_ROLLBACK_COMPLETE")
    ours, older = step.token, "lw-u-none-0000000000000000"
    stack_type = "AWS::CloudFormation::Stack"
    events = [  # newest first, as DescribeStackEvents lists them
        event(NAME, stack_type, "UPDATE_ROLLBACK_COMPLETE", ours),
        event("Topic", "AWS::SNS::Topic", "UPDATE_COMPLETE", ours, age=1),
        event(NAME, stack_type, "UPDATE_ROLLBACK_IN_PROGRESS", ours, "The following resource(s) failed", age=2),
        event("Topic", "AWS::SNS::Topic", "UPDATE_FAILED", ours, "Resource update cancelled", age=3),
        event("Notifier", "AWS::Lambda::Function", "UPDATE_FAILED", ours, "Runtime python3.14 is not supported", age=4),
        event(NAME, stack_type, "UPDATE_IN_PROGRESS", ours, "User Initiated", age=5),
        event("Notifier", "AWS::Lambda::Function", "UPDATE_FAILED", older, "an older failure", age=60),
    ]
    script.stub.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": step.stack_id})
    assert script.run(plan) == [
        StackResult(
            NAME,
            REGION,
            "update-stack",
            False,
            "UPDATE_ROLLBACK_COMPLETE",
            "Notifier (AWS::Lambda::Function): Runtime python3.14 is not supported",
        )
    ]


@pytest.mark.parametrize(
    "message",
    [
        "No updates are to be performed.",
        "CloudFormation failed to preprocess the stack: No updates are to be performed.",
    ],
)
def test_no_updates_to_perform_means_converged(script: Script, message: str) -> None:
    plan, step = update_plan()
    script.describe(step.stack_id, "UPDATE_COMPLETE")
    script.error("update_stack", "ValidationError", message, update_params(step, plan))
    assert script.run(plan) == [
        StackResult(NAME, REGION, "update-stack", True, "UPDATE_COMPLETE", "no updates were needed")
    ]


def test_throttling_is_waited_out_and_a_retried_write_carries_the_same_token(script: Script) -> None:
    plan, step = update_plan()
    script.error("describe_stacks", "Throttling", "Rate exceeded", {"StackName": step.stack_id})
    script.describe(step.stack_id, "UPDATE_COMPLETE")
    script.error("update_stack", "Throttling", "Rate exceeded", update_params(step, plan))
    script.stub.add_response("update_stack", {"StackId": step.stack_id}, update_params(step, plan))
    script.error("describe_stacks", "ThrottlingException", "Rate exceeded", {"StackName": step.stack_id})
    script.describe(step.stack_id, "UPDATE_COMPLETE")
    assert script.run(plan) == [StackResult(NAME, REGION, "update-stack", True, "UPDATE_COMPLETE")]
    assert len(script.sleeps) == 3


def test_throttling_that_never_ends_fails_after_the_timeout(script: Script) -> None:
    plan, step = update_plan()
    for _ in range(4):
        script.error("describe_stacks", "Throttling", "Rate exceeded", {"StackName": step.stack_id})
    with script.stub, pytest.raises(AwsProblem, match="Throttling"):
        script.executor(poll=PollPolicy(first_delay=10, max_delay=10, timeout=25)).apply(plan)


def test_an_update_waits_for_a_stack_someone_else_is_updating(script: Script) -> None:
    plan, step = update_plan()
    script.describe(step.stack_id, "UPDATE_COMPLETE")
    busy = f"Stack:{step.stack_id} is in UPDATE_IN_PROGRESS state and can not be updated."
    script.error("update_stack", "ValidationError", busy, update_params(step, plan))
    script.describe(step.stack_id, "UPDATE_IN_PROGRESS")
    script.describe(step.stack_id, "UPDATE_COMPLETE")
    script.stub.add_response("update_stack", {"StackId": step.stack_id}, update_params(step, plan))
    script.describe(step.stack_id, "UPDATE_COMPLETE")
    assert script.run(plan) == [StackResult(NAME, REGION, "update-stack", True, "UPDATE_COMPLETE")]


def test_a_stack_that_lost_its_owner_tag_is_refused_without_a_write(script: Script) -> None:
    plan, step = update_plan()
    script.describe(step.stack_id, "UPDATE_COMPLETE", tags=[{"Key": "team", "Value": "platform"}])
    (result,) = script.run(plan)
    assert not result.ok and result.reason.startswith("refused: the stack is not managed by loginwatch-org")


def create_plan() -> tuple[StackPlan, CreateStack]:
    deployed = [stack for stack in deployed_from(config()) if stack.region != REGION]
    plan = watch_plan(deployed)
    (step,) = plan.steps
    assert isinstance(step, CreateStack)
    return plan, step


def test_ctrl_c_while_waiting_names_what_was_submitted_and_a_rerun_waits_for_it(script: Script) -> None:
    plan, step = create_plan()
    script.stub.add_response("create_stack", {"StackId": NEW_ID}, create_params(plan, step.token))
    script.describe(NEW_ID, "CREATE_IN_PROGRESS")
    with script.stub, pytest.raises(RolloutInterrupted) as caught:
        script.executor(interrupt_after=0).apply(plan)
    assert caught.value.submitted == ("create-stack loginwatch-watch (us-east-1)",)
    assert "Rerun the same command" in str(caught.value) and caught.value.exit_code == 130

    # The rerun reads the stack still in progress: the plan waits for it instead of creating it again.
    in_progress = changed(deployed_from(config()), REGION, status="CREATE_IN_PROGRESS", stack_id=NEW_ID)
    rerun = make_management_plan(config(), in_progress, registry=TEMPLATES)
    assert rerun.steps == () and rerun.waiting == ("loginwatch-watch (us-east-1) is CREATE_IN_PROGRESS",)
    script.describe(NEW_ID, "CREATE_IN_PROGRESS")
    script.describe(NEW_ID, "CREATE_COMPLETE")
    with script.stub:
        waited = script.executor().wait_for(in_progress)
        script.stub.assert_no_pending_responses()
    assert waited == [StackResult(NAME, REGION, "wait", True, "CREATE_COMPLETE")]


def test_ctrl_c_before_anything_was_accepted_says_nothing_changed(script: Script) -> None:
    plan, _ = create_plan()
    script.error("create_stack", "Throttling", "Rate exceeded")
    with script.stub, pytest.raises(RolloutInterrupted) as caught:
        script.executor(interrupt_after=0).apply(plan)
    assert caught.value.submitted == () and "nothing changed" in str(caught.value)


def test_a_create_accepted_by_an_earlier_run_is_waited_for_not_repeated(script: Script) -> None:
    plan, step = create_plan()
    script.error(
        "create_stack",
        "TokenAlreadyExistsException",
        "A client request token already exists",
        create_params(plan, step.token),
    )
    script.describe(NAME, "CREATE_IN_PROGRESS")
    script.describe(NEW_ID, "CREATE_COMPLETE")
    assert script.run(plan) == [StackResult(NAME, REGION, "create-stack", True, "CREATE_COMPLETE")]


def test_a_stack_that_never_settles_fails_after_the_timeout_and_says_nothing_is_lost(script: Script) -> None:
    plan, _ = create_plan()
    script.stub.add_response("create_stack", {"StackId": NEW_ID}, None)
    for _ in range(3):
        script.describe(NEW_ID, "CREATE_IN_PROGRESS")
    with script.stub, pytest.raises(AwsProblem, match="Nothing is lost"):
        script.executor(poll=PollPolicy(first_delay=10, max_delay=10, timeout=15)).apply(plan)
