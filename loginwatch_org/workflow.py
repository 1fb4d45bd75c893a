"""The commands' flows, from config to outcome, on clients the caller provides.

Each flow reads the remote state once into a snapshot, lets the pure planner decide, and hands the plan to
the executor: ``plan`` and ``rollout`` share ``prepare`` so what one prints is what the other does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loginwatch_org.aws.executor import ApplyResult, PollPolicy, StackSetExecutor
from loginwatch_org.aws.reader import StackSetReader, call_as_args
from loginwatch_org.config import Config
from loginwatch_org.plan import Plan, account_overrides, make_plan, make_removal_plan
from loginwatch_org.state import Snapshot
from loginwatch_org.template import build_template, shared_parameters, template_body, template_digest


@dataclass
class Clients:
    cloudformation: Any
    organizations: Any | None = None


@dataclass
class Prepared:
    plan: Plan
    snapshot: Snapshot
    body: str
    resumed: list[str] = field(default_factory=list)


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
    """Read, resume anything an interrupted run left pending, and plan."""
    body = template_body(build_template(config))
    snapshot = read_snapshot(config, clients)
    resumed: list[str] = []
    if snapshot.pending_operations and executor is not None:
        resumed = [op.operation_id for op in snapshot.pending_operations]
        if progress:
            progress(f"waiting for {len(resumed)} operation(s) an earlier run submitted")
        executor.wait_for(resumed)
        snapshot = read_snapshot(config, clients)
    plan = make_plan(config, template_digest(body), shared_parameters(config), snapshot, prune=prune)
    return Prepared(plan, snapshot, body, resumed)


def make_executor(
    config: Config,
    clients: Clients,
    *,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    poll: PollPolicy | None = None,
) -> StackSetExecutor:
    body = template_body(build_template(config))
    return StackSetExecutor(clients.cloudformation, config.stack_set, body, progress=progress, sleep=sleep, poll=poll)


def apply(plan: Plan, executor: StackSetExecutor) -> ApplyResult:
    return executor.apply(plan)


def account_statuses(config: Config, snapshot: Snapshot) -> list[AccountStatus]:
    """One row per (account, region): what is deployed beside what the config says."""
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
                    recipients_deployed=overrides.get("Recipients") if overrides else None,
                    recipients_config=wanted.get("Recipients") if wanted else None,
                    alert_on_deployed=overrides.get("AlertOn") if overrides else None,
                    alert_on_config=wanted.get("AlertOn") if wanted else None,
                    last_operation=(instance.last_operation_id or "") if instance else "",
                    drift=(instance.drift_status or "") if instance else "",
                )
            )
    return rows


def detect_drift(config: Config, clients: Clients, executor: StackSetExecutor) -> None:
    operation = clients.cloudformation.detect_stack_set_drift(
        StackSetName=config.stack_set.name, **call_as_args(config.stack_set.call_as)
    )
    executor.wait_for([operation["OperationId"]])


def removal_plan(config: Config, snapshot: Snapshot, accounts: tuple[str, ...], retain_stacks: bool) -> Plan:
    return make_removal_plan(config, snapshot, accounts, retain_stacks=retain_stacks)
