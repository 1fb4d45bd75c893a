"""Rollouts against the StackSets double, which behaves like the real service where moto is shallow:
asynchronous operations, queueing, OperationId reuse, failed instances, pagination."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from loginwatch_org.aws.errors import AwsProblem
from loginwatch_org.aws.executor import ApplyResult
from loginwatch_org.config import Config
from loginwatch_org.errors import RolloutInterrupted
from loginwatch_org.plan import (
    CreateInstances,
    DeleteInstances,
    PlanError,
    UpdateInstances,
    UpdateStackSet,
    account_overrides,
)
from loginwatch_org.workflow import Prepared, account_statuses, make_executor, prepare
from tests.doubles.clients import staging_clients
from tests.doubles.organizations import OrganizationsDouble
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import (
    MANAGEMENT_ACCOUNT,
    account_ids,
    config_for,
    organization,
    with_recipients,
    without_accounts,
)


class Harness:
    def __init__(self, double: StackSetsDouble, organizations: Any | None = None) -> None:
        self.double = double
        self.clients = staging_clients(double, organizations=organizations)
        self.sleeps: list[float] = []

    def executor(self, config: Config) -> Any:
        return make_executor(config, self.clients, sleep=self.sleeps.append)

    def prepare(self, config: Config, **kwargs: Any) -> Prepared:
        return prepare(config, self.clients, executor=self.executor(config), **kwargs)

    def rollout(self, config: Config, **kwargs: Any) -> ApplyResult:
        prepared = self.prepare(config, **kwargs)
        return self.executor(config).apply(prepared.plan)

    def overrides(self) -> dict[str, dict[str, str]]:
        return {a: i["overrides"] for a, i in self.double.instances("loginwatch").items()}


def make_harness(count: int = 24, *, polls: int = 2, **kwargs: Any) -> Harness:
    return Harness(StackSetsDouble(organization(count), MANAGEMENT_ACCOUNT, polls_per_state=polls, **kwargs))


def expected_overrides(config: Config) -> dict[str, dict[str, str]]:
    return {t.account_id: account_overrides(t) for t in config.targets()}


@pytest.mark.parametrize("permission_model", ["service-managed", "self-managed"])
def test_first_rollout_then_converged_rerun_makes_no_write(permission_model: str) -> None:
    harness = make_harness()
    config = config_for(24, groups=5, permission_model=permission_model)
    result = harness.rollout(config)
    assert result.failed_accounts == []
    assert {op.status for op in result.operations} == {"SUCCEEDED"}
    assert len(result.operations) == 5  # one per recipient group, not one per account
    assert harness.overrides() == expected_overrides(config)
    assert all(i["status"] == "CURRENT" for i in harness.double.instances("loginwatch").values())
    assert harness.sleeps, "operations were QUEUED/RUNNING and had to be waited for"

    harness.double.reset_calls()
    rerun = harness.prepare(config)
    assert not rerun.plan.has_changes
    assert harness.double.count(kind="write") == 0
    assert harness.double.count("describe_stack_instance") == 0


def test_changing_two_accounts_recipients_updates_exactly_those_two() -> None:
    harness = make_harness()
    config = config_for(24, groups=5)
    harness.rollout(config)
    before = harness.double.instances("loginwatch")
    a, b = account_ids(24)[3], account_ids(24)[17]
    changed = with_recipients(config, {a: ["new-team@example.com"], b: ["other@example.com", "x@example.com"]})
    prepared = harness.prepare(changed)
    assert sorted(x for s in prepared.plan.steps for x in s.accounts) == sorted([a, b])  # type: ignore[union-attr]
    result = harness.executor(changed).apply(prepared.plan)
    assert len(result.operations) == 2
    after = harness.double.instances("loginwatch")
    moved = {acct for acct in after if after[acct]["last_operation_id"] != before[acct]["last_operation_id"]}
    assert moved == {a, b}
    assert after[a]["overrides"]["Recipients"] == "new-team@example.com"
    assert after[b]["overrides"]["Recipients"] == "other@example.com,x@example.com"


def test_prune_deletes_only_the_removed_account() -> None:
    harness = make_harness()
    config = config_for(24, groups=5)
    harness.rollout(config)
    gone = account_ids(24)[5]
    smaller = without_accounts(config, {gone})
    kept = harness.prepare(smaller)
    assert not kept.plan.steps and kept.plan.kept_orphans == (gone,)
    harness.rollout(smaller, prune=True)
    remaining = set(harness.double.instances("loginwatch"))
    assert remaining == set(account_ids(24)) - {gone}


def test_failed_account_is_reported_even_when_tolerance_lets_the_operation_succeed() -> None:
    harness = make_harness()
    tolerant = {"operation_preferences": {"failure_tolerance_percentage": 100}}
    config = config_for(24, groups=1, stack_set_extra=tolerant)
    bad = account_ids(24)[7]
    harness.double.failing_accounts[bad] = "ResourceLogicalId:NotifierRole, ResourceStatusReason:AccessDenied"
    result = harness.rollout(config)
    assert [op.status for op in result.operations] == ["SUCCEEDED"]
    assert [f.account_id for f in result.failed_accounts] == [bad]
    assert "AccessDenied" in result.failed_accounts[0].reason

    # The next plan retries exactly that account, with the reason shown; once fixed, it converges.
    retry = harness.prepare(config)
    (step,) = retry.plan.steps
    assert isinstance(step, UpdateInstances) and step.accounts == (bad,)
    assert "AccessDenied" in step.changes[0].reason
    rows = {r.account_id: r for r in account_statuses(config, retry.snapshot)}
    assert rows[bad].status == "OUTDATED" and not rows[bad].in_sync
    del harness.double.failing_accounts[bad]
    assert harness.rollout(config).failed_accounts == []
    assert not harness.prepare(config).plan.has_changes


def test_operation_in_progress_is_waited_out_not_fatal() -> None:
    harness = make_harness()
    config = config_for(24, groups=2)
    harness.double.fail_next("create_stack_instances", "OperationInProgressException", times=3)
    result = harness.rollout(config)
    assert result.failed_accounts == []
    assert harness.overrides() == expected_overrides(config)
    assert len(harness.sleeps) >= 3


def test_resubmitted_operation_id_is_picked_up_not_duplicated() -> None:
    harness = make_harness()
    config = config_for(24, groups=3)
    harness.rollout(config)
    changed = with_recipients(config, {account_ids(24)[0]: ["moved@example.com"]})
    prepared = harness.prepare(changed)
    # The connection drops after AWS accepted the request: the client never saw the OperationId.
    harness.double.fail_next("update_stack_instances", "RequestTimeout", applied=True)
    with pytest.raises(AwsProblem):
        harness.executor(changed).apply(prepared.plan)
    operations_before = len(harness.double.operations("loginwatch"))
    result = harness.executor(changed).apply(prepared.plan)  # same plan, same OperationId
    assert result.resumed == [prepared.plan.steps[0].operation_id]  # type: ignore[union-attr]
    assert len(harness.double.operations("loginwatch")) == operations_before
    assert harness.overrides() == expected_overrides(changed)


@pytest.mark.parametrize("interrupt_at", [3, 6, 9, 14])
def test_interrupted_rollout_resumes_and_converges_without_duplicates(interrupt_at: int) -> None:
    harness = make_harness(polls=3)
    config = config_for(24, groups=4)
    harness.double.interrupt_after(interrupt_at, applied=True)
    # Ctrl-C while reading is a plain KeyboardInterrupt; once operations are submitted, it names them.
    with pytest.raises((KeyboardInterrupt, RolloutInterrupted)):
        harness.rollout(config)
    result = harness.rollout(config)
    assert result.failed_accounts == []
    assert harness.overrides() == expected_overrides(config)
    # Every account was created exactly once: no operation was submitted twice.
    creates = [op for op in harness.double.operations("loginwatch") if op["action"] == "CREATE"]
    counted = Counter(r["account"] for op in creates for r in op["results"] if r["status"] == "SUCCEEDED")
    assert set(counted.values()) == {1}
    assert not harness.prepare(config).plan.has_changes


def test_accounts_outside_the_organisation_are_skipped() -> None:
    members = set(account_ids(24)[:23])
    harness = Harness(StackSetsDouble(organization(23), MANAGEMENT_ACCOUNT), OrganizationsDouble(members))
    config = config_for(24, groups=2)
    prepared = harness.prepare(config)
    stray = account_ids(24)[23]
    assert prepared.plan.skipped_accounts == (stray,)
    assert any(stray in warning for warning in prepared.plan.warnings)
    harness.executor(config).apply(prepared.plan)
    assert set(harness.double.instances("loginwatch")) == members


def test_stack_set_owned_by_someone_else_is_refused() -> None:
    harness = make_harness()
    harness.double.client().create_stack_set(
        StackSetName="loginwatch",
        TemplateBody="{}",
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": False},
    )
    with pytest.raises(AwsProblem, match="not managed by loginwatch-org"):
        harness.prepare(config_for(24))
    assert harness.double.count(kind="write") == 1  # only the setup above


def test_delegated_admin_not_registered_is_explained() -> None:
    harness = make_harness(delegated_admin_registered=False)
    with pytest.raises(AwsProblem, match="register-delegated-administrator"):
        harness.prepare(config_for(24, call_as="delegated-admin"))


def test_delegated_admin_is_passed_on_every_call() -> None:
    harness = make_harness()
    config = config_for(24, groups=2, call_as="delegated-admin")
    harness.rollout(config)
    assert harness.double.calls
    assert {kwargs.get("CallAs") for _, kwargs in harness.double.calls} == {"DELEGATED_ADMIN"}


def test_converged_thousand_accounts_plan_reads_pages_not_accounts() -> None:
    harness = make_harness(1000, polls=0)
    config = config_for(1000, groups=10)
    harness.rollout(config)
    harness.double.reset_calls()
    assert not harness.prepare(config).plan.has_changes
    assert harness.double.count(kind="read") <= 1 + 10 + 1
    assert harness.double.count("describe_stack_instance") == 0


def test_template_change_keeps_reads_low_on_the_next_plan() -> None:
    harness = make_harness(200, polls=0)
    config = config_for(200, groups=10)
    harness.rollout(config)
    changed_sender = config.model_copy(
        update={"delivery": config.delivery.model_copy(update={"sender": "alerts@corp.example"})}
    )
    result = harness.rollout(changed_sender)
    assert len(result.operations) == 10  # one UpdateStackSet + one operation per other group
    harness.double.reset_calls()
    assert not harness.prepare(changed_sender).plan.has_changes
    assert harness.double.count("describe_stack_instance") == 0


def test_call_as_is_left_to_its_default_when_acting_as_self() -> None:
    harness = make_harness()
    harness.rollout(config_for(24, groups=2, call_as="self"))
    assert harness.double.calls
    assert all("CallAs" not in kwargs for _, kwargs in harness.double.calls)


def test_regions_are_added_and_removed_per_instance() -> None:
    harness = make_harness()
    two_regions = config_for(24, groups=3, stack_set_extra={"regions": ["us-east-1", "eu-west-1"]})
    result = harness.rollout(two_regions)
    assert len(result.operations) == 3  # each group's accounts in both regions, one operation
    for region in ("us-east-1", "eu-west-1"):
        assert set(harness.double.instances("loginwatch", region=region)) == set(account_ids(24))

    one_region = config_for(24, groups=3)
    kept = harness.prepare(one_region)
    assert kept.plan.steps == ()
    assert kept.plan.kept_orphans and all("eu-west-1" in orphan for orphan in kept.plan.kept_orphans)
    pruned = harness.prepare(one_region, prune=True)
    (step,) = pruned.plan.steps
    assert isinstance(step, DeleteInstances) and step.regions == ("eu-west-1",)
    harness.executor(one_region).apply(pruned.plan)
    assert harness.double.instances("loginwatch", region="eu-west-1") == {}
    assert set(harness.double.instances("loginwatch", region="us-east-1")) == set(account_ids(24))

    back = harness.prepare(two_regions)
    assert {type(s) for s in back.plan.steps} == {CreateInstances}
    assert all(s.regions == ("eu-west-1",) for s in back.plan.steps)  # type: ignore[union-attr]


def test_template_change_while_a_region_is_added_converges() -> None:
    harness = make_harness()
    config = config_for(24, groups=3)
    harness.rollout(config)
    changed = config_for(
        24,
        groups=3,
        stack_set_extra={"regions": ["us-east-1", "eu-west-1"]},
        extra={"delivery": {"sender": "alerts@corp.example"}},
    )
    result = harness.rollout(changed)
    assert result.failed_accounts == []
    assert not harness.prepare(changed).plan.has_changes


def test_an_account_disabled_and_enabled_again_is_redeployed() -> None:
    # The state after re-enabling equals an earlier one; a fresh OperationId must still be used.
    harness = make_harness()
    config = config_for(24, groups=2)
    harness.rollout(config)
    target = account_ids(24)[6]
    disabled = config.model_copy(
        update={"accounts": [a.model_copy(update={"enabled": a.id != target}) for a in config.accounts]}
    )
    harness.rollout(disabled)
    assert target not in harness.double.instances("loginwatch")
    result = harness.rollout(config)
    assert result.resumed == []
    assert target in harness.double.instances("loginwatch")
    assert not harness.prepare(config).plan.has_changes


def test_stack_set_change_with_every_account_changing_targets_one_group_not_all() -> None:
    harness = make_harness()
    config = config_for(24, groups=3)
    harness.rollout(config)
    everyone_moves = with_recipients(config, {a: ["all-new@example.com"] for a in account_ids(24)})
    changed = everyone_moves.model_copy(
        update={"delivery": everyone_moves.delivery.model_copy(update={"sender": "alerts@corp.example"})}
    )
    prepared = harness.prepare(changed)
    stack_set_step = prepared.plan.steps[0]
    assert isinstance(stack_set_step, UpdateStackSet)
    assert stack_set_step.accounts, "an UpdateStackSet without targets would update every instance"
    harness.executor(changed).apply(prepared.plan)
    assert harness.overrides() == expected_overrides(changed)
    assert not harness.prepare(changed).plan.has_changes


def test_stack_set_update_keeps_the_organisations_tags() -> None:
    harness = make_harness()
    config = config_for(24, groups=2)
    harness.rollout(config)
    client = harness.double.client()
    described = client.describe_stack_set(StackSetName="loginwatch")["StackSet"]
    assert {"Key": "managed-by", "Value": "loginwatch-org"} in described["Tags"]
    # Someone tagged the stack set for the organisation's cost reports.
    harness.double._sets["loginwatch"].tags = [
        {"Key": "managed-by", "Value": "loginwatch-org"},
        {"Key": "cost-centre", "Value": "security"},
    ]
    changed = config.model_copy(update={"delivery": config.delivery.model_copy(update={"sender": "a@corp.example"})})
    harness.rollout(changed)
    update = next(kwargs for name, kwargs in harness.double.calls if name == "update_stack_set")
    assert {"Key": "cost-centre", "Value": "security"} in update["Tags"]


def test_changing_the_permission_model_is_refused_before_any_write() -> None:
    harness = make_harness()
    harness.rollout(config_for(24, groups=2, permission_model="service-managed"))
    harness.double.reset_calls()
    with pytest.raises(PlanError, match="cannot change the permission model"):
        harness.prepare(config_for(24, groups=2, permission_model="self-managed"))
    assert harness.double.count(kind="write") == 0


def test_self_managed_update_passes_the_roles_again() -> None:
    harness = make_harness()
    roles = {
        "administration_role_arn": "arn:aws:iam::999900000000:role/StackSetAdmin",
        "execution_role_name": "StackSetExecution",
    }
    config = config_for(24, groups=2, permission_model="self-managed", stack_set_extra=roles)
    harness.rollout(config)
    changed = config.model_copy(update={"delivery": config.delivery.model_copy(update={"sender": "a@corp.example"})})
    harness.rollout(changed)
    update = next(kwargs for name, kwargs in harness.double.calls if name == "update_stack_set")
    assert update["AdministrationRoleARN"] == roles["administration_role_arn"]
    assert update["ExecutionRoleName"] == "StackSetExecution"
