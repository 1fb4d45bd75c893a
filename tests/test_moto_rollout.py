"""End-to-end rollouts against moto in-process, with the sandbox's behaviour patches and a seeded organisation.

Each permission model gets one organisation of 24 member accounts and one first rollout, shared by the tests of
that model. Every test starts from the converged baseline (re-established and checked before it runs), and
verifies what a user would: the stack instances, the CloudFormation calls made, and the resources deployed in
the member accounts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loginwatch_org.aws.executor import ApplyResult
from loginwatch_org.config import Config
from loginwatch_org.plan import CreateInstances, CreateStackSet, DeleteInstances, UpdateInstances, account_overrides
from loginwatch_org.sandbox import behaviour
from loginwatch_org.sandbox.control import organization_spec
from loginwatch_org.sandbox.server import MEMBER_ROLE_NAME, OrganizationSpec, access_key_id_for, seed_organization
from loginwatch_org.templates import event_pattern
from loginwatch_org.workflow import Clients, Prepared, make_executor, prepare
from tests.orgs import MANAGEMENT_ACCOUNT, account_ids, config_for, with_recipients, without_accounts

REGION = "us-east-1"
STACK_SET = "loginwatch"
ACCOUNTS = account_ids(24)
# One account alerts on a policy of its own: it forms an override group of its own.
STRICT_ACCOUNT = ACCOUNTS[5]
STRICT_POLICY = "root-and-failures"
READ_PREFIXES = ("Describe", "List", "Get")


def base_config(permission_model: str) -> Config:
    config = config_for(24, groups=4, permission_model=permission_model)
    accounts = [
        account.model_copy(update={"alert_on": STRICT_POLICY}) if account.id == STRICT_ACCOUNT else account
        for account in config.accounts
    ]
    return config.model_copy(update={"accounts": accounts})


def with_disabled(config: Config, account_id: str) -> Config:
    accounts = [
        account.model_copy(update={"enabled": False}) if account.id == account_id else account
        for account in config.accounts
    ]
    return config.model_copy(update={"accounts": accounts})


def expected_overrides(config: Config) -> dict[str, dict[str, str]]:
    return {watch.account_id: account_overrides(watch) for watch in config.targets()}


def writes(calls: list[str]) -> list[str]:
    return [name for name in calls if not name.startswith(READ_PREFIXES)]


@dataclass
class Rollout:
    prepared: Prepared
    result: ApplyResult
    calls: list[str]


@dataclass
class Organisation:
    """The seeded organisation, seen from the management account."""

    permission_model: str
    config: Config
    clients: Clients
    first: Rollout | None = None
    # Every CloudFormation operation the management client calls, in order.
    calls: list[str] = field(default_factory=list)
    _members: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def self_managed(self) -> bool:
        return self.permission_model == "self-managed"

    def record(self, model: Any, **_: Any) -> None:
        self.calls.append(str(model.name))

    def plan(self, config: Config, *, prune: bool = False) -> tuple[Prepared, list[str]]:
        self.calls.clear()
        executor = make_executor(config, self.clients, sleep=lambda _seconds: None)
        prepared = prepare(config, self.clients, executor=executor, prune=prune)
        return prepared, list(self.calls)

    def rollout(self, config: Config, *, prune: bool = False) -> Rollout:
        self.calls.clear()
        executor = make_executor(config, self.clients, sleep=lambda _seconds: None)
        prepared = prepare(config, self.clients, executor=executor, prune=prune)
        result = executor.apply(prepared.plan)
        return Rollout(prepared, result, list(self.calls))

    def instance_accounts(self) -> list[str]:
        pages = self.clients.cloudformation.get_paginator("list_stack_instances").paginate(StackSetName=STACK_SET)
        return sorted(summary["Account"] for page in pages for summary in page["Summaries"])

    def instance_statuses(self) -> dict[str, str]:
        pages = self.clients.cloudformation.get_paginator("list_stack_instances").paginate(StackSetName=STACK_SET)
        return {summary["Account"]: summary["Status"] for page in pages for summary in page["Summaries"]}

    def described_overrides(self, account_id: str) -> dict[str, str]:
        instance = self.clients.cloudformation.describe_stack_instance(
            StackSetName=STACK_SET, StackInstanceAccount=account_id, StackInstanceRegion=REGION
        )["StackInstance"]
        return {p["ParameterKey"]: p["ParameterValue"] for p in instance.get("ParameterOverrides", [])}

    def all_overrides(self) -> dict[str, dict[str, str]]:
        return {account_id: self.described_overrides(account_id) for account_id in self.instance_accounts()}

    def member(self, account_id: str, service: str) -> Any:
        """A client in a member account, through the role the management account may assume there."""
        key = (account_id, service)
        if key not in self._members:
            sts = management_client("sts")
            role = f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE_NAME}"
            credentials = sts.assume_role(RoleArn=role, RoleSessionName="rollout-tests")["Credentials"]
            self._members[key] = boto3.client(
                service,
                region_name=REGION,
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
        return self._members[key]

    def deployed_functions(self, account_id: str) -> list[dict[str, Any]]:
        functions: list[dict[str, Any]] = self.member(account_id, "lambda").list_functions()["Functions"]
        return functions

    def deployed_recipients(self, account_id: str) -> str:
        """RECIPIENTS of the one notifier function deployed in the account."""
        notifiers = [
            function
            for function in self.deployed_functions(account_id)
            if "RECIPIENTS" in function.get("Environment", {}).get("Variables", {})
        ]
        assert len(notifiers) == 1, f"{account_id}: {notifiers}"
        return str(notifiers[0]["Environment"]["Variables"]["RECIPIENTS"])

    def stack_parameters(self, account_id: str) -> dict[str, str]:
        """Parameters of the stack set's stack in a member account, as DescribeStacks shows them there."""
        stacks = self.member(account_id, "cloudformation").describe_stacks()["Stacks"]
        [stack] = [s for s in stacks if s["StackName"].startswith(f"StackSet-{STACK_SET}-")]
        return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}


def management_client(service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id=access_key_id_for(MANAGEMENT_ACCOUNT),
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module", params=["service-managed", "self-managed"])
def organisation(request: pytest.FixtureRequest) -> Iterator[Organisation]:
    permission_model: str = request.param
    config = base_config(permission_model)
    with mock_aws():
        behaviour.apply()
        try:
            seed_organization(OrganizationSpec.from_mapping(organization_spec(config)))
            clients = Clients(
                management_client("cloudformation"),
                management_client("organizations"),
                management_client("sts"),
                s3_for=lambda _region: management_client("s3"),
            )
            org = Organisation(permission_model, config, clients)
            clients.cloudformation.meta.events.register("before-call.cloudformation", org.record)
            org.first = org.rollout(config)
            yield org
        finally:
            behaviour.revert()


@pytest.fixture
def org(organisation: Organisation) -> Organisation:
    """The organisation at its converged baseline: every config account deployed as configured, nothing else."""
    organisation.rollout(organisation.config, prune=True)
    prepared, _ = organisation.plan(organisation.config, prune=True)
    assert prepared.plan.steps == (), "the baseline did not converge"
    assert organisation.instance_accounts() == sorted(ACCOUNTS)
    organisation.calls.clear()
    return organisation


def test_first_rollout_creates_every_instance_with_its_overrides(org: Organisation) -> None:
    assert org.first is not None
    first = org.first
    groups = {json.dumps(overrides, sort_keys=True) for overrides in expected_overrides(org.config).values()}
    assert len(groups) == 5  # four recipient lists, one of them split by a different alert policy

    steps = first.prepared.plan.steps
    assert isinstance(steps[0], CreateStackSet)
    assert all(isinstance(step, CreateInstances) for step in steps[1:])
    assert first.prepared.plan.operation_count == len(groups)
    assert writes(first.calls) == ["CreateStackSet"] + ["CreateStackInstances"] * len(groups)
    assert len(first.result.operations) == len(groups)
    assert {operation.status for operation in first.result.operations} == {"SUCCEEDED"}
    assert first.result.failed_accounts == []

    for watch in org.config.targets():
        assert org.described_overrides(watch.account_id) == account_overrides(watch), watch.account_id
    assert org.described_overrides(STRICT_ACCOUNT)["AlertOn"] == STRICT_POLICY
    assert org.instance_statuses() == dict.fromkeys(ACCOUNTS, "CURRENT")

    # Nothing lands in the management account, not even through the root the stack set targets.
    assert MANAGEMENT_ACCOUNT not in org.instance_accounts()
    assert management_client("lambda").list_functions()["Functions"] == []
    assert management_client("cloudformation").describe_stacks()["Stacks"] == []


def test_second_rollout_makes_no_write_call(org: Organisation) -> None:
    rerun = org.rollout(org.config)
    assert rerun.prepared.plan.steps == ()
    assert not rerun.prepared.plan.has_changes
    assert rerun.prepared.plan.unchanged_accounts == 24
    assert rerun.result.operations == []
    assert rerun.calls, "the rerun read the deployed state"
    assert writes(rerun.calls) == []
    # Each instance's LastOperationId carries the digest of its overrides: nothing needs describing.
    assert "DescribeStackInstance" not in rerun.calls


def test_changing_two_accounts_recipients_updates_exactly_those_two(org: Organisation) -> None:
    first, second, untouched = ACCOUNTS[3], ACCOUNTS[17], ACCOUNTS[4]
    new_first, new_second = ["new-team@example.com"], ["other@example.com", "x@example.com"]
    before = org.all_overrides()
    untouched_recipients = org.deployed_recipients(untouched)
    changed = with_recipients(org.config, {first: new_first, second: new_second})

    rollout = org.rollout(changed)

    steps = rollout.prepared.plan.steps
    assert all(isinstance(step, UpdateInstances) for step in steps)
    assert sorted(account for step in steps for account in step.accounts) == sorted([first, second])  # type: ignore[union-attr]
    assert writes(rollout.calls) == ["UpdateStackInstances", "UpdateStackInstances"]
    assert rollout.result.failed_accounts == []

    after = org.all_overrides()
    assert set(after) == set(before)
    assert {account for account in after if after[account] != before[account]} == {first, second}
    assert after[first] == {"Recipients": "new-team@example.com", "AlertOn": "all"}
    assert after[second] == {"Recipients": "other@example.com,x@example.com", "AlertOn": "all"}
    assert after == expected_overrides(changed)

    # What is deployed in the accounts changed too, and only there.
    assert org.deployed_recipients(first) == "new-team@example.com"
    assert org.deployed_recipients(second) == "other@example.com,x@example.com"
    assert org.deployed_recipients(untouched) == untouched_recipients
    if org.self_managed:
        assert org.stack_parameters(first)["Recipients"] == "new-team@example.com"
        assert org.stack_parameters(second)["Recipients"] == "other@example.com,x@example.com"
        assert org.stack_parameters(untouched)["Recipients"] == untouched_recipients


def test_prune_deletes_only_the_removed_accounts_instance(org: Organisation) -> None:
    gone = ACCOUNTS[9]
    # new_accounts: report, or the account, still in the organisation, would be watched with the defaults.
    smaller = without_accounts(org.config, {gone})
    smaller = smaller.model_copy(update={"stack_set": smaller.stack_set.model_copy(update={"new_accounts": "report"})})
    before = org.all_overrides()

    kept = org.rollout(smaller)
    assert kept.prepared.plan.steps == ()
    assert kept.prepared.plan.kept_orphans == (gone,)
    assert writes(kept.calls) == []
    assert org.instance_accounts() == sorted(ACCOUNTS)
    assert org.deployed_functions(gone) != []

    pruned = org.rollout(smaller, prune=True)
    [step] = pruned.prepared.plan.steps
    assert isinstance(step, DeleteInstances)
    assert step.accounts == (gone,)
    assert not step.retain_stacks
    assert pruned.prepared.plan.kept_orphans == ()
    assert writes(pruned.calls) == ["DeleteStackInstances"]
    assert pruned.result.failed_accounts == []

    assert org.instance_accounts() == sorted(set(ACCOUNTS) - {gone})
    assert org.all_overrides() == {account: before[account] for account in ACCOUNTS if account != gone}
    # The stack's resources left the removed account; the neighbours keep theirs.
    assert org.deployed_functions(gone) == []
    assert org.member(gone, "events").list_rules()["Rules"] == []
    assert org.deployed_recipients(ACCOUNTS[10]) == before[ACCOUNTS[10]]["Recipients"]
    assert not org.plan(smaller, prune=True)[0].plan.has_changes


def test_disabled_account_loses_its_instance_on_the_next_rollout(org: Organisation) -> None:
    disabled = ACCOUNTS[11]
    config = with_disabled(org.config, disabled)
    assert disabled not in {watch.account_id for watch in config.targets()}
    before = org.all_overrides()

    rollout = org.rollout(config)

    [step] = rollout.prepared.plan.steps
    assert isinstance(step, DeleteInstances)
    assert step.accounts == (disabled,)
    assert [change.reason for change in step.changes] == ["disabled in the config"]
    assert writes(rollout.calls) == ["DeleteStackInstances"]
    assert rollout.result.failed_accounts == []
    assert org.instance_accounts() == sorted(set(ACCOUNTS) - {disabled})
    assert org.all_overrides() == {account: before[account] for account in ACCOUNTS if account != disabled}
    assert org.deployed_functions(disabled) == []

    rerun = org.rollout(config)
    assert rerun.prepared.plan.steps == ()
    assert writes(rerun.calls) == []


def test_template_deploys_every_resource_into_the_member_account(org: Organisation) -> None:
    account = STRICT_ACCOUNT
    [function] = org.deployed_functions(account)
    variables = function["Environment"]["Variables"]
    buffer, dead_letters = variables.pop("BUFFER_QUEUE_URL"), variables.pop("DEAD_LETTER_QUEUE_URL")
    assert variables == {
        "RECIPIENTS": org.described_overrides(account)["Recipients"],
        "SENDER": "alerts@example.com",
        "SOURCE_ARN": "",
        # Every account sends for itself: with the watch's own configuration set, whose notices are dead letters.
        "CONFIGURATION_SET": "loginwatch-alerts",
    }
    assert f"/{account}/" in buffer and "BufferQueue" in buffer and "DeadLetterQueue" in dead_letters

    # The EventBridge rule on the default bus, filtered by this account's policy.
    events = org.member(account, "events")
    [rule] = events.list_rules(EventBusName="default")["Rules"]
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    pattern = json.loads(rule["EventPattern"])
    assert pattern["source"] == ["aws.signin"]
    assert pattern == event_pattern(STRICT_POLICY)
    [default_rule] = org.member(ACCOUNTS[0], "events").list_rules(EventBusName="default")["Rules"]
    assert json.loads(default_rule["EventPattern"]) == event_pattern("all")

    # The rule publishes to the SNS topic, which fills the buffer queue the function reads in batches.
    [target] = events.list_targets_by_rule(Rule=rule["Name"], EventBusName="default")["Targets"]
    sns = org.member(account, "sns")
    [topic] = [t for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":loginwatch-sign-in-alerts")]
    assert target["Arn"] == topic["TopicArn"]
    # SES's notices about accepted alerts (a bounce, a complaint) go from their own topic to the dead-letter queue.
    [notices] = [t for t in sns.list_topics()["Topics"] if "DeliveryNoticeTopic" in t["TopicArn"]]
    [to_dead_letters] = sns.list_subscriptions_by_topic(TopicArn=notices["TopicArn"])["Subscriptions"]
    assert (to_dead_letters["Protocol"], to_dead_letters["Endpoint"].split(":")[-1]) == (
        "sqs",
        dead_letters.rsplit("/", 1)[-1],
    )
    [subscription] = sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]
    assert subscription["Protocol"] == "sqs"
    [mapping] = org.member(account, "lambda").list_event_source_mappings(EventSourceArn=subscription["Endpoint"])[
        "EventSourceMappings"
    ]
    assert mapping["FunctionArn"] == function["FunctionArn"]
    topic_policy = json.loads(sns.get_topic_attributes(TopicArn=topic["TopicArn"])["Attributes"]["Policy"])
    [publish, admin_test] = topic_policy["Statement"]
    assert publish["Condition"]["ArnEquals"]["aws:SourceArn"] == rule["Arn"]
    # The StackSets administrator (here the management account) may publish test alerts, nothing else.
    assert admin_test["Principal"] == {"AWS": f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:root"}
    assert (admin_test["Action"], admin_test["Resource"]) == ("sns:Publish", topic["TopicArn"])

    # One encrypted dead-letter queue catches what the rule cannot deliver.
    sqs = org.member(account, "sqs")
    buffer_url, queue_url = sorted(sqs.list_queues()["QueueUrls"], key=lambda url: "DeadLetter" in url)
    assert "BufferQueue" in buffer_url and "DeadLetter" in queue_url
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert target["DeadLetterConfig"]["Arn"] == attributes["QueueArn"]
    queue_policy = json.loads(attributes["Policy"])
    assert {statement["Sid"] for statement in queue_policy["Statement"]} >= {"TlsOnly"}

    # An alarm watches that queue.
    [alarm] = org.member(account, "cloudwatch").describe_alarms()["MetricAlarms"]
    [visible] = [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]
    assert (visible["Namespace"], visible["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert visible["Dimensions"] == [{"Name": "QueueName", "Value": attributes["QueueArn"].rsplit(":", 1)[1]}]
