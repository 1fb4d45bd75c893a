"""The commands' flows, from config to outcome, on clients the caller provides.

Each flow reads the remote state once into a snapshot, lets the pure planner decide, and hands the plan to
the executor: ``plan`` and ``rollout`` share ``prepare`` so what one prints is what the other does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loginwatch_org.aws.executor import AccountResult, DriftResult, OperationResult, PollPolicy, StackSetExecutor
from loginwatch_org.aws.reader import StackSetReader
from loginwatch_org.config import Config
from loginwatch_org.plan import DeleteInstances, Plan, account_overrides, make_plan
from loginwatch_org.state import SUSPENDED_DETAILED_STATUS, Snapshot
from loginwatch_org.templates import (
    ALERT_POLICY_PARAMETER,
    RECIPIENTS_PARAMETER,
    build_template,
    shared_parameters,
    template_body,
)


@dataclass
class Clients:
    cloudformation: Any
    organizations: Any | None = None


@dataclass
class Prepared:
    plan: Plan
    snapshot: Snapshot
    # Operations an interrupted run had submitted, waited for before planning, with their outcome.
    resumed: list[OperationResult] = field(default_factory=list)
    # Operations somebody else had started (console, another tool, drift detection), waited for likewise.
    waited_for: list[OperationResult] = field(default_factory=list)


@dataclass(frozen=True)
class AccountStatus:
    account_id: str
    name: str
    region: str
    status: str
    detailed_status: str
    reason: str
    recipients_deployed: str | None
    recipients_config: str | None
    alert_on_deployed: str | None
    alert_on_config: str | None
    last_operation: str
    drift: str

    @property
    def in_sync(self) -> bool:
        return (
            self.status == "CURRENT"
            and self.recipients_deployed == self.recipients_config
            and self.alert_on_deployed == self.alert_on_config
        )

    @property
    def needs_attention(self) -> bool:
        """Not as the config says, drifted, or drift detection could not say (it failed or was stopped)."""
        return not self.in_sync or self.drift == "DRIFTED" or self.drift.startswith(DRIFT_NOT_CHECKED)


def desired_overrides(config: Config) -> dict[str, dict[str, str]]:
    return {watch.account_id: account_overrides(watch) for watch in config.targets()}


def read_snapshot(config: Config, clients: Clients) -> Snapshot:
    reader = StackSetReader(
        clients.cloudformation, call_as=config.stack_set.call_as, organizations=clients.organizations
    )
    return reader.read(config.stack_set.name, desired_overrides(config))


def prepare(
    config: Config,
    clients: Clients,
    *,
    prune: bool = False,
    executor: StackSetExecutor | None = None,
    progress: Callable[[str], None] | None = None,
) -> Prepared:
    """Read, wait for every operation in progress on the stack set (an interrupted run's, or anybody else's:
    the console, another tool, drift detection), and plan from what they left. Without an executor (``plan``)
    nothing is waited for: the planner leaves instances that an operation is deploying alone and says so."""
    body = template_body(build_template(config))
    snapshot = read_snapshot(config, clients)
    resumed: list[OperationResult] = []
    waited_for: list[OperationResult] = []
    if executor is not None and (snapshot.pending_operations or snapshot.foreign_operations):
        ours = [op.operation_id for op in snapshot.pending_operations]
        theirs = [op.operation_id for op in snapshot.foreign_operations]
        if progress:
            if ours:
                progress(f"waiting for {len(ours)} operation(s) an earlier run submitted")
            if theirs:
                progress(f"waiting for {len(theirs)} operation(s) started outside loginwatch-org: {', '.join(theirs)}")
        finished = executor.wait_for([*ours, *theirs])
        resumed = [op for op in finished if op.operation_id in ours]
        waited_for = [op for op in finished if op.operation_id not in ours]
        snapshot = read_snapshot(config, clients)
    plan = make_plan(config, body, shared_parameters(config), snapshot, prune=prune)
    return Prepared(plan, snapshot, resumed, waited_for)


def make_executor(
    config: Config,
    clients: Clients,
    *,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    poll: PollPolicy | None = None,
) -> StackSetExecutor:
    return StackSetExecutor(clients.cloudformation, config.stack_set, progress=progress, sleep=sleep, poll=poll)


# The drift column of an account whose drift detection failed or was stopped before reaching it.
DRIFT_NOT_CHECKED = "DETECTION "


def account_statuses(config: Config, snapshot: Snapshot, drift: DriftResult | None = None) -> list[AccountStatus]:
    """One row per (account, region): what is deployed beside what the config says. With ``drift`` (a detection
    just run), an account the detection failed for shows why instead of a stale drift status."""
    detection_failed = {(a.account_id, a.region): a for a in (drift.failed if drift else ())}
    names = config.account_names()
    desired = desired_overrides(config)
    rows: list[AccountStatus] = []
    seen: set[str] = set()
    deployed = snapshot.instances_by_account()
    for account_id in [*desired, *sorted(a for a in deployed if a not in desired)]:
        seen.add(account_id)
        wanted = desired.get(account_id)
        instances = deployed.get(account_id, {})
        regions = sorted(set(instances) | set(config.stack_set.regions if wanted else ()))
        for region in regions:
            instance = instances.get(region)
            overrides: dict[str, str] | None = None
            if instance is not None:
                if instance.overrides is not None:
                    overrides = dict(instance.overrides)
                elif wanted is not None and instance.overrides_digest is not None:
                    # The reader describes every instance whose digest differs, so a digest left here matches.
                    overrides = dict(wanted)
            rows.append(
                AccountStatus(
                    account_id=account_id,
                    name=names.get(account_id, ""),
                    region=region,
                    status=instance.status if instance else "MISSING",
                    detailed_status=(instance.detailed_status or "") if instance else "",
                    reason=(instance.status_reason or "") if instance else "",
                    recipients_deployed=overrides.get(RECIPIENTS_PARAMETER) if overrides else None,
                    recipients_config=wanted.get(RECIPIENTS_PARAMETER) if wanted else None,
                    alert_on_deployed=overrides.get(ALERT_POLICY_PARAMETER) if overrides else None,
                    alert_on_config=wanted.get(ALERT_POLICY_PARAMETER) if wanted else None,
                    last_operation=(instance.last_operation_id or "") if instance else "",
                    drift=_drift_column(
                        instance.drift_status if instance else None, detection_failed.get((account_id, region))
                    ),
                )
            )
    return rows


def _drift_column(drift_status: str | None, failed: AccountResult | None) -> str:
    if failed is not None:
        return f"{DRIFT_NOT_CHECKED}{failed.status}" + (f": {failed.reason}" if failed.reason else "")
    return drift_status or ""


def detect_drift(config: Config, clients: Clients, executor: StackSetExecutor) -> DriftResult:
    """Run drift detection (it queues behind whatever is in progress on the stack set) and return its outcome."""
    reader = StackSetReader(clients.cloudformation, call_as=config.stack_set.call_as)
    newest = reader.newest_operation(config.stack_set.name)
    if newest is None and read_snapshot(config, clients).stack_set is None:
        return DriftResult("", "NOT_RUN", "NOT_RUN")
    return executor.detect_drift(newest or "first")


def drift_problems(result: DriftResult) -> list[str]:
    """What a user must know about a drift detection that did not check every instance."""
    problems: list[str] = []
    if result.status not in ("SUCCEEDED", "NOT_RUN"):
        problems.append(
            f"drift detection {result.operation_id} ended {result.status}"
            + (f" ({result.reason})" if result.reason else "")
            + "; instances it did not reach show their previous drift status"
        )
    elif result.detection_status not in ("COMPLETED", "NOT_RUN"):
        problems.append(f"drift detection {result.operation_id} was {result.detection_status}")
    problems.extend(
        f"drift detection failed for {a.account_id} in {a.region}: {a.status}" + (f" ({a.reason})" if a.reason else "")
        for a in result.failed
    )
    return problems


def unconverged(config: Config, plan: Plan, snapshot: Snapshot) -> dict[str, str]:
    """Accounts a rollout left different from the plan's intent, with why: a watched account that is not
    current with the config's overrides, or an account whose instances were to be deleted but remain."""
    problems: dict[str, str] = {}
    skipped = set(plan.skipped_accounts)
    for row in account_statuses(config, snapshot):
        if row.recipients_config is None or row.account_id in skipped or row.in_sync:
            continue
        if row.detailed_status == SUSPENDED_DETAILED_STATUS:
            continue
        problems[row.account_id] = row.reason or (
            "no stack instance: is the account under the stack set's organizational units?"
            if row.status == "MISSING"
            else f"{row.status}, overrides differ from the config"
        )
    deployed = snapshot.instances_by_account()
    for step in plan.steps:
        if isinstance(step, DeleteInstances):
            for account_id in step.accounts:
                left = sorted(set(step.regions) & set(deployed.get(account_id, {})))
                if left:
                    problems[account_id] = f"instances in {', '.join(left)} were to be deleted but remain"
    return problems
