"""The engine under real StackSets conditions, each modelled by the StackSets double after the API reference:
INOPERABLE instances, operations that are not ours, drift detection's outcome, eventual consistency,
StaleRequestException, targets of every UpdateStackSet, limits, and Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from loginwatch_org.aws import session
from loginwatch_org.aws.executor import ApplyResult
from loginwatch_org.cli import app
from loginwatch_org.config import Config
from loginwatch_org.errors import RolloutInterrupted
from loginwatch_org.plan import DeleteInstances, Plan, PlanError, UpdateInstances, UpdateStackSet
from loginwatch_org.templates import shared_parameters
from loginwatch_org.workflow import (
    Prepared,
    account_statuses,
    detect_drift,
    drift_problems,
    make_executor,
    prepare,
)
from tests.doubles.clients import double_clients, staging_clients
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, account_ids, config_for, organization, with_recipients, without_accounts

COUNT = 12
ACCOUNTS = account_ids(COUNT)


class Harness:
    def __init__(self, double: StackSetsDouble) -> None:
        self.double = double
        self.clients = staging_clients(double)

    def executor(self, config: Config) -> Any:
        return make_executor(config, self.clients, sleep=lambda _seconds: None)

    def prepare(self, config: Config, **kwargs: Any) -> Prepared:
        return prepare(config, self.clients, executor=self.executor(config), **kwargs)

    def plan_only(self, config: Config) -> Prepared:
        return prepare(config, self.clients)

    def rollout(self, config: Config, **kwargs: Any) -> ApplyResult:
        return self.executor(config).apply(self.prepare(config, **kwargs).plan)

    def instances(self) -> dict[str, dict[str, Any]]:
        return self.double.instances("loginwatch")


def harness(**kwargs: Any) -> Harness:
    return Harness(StackSetsDouble(organization(COUNT), MANAGEMENT_ACCOUNT, polls_per_state=1, **kwargs))


def disabled(config: Config, account_id: str) -> Config:
    accounts = [a.model_copy(update={"enabled": a.id != account_id}) for a in config.accounts]
    return config.model_copy(update={"accounts": accounts})


def with_sender(config: Config, sender: str) -> Config:
    return config.model_copy(update={"delivery": config.delivery.model_copy(update={"sender": sender})})


def update_stack_set_calls(double: StackSetsDouble) -> list[dict[str, Any]]:
    return [kwargs for name, kwargs in double.calls if name == "update_stack_set"]


def names_targets(kwargs: dict[str, Any]) -> bool:
    accounts = kwargs.get("Accounts") or (kwargs.get("DeploymentTargets") or {}).get("Accounts")
    return bool(accounts) and bool(kwargs.get("Regions"))


# --------------------------------------------------------------------------- INOPERABLE instances


def test_inoperable_instance_of_a_disabled_account_is_removed_keeping_its_stack() -> None:
    h = harness()
    config = config_for(COUNT, groups=3)
    h.rollout(config)
    broken = ACCOUNTS[4]
    h.double.failing_accounts[broken] = "ResourceLogicalId:Topic, ResourceStatusReason:AccessDenied"
    off = disabled(config, broken)
    first = h.rollout(off)
    assert [a.account_id for a in first.failed_accounts] == [broken]
    assert h.instances()[broken]["status"] == "INOPERABLE"
    stack_id = h.instances()[broken]["stack_id"]

    # The stack still cannot be deleted. AWS documents the way out: RetainStacks=true, then delete it by hand.
    prepared = h.prepare(off)
    (step,) = prepared.plan.steps
    assert isinstance(step, DeleteInstances)
    assert (step.accounts, step.retain_stacks) == ((broken,), True)
    assert "INOPERABLE" in step.changes[0].reason and "RetainStacks=true" in step.changes[0].reason
    assert any(stack_id in warning and "by hand" in warning for warning in prepared.plan.warnings)
    result = h.executor(off).apply(prepared.plan)
    assert result.failed_accounts == []
    assert broken not in h.instances()
    assert not h.prepare(off).plan.has_changes


def test_inoperable_instance_of_a_watched_account_is_never_retried_with_an_update() -> None:
    h = harness()
    config = config_for(COUNT, groups=3)
    h.rollout(config)
    broken = ACCOUNTS[2]
    h.double.failing_accounts[broken] = "AccessDenied"
    h.rollout(disabled(config, broken))
    assert h.instances()[broken]["status"] == "INOPERABLE"
    # Enabled again: AWS excludes the INOPERABLE instance from updates, so an update would fail forever.
    prepared = h.prepare(with_sender(config, "alerts@corp.example"))
    for step in prepared.plan.steps:
        if isinstance(step, UpdateStackSet | UpdateInstances):
            assert broken not in step.accounts
    (delete,) = [s for s in prepared.plan.steps if isinstance(s, DeleteInstances)]
    assert delete.accounts == (broken,) and delete.retain_stacks
    assert any("next rollout deploys the watch again" in w for w in prepared.plan.warnings)


def test_removal_of_an_inoperable_instance_retains_its_stack() -> None:
    from loginwatch_org.plan import make_removal_plan

    h = harness()
    config = config_for(COUNT, groups=2)
    h.rollout(config)
    broken = ACCOUNTS[1]
    h.double.failing_accounts[broken] = "AccessDenied"
    h.rollout(disabled(config, broken))
    removal = make_removal_plan(config, h.prepare(config).snapshot)
    deletes = [s for s in removal.steps if isinstance(s, DeleteInstances)]
    assert {(s.retain_stacks, s.accounts == (broken,)) for s in deletes} == {(False, False), (True, True)}
    h.executor(config).apply(removal)
    with pytest.raises(KeyError):
        h.instances()  # every instance and then the stack set are gone


# --------------------------------------------------------------------------- UpdateStackSet targets


def test_no_update_stack_set_is_sent_without_targets_even_when_no_account_is_current() -> None:
    h = harness()
    old = config_for(COUNT, groups=2)
    h.rollout(without_accounts(old, set(ACCOUNTS[6:])))
    orphans = set(ACCOUNTS[:6])
    before = {a: i["last_operation_id"] for a, i in h.instances().items()}
    # Every watched account is new, the kept orphans are the only instances, and the template changes.
    fresh = with_sender(without_accounts(old, orphans), "alerts@corp.example")
    h.double.reset_calls()
    result = h.rollout(fresh)
    assert result.failed_accounts == []
    calls = update_stack_set_calls(h.double)
    assert calls and all(names_targets(kwargs) for kwargs in calls)
    after = h.instances()
    assert {a: after[a]["last_operation_id"] for a in orphans} == before, "kept orphans were updated"
    assert all(after[a]["status"] == "CURRENT" for a in ACCOUNTS[6:])
    assert not h.prepare(fresh).plan.has_changes


@pytest.mark.parametrize(
    "scenario",
    ["template", "template+everyone-moves", "template+new-region", "template+orphans", "template+disabled"],
)
def test_every_update_stack_set_names_its_targets(scenario: str) -> None:
    h = harness()
    config = config_for(COUNT, groups=3)
    h.rollout(config)
    changed = with_sender(config, "alerts@corp.example")
    if "everyone-moves" in scenario:
        changed = changed.model_copy(
            update={"accounts": [a.model_copy(update={"recipients": ["x@example.com"]}) for a in changed.accounts]}
        )
    if "new-region" in scenario:
        changed = changed.model_copy(
            update={"stack_set": changed.stack_set.model_copy(update={"regions": ["us-east-1", "eu-west-1"]})}
        )
    if "orphans" in scenario:
        changed = without_accounts(changed, set(ACCOUNTS[:4]))
    if "disabled" in scenario:
        changed = disabled(changed, ACCOUNTS[0])
    h.double.reset_calls()
    assert h.rollout(changed).failed_accounts == []
    calls = update_stack_set_calls(h.double)
    assert calls and all(names_targets(kwargs) for kwargs in calls)
    assert not h.prepare(changed).plan.has_changes


def test_executor_refuses_an_update_stack_set_without_targets_before_any_write() -> None:
    h = harness()
    config = config_for(COUNT, groups=2)
    h.rollout(config)
    plan = Plan(
        "loginwatch",
        (UpdateStackSet("loginwatch", "lw-s-none-0000000000000000", (), (), {}, ("the template changed",), {}),),
    )
    h.double.reset_calls()
    with pytest.raises(PlanError, match="without target accounts"):
        h.executor(config).apply(plan)
    assert h.double.count(kind="write") == 0


# --------------------------------------------------------------------------- operations that are not ours


def foreign_update(h: Harness, account: str) -> str:
    """Somebody updates one instance from the console: an operation with an id of theirs."""
    return str(
        h.double.client().update_stack_instances(
            StackSetName="loginwatch",
            DeploymentTargets={
                "OrganizationalUnitIds": ["r-ab12"],
                "Accounts": [account],
                "AccountFilterType": "INTERSECTION",
            },
            Regions=["us-east-1"],
            OperationId="console-edit-1",
        )["OperationId"]
    )


def test_plan_leaves_an_instance_under_a_foreign_operation_alone_and_says_so() -> None:
    h = harness()
    config = config_for(COUNT, groups=3)
    h.rollout(config)
    busy = ACCOUNTS[3]
    foreign = foreign_update(h, busy)
    prepared = h.plan_only(config)
    assert not prepared.plan.has_changes, "a duplicate update would only queue behind the foreign one"
    assert prepared.plan.waiting_accounts == (busy,)
    assert any(foreign in w and "not started by loginwatch-org" in w for w in prepared.plan.warnings)
    assert prepared.snapshot.pending_operations == ()


def test_rollout_waits_for_a_foreign_operation_before_planning() -> None:
    h = harness()
    config = config_for(COUNT, groups=3)
    h.rollout(config)
    foreign = foreign_update(h, ACCOUNTS[3])
    prepared = h.prepare(config)
    assert [op.operation_id for op in prepared.waited_for] == [foreign]
    assert prepared.resumed == []
    assert {op["status"] for op in h.double.operations("loginwatch")} == {"SUCCEEDED"}
    assert prepared.snapshot.foreign_operations == ()
    assert not prepared.plan.has_changes


@pytest.fixture
def cli_double(monkeypatch: pytest.MonkeyPatch) -> StackSetsDouble:
    fake = StackSetsDouble(organization(COUNT), MANAGEMENT_ACCOUNT, polls_per_state=1)

    monkeypatch.setattr(session, "client", double_clients(fake))
    monkeypatch.setattr("time.sleep", lambda _seconds: None)
    return fake


def write_config(tmp_path: Path, config: Config) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False))
    return path


def test_plan_detailed_exitcode_is_0_when_only_a_foreign_operation_is_pending(
    cli_double: StackSetsDouble, tmp_path: Path
) -> None:
    path = write_config(tmp_path, config_for(COUNT, groups=3))
    runner = CliRunner()
    assert runner.invoke(app, ["rollout", "-c", str(path), "--yes"]).exit_code == 0
    foreign_update(Harness(cli_double), ACCOUNTS[5])
    result = runner.invoke(app, ["plan", "-c", str(path), "--detailed-exitcode"])
    assert result.exit_code == 0, result.output
    assert "not started by loginwatch-org" in result.output


# --------------------------------------------------------------------------- drift detection


def test_drift_detection_uses_the_configs_preferences_and_reports_failed_accounts() -> None:
    h = harness()
    tolerant = {"operation_preferences": {"failure_tolerance_percentage": 50}}
    config = config_for(COUNT, groups=3, stack_set_extra=tolerant)
    h.rollout(config)
    unreachable = ACCOUNTS[7]
    h.double.failing_accounts[unreachable] = "Role AWSCloudFormationStackSetExecutionRole cannot be assumed"
    h.double.drifted_accounts.add(ACCOUNTS[8])
    result = detect_drift(config, h.clients, h.executor(config))
    (drift_op,) = [op for op in h.double.operations("loginwatch") if op["action"] == "DETECT_DRIFT"]
    assert drift_op["preferences"]["FailureTolerancePercentage"] == 50
    assert drift_op["preferences"]["MaxConcurrentPercentage"] == 50
    assert (result.status, result.detection_status) == ("SUCCEEDED", "PARTIAL_SUCCESS")
    assert [(a.account_id, a.status) for a in result.failed] == [(unreachable, "FAILED")]
    assert not result.complete
    rows = {r.account_id: r for r in account_statuses(config, h.prepare(config).snapshot, result)}
    assert rows[unreachable].drift.startswith("DETECTION FAILED") and rows[unreachable].needs_attention
    assert rows[ACCOUNTS[8]].drift == "DRIFTED"
    assert rows[ACCOUNTS[0]].drift == "IN_SYNC" and not rows[ACCOUNTS[0]].needs_attention
    assert any(unreachable in problem for problem in drift_problems(result))


def test_drift_detection_that_fails_is_reported_not_ignored(cli_double: StackSetsDouble, tmp_path: Path) -> None:
    config = config_for(COUNT, groups=3, stack_set_extra={"operation_preferences": {"failure_tolerance_percentage": 0}})
    path = write_config(tmp_path, config)
    runner = CliRunner()
    assert runner.invoke(app, ["rollout", "-c", str(path), "--yes"]).exit_code == 0
    cli_double.failing_accounts[ACCOUNTS[0]] = "Access denied"
    result = runner.invoke(app, ["status", "-c", str(path), "--drift"])
    assert result.exit_code == 1
    assert "drift detection" in result.output and "FAILED" in result.output


def test_rollout_waits_for_a_drift_detection_started_elsewhere() -> None:
    h = harness()
    config = config_for(COUNT, groups=3)
    h.rollout(config)
    detection = h.double.client().detect_stack_set_drift(StackSetName="loginwatch")["OperationId"]
    prepared = h.prepare(with_sender(config, "alerts@corp.example"))
    assert [op.operation_id for op in prepared.waited_for] == [detection]
    assert h.executor(config).apply(prepared.plan).failed_accounts == []


# --------------------------------------------------------------------------- eventual consistency


def test_results_still_pending_after_the_operation_succeeded_are_read_again_not_failures() -> None:
    h = harness(stale_reads=2)
    config = config_for(COUNT, groups=3)
    result = h.rollout(config)
    assert result.failed_accounts == []
    assert {op.status for op in result.operations} == {"SUCCEEDED"}


def test_results_that_never_settle_are_noted_and_left_to_the_instances_status() -> None:
    h = harness(stale_reads=50)
    config = config_for(COUNT, groups=2)
    result = h.rollout(config)
    assert result.failed_accounts == []
    assert any("still lists" in note for note in result.notes)


def test_pending_operations_are_found_on_any_page_of_the_operation_list() -> None:
    h = harness(page_size=2)
    config = config_for(COUNT, groups=4)
    h.rollout(config)
    # An interrupted run left an operation of ours queued; the list is paged two at a time in no given order.
    changed = with_sender(config, "alerts@corp.example")
    plan = h.prepare(changed).plan
    h.double.interrupt_after(1, applied=True)
    with pytest.raises(RolloutInterrupted) as interrupted:
        h.executor(changed).apply(plan)
    assert interrupted.value.submitted == ()
    pending = [op["operation_id"] for op in h.double.operations("loginwatch") if op["status"] == "QUEUED"]
    assert len(pending) == 1
    prepared = h.prepare(changed)
    assert [op.operation_id for op in prepared.resumed] == pending


def test_a_finished_operation_the_list_still_shows_running_is_not_waited_for_again() -> None:
    h = harness()
    config = config_for(COUNT, groups=2)
    h.rollout(config)
    h.double.stale_reads = 3
    foreign = foreign_update(h, ACCOUNTS[0])
    h.double.finish_all()  # the list lags: it still shows the operation RUNNING
    listed = h.double.client().list_stack_set_operations(StackSetName="loginwatch")["Summaries"]
    assert {s["OperationId"]: s["Status"] for s in listed}[foreign] == "RUNNING"
    snapshot = h.plan_only(config).snapshot
    assert snapshot.foreign_operations == ()


# --------------------------------------------------------------------------- StaleRequestException


@pytest.mark.parametrize("method", ["create_stack_instances", "update_stack_set", "delete_stack_instances"])
def test_stale_request_is_retried_like_operation_in_progress(method: str) -> None:
    h = harness()
    config = config_for(COUNT, groups=2)
    if method != "create_stack_instances":
        h.rollout(config)
    target = config
    if method == "update_stack_set":
        target = with_sender(config, "alerts@corp.example")
    if method == "delete_stack_instances":
        target = disabled(config, ACCOUNTS[0])
    h.double.fail_next(method, "StaleRequestException", times=2)
    assert h.rollout(target).failed_accounts == []
    assert not h.prepare(target).plan.has_changes


# --------------------------------------------------------------------------- limits


def test_more_than_50_organizational_units_is_a_config_error() -> None:
    ous = [f"ou-ab12-{index:08d}" for index in range(51)]
    with pytest.raises(ValidationError, match="at most 50"):
        config_for(COUNT, stack_set_extra={"organizational_units": ous})
    config_for(COUNT, stack_set_extra={"organizational_units": ous[:50]})


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("interrupt_at", [2, 4, 7, 12])
def test_ctrl_c_names_exactly_the_operations_aws_accepted(interrupt_at: int) -> None:
    h = harness()
    config = config_for(COUNT, groups=4)
    plan = h.prepare(config).plan
    h.double.interrupt_after(interrupt_at)
    with pytest.raises(RolloutInterrupted) as interrupted:
        h.executor(config).apply(plan)
    accepted = tuple(op["operation_id"] for op in h.double.operations("loginwatch"))
    assert interrupted.value.submitted == accepted
    assert interrupted.value.exit_code == 130
    # Rerunning waits for them and converges without submitting any twice.
    assert h.rollout(config).failed_accounts == []
    assert not h.prepare(config).plan.has_changes


def test_plan_detailed_exitcode_is_2_while_an_operation_of_ours_is_pending(
    cli_double: StackSetsDouble, tmp_path: Path
) -> None:
    config = config_for(COUNT, groups=3)
    path = write_config(tmp_path, config)
    runner = CliRunner()
    assert runner.invoke(app, ["rollout", "-c", str(path), "--yes"]).exit_code == 0
    # An interrupted rollout left its operation queued: the change is on its way, not done.
    h = Harness(cli_double)
    changed = with_sender(config, "alerts@corp.example")
    plan = h.prepare(changed).plan
    cli_double.interrupt_after(1, applied=True)
    with pytest.raises(RolloutInterrupted):
        h.executor(changed).apply(plan)
    path = write_config(tmp_path, changed)
    result = runner.invoke(app, ["plan", "-c", str(path), "--detailed-exitcode"])
    assert result.exit_code == 2, result.output
    assert "still pending" in result.output
    assert runner.invoke(app, ["rollout", "-c", str(path), "--yes"]).exit_code == 0
    assert runner.invoke(app, ["plan", "-c", str(path), "--detailed-exitcode"]).exit_code == 0


def test_ctrl_c_while_waiting_for_somebody_elses_operation_claims_nothing_as_ours() -> None:
    h = harness()
    config = config_for(COUNT, groups=2)
    h.rollout(config)
    foreign_update(h, ACCOUNTS[1])
    executor = h.executor(config)
    h.double.interrupt_after(1)
    with pytest.raises(RolloutInterrupted) as interrupted:
        executor.wait_for(["console-edit-1"])
    assert interrupted.value.submitted == ()


def test_new_watches_go_all_at_once_and_changes_to_running_ones_in_halves() -> None:
    h = harness()
    config = config_for(COUNT, groups=1)
    h.rollout(config)
    h.rollout(with_recipients(config, {ACCOUNTS[0]: ["moved@example.com"]}))
    concurrency = {
        op["action"]: op["preferences"]["MaxConcurrentPercentage"] for op in h.double.operations("loginwatch")
    }
    assert concurrency == {"CREATE": 100, "UPDATE": 50}


def test_managed_execution_is_sent_only_to_turn_it_on() -> None:
    h = harness()
    config = config_for(COUNT, groups=1)
    h.rollout(config)
    h.double.calls.clear()
    h.rollout(with_sender(config, "security-alerts@example.com"))  # a shared parameter: an UpdateStackSet
    (update,) = [kwargs for method, kwargs in h.double.calls if method == "update_stack_set"]
    assert "ManagedExecution" not in update

    # A stack set whose managed execution was turned off by hand gets it back, with the reason in the plan.
    h.double.client().update_stack_set(
        StackSetName="loginwatch", UsePreviousTemplate=True, ManagedExecution={"Active": False},
        Parameters=[{"ParameterKey": key, "UsePreviousValue": True} for key in shared_parameters(config)],
        Capabilities=["CAPABILITY_IAM"],
    )  # fmt: skip
    h.double.finish_all()
    updates = [step for step in h.prepare(config).plan.steps if isinstance(step, UpdateStackSet)]
    assert [step.enable_managed_execution for step in updates] == [True]
    assert any("managed execution is off" in reason for reason in updates[0].reasons)
    h.double.calls.clear()
    h.rollout(config)
    (update,) = [kwargs for method, kwargs in h.double.calls if method == "update_stack_set"]
    assert update["ManagedExecution"] == {"Active": True}
