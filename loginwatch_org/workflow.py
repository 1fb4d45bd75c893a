"""The commands' flows, from config to outcome, on clients the caller provides.

Each flow reads the remote state once into a snapshot, lets the pure planner decide, and hands the plan to
the executor: ``plan`` and ``rollout`` share ``prepare`` so what one prints is what the other does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loginwatch_org.aws.executor import AccountResult, DriftResult, OperationResult, PollPolicy, StackSetExecutor
from loginwatch_org.aws.reader import OrganizationScope, StackSetReader
from loginwatch_org.config import AccountWatch, Config
from loginwatch_org.plan import DeleteInstances, Plan, account_overrides, config_line, make_plan, plan_coverage
from loginwatch_org.state import (
    ACTIVE_ACCOUNT_STATE,
    SUSPENDED_ACCOUNT_STATE,
    SUSPENDED_DETAILED_STATUS,
    DeployedInstance,
    Snapshot,
    digest_from_operation_id,
    overrides_digest,
)
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
    # Organizations' Account.State now ("" when the organisation was not read).
    account_state: str = ""

    @property
    def in_sync(self) -> bool:
        return (
            self.status == "CURRENT"
            and self.recipients_deployed == self.recipients_config
            and self.alert_on_deployed == self.alert_on_config
        )

    @property
    def needs_attention(self) -> bool:
        """Not as the config says, drifted, or drift detection could not say (it failed or was stopped). A
        suspended account is not a failure: nobody can sign in to it, and StackSets skips it until it is reinstated."""
        if self.account_state == SUSPENDED_ACCOUNT_STATE:
            return False
        return not self.in_sync or self.drift == "DRIFTED" or self.drift.startswith(DRIFT_NOT_CHECKED)


# The status of an ACTIVE account of the organisation that has no watch and that the config does not list.
UNWATCHED = "UNWATCHED"


def desired_overrides(config: Config) -> dict[str, dict[str, str]]:
    return {watch.account_id: account_overrides(watch) for watch in config.targets()}


def read_snapshot(config: Config, clients: Clients, *, verify: bool = False) -> Snapshot:
    """What is deployed, and the organisation's accounts in the stack set's scope. ``verify``: describe every
    instance instead of trusting the overrides digest its LastOperationId claims."""
    reader = StackSetReader(
        clients.cloudformation, call_as=config.stack_set.call_as, organizations=clients.organizations
    )
    desired = desired_overrides(config)
    return reader.read(config.stack_set.name, desired, scope=organization_scope(config), verify=verify)


def organization_scope(config: Config) -> OrganizationScope:
    """The accounts the stack set reaches: under its OUs (service-managed), or the whole organisation."""
    settings = config.stack_set
    default = config.default_watch("000000000000", "")
    return OrganizationScope(
        organizational_units=tuple(settings.organizational_units) if settings.permission_model == "service-managed"
        else None,
        default_overrides=account_overrides(default) if default is not None else None,
        listed=frozenset(account.id for account in config.accounts),
    )  # fmt: skip


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
    just run), an account the detection failed for shows why instead of a stale drift status. Accounts of the
    organisation the config does not list get rows too (UNWATCHED when nothing watches them), and an account
    Organizations reports SUSPENDED says so instead of failing."""
    detection_failed = {(a.account_id, a.region): a for a in (drift.failed if drift else ())}
    names = config.account_names()
    desired = desired_overrides(config)
    coverage = plan_coverage(config, snapshot)
    unlisted = {watch.account_id: watch for watch in coverage.unlisted}
    for watch in coverage.unlisted:
        names.setdefault(watch.account_id, watch.name)
        if watch.recipients:
            desired.setdefault(watch.account_id, account_overrides(watch))
    organization = snapshot.organization
    rows: list[AccountStatus] = []
    deployed = snapshot.instances_by_account()
    order = [*desired, *(a for a in unlisted if a not in desired)]
    order += sorted(a for a in deployed if a not in desired and a not in unlisted)
    for account_id in order:
        wanted = desired.get(account_id)
        instances = deployed.get(account_id, {})
        shown = wanted is not None or account_id in unlisted
        regions = sorted(set(instances) | set(config.stack_set.regions if shown else ()))
        state = (organization.state_of(account_id) or "") if organization is not None else ""
        for region in regions:
            instance = instances.get(region)
            overrides: dict[str, str] | None = None
            reason = (instance.status_reason or "") if instance else ""
            if instance is not None:
                if instance.overrides is not None:
                    overrides = dict(instance.overrides)
                    reason = _claim_mismatch(instance) or reason
                elif wanted is not None and instance.overrides_digest is not None:
                    # The reader describes every instance whose digest differs, so a digest left here matches.
                    overrides = dict(wanted)
            status = instance.status if instance else "MISSING"
            if state == SUSPENDED_ACCOUNT_STATE:
                status = SUSPENDED_ACCOUNT_STATE
                reason = "SUSPENDED in the organisation: StackSets skips it until it is reinstated"
            elif account_id in unlisted and (instance is None or wanted is None):
                status = status if instance else UNWATCHED
                reason = _unlisted_reason(config, unlisted[account_id], instance is not None)
            elif instance is not None and instance.suspended and state == ACTIVE_ACCOUNT_STATE:
                reason = "skipped while the account was suspended; it is ACTIVE again: the next rollout retries it"
            rows.append(
                AccountStatus(
                    account_id=account_id,
                    name=names.get(account_id, ""),
                    region=region,
                    status=status,
                    detailed_status=(instance.detailed_status or "") if instance else "",
                    reason=reason,
                    recipients_deployed=overrides.get(RECIPIENTS_PARAMETER) if overrides else None,
                    recipients_config=wanted.get(RECIPIENTS_PARAMETER) if wanted else None,
                    alert_on_deployed=overrides.get(ALERT_POLICY_PARAMETER) if overrides else None,
                    alert_on_config=wanted.get(ALERT_POLICY_PARAMETER) if wanted else None,
                    last_operation=(instance.last_operation_id or "") if instance else "",
                    drift=_drift_column(
                        instance.drift_status if instance else None, detection_failed.get((account_id, region))
                    ),
                    account_state=state,
                )
            )
    return rows


def watched_accounts(config: Config, snapshot: Snapshot) -> set[str]:
    """Accounts whose rows decide status's exit code: the config's (less those the organisation lacks), those
    new_accounts: defaults watches, and the unwatched ones, which are the reason status fails."""
    coverage = plan_coverage(config, snapshot)
    listed = {t.account_id for t in config.targets()} - snapshot.accounts_outside_organization
    deployed = snapshot.instances_by_account()
    unwatched = {w.account_id for w in coverage.unlisted if w.account_id not in deployed}
    return listed | {t.account_id for t in coverage.targets} | unwatched


def _unlisted_reason(config: Config, watch: AccountWatch, has_instance: bool) -> str:
    line = config_line(watch.account_id, watch.name)
    if has_instance:
        return f"not in the config; its instance is kept (--prune deletes it); to watch it, add under accounts: {line}"
    if watch.recipients:
        return (
            "not in the config: the next rollout watches it with the default recipients and policy "
            f"(new_accounts: defaults); to name its recipients, add under accounts: {line}"
        )
    return f"not in the config and new_accounts is report: nothing watches it; add under accounts: {line}"


def _claim_mismatch(instance: DeployedInstance) -> str:
    """A described instance whose LastOperationId claims overrides it does not have (``status --verify``): someone
    reused this tool's OperationId format, or changed the instance after."""
    claimed = digest_from_operation_id(instance.last_operation_id)
    if claimed is None or instance.overrides is None or claimed == overrides_digest(instance.overrides):
        return ""
    return (
        f"its last operation {instance.last_operation_id} claims other overrides than the instance has: "
        "the real overrides are shown"
    )


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
        if row.account_state == SUSPENDED_ACCOUNT_STATE or (
            not row.account_state and row.detailed_status == SUSPENDED_DETAILED_STATUS
        ):
            # Suspended now (or, without an organisation reading, when the operation ran): skipped, not failed.
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
