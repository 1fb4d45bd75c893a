"""The planner on hand-built snapshots: what a reviewer sees in ``plan`` is what ``rollout`` does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from loginwatch_org.config import AccountWatch, Config, load_config
from loginwatch_org.plan import (
    AccountChange,
    AccountState,
    CreateInstances,
    CreateStackSet,
    DeleteInstances,
    DeleteStackSet,
    Deletions,
    Plan,
    PlanError,
    StackSetDelta,
    StackSetTarget,
    UpdateInstances,
    UpdateStackSet,
    account_overrides,
    check_permission_model,
    choose_stack_set_target,
    classify_account,
    make_plan,
    make_removal_plan,
    plan_deletions,
    stack_set_delta,
)
from loginwatch_org.state import (
    DeployedInstance,
    DeployedStackSet,
    PendingOperation,
    Snapshot,
    digest_from_operation_id,
    operation_id,
)
from loginwatch_org.templates import build_template, shared_parameters, template_body, template_digest
from tests.conftest import EXAMPLE_CONFIG
from tests.orgs import config_for, with_recipients

BODY = '{"Resources":{}}'
DIGEST = template_digest(BODY)


@pytest.fixture
def config() -> Config:
    return load_config(EXAMPLE_CONFIG)


def deployed_stack_set(config: Config, **changes: object) -> DeployedStackSet:
    stack_set = DeployedStackSet(
        name=config.stack_set.name,
        stack_set_id="loginwatch:1",
        template_digest=DIGEST,
        parameters=shared_parameters(config),
        tags={"managed-by": "loginwatch-org"},
        permission_model="SERVICE_MANAGED",
        managed_execution=True,
    )
    return replace(stack_set, **changes)  # type: ignore[arg-type]


def converged(config: Config) -> Snapshot:
    """Every enabled account deployed by an earlier rollout: only LastOperationIds carry the overrides."""
    instances = []
    for watch in config.targets():
        op = operation_id("c", account_overrides(watch), ["earlier", watch.account_id])
        instances.append(
            DeployedInstance(
                watch.account_id,
                "us-east-1",
                "CURRENT",
                "SUCCEEDED",
                None,
                op,
                overrides_digest=digest_from_operation_id(op),
            )
        )
    return Snapshot(deployed_stack_set(config), tuple(instances))


def plan_for(config: Config, snapshot: Snapshot, **kwargs: bool) -> Plan:
    return make_plan(config, BODY, shared_parameters(config), snapshot, **kwargs)


def test_first_rollout_creates_the_stack_set_and_one_operation_per_override_group(config: Config) -> None:
    plan = plan_for(config, Snapshot(None))
    assert isinstance(plan.steps[0], CreateStackSet)
    creates = [s for s in plan.steps if isinstance(s, CreateInstances)]
    groups = {tuple(sorted(account_overrides(t).items())) for t in config.targets()}
    assert len(creates) == len(groups) == plan.operation_count
    created = [a for step in creates for a in step.accounts]
    assert sorted(created) == sorted(t.account_id for t in config.targets())
    # payments-prod and payments-staging share recipients but not the policy; shared-services and identity
    # share neither policy, so each group holds exactly the accounts with identical overrides.
    for step in creates:
        assert all(account_overrides(t) == step.overrides for t in config.targets() if t.account_id in step.accounts)
    assert "444455556666" not in created  # disabled


def test_converged_organisation_plans_nothing(config: Config) -> None:
    plan = plan_for(config, converged(config))
    assert plan.steps == ()
    assert plan.unchanged_accounts == len(config.targets())


def test_recipient_change_updates_exactly_those_accounts(config: Config) -> None:
    changed = with_recipients(config, {"333344445555": ["new-data@example.com"], "555566667777": ["x@example.com"]})
    plan = plan_for(changed, converged(config))
    assert all(isinstance(s, UpdateInstances) for s in plan.steps)
    updated = sorted(a for s in plan.steps for a in s.accounts)  # type: ignore[union-attr]
    assert updated == ["333344445555", "555566667777"]
    step = next(s for s in plan.steps if "333344445555" in s.accounts)  # type: ignore[union-attr]
    assert isinstance(step, UpdateInstances)
    assert step.overrides["Recipients"] == "new-data@example.com"
    assert step.changes[0].after == {"Recipients": "new-data@example.com", "AlertOn": "all"}


def test_two_accounts_moving_to_the_same_list_share_one_operation(config: Config) -> None:
    changed = with_recipients(config, {"333344445555": ["team@example.com"], "555566667777": ["team@example.com"]})
    plan = plan_for(changed, converged(config))
    assert plan.operation_count == 1
    (step,) = plan.steps
    assert isinstance(step, UpdateInstances) and sorted(step.accounts) == ["333344445555", "555566667777"]


def test_described_overrides_show_old_and_new(config: Config) -> None:
    snapshot = converged(config)
    instances = tuple(
        replace(i, overrides={"Recipients": "old@example.com", "AlertOn": "all"}, last_operation_id="console-edit")
        if i.account_id == "555566667777"
        else i
        for i in snapshot.instances
    )
    plan = plan_for(config, replace(snapshot, instances=instances))
    (step,) = plan.steps
    assert isinstance(step, UpdateInstances)
    change = step.changes[0]
    assert change.before == {"Recipients": "old@example.com", "AlertOn": "all"}
    assert change.after == {"Recipients": "security@example.com", "AlertOn": "all"}


def test_failed_instances_are_retried_with_their_reason(config: Config) -> None:
    snapshot = converged(config)
    instances = tuple(
        replace(i, status="OUTDATED", detailed_status="FAILED", status_reason="ResourceLogicalId:NotifierRole")
        if i.account_id == "111122223333"
        else i
        for i in snapshot.instances
    )
    plan = plan_for(config, replace(snapshot, instances=instances))
    (step,) = plan.steps
    assert isinstance(step, UpdateInstances) and step.accounts == ("111122223333",)
    assert "retry: OUTDATED/FAILED (ResourceLogicalId:NotifierRole)" in step.changes[0].reason


def test_template_change_touches_every_account_once_in_group_operations(config: Config) -> None:
    snapshot = converged(config)
    plan = make_plan(config, '{"Resources":{"New":{}}}', shared_parameters(config), snapshot)
    stack_set_step = plan.steps[0]
    assert isinstance(stack_set_step, UpdateStackSet)
    assert stack_set_step.reasons == ("the template changed",)
    touched = list(stack_set_step.accounts)
    for step in plan.steps[1:]:
        assert isinstance(step, UpdateInstances)
        touched.extend(step.accounts)
    assert sorted(touched) == sorted(t.account_id for t in config.targets())
    groups = {tuple(sorted(account_overrides(t).items())) for t in config.targets()}
    assert plan.operation_count == len(groups)
    # The stack set update targets accounts that share one set of overrides, and says so in its id.
    assert digest_from_operation_id(stack_set_step.operation_id) is not None
    assert all(
        account_overrides(t) == stack_set_step.overrides
        for t in config.targets()
        if t.account_id in stack_set_step.accounts
    )


def test_shared_parameter_change_is_shown_old_to_new(config: Config) -> None:
    snapshot = converged(config)
    stack_set = deployed_stack_set(config, parameters={**shared_parameters(config), "Sender": "old@example.com"})
    plan = plan_for(config, replace(snapshot, stack_set=stack_set))
    step = plan.steps[0]
    assert isinstance(step, UpdateStackSet)
    assert step.parameter_changes == {"Sender": ("old@example.com", "alerts@example.com")}


def test_removed_accounts_are_kept_without_prune_and_deleted_with_it(config: Config) -> None:
    snapshot = converged(config)
    orphan = DeployedInstance("123412341234", "us-east-1", "CURRENT", last_operation_id="x")
    snapshot = replace(snapshot, instances=(*snapshot.instances, orphan))
    kept = plan_for(config, snapshot)
    assert kept.steps == () and kept.kept_orphans == ("123412341234",)
    pruned = plan_for(config, snapshot, prune=True)
    (step,) = pruned.steps
    assert isinstance(step, DeleteInstances) and step.accounts == ("123412341234",)


def test_disabled_account_instance_is_deleted(config: Config) -> None:
    snapshot = converged(config)
    disabled = DeployedInstance("444455556666", "us-east-1", "CURRENT", last_operation_id="x")
    plan = plan_for(config, replace(snapshot, instances=(*snapshot.instances, disabled)))
    (step,) = plan.steps
    assert isinstance(step, DeleteInstances) and step.accounts == ("444455556666",)
    assert step.changes[0].reason == "disabled in the config"


def test_accounts_outside_the_organisation_are_skipped_with_a_warning(config: Config) -> None:
    plan = plan_for(config, Snapshot(None, accounts_outside_organization=frozenset({"777788889999"})))
    created = [a for s in plan.steps if isinstance(s, CreateInstances) for a in s.accounts]
    assert "777788889999" not in created
    assert plan.skipped_accounts == ("777788889999",)
    assert any("777788889999" in w and "not in the organisation" in w for w in plan.warnings)


def test_operation_ids_are_deterministic_and_follow_the_state(config: Config) -> None:
    changed = with_recipients(config, {"333344445555": ["new@example.com"]})
    snapshot = converged(config)
    first, second = plan_for(changed, snapshot), plan_for(changed, snapshot)
    assert first.steps == second.steps
    moved = replace(snapshot, instances=tuple(replace(i, last_operation_id="later") for i in snapshot.instances))
    third = plan_for(changed, moved)
    assert first.steps[0].operation_id != third.steps[0].operation_id  # type: ignore[union-attr]
    assert len(first.steps[0].operation_id) <= 128  # type: ignore[union-attr]


def test_removal_plan_deletes_instances_then_the_empty_stack_set(config: Config) -> None:
    snapshot = converged(config)
    everything = make_removal_plan(config, snapshot)
    assert isinstance(everything.steps[0], DeleteInstances) and isinstance(everything.steps[1], DeleteStackSet)
    one = make_removal_plan(config, snapshot, ("111122223333",))
    (step,) = one.steps
    assert isinstance(step, DeleteInstances) and step.accounts == ("111122223333",)


def test_plan_is_printable_as_data(config: Config) -> None:
    data = plan_for(config, Snapshot(None)).to_dict()
    assert data["has_changes"] is True
    assert data["steps"][0]["action"] == "create-stack-set"
    assert {s["action"] for s in data["steps"][1:]} == {"create-instances"}


def test_real_template_digest_is_stable(config: Config, tmp_path: Path) -> None:
    body = template_body(build_template(config))
    assert template_digest(body) == template_digest(template_body(build_template(load_config(EXAMPLE_CONFIG))))


# --------------------------------------------------------------------------- the phases, whole values


def instance(account: str, region: str = "us-east-1", **fields: Any) -> DeployedInstance:
    values: dict[str, Any] = {"status": "CURRENT", "detailed_status": "SUCCEEDED", **fields}
    return DeployedInstance(account, region, **values)


def watch_of(config: Config, account_id: str) -> AccountWatch:
    return next(t for t in config.targets() if t.account_id == account_id)


def test_permission_model_change_is_refused(config: Config) -> None:
    check_permission_model(config.stack_set, deployed_stack_set(config))
    with pytest.raises(PlanError, match="cannot change the permission model"):
        check_permission_model(config.stack_set, deployed_stack_set(config, permission_model="SELF_MANAGED"))


def test_stack_set_delta(config: Config) -> None:
    shared = shared_parameters(config)
    assert stack_set_delta(None, DIGEST, shared) == StackSetDelta(exists=False)
    assert stack_set_delta(deployed_stack_set(config), DIGEST, shared) == StackSetDelta(exists=True)
    old = deployed_stack_set(config, parameters={**shared, "Sender": "old@example.com"}, managed_execution=False)
    assert stack_set_delta(old, "other", shared) == StackSetDelta(
        exists=True,
        template_changed=True,
        parameter_changes={"Sender": ("old@example.com", "alerts@example.com")},
        managed_execution_off=True,
    )


def test_classify_account_region_by_region(config: Config) -> None:
    watch = watch_of(config, "111122223333")
    desired = account_overrides(watch)
    right = {"overrides": desired}
    regions = ("us-east-1", "eu-west-1", "eu-central-1", "ap-south-1")
    instances = {
        "us-east-1": instance(watch.account_id, "us-east-1", **right),
        "eu-west-1": instance(watch.account_id, "eu-west-1", status="INOPERABLE", detailed_status="INOPERABLE"),
        "eu-central-1": instance(watch.account_id, "eu-central-1", status="OUTDATED", detailed_status="RUNNING"),
    }
    assert classify_account(watch, regions, instances) == AccountState(
        account_id=watch.account_id,
        name=watch.name,
        overrides=desired,
        missing=("ap-south-1",),
        current=("us-east-1",),
        in_progress=("eu-central-1",),
        inoperable=("eu-west-1",),
    )
    failed = {"us-east-1": instance(watch.account_id, status="OUTDATED", detailed_status="FAILED", **right)}
    assert classify_account(watch, ("us-east-1",), failed) == AccountState(
        account_id=watch.account_id,
        name=watch.name,
        overrides=desired,
        stale=("us-east-1",),
        reason="retry: OUTDATED/FAILED",
    )


def state(account: str, digest_seed: str, **fields: Any) -> AccountState:
    return AccountState(account, account, {"Recipients": digest_seed, "AlertOn": "all"}, **fields)


def test_stack_set_target_prefers_the_largest_current_group() -> None:
    states = [
        state("1", "a", current=("us-east-1",)),
        state("2", "b", current=("us-east-1",)),
        state("3", "b", current=("us-east-1",)),
        state("4", "c", stale=("us-east-1",), reason="recipients changed"),
    ]
    assert choose_stack_set_target(states, ("us-east-1",)) == StackSetTarget(
        ("2", "3"), ("us-east-1",), {"Recipients": "b", "AlertOn": "all"}
    )


def test_stack_set_target_falls_back_to_the_smallest_updated_group_then_to_new_accounts() -> None:
    updating = [
        state("1", "a", stale=("us-east-1",), reason="x"),
        state("2", "a", stale=("us-east-1",), reason="x"),
        state("3", "b", stale=("us-east-1",), reason="x"),
    ]
    assert choose_stack_set_target(updating, ("us-east-1",)) == StackSetTarget(("3",), ("us-east-1",), None)
    new = [state("1", "a", missing=("us-east-1",)), state("2", "b", missing=("us-east-1",))]
    assert choose_stack_set_target(new, ("us-east-1",)) == StackSetTarget(
        ("1", "2"), ("us-east-1",), None, after_creates=True
    )
    busy = [state("1", "a", in_progress=("us-east-1",)), state("2", "a", inoperable=("us-east-1",))]
    assert choose_stack_set_target(busy, ("us-east-1",)) is None


def test_deletions_retain_inoperable_stacks_and_say_which_to_delete_by_hand(config: Config) -> None:
    snapshot = converged(config)
    broken = instance(
        "444455556666",
        status="INOPERABLE",
        detailed_status="INOPERABLE",
        status_reason="AccessDenied",
        stack_id="arn:aws:cloudformation:us-east-1:444455556666:stack/StackSet-loginwatch-1/1",
    )
    orphan = instance("123412341234")
    snapshot = replace(snapshot, instances=(*snapshot.instances, broken, orphan))
    marker = ["m"]
    deletions = plan_deletions(config, snapshot, marker, prune=False)
    assert deletions == Deletions(
        steps=(
            DeleteInstances(
                operation_id("d", None, [marker, "d", ["444455556666"], ("us-east-1",), True]),
                ("444455556666",),
                ("us-east-1",),
                (
                    AccountChange(
                        "444455556666",
                        "old-sandbox",
                        "INOPERABLE (AccessDenied): AWS excludes it from updates; removed from the stack set "
                        "keeping its stack (RetainStacks=true), which must then be deleted by hand",
                    ),
                ),
                True,
            ),
        ),
        kept_orphans=("123412341234",),
        warnings=(
            "account 444455556666 in us-east-1: after this rollout, delete "
            "arn:aws:cloudformation:us-east-1:444455556666:stack/StackSet-loginwatch-1/1 in that account by hand",
        ),
    )


def test_instances_under_an_operation_in_progress_are_waited_for_not_planned(config: Config) -> None:
    snapshot = converged(config)
    instances = tuple(
        replace(i, status="OUTDATED", detailed_status="RUNNING", last_operation_id="console-edit")
        if i.account_id == "111122223333"
        else i
        for i in snapshot.instances
    )
    foreign = PendingOperation("console-edit", "UPDATE", "RUNNING")
    changed = with_recipients(config, {"111122223333": ["new@example.com"]})
    plan = plan_for(changed, replace(snapshot, instances=instances, foreign_operations=(foreign,)))
    assert plan.steps == ()
    assert plan.waiting_accounts == ("111122223333",)
    assert plan.warnings == (
        "operation console-edit (UPDATE, not started by loginwatch-org) is RUNNING on the stack set; rollout "
        "waits for it before planning",
        "account 111122223333: an operation is deploying its instance in us-east-1; it is waited for, not "
        "submitted again",
    )


def test_every_update_stack_set_in_a_plan_names_its_targets(config: Config) -> None:
    snapshot = converged(config)
    new_body = '{"Resources":{"New":{}}}'
    only_orphans = replace(
        snapshot, instances=tuple(replace(i, account_id=f"9{i.account_id[1:]}") for i in snapshot.instances)
    )
    everyone_moves = with_recipients(config, {t.account_id: ["moved@example.com"] for t in config.targets()})
    for desired, state_ in ((config, snapshot), (config, only_orphans), (everyone_moves, snapshot)):
        plan = make_plan(desired, new_body, shared_parameters(desired), state_)
        stack_set_steps = [s for s in plan.steps if isinstance(s, UpdateStackSet)]
        assert len(stack_set_steps) == 1
        assert all(step.accounts and step.regions for step in stack_set_steps)
        assert not {i.account_id for i in only_orphans.instances} & set(stack_set_steps[0].accounts)


def test_groups_larger_than_one_call_are_split(config: Config) -> None:
    many = config_for(2500, groups=1)
    plan = make_plan(many, BODY, shared_parameters(many), Snapshot(None))
    creates = [s for s in plan.steps if isinstance(s, CreateInstances)]
    assert [len(s.accounts) for s in creates] == [1000, 1000, 500]
    assert len({s.operation_id for s in creates}) == 3
