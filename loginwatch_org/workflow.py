"""The commands' flows, from config to outcome, on clients the caller provides.

Each flow reads the remote state once into a snapshot, lets the pure planner decide, and hands the plan to
the executor: ``plan`` and ``rollout`` share ``prepare`` so what one prints is what the other does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from loginwatch_org import suggest
from loginwatch_org.aws.executor import (
    AccountResult,
    ApplyResult,
    DriftResult,
    OperationResult,
    PollPolicy,
    StackSetExecutor,
)
from loginwatch_org.aws.organization import OrganizationReader, OrganizationScope
from loginwatch_org.aws.reader import StackSetReader
from loginwatch_org.aws.staging import TemplateStager
from loginwatch_org.aws.workers import worker_pool
from loginwatch_org.config import AccountWatch, Config
from loginwatch_org.cost import UnitCost
from loginwatch_org.errors import RolloutInterrupted
from loginwatch_org.plan import (
    FORWARDERS_UNIT,
    MAIL_UNIT_KEY,
    MANAGEMENT_UNIT_KEY,
    WATCH_UNIT,
    DeleteInstances,
    Plan,
    StackSetUnit,
    account_overrides,
    classify_accounts,
    config_line,
    forwarders_unit,
    make_plan,
    make_removal_plan,
    plan_coverage,
    watch_unit,
)
from loginwatch_org.stack_plan import (
    MAIL_UNIT,
    MANAGEMENT_UNIT,
    StackPlan,
    mail_stack_keys,
    make_mail_plan,
    make_mail_removal_plan,
    make_management_plan,
    make_management_removal_plan,
    management_stack_keys,
    stack_label,
)
from loginwatch_org.stack_state import DeployedStack
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
    REGISTRY,
    TemplateSpec,
    shared_parameters,
    template_body,
)
from loginwatch_org.units import DeploymentPlan, UnitPlan, selected_units

if TYPE_CHECKING:
    from loginwatch_org.aws.session import AwsTarget


@dataclass
class Clients:
    cloudformation: Any
    organizations: Any | None = None
    # STS names the caller's account: plain stacks can only be deployed in it.
    sts: Any | None = None
    # Region -> CloudFormation client of the caller's account, for plain stacks in several regions.
    cloudformation_for: Callable[[str], Any] | None = None
    # Region -> S3 client of the caller's account, to stage a template too large to send inline.
    s3_for: Callable[[str], Any] | None = None
    # Where these clients point, for readers that reach other accounts through a role (None: not known).
    target: AwsTarget | None = None
    _caller: str | None = field(default=None, init=False, repr=False)
    _stager: TemplateStager | None = field(default=None, init=False, repr=False)
    _organization: OrganizationReader | None = field(default=None, init=False, repr=False)
    # Units are read from several threads at once.
    _caller_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.organizations is not None:
            self._organization = OrganizationReader(self.organizations)

    def caller_account(self) -> str | None:
        """The account the credentials belong to (read once); None when there is no STS client to ask."""
        with self._caller_lock:
            if self._caller is None and self.sts is not None:
                from loginwatch_org.aws.stacks import caller_account

                self._caller = caller_account(self.sts)
            return self._caller

    def stager(self, progress: Callable[[str], None] | None = None) -> TemplateStager:
        """Where templates too large to send inline are staged: one per command, so each is put once."""
        with self._caller_lock:
            stager = self._stager
        if stager is None:
            account = self.caller_account() if self.s3_for is not None else None
            stager = TemplateStager(self.s3_for, account, progress)
            with self._caller_lock:
                self._stager = self._stager or stager
                stager = self._stager
        return stager

    def organization(self) -> OrganizationReader | None:
        """The organisation, read at most once per command whichever units ask (None without an Organizations
        client): one Clients is one command."""
        return self._organization


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


def read_snapshot(
    config: Config, clients: Clients, unit: StackSetUnit | None = None, *, verify: bool = False
) -> Snapshot:
    """What the unit's stack set has deployed, and the organisation's accounts in its scope. ``verify``: describe
    every instance instead of trusting the overrides digest its LastOperationId claims."""
    unit = unit or watch_unit(config)
    reader = StackSetReader(clients.cloudformation, call_as=unit.settings.call_as, organization=clients.organization())
    return reader.read(unit.name, unit.desired_overrides(config), scope=organization_scope(config, unit), verify=verify)


def organization_scope(config: Config, unit: StackSetUnit | None = None) -> OrganizationScope:
    """The accounts the stack set reaches: under its OUs (service-managed), or the whole organisation."""
    settings = config.stack_set
    unit = unit or watch_unit(config)
    default = config.default_watch("000000000000", "")
    return OrganizationScope(
        organizational_units=tuple(settings.organizational_units) if settings.permission_model == "service-managed"
        else None,
        default_overrides=dict(unit.overrides(default)) if default is not None else None,
        listed=frozenset(account.id for account in config.accounts),
    )  # fmt: skip


def unit_template(
    config: Config, unit: StackSetUnit, registry: Mapping[str, TemplateSpec] = REGISTRY
) -> tuple[str, dict[str, str]]:
    """The unit's template body and the shared parameters it declares (CloudFormation rejects any other)."""
    template = registry[unit.template].build(config)
    declared = template.parameters
    return template_body(template), {k: v for k, v in shared_parameters(config).items() if k in declared}


def prepare(
    config: Config,
    clients: Clients,
    *,
    prune: bool = False,
    executor: StackSetExecutor | None = None,
    progress: Callable[[str], None] | None = None,
    unit: StackSetUnit | None = None,
    registry: Mapping[str, TemplateSpec] = REGISTRY,
) -> Prepared:
    """Read, wait for every operation in progress on the stack set (an interrupted run's, or anybody else's:
    the console, another tool, drift detection), and plan from what they left. Without an executor (``plan``)
    nothing is waited for: the planner leaves instances that an operation is deploying alone and says so.
    ``unit`` is the stack set (the member watch by default)."""
    unit = unit or watch_unit(config)
    body, parameters = unit_template(config, unit, registry)
    snapshot = read_snapshot(config, clients, unit)
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
        # Waiting can take long enough for the organisation to change: plan from a fresh reading.
        organization = clients.organization()
        if organization is not None:
            organization.forget()
        snapshot = read_snapshot(config, clients, unit)
    plan = make_plan(config, body, parameters, snapshot, prune=prune, unit=unit)
    return Prepared(plan, snapshot, resumed, waited_for)


def make_executor(
    config: Config,
    clients: Clients,
    *,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    poll: PollPolicy | None = None,
    unit: StackSetUnit | None = None,
    pacing: Pacing | None = None,
) -> StackSetExecutor:
    settings = (unit or watch_unit(config)).settings
    pacing = pacing or Pacing(progress=progress, sleep=sleep, poll=poll)
    return StackSetExecutor(
        clients.cloudformation,
        settings,
        progress=pacing.progress,
        sleep=pacing.sleep,
        clock=pacing.clock,
        poll=pacing.poll,
        accepted=pacing.accepted,
        stager=clients.stager(pacing.progress),
    )


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


def detect_drift(
    config: Config, clients: Clients, executor: StackSetExecutor, unit: StackSetUnit | None = None
) -> DriftResult:
    """Run drift detection on the unit's stack set (the member watch by default; it queues behind whatever is in
    progress on the stack set) and return its outcome."""
    unit = unit or watch_unit(config)
    reader = StackSetReader(clients.cloudformation, call_as=unit.settings.call_as)
    newest = reader.newest_operation(unit.name)
    if newest is None and read_snapshot(config, clients, unit).stack_set is None:
        return DriftResult("", "NOT_RUN", "NOT_RUN")
    return executor.detect_drift(newest or "first")


def stack_set_units(config: Config, only: Sequence[str] | None = None) -> list[StackSetUnit]:
    """The stack sets a command covers (the member watches, the forwarders), in rollout order."""
    return [unit.unit for unit in deployments(config, only) if isinstance(unit, StackSetDeployment)]


def drifted_accounts(
    config: Config, unit: StackSetUnit, plan: Plan, snapshot: Snapshot, drift: DriftResult | None = None
) -> dict[str, str]:
    """Watched accounts of a stack set without rows of their own (the forwarders) whose instances drifted, with
    where: a forwarder rule disabled or changed by hand leaves that Region's sign-ins unforwarded. With ``drift``
    (a detection just run), the Regions it failed in are named instead of trusting an older drift status. Accounts
    the plan leaves out, and suspended ones (nobody can sign in to them), are left out."""
    suspended = snapshot.organization.suspended() if snapshot.organization is not None else frozenset()
    watched = {t.account_id for t in config.targets()} - set(plan.skipped_accounts) - suspended
    failed: dict[str, list[str]] = {}
    for result in drift.failed if drift is not None else ():
        if result.account_id in watched:
            failed.setdefault(result.account_id, []).append(result.region)
    drifted: dict[str, list[str]] = {}
    for instance in snapshot.instances:
        account = instance.account_id
        if account in watched and instance.drift_status == "DRIFTED" and instance.region not in failed.get(account, ()):
            drifted.setdefault(account, []).append(instance.region)
    problems: dict[str, str] = {}
    for account in sorted({*drifted, *failed}):
        parts = []
        if account in drifted:
            parts.append(f"{unit.key} drifted in {', '.join(sorted(drifted[account]))}")
        if account in failed:
            parts.append(f"drift detection of its {unit.key} failed in {', '.join(sorted(failed[account]))}")
        problems[account] = "; ".join(parts)
    return problems


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


# -- deployment units -------------------------------------------------------------------------------------------
#
# Each unit has the same life: build its template, read what is deployed, plan (pure), apply with its executor,
# read again and say what is not as planned. The commands loop over units; only these classes know their kind.


@dataclass
class UnitState:
    """One unit read and planned: the plan, what it was planned from, and what was waited for first."""

    key: str
    plan: Plan | StackPlan
    snapshot: Snapshot | None = None
    stacks: tuple[DeployedStack, ...] = ()
    resumed: list[OperationResult] = field(default_factory=list)
    waited_for: list[OperationResult] = field(default_factory=list)

    def cost(self) -> tuple[UnitCost, UnitCost]:
        """What the unit costs a month by existing, as deployed now and once its plan is applied."""
        from loginwatch_org.plan_cost import stack_set_cost, stacks_cost

        if isinstance(self.plan, Plan):
            return stack_set_cost(self.key, self.plan, self.snapshot)
        return stacks_cost(self.key, self.plan, self.stacks)


@dataclass
class UnitOutcome:
    """One unit applied: the StackSet operations or the stack requests, and what is still not as planned."""

    key: str
    result: ApplyResult | None = None
    stacks: list[Any] = field(default_factory=list)
    snapshot: Snapshot | None = None
    # What is left different from the plan's intent after the run (account id or stack -> why).
    problems: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pacing:
    """How executors wait: injected by tests and benchmarks, the defaults otherwise."""

    progress: Callable[[str], None] | None = None
    sleep: Callable[[float], None] | None = None
    poll: PollPolicy | None = None
    clock: Callable[[], float] | None = None
    # Told each operation id (or plain-stack request) the moment AWS accepts it, from whichever thread.
    accepted: Callable[[str], None] | None = None


class StackSetDeployment:
    """A stack set the tool owns (the member watches, the forwarders)."""

    def __init__(self, unit: StackSetUnit, registry: Mapping[str, TemplateSpec] = REGISTRY) -> None:
        self.unit = unit
        self.key = unit.key
        self._registry = registry

    def executor(self, config: Config, clients: Clients, pacing: Pacing) -> StackSetExecutor:
        return make_executor(config, clients, pacing=pacing, unit=self.unit)

    def prepare(self, config: Config, clients: Clients, *, prune: bool, wait: bool, pacing: Pacing) -> UnitState:
        executor = self.executor(config, clients, pacing) if wait else None
        prepared = prepare(
            config,
            clients,
            prune=prune,
            executor=executor,
            progress=pacing.progress,
            unit=self.unit,
            registry=self._registry,
        )
        return UnitState(self.key, prepared.plan, prepared.snapshot, (), prepared.resumed, prepared.waited_for)

    def removal(self, config: Config, clients: Clients, accounts: tuple[str, ...], *, retain_stacks: bool) -> UnitState:
        snapshot = read_snapshot(config, clients, self.unit)
        if snapshot.stack_set is None:
            return UnitState(self.key, Plan(self.unit.name, (), unit=self.key), snapshot)
        removal = make_removal_plan(config, snapshot, accounts, retain_stacks=retain_stacks, unit=self.unit)
        touched = {a for step in removal.steps if isinstance(step, DeleteInstances) for a in step.accounts}
        untouched = {instance.account_id for instance in snapshot.instances} - touched
        return UnitState(self.key, _with_unchanged(removal, len(untouched)), snapshot)

    def apply(
        self, config: Config, clients: Clients, state: UnitState, pacing: Pacing, *, removing: bool = False
    ) -> UnitOutcome:
        assert isinstance(state.plan, Plan)
        result = self.executor(config, clients, pacing).apply(state.plan)
        snapshot = read_snapshot(config, clients, self.unit)
        organization = clients.organization()
        if organization is not None and (result.failed_accounts or _suspended_meanwhile(snapshot)):
            # An account failed, or StackSets skipped one as suspended that the organisation, as read before the
            # operations ran, calls ACTIVE: it may have been suspended or removed meanwhile. Only a fresh reading
            # tells that from a failure of ours.
            organization.forget()
            snapshot = read_snapshot(config, clients, self.unit)
        problems: dict[str, str] = {}
        if not removing:
            if self.key == WATCH_UNIT:
                problems = unconverged(config, state.plan, snapshot)
            else:
                problems = stack_set_problems(config, self.unit, state.plan, snapshot)
        for failed in result.failed_accounts:
            problems.setdefault(failed.account_id, failed.reason or failed.status)
        return UnitOutcome(self.key, result, snapshot=snapshot, problems=problems)


def _suspended_meanwhile(snapshot: Snapshot) -> bool:
    view = snapshot.organization
    return view is not None and any(
        instance.suspended and view.state_of(instance.account_id) != SUSPENDED_ACCOUNT_STATE
        for instance in snapshot.instances
    )


def _with_unchanged(plan: Plan, count: int) -> Plan:
    from dataclasses import replace

    # The removal planner leaves the count at 0; the summary must not say every other account is touched.
    return replace(plan, unchanged_accounts=count)


def stack_set_problems(config: Config, unit: StackSetUnit, plan: Plan, snapshot: Snapshot) -> dict[str, str]:
    """Accounts of a stack set without per-account recipients (the forwarders) left unlike the plan's intent:
    an instance missing, not current, busy or INOPERABLE in a region it should have; or one to be deleted left."""
    problems: dict[str, str] = {}
    skipped = set(plan.skipped_accounts)
    targets = [t for t in config.targets() if t.account_id not in skipped]
    for state in classify_accounts(targets, unit.regions, snapshot, unit.overrides):
        wrong = [*state.missing, *state.stale, *state.in_progress, *state.inoperable]
        if wrong:
            problems[state.account_id] = (
                state.reason or f"{unit.key} instance(s) not current in {', '.join(sorted(set(wrong)))}"
            )
    deployed = snapshot.instances_by_account()
    for step in plan.steps:
        if isinstance(step, DeleteInstances):
            for account_id in step.accounts:
                left = sorted(set(step.regions) & set(deployed.get(account_id, {})))
                if left:
                    problems[account_id] = f"{unit.key} instances in {', '.join(left)} were to be deleted but remain"
    return problems


class StackDeployment:
    """Plain stacks in one account (the management account's watch and forwarders, the mail account's stack):
    deployable only with that account's own credentials, so a run from another account reports the unit as not
    covered, with what to do, instead of failing."""

    def __init__(self, key: str, registry: Mapping[str, TemplateSpec] = REGISTRY) -> None:
        self.key = key
        self.label = MANAGEMENT_UNIT if key == MANAGEMENT_UNIT_KEY else MAIL_UNIT
        self._registry = registry

    def _keys(self, config: Config) -> tuple[tuple[str, str], ...]:
        return management_stack_keys(config) if self.key == MANAGEMENT_UNIT_KEY else mail_stack_keys(config)

    def _reach(self, config: Config, clients: Clients) -> tuple[str | None, str | None]:
        """The caller's account, or why this unit cannot be covered by these credentials."""
        from loginwatch_org.stack_plan import not_mail_caller, not_management_caller

        if clients.sts is None or clients.cloudformation_for is None:
            return None, (
                f"the {self.label} is not covered by this run: it cannot tell which account these credentials belong "
                "to (no STS client)"
            )
        caller = clients.caller_account()
        assert caller is not None
        problem = (
            not_management_caller(config, caller)
            if self.key == MANAGEMENT_UNIT_KEY
            else not_mail_caller(config, caller)
        )
        return caller, problem

    def _read(self, config: Config, clients: Clients) -> tuple[DeployedStack, ...]:
        from loginwatch_org.aws.stacks import StackReader

        assert clients.cloudformation_for is not None
        return StackReader(clients.cloudformation_for).read(self._keys(config))

    def _plan(self, config: Config, clients: Clients, deployed: Sequence[DeployedStack], prune: bool) -> StackPlan:
        if self.key == MANAGEMENT_UNIT_KEY:
            return make_management_plan(config, deployed, prune=prune, registry=self._registry)
        from loginwatch_org.aws.stacks import organization_id

        organization = clients.organization()
        if organization is None:
            return StackPlan(
                self.label, (), not_covered="the mail stack needs the organisation's id: no Organizations client"
            )
        return make_mail_plan(config, deployed, organization_id(organization), prune=prune, registry=self._registry)

    def executor(self, clients: Clients, pacing: Pacing) -> Any:
        from loginwatch_org.aws.stacks import StackExecutor

        assert clients.cloudformation_for is not None
        return StackExecutor(
            clients.cloudformation_for,
            sleep=pacing.sleep,
            clock=pacing.clock,
            poll=pacing.poll,
            progress=pacing.progress,
            accepted=pacing.accepted,
            stager=clients.stager(pacing.progress),
        )

    def prepare(self, config: Config, clients: Clients, *, prune: bool, wait: bool, pacing: Pacing) -> UnitState:
        _caller, problem = self._reach(config, clients)
        if problem is not None:
            return UnitState(self.key, StackPlan(self.label, (), not_covered=problem))
        deployed = self._read(config, clients)
        if wait and any(stack.in_progress for stack in deployed):
            if pacing.progress:
                pacing.progress(f"waiting for {self.label} stack(s) CloudFormation is still working on")
            self.executor(clients, pacing).wait_for(deployed)
            deployed = self._read(config, clients)
        return UnitState(self.key, self._plan(config, clients, deployed, prune), stacks=deployed)

    def removal(self, config: Config, clients: Clients) -> UnitState:
        _caller, problem = self._reach(config, clients)
        if problem is not None:
            return UnitState(self.key, StackPlan(self.label, (), not_covered=problem))
        deployed = self._read(config, clients)
        plan = (
            make_management_removal_plan(deployed)
            if self.key == MANAGEMENT_UNIT_KEY
            else make_mail_removal_plan(deployed)
        )
        return UnitState(self.key, plan, stacks=deployed)

    def apply(
        self, config: Config, clients: Clients, state: UnitState, pacing: Pacing, *, removing: bool = False
    ) -> UnitOutcome:
        assert isinstance(state.plan, StackPlan)
        results = self.executor(clients, pacing).apply(state.plan)
        problems = {
            f"{self.label}: {stack_label(r.region, r.name)}": f"{r.action} {r.status}"
            + (f": {r.reason}" if r.reason else "")
            for r in results
            if not r.ok
        }
        return UnitOutcome(self.key, stacks=results, problems=problems)


Deployment = StackSetDeployment | StackDeployment


def deployments(
    config: Config, only: Sequence[str] | None = None, registry: Mapping[str, TemplateSpec] = REGISTRY
) -> list[Deployment]:
    """The units a command covers, in the order a rollout applies them: the mail stack first (member watches
    send through it), then the member watches, their forwarders, and the management account's stacks. A unit the
    config has no use for (no mail account) is left out."""
    chosen: list[Deployment] = []
    for key in selected_units(only):
        if key == MAIL_UNIT_KEY:
            if config.delivery.mail_account is not None:
                chosen.append(StackDeployment(MAIL_UNIT_KEY, registry))
        elif key == WATCH_UNIT:
            chosen.append(StackSetDeployment(watch_unit(config), registry))
        elif key == FORWARDERS_UNIT:
            chosen.append(StackSetDeployment(forwarders_unit(config), registry))
        else:
            chosen.append(StackDeployment(MANAGEMENT_UNIT_KEY, registry))
    return chosen


@dataclass
class DeploymentState:
    """Every selected unit read and planned."""

    units: list[tuple[Deployment, UnitState]]

    @property
    def plan(self) -> DeploymentPlan:
        from loginwatch_org.plan_cost import deployment_cost

        return DeploymentPlan(
            tuple(UnitPlan(state.key, state.plan) for _, state in self.units),
            cost=deployment_cost(state.cost() for _, state in self.units),
        )

    def state(self, key: str) -> UnitState | None:
        return next((state for _, state in self.units if state.key == key), None)

    def stack_set_plan(self, key: str) -> Plan | None:
        """The plan of stack set unit ``key``, if it was planned."""
        state = self.state(key)
        return state.plan if state is not None and isinstance(state.plan, Plan) else None

    def stacks_plan(self, key: str) -> StackPlan | None:
        """The plan of plain-stack unit ``key``, if it was planned."""
        state = self.state(key)
        return state.plan if state is not None and isinstance(state.plan, StackPlan) else None

    def unit_problems(self, config: Config, key: str, drift: DriftResult | None = None) -> dict[str, str]:
        """Accounts a stack set unit (other than the watch, whose rows say it all) has not as the config says:
        instances missing, stale or busy, and instances that drifted (``drift``: the detection just run)."""
        for unit, state in self.units:
            if (
                state.key == key
                and isinstance(unit, StackSetDeployment)
                and isinstance(state.plan, Plan)
                and state.snapshot is not None
            ):
                problems = drifted_accounts(config, unit.unit, state.plan, state.snapshot, drift)
                problems.update(stack_set_problems(config, unit.unit, state.plan, state.snapshot))
                return problems
        return {}


def prepare_units(
    config: Config,
    clients: Clients,
    *,
    only: Sequence[str] | None = None,
    prune: bool = False,
    wait: bool = False,
    pacing: Pacing | None = None,
    registry: Mapping[str, TemplateSpec] = REGISTRY,
) -> DeploymentState:
    """Read and plan every selected unit. With ``wait`` (rollout), operations in progress are waited for first."""
    pacing = pacing or Pacing()
    units = deployments(config, only, registry)

    def prepared(unit: Deployment) -> tuple[Deployment, UnitState]:
        return unit, unit.prepare(config, clients, prune=prune, wait=wait, pacing=pacing)

    if wait or len(units) < 2:
        return DeploymentState([prepared(unit) for unit in units])
    # Without waiting, preparing is reading only: the units are read at once, so the organisation's one listing
    # (shared through ``clients``) runs beside every stack set's instance pages, not beside the first one's alone.
    # On Ctrl-C the command stops waiting and reports at once (``worker_pool``).
    with worker_pool(len(units)) as pool:
        return DeploymentState(list(pool.map(prepared, units)))


def prepare_removal(
    config: Config,
    clients: Clients,
    *,
    only: Sequence[str] | None = None,
    accounts: tuple[str, ...] = (),
    retain_stacks: bool = False,
    registry: Mapping[str, TemplateSpec] = REGISTRY,
) -> DeploymentState:
    """``remove``: every selected unit's deletions. ``--account`` concerns member accounts only, so with it the
    plain-stack units are left alone."""
    units: list[tuple[Deployment, UnitState]] = []
    for unit in reversed(deployments(config, only, registry)):
        if isinstance(unit, StackSetDeployment):
            units.append((unit, unit.removal(config, clients, accounts, retain_stacks=retain_stacks)))
        elif not accounts:
            units.append((unit, unit.removal(config, clients)))
    return DeploymentState(units)


def apply_units(
    config: Config,
    clients: Clients,
    state: DeploymentState,
    pacing: Pacing | None = None,
    *,
    removing: bool = False,
) -> list[UnitOutcome]:
    """Apply every unit's plan; a unit without changes costs nothing.

    The mail account goes first (every watch sends through its identity) and, when removing, last. The other units
    depend on nothing one another creates (the forwarders target each account's own us-east-1 default bus, not a
    resource of the watch stack set; the management account's stacks are its own), so they run side by side: a
    rollout takes as long as its slowest unit, not as long as all of them."""
    pacing = pacing or Pacing()
    changing = [(unit, unit_state) for unit, unit_state in state.units if unit_state.plan.steps]
    mail = [pair for pair in changing if pair[0].key == MAIL_UNIT_KEY]
    others = [pair for pair in changing if pair[0].key != MAIL_UNIT_KEY]
    if removing:
        return _side_by_side(config, clients, others, pacing, removing=removing) + _one_by_one(
            config, clients, mail, pacing, removing=removing
        )
    return _one_by_one(config, clients, mail, pacing, removing=removing) + _side_by_side(
        config, clients, others, pacing, removing=removing
    )


def _one_by_one(
    config: Config,
    clients: Clients,
    pairs: Sequence[tuple[Deployment, UnitState]],
    pacing: Pacing,
    *,
    removing: bool,
) -> list[UnitOutcome]:
    return [unit.apply(config, clients, unit_state, pacing, removing=removing) for unit, unit_state in pairs]


# How often the main thread wakes while units run side by side, so that Ctrl-C is seen at once.
SIGNAL_CHECK_SECONDS = 0.2


def _side_by_side(
    config: Config,
    clients: Clients,
    pairs: Sequence[tuple[Deployment, UnitState]],
    pacing: Pacing,
    *,
    removing: bool,
) -> list[UnitOutcome]:
    """Apply independent units at once. An error in one does not stop the others (each holds watches accounts
    need): every unit runs to its end, then the first error is raised. Ctrl-C (which only the main thread sees)
    names what AWS accepted for every unit still running, as one unit's executor does on its own."""
    if len(pairs) < 2:
        return _one_by_one(config, clients, pairs, pacing, removing=removing)
    accepted: dict[str, list[str]] = {unit.key: [] for unit, _ in pairs}

    def apply(unit: Deployment, unit_state: UnitState) -> UnitOutcome:
        def note(operation: str) -> None:
            accepted[unit.key].append(operation)
            if pacing.accepted is not None:
                pacing.accepted(operation)

        return unit.apply(config, clients, unit_state, replace(pacing, accepted=note), removing=removing)

    futures: dict[str, Future[UnitOutcome]] = {}
    with worker_pool(len(pairs)) as pool:
        try:
            # Submitting is inside the guard too: Ctrl-C may come while the last unit is being handed over.
            for unit, unit_state in pairs:
                futures[unit.key] = pool.submit(apply, unit, unit_state)
            # Waited for in short spells: the kernel may hand SIGINT to a worker thread, and Python runs the
            # handler only when the main thread next runs, which a wait without a timeout would not let it do
            # until every unit had finished.
            while wait(futures.values(), timeout=SIGNAL_CHECK_SECONDS).not_done:
                pass
        except KeyboardInterrupt:
            # A unit whose future is not recorded yet was still being handed over: it counts as running.
            finished = {key for key, future in futures.items() if future.done()}
            running = [op for key, ops in accepted.items() if key not in finished for op in ops]
            raise RolloutInterrupted(submitted=tuple(running)) from None
    return [future.result() for future in futures.values()]


def management_status(config: Config, state: UnitState) -> AccountStatus | None:
    """The management (or mail) account as one more status row: CURRENT when its plan has nothing to do,
    NOT_COVERED when these credentials cannot reach it; None when the config names no such account."""
    from loginwatch_org.config import WATCH_REGION
    from loginwatch_org.mail_setup import mail_region
    from loginwatch_org.stack_plan import mail_stack_keys, watch_stack_name

    plan = state.plan
    assert isinstance(plan, StackPlan)
    if state.key == MANAGEMENT_UNIT_KEY:
        account_id = config.management_account.id if config.management_account else None
        watch = config.management_watch()
        wanted = account_overrides(watch) if watch else None
        main = watch_stack_name(config)
        region = WATCH_REGION
    else:
        account_id = config.delivery.mail_account
        wanted = None
        main = mail_stack_keys(config)[0][1] if mail_stack_keys(config) else ""
        region = mail_region(config) or ""
    if account_id is None:
        return None
    names = config.account_names()
    if plan.not_covered is not None:
        return AccountStatus(
            account_id, names.get(account_id, ""), region, "NOT_COVERED", "", plan.not_covered, None,
            wanted.get(RECIPIENTS_PARAMETER) if wanted else None, None,
            wanted.get(ALERT_POLICY_PARAMETER) if wanted else None, "", "",
        )  # fmt: skip
    stack = next((s for s in state.stacks if s.name == main and s.region == region), None)
    deployed = dict(stack.parameters) if stack else {}
    busy = plan.steps or plan.blocked or plan.waiting
    status = "MISSING" if stack is None else ("OUTDATED" if busy else "CURRENT")
    reasons = [item.problem for item in plan.blocked] + list(plan.waiting)
    if plan.steps:
        reasons.append(f"{len(plan.steps)} stack change(s) planned: run {suggest.command('rollout')}")
    if state.key == MANAGEMENT_UNIT_KEY and not busy:
        reasons.append(f"{len(plan.unchanged)} stack(s) current (watch and forwarders)")
    return AccountStatus(
        account_id=account_id,
        name=names.get(account_id, ""),
        region=region,
        status=status,
        detailed_status=stack.status if stack else "",
        reason="; ".join(reasons),
        recipients_deployed=deployed.get(RECIPIENTS_PARAMETER) if wanted else None,
        recipients_config=wanted.get(RECIPIENTS_PARAMETER) if wanted else None,
        alert_on_deployed=deployed.get(ALERT_POLICY_PARAMETER) if wanted else None,
        alert_on_config=wanted.get(ALERT_POLICY_PARAMETER) if wanted else None,
        last_operation="",
        drift="",
    )
