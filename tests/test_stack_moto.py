"""The management account's stacks rolled out against moto in-process: read, plan, apply, read again.

Each test starts from an empty account, counts the CloudFormation calls the executor makes, and checks what a
user would: the stacks in their regions, their parameters and tags, and that a rerun writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from loginwatch_org.aws.stacks import StackExecutor, StackReader, StackResult, caller_account
from loginwatch_org.aws.staging import TemplateStager
from loginwatch_org.config import Config
from loginwatch_org.stack_plan import (
    DeleteStack,
    StackPlan,
    UpdateStack,
    make_management_plan,
    management_stack_keys,
    not_management_caller,
)
from loginwatch_org.stack_state import DeployedStack
from tests.doubles.clients import moto_with_bucket_policies
from tests.test_stack_plan import TEMPLATES, base_config, with_management

# moto deploys only the resource types it knows and warns about the rest; the executor is what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

READ_PREFIXES = ("Describe", "List", "Get")
MOTO_ACCOUNT = "123456789012"
# One session for all clients: it loads the service model once instead of once per client.
SESSION = boto3.Session()


@dataclass
class Account:
    """One AWS account as the tool sees it: a CloudFormation client per region, every call recorded."""

    clients: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def client(self, region: str) -> Any:
        if region not in self.clients:
            client = SESSION.client("cloudformation", region_name=region)
            client.meta.events.register(
                "provide-client-params.cloudformation",
                lambda params, model, **_: self.calls.append((region, model.name, dict(params))),
            )
            self.clients[region] = client
        return self.clients[region]

    def writes(self) -> list[tuple[str, str]]:
        return [(region, name) for region, name, _ in self.calls if not name.startswith(READ_PREFIXES)]

    def read(self, config: Config) -> tuple[DeployedStack, ...]:
        return StackReader(self.client).read(management_stack_keys(config))

    def plan(self, config: Config, *, prune: bool = False) -> StackPlan:
        return make_management_plan(config, self.read(config), prune=prune, registry=TEMPLATES)

    def apply(self, plan: StackPlan) -> list[StackResult]:
        self.calls.clear()
        # The watch's body is larger than CloudFormation takes inline: staged in moto's S3, as a rollout does.
        stager = TemplateStager(lambda region: SESSION.client("s3", region_name=region), MOTO_ACCOUNT)
        return StackExecutor(self.client, sleep=lambda _seconds: None, stager=stager).apply(plan)

    def stack(self, region: str, name: str) -> dict[str, Any]:
        return dict(self.client(region).describe_stacks(StackName=name)["Stacks"][0])


def config_for_management(**changes: Any) -> Config:
    # The management account is the one moto's credentials belong to.
    return with_management(base_config(), id=MOTO_ACCOUNT, **changes)


@pytest.fixture
def account() -> Iterator[Account]:
    with moto_with_bucket_policies():
        yield Account()


@pytest.fixture
def deployed(account: Account) -> Account:
    account.apply(account.plan(config_for_management()))
    return account


def test_a_first_rollout_creates_the_watch_and_forwarders(account: Account) -> None:
    config = config_for_management()
    results = account.apply(account.plan(config))
    assert results == [
        StackResult("loginwatch-watch", "us-east-1", "create-stack", True, "CREATE_COMPLETE"),
        StackResult("loginwatch-forwarder", "eu-west-1", "create-stack", True, "CREATE_COMPLETE"),
        StackResult("loginwatch-forwarder", "me-central-1", "create-stack", True, "CREATE_COMPLETE"),
    ]
    assert account.writes() == [
        ("us-east-1", "CreateStack"),
        ("eu-west-1", "CreateStack"),
        ("me-central-1", "CreateStack"),
    ]
    creates = [params for _, name, params in account.calls if name == "CreateStack"]
    assert all(params["Capabilities"] == ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"] for params in creates)
    assert all(params["ClientRequestToken"].startswith("lw-c-") for params in creates)
    watch = account.stack("us-east-1", "loginwatch-watch")
    assert {t["Key"]: t["Value"] for t in watch["Tags"]} == {"managed-by": "loginwatch-org"}
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in watch["Parameters"]}
    assert parameters["Recipients"] == "root-owners@example.com"
    assert account.stack("me-central-1", "loginwatch-forwarder")["StackStatus"] == "CREATE_COMPLETE"


def test_a_converged_rerun_writes_nothing(deployed: Account) -> None:
    config = config_for_management()
    plan = deployed.plan(config)
    assert plan.steps == () and len(plan.unchanged) == 3
    assert deployed.apply(plan) == []
    assert deployed.calls == []


def test_reading_costs_one_describe_per_place_and_one_template_per_stack(deployed: Account) -> None:
    config = config_for_management()
    deployed.calls.clear()
    stacks = deployed.read(config)
    names = [name for _, name, _ in deployed.calls]
    assert names.count("DescribeStacks") == len(management_stack_keys(config))
    assert names.count("GetTemplate") == len(stacks) == 3
    assert deployed.writes() == []


def test_new_recipients_update_the_watch_only(deployed: Account) -> None:
    config = config_for_management(recipients=["cfo@example.com"])
    plan = deployed.plan(config)
    assert [(type(step), step.region) for step in plan.steps] == [(UpdateStack, "us-east-1")]
    results = deployed.apply(plan)
    assert results == [StackResult("loginwatch-watch", "us-east-1", "update-stack", True, "UPDATE_COMPLETE")]
    assert deployed.writes() == [("us-east-1", "UpdateStack")]
    watch = deployed.stack("us-east-1", "loginwatch-watch")
    assert {p["ParameterKey"]: p["ParameterValue"] for p in watch["Parameters"]}["Recipients"] == "cfo@example.com"
    assert deployed.plan(config).steps == ()


def test_disabling_the_management_account_deletes_its_stacks(deployed: Account) -> None:
    config = config_for_management(enabled=False)
    plan = deployed.plan(config)
    assert all(isinstance(step, DeleteStack) for step in plan.steps) and len(plan.steps) == 3
    results = deployed.apply(plan)
    assert [(result.action, result.ok, result.status) for result in results] == [
        ("delete-stack", True, "DELETE_COMPLETE")
    ] * 3
    assert sorted(deployed.writes()) == [
        ("eu-west-1", "DeleteStack"),
        ("me-central-1", "DeleteStack"),
        ("us-east-1", "DeleteStack"),
    ]
    assert deployed.read(config) == ()


def test_removing_the_management_account_needs_prune(deployed: Account) -> None:
    config = config_for_management().model_copy(update={"management_account": None})
    kept = deployed.plan(config)
    assert deployed.apply(kept) == [] and deployed.writes() == []
    assert len(deployed.read(config)) == 3
    deployed.apply(deployed.plan(config, prune=True))
    assert deployed.read(config) == ()


def test_a_stack_of_the_same_name_the_tool_does_not_own_is_never_touched(account: Account) -> None:
    config = config_for_management()
    foreign = '{"Resources":{"Queue":{"Type":"AWS::SQS::Queue"}}}'
    account.client("us-east-1").create_stack(StackName="loginwatch-watch", TemplateBody=foreign)
    plan = account.plan(config)
    assert [(blocked.name, blocked.region) for blocked in plan.blocked] == [("loginwatch-watch", "us-east-1")]
    assert [step.region for step in plan.steps] == ["eu-west-1", "me-central-1"]
    # Even a step aimed at it (a plan made from a stale read) is refused by the executor.
    stack_id = account.stack("us-east-1", "loginwatch-watch")["StackId"]
    stale = StackPlan("management account", (DeleteStack("loginwatch-watch", "us-east-1", stack_id, "test", "lw-d-x"),))
    (result,) = account.apply(stale)
    assert not result.ok and "not managed by loginwatch-org" in result.reason
    assert account.writes() == []
    assert account.stack("us-east-1", "loginwatch-watch")["StackStatus"] == "CREATE_COMPLETE"


def test_the_caller_is_told_apart_from_the_management_account(account: Account) -> None:
    sts = SESSION.client("sts", region_name="us-east-1")
    assert caller_account(sts) == MOTO_ACCOUNT
    assert not_management_caller(config_for_management(), caller_account(sts)) is None
    other = base_config()  # its management account is another account than the credentials'
    assert not_management_caller(other, caller_account(sts)) is not None
