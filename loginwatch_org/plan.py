"""Desired (config + template) versus deployed (snapshot): a typed, printable list of steps.

Pure: ``plan`` and ``rollout`` call the same ``make_plan``, so what ``plan`` prints is exactly what
``rollout`` does. Accounts with identical parameter overrides share one operation, so the number of
StackSet operations grows with the number of distinct recipient/policy groups, not with accounts.

``make_plan`` runs pure phases, each tested on its own: check the permission model, compute the stack set's
own delta, classify each watched account region by region, choose UpdateStackSet's targets, group the
instance operations, plan the deletions. No phase assumes more about the stack set than its inputs say, so a
plan per deployment unit can reuse them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, assert_never

from loginwatch_org import suggest
from loginwatch_org.config import AccountWatch, Config, StackSetSettings
from loginwatch_org.errors import LoginwatchError
from loginwatch_org.state import (
    ACTIVE_ACCOUNT_STATE,
    OWNER_TAG_KEY,
    OWNER_TAG_VALUE,
    DeployedInstance,
    DeployedStackSet,
    Snapshot,
    operation_id,
    overrides_digest,
)
from loginwatch_org.templates import ALERT_POLICY_PARAMETER, RECIPIENTS_PARAMETER, template_digest

# DeploymentTargets.Accounts has no documented maximum; for "a large number of accounts" AWS offers AccountsUrl,
# an S3 object of up to 10 MB (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeploymentTargets.html).
# The tool owns no bucket and asks for no S3 permission, so a larger group is split into operations of at most
# this many accounts: about 40 KB of request, less than the 51,200-byte TemplateBody the same call accepts.
MAX_ACCOUNTS_PER_OPERATION = 1000


def account_overrides(watch: AccountWatch) -> dict[str, str]:
    """The parameter overrides one account's stack instance carries."""
    return {RECIPIENTS_PARAMETER: ",".join(watch.recipients), ALERT_POLICY_PARAMETER: watch.alert_on}


def no_overrides(_watch: AccountWatch) -> dict[str, str]:
    """A stack set whose instances all carry the same values: one override group for the whole organisation."""
    return {}


# The deployment units, by the name ``--only`` takes.
WATCH_UNIT = "watch"
FORWARDERS_UNIT = "forwarders"
MANAGEMENT_UNIT_KEY = "management"
MAIL_UNIT_KEY = "mail"
UNIT_KEYS = (MAIL_UNIT_KEY, WATCH_UNIT, FORWARDERS_UNIT, MANAGEMENT_UNIT_KEY)
FORWARDERS_STACK_SET_SUFFIX = "-forwarders"


@dataclass(frozen=True)
class StackSetUnit:
    """A stack set the tool owns, as the plan phases see it: which stack set (name, regions, permission model,
    organisational units, operation preferences: ``settings``), which registered template, and the overrides an
    account's instances carry. The watch's are the config's ``stack_set``; the forwarders' are a copy with
    another name and the forward regions."""

    key: str
    settings: StackSetSettings
    template: str
    overrides: Callable[[AccountWatch], Mapping[str, str]] = account_overrides

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.settings.regions)

    def desired_overrides(self, config: Config) -> dict[str, Mapping[str, str]]:
        return {watch.account_id: self.overrides(watch) for watch in config.targets()}


def watch_unit(config: Config) -> StackSetUnit:
    """The member accounts' watch: today's stack set, one override group per recipients/policy pair."""
    return StackSetUnit(WATCH_UNIT, config.stack_set, "watch")


def forwarders_unit(config: Config) -> StackSetUnit:
    """The member accounts' forwarders: a second stack set in every forward region. Its instances carry no
    overrides, so every enabled member account is one group: its rollout is one operation per
    ``MAX_ACCOUNTS_PER_OPERATION`` accounts, whatever the number of recipient groups."""
    settings = config.stack_set.model_copy(
        update={
            "name": config.stack_set.name + FORWARDERS_STACK_SET_SUFFIX,
            "regions": list(config.forward_regions()),
            "description": "Forwards every AWS console sign-in recorded in this Region to the account's "
            "us-east-1 watch (loginwatch-org).",
        }
    )
    return StackSetUnit(FORWARDERS_UNIT, settings, "forwarder", no_overrides)


@dataclass(frozen=True)
class AccountChange:
    account_id: str
    name: str
    reason: str
    before: Mapping[str, str] | None = None
    after: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CreateStackSet:
    name: str
    parameters: Mapping[str, str]
    reason: str = "the stack set does not exist yet"


@dataclass(frozen=True)
class UpdateStackSet:
    """New template or shared parameters, applied to accounts whose overrides are already right."""

    name: str
    operation_id: str
    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    overrides: Mapping[str, str]
    reasons: tuple[str, ...]
    parameters: Mapping[str, str]
    parameter_changes: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    # UpdateStackSet replaces the tag list: the stack set's own tags are kept, the owner tag added.
    tags: Mapping[str, str] = field(default_factory=dict)
    # Whether to turn managed execution on: sent only then, since "you can't modify your stack set's execution
    # configuration while there are running or queued operations for that stack set"
    # (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ManagedExecution.html).
    enable_managed_execution: bool = False


@dataclass(frozen=True)
class CreateInstances:
    operation_id: str
    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    overrides: Mapping[str, str]
    changes: tuple[AccountChange, ...]


@dataclass(frozen=True)
class UpdateInstances:
    operation_id: str
    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    overrides: Mapping[str, str]
    changes: tuple[AccountChange, ...]


@dataclass(frozen=True)
class DeleteInstances:
    operation_id: str
    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    changes: tuple[AccountChange, ...]
    retain_stacks: bool = False


@dataclass(frozen=True)
class DeleteStackSet:
    name: str
    reason: str = "no stack instances remain"


Step = CreateStackSet | UpdateStackSet | CreateInstances | UpdateInstances | DeleteInstances | DeleteStackSet


@dataclass(frozen=True)
class Plan:
    stack_set: str
    steps: tuple[Step, ...]
    unchanged_accounts: int = 0
    # Instances of accounts (or regions) the config no longer lists; deleted only with --prune.
    kept_orphans: tuple[str, ...] = ()
    # Config accounts skipped because the organisation does not have them.
    skipped_accounts: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # Watched accounts whose instance an operation (ours or not) is deploying: waited for, not planned again.
    waiting_accounts: tuple[str, ...] = ()
    # Operations of ours (an interrupted run's) still pending: changes on their way, which rollout waits for.
    resuming: tuple[str, ...] = ()
    # The exact body the plan was made against (and its digest compared); what the executor sends.
    template_body: str = field(default="", repr=False, compare=False)
    unit: str = WATCH_UNIT

    @property
    def has_changes(self) -> bool:
        """Steps to run, or operations of ours still under way. Somebody else's operations are not our changes:
        they are waited for, and reported in the warnings."""
        return bool(self.steps) or bool(self.resuming)

    @property
    def operation_count(self) -> int:
        return sum(is_operation(step) for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "stack_set": self.stack_set,
            "has_changes": self.has_changes,
            "operation_count": self.operation_count,
            "steps": [{"action": action_name(step), **_plain(asdict(step))} for step in self.steps],
            "unchanged_accounts": self.unchanged_accounts,
            "kept_orphans": list(self.kept_orphans),
            "skipped_accounts": list(self.skipped_accounts),
            "warnings": list(self.warnings),
            "waiting_accounts": list(self.waiting_accounts),
            "resuming": list(self.resuming),
        }


def action_name(step: Step) -> str:
    match step:
        case CreateStackSet():
            return "create-stack-set"
        case UpdateStackSet():
            return "update-stack-set"
        case CreateInstances():
            return "create-instances"
        case UpdateInstances():
            return "update-instances"
        case DeleteInstances():
            return "delete-instances"
        case DeleteStackSet():
            return "delete-stack-set"
        case _:
            assert_never(step)


def is_operation(step: Step) -> bool:
    """Whether the step is a StackSet operation (waited for, with per-account results)."""
    match step:
        case UpdateStackSet() | CreateInstances() | UpdateInstances() | DeleteInstances():
            return True
        case CreateStackSet() | DeleteStackSet():
            return False
        case _:
            assert_never(step)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


class PlanError(LoginwatchError):
    """The config cannot be reached from the deployed state by a rollout; the message says what to do."""


# -- phase 1: the permission model ------------------------------------------------------------------------------


def check_permission_model(settings: StackSetSettings, stack_set: DeployedStackSet | None) -> None:
    """StackSets cannot change a stack set's permission model: refuse before any write."""
    wanted = settings.permission_model.replace("-", "_").upper()
    if stack_set is not None and stack_set.permission_model != wanted:
        raise PlanError(
            f"stack set '{settings.name}' is {stack_set.permission_model} but the config says "
            f"{settings.permission_model}; StackSets cannot change the permission model of a stack set. Remove it "
            f"({suggest.command('remove')}) and roll out again, or give the new one another stack_set.name."
        )


# -- phase 2: the stack set itself --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackSetDelta:
    """What changes on the stack set itself (not on its instances)."""

    exists: bool
    template_changed: bool = False
    parameter_changes: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    managed_execution_off: bool = False

    @property
    def needs_update(self) -> bool:
        return self.exists and (self.template_changed or bool(self.parameter_changes) or self.managed_execution_off)

    @property
    def reasons(self) -> tuple[str, ...]:
        reasons: list[str] = []
        if self.template_changed:
            reasons.append("the template changed")
        if self.parameter_changes:
            reasons.append("shared parameters changed: " + ", ".join(sorted(self.parameter_changes)))
        if self.managed_execution_off:
            reasons.append("managed execution is off (operations would conflict instead of queueing)")
        return tuple(reasons)


def stack_set_delta(
    stack_set: DeployedStackSet | None, digest_of_template: str, shared_parameters: Mapping[str, str]
) -> StackSetDelta:
    if stack_set is None:
        return StackSetDelta(exists=False)
    changes = {
        key: (stack_set.parameters.get(key), value)
        for key, value in shared_parameters.items()
        if stack_set.parameters.get(key) != value
    }
    return StackSetDelta(
        exists=True,
        template_changed=stack_set.template_digest != digest_of_template,
        parameter_changes=changes,
        managed_execution_off=not stack_set.managed_execution,
    )


# -- phase 3: each watched account --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountState:
    """One watched account against what is deployed, region by region."""

    account_id: str
    name: str
    overrides: Mapping[str, str]
    # Regions without an instance: CreateStackInstances.
    missing: tuple[str, ...] = ()
    # Regions whose instance must be refreshed with the account's overrides, and why.
    stale: tuple[str, ...] = ()
    reason: str = ""
    before: Mapping[str, str] | None = None
    # Regions whose instance is right: only a change of the stack set itself touches them.
    current: tuple[str, ...] = ()
    # Regions an operation (ours or anyone's) is deploying right now: waited for, never duplicated.
    in_progress: tuple[str, ...] = ()
    # Regions whose instance is INOPERABLE: AWS excludes it from updates; the deletion phase handles it.
    inoperable: tuple[str, ...] = ()
    suspended: bool = False

    @property
    def digest(self) -> str:
        return _digest(self.overrides)

    @property
    def fully_current(self) -> bool:
        """Right in every region and nothing else to do: a candidate for UpdateStackSet's targets."""
        return bool(self.current) and not (self.missing or self.stale or self.in_progress or self.inoperable)


def classify_account(
    watch: AccountWatch,
    regions: Sequence[str],
    instances: Mapping[str, DeployedInstance],
    overrides: Callable[[AccountWatch], Mapping[str, str]] = account_overrides,
    *,
    reinstated: bool = False,
) -> AccountState:
    """``overrides``: what the unit's instances carry (none for the forwarders). ``reinstated``: Organizations
    says the account is ACTIVE now, so an instance StackSets skipped while it was suspended
    (SKIPPED_SUSPENDED_ACCOUNT records the past) is retried. An account SUSPENDED now never gets here: the
    coverage phase leaves it out of the targets."""
    desired = dict(overrides(watch))
    digest = _digest(desired)
    missing: list[str] = []
    stale: list[str] = []
    current: list[str] = []
    in_progress: list[str] = []
    inoperable: list[str] = []
    reasons: list[str] = []
    before: Mapping[str, str] | None = None
    suspended = False
    for region in regions:
        instance = instances.get(region)
        if instance is None:
            missing.append(region)
        elif instance.inoperable:
            inoperable.append(region)
        elif instance.in_progress:
            in_progress.append(region)
        elif _known_digest(instance) != digest:
            stale.append(region)
            before = instance.overrides
            reasons.append(_override_reason(instance, desired))
        elif instance.suspended and reinstated:
            stale.append(region)
            reasons.append(
                f"retry: skipped while the account was suspended (operation {instance.last_operation_id or '?'}); "
                "it is ACTIVE again"
            )
        elif instance.suspended:
            suspended = True
            current.append(region)
        elif not instance.healthy:
            stale.append(region)
            reasons.append(_retry_reason(instance))
        else:
            current.append(region)
    if stale:
        # One UpdateStackInstances per account covers all its present regions: the untouched ones cost nothing.
        stale, current = stale + current, []
        stale.sort(key=list(regions).index)
    return AccountState(
        account_id=watch.account_id,
        name=watch.name,
        overrides=desired,
        missing=tuple(missing),
        stale=tuple(stale),
        reason="; ".join(dict.fromkeys(reasons)),
        before=before,
        current=tuple(current),
        in_progress=tuple(in_progress),
        inoperable=tuple(inoperable),
        suspended=suspended,
    )


def classify_accounts(
    targets: Sequence[AccountWatch],
    regions: Sequence[str],
    snapshot: Snapshot,
    overrides: Callable[[AccountWatch], Mapping[str, str]] = account_overrides,
) -> tuple[AccountState, ...]:
    deployed = snapshot.instances_by_account()
    organization = snapshot.organization
    return tuple(
        classify_account(
            watch,
            regions,
            deployed.get(watch.account_id, {}),
            overrides,
            reinstated=organization is not None and organization.state_of(watch.account_id) == ACTIVE_ACCOUNT_STATE,
        )
        for watch in targets
    )


@dataclass(frozen=True)
class Coverage:
    """Which accounts the plan deploys to, against the organisation as Organizations reports it now."""

    # Listed (enabled) accounts in the organisation and not suspended, then the accounts new_accounts: defaults
    # watches, in config order then account order.
    targets: tuple[AccountWatch, ...]
    # Config accounts the organisation does not have.
    skipped: tuple[str, ...] = ()
    # Accounts Organizations reports SUSPENDED: left out of every operation until reinstated.
    suspended: tuple[str, ...] = ()
    # ACTIVE accounts in scope that the config does not list (neither enabled nor disabled).
    unlisted: tuple[AccountWatch, ...] = ()
    warnings: tuple[str, ...] = ()


# Past this many, plan names the first unlisted accounts and counts the rest (status shows a row for each).
UNLISTED_NAMED = 20


def config_line(account_id: str, name: str) -> str:
    """The line to add under ``accounts:`` for an account the config does not list (a YAML flow mapping; JSON
    strings are valid YAML scalars, so any name is quoted safely)."""
    return f'- {{id: "{account_id}", name: {json.dumps(name or account_id)}}}'


def plan_coverage(config: Config, snapshot: Snapshot, settings: StackSetSettings | None = None) -> Coverage:
    """The accounts to deploy to. Organizations' current Account.State decides: a SUSPENDED account is left out
    (StackSets would only skip it again), an ACTIVE account the config does not list is unwatched, and with
    ``new_accounts: defaults`` it is watched with the default recipients and policy. Without an organisation
    reading (refused, or no client), the listed accounts are the targets, as before."""
    outside = snapshot.accounts_outside_organization
    organization = snapshot.organization
    suspended = organization.suspended() if organization is not None else frozenset()
    listed_targets = config.targets()
    skipped = tuple(t.account_id for t in listed_targets if t.account_id in outside)
    targets = [t for t in listed_targets if t.account_id not in outside and t.account_id not in suspended]
    warnings = [f"account {a} is in the config but not in the organisation; it is skipped" for a in skipped]
    unlisted: list[AccountWatch] = []
    if organization is not None:
        listed = {account.id for account in config.accounts}
        for account in organization.members():
            if account.account_id in listed or not account.active:
                continue
            default = config.default_watch(account.account_id, account.name)
            unlisted.append(default or AccountWatch(account.account_id, account.name, (), ""))
            if default is not None:
                targets.append(default)
        for watch in unlisted[:UNLISTED_NAMED]:
            how = (
                "watched with the default recipients and policy (new_accounts: defaults); to name its own"
                if config.stack_set.new_accounts == "defaults"
                else "NOT watched (new_accounts: report); to watch it"
            )
            warnings.append(
                f"account {watch.account_id} ({watch.name}) is in the organisation but not in the config: {how}, "
                f"add under accounts: {config_line(watch.account_id, watch.name)}"
            )
        if len(unlisted) > UNLISTED_NAMED:
            warnings.append(
                f"{len(unlisted) - UNLISTED_NAMED} more account(s) of the organisation are not in the config "
                f"({suggest.command('status')} lists each, with its line)"
            )
    names = config.account_names()
    disabled = config.disabled_account_ids()
    management = organization.management_account_id if organization is not None else None
    for account_id in sorted(suspended - disabled - {management}):
        label = f" ({names[account_id]})" if account_id in names else ""
        warnings.append(
            f"account {account_id}{label} is SUSPENDED in the organisation: left out of every operation until it "
            "is reinstated"
        )
    warnings.extend(_auto_deployment_warnings(settings or config.stack_set, snapshot.stack_set))
    return Coverage(tuple(targets), skipped, tuple(sorted(suspended)), tuple(unlisted), tuple(warnings))


def _auto_deployment_warnings(settings: StackSetSettings, stack_set: DeployedStackSet | None) -> list[str]:
    """A stack set created before new_accounts said otherwise. UpdateStackSet takes AutoDeployment only without
    DeploymentTargets or Regions ("If you specify AutoDeployment, don't specify DeploymentTargets or Regions"), and
    an update without targets re-deploys every instance, kept orphans and disabled accounts included, so the tool
    leaves the change to the admin and says how.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStackSet.html"""
    if stack_set is None or stack_set.auto_deployment is None or settings.permission_model != "service-managed":
        return []
    if stack_set.auto_deployment == settings.auto_deployment:
        return []
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/stacksets-orgs-manage-auto-deployment.html
    where = f"CloudFormation console > StackSets > {settings.name} > Actions > Edit automatic deployment"
    if settings.auto_deployment:
        return [
            f"automatic deployment is off on stack set {settings.name}: an account that joins its OUs is watched only "
            f"from the next rollout. Turn it on ({where}: activated, stacks not retained on account removal)"
        ]
    return [
        f"automatic deployment is on for stack set {settings.name} but new_accounts is report: StackSets watches "
        f"accounts that join its OUs with the defaults. Turn it off ({where})"
    ]


# -- phase 4: UpdateStackSet's targets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StackSetTarget:
    """Which instances UpdateStackSet names. AWS applies an UpdateStackSet without targets to every instance,
    orphans and disabled accounts included, so there is always a target, or no UpdateStackSet at all.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_UpdateStackSet.html"""

    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    # The overrides every target already has (the OperationId claims their digest), or None.
    overrides: Mapping[str, str] | None
    # After the new instances are created: no existing instance could carry the update.
    after_creates: bool = False
    # Accounts right before the change that the target does not cover: refreshed with their own overrides.
    refresh: tuple[str, ...] = ()


def choose_stack_set_target(states: Sequence[AccountState], regions: Sequence[str]) -> StackSetTarget | None:
    """The largest group of accounts whose overrides are already right; else the smallest group being updated
    anyway; else the accounts being created (updated right after their creation); else none can carry it."""
    # Accounts whose instances are right (in all their present regions) with identical overrides; the regions
    # they still lack are created afterwards, from the new template.
    current = _groups(states, "current")
    if current:
        key = max(current, key=lambda k: (len(current[k]), len(k[1]), k))
        # The accounts beyond one call's worth are current and untargeted: their own group refreshes them.
        chosen = current[key][:MAX_ACCOUNTS_PER_OPERATION]
        return StackSetTarget(tuple(s.account_id for s in chosen), key[1], chosen[0].overrides)
    stale = _groups(states, "stale")
    if stale:
        smallest = min(stale.values(), key=lambda g: (len(g), g[0].account_id))[:MAX_ACCOUNTS_PER_OPERATION]
        return StackSetTarget(tuple(s.account_id for s in smallest), smallest[0].stale, None)
    created = _groups(states, "missing")
    if created:
        # Only the accounts created in the same regions can be named together (a named account without an
        # instance in a named region is StackInstanceNotFoundException); the rest are refreshed afterwards.
        by_regions: dict[tuple[str, ...], list[AccountState]] = {}
        for group in created.values():
            by_regions.setdefault(group[0].missing, []).extend(group)
        chosen_regions = max(by_regions, key=lambda r: (len(by_regions[r]), r))
        chosen = by_regions[chosen_regions][:MAX_ACCOUNTS_PER_OPERATION]
        digests = {s.digest for s in chosen}
        named = {s.account_id for s in chosen}
        refresh = tuple(s.account_id for group in by_regions.values() for s in group if s.account_id not in named)
        return StackSetTarget(
            tuple(s.account_id for s in chosen),
            chosen_regions,
            chosen[0].overrides if len(digests) == 1 else None,
            after_creates=True,
            refresh=refresh,
        )
    return None


def _groups(states: Sequence[AccountState], kind: str) -> dict[tuple[str, tuple[str, ...]], list[AccountState]]:
    """Accounts with identical overrides and the same regions of ``kind``: one operation each."""
    groups: dict[tuple[str, tuple[str, ...]], list[AccountState]] = {}
    for state in states:
        regions: tuple[str, ...] = getattr(state, kind)
        if regions:
            groups.setdefault((state.digest, regions), []).append(state)
    return groups


# -- phase 5: instance operations ---------------------------------------------------------------------------------


def instance_steps(
    states: Sequence[AccountState],
    delta: StackSetDelta,
    target: StackSetTarget | None,
    shared_parameters: Mapping[str, str],
    stack_set: DeployedStackSet | None,
    marker: list[Any],
    settings: StackSetSettings,
) -> tuple[Step, ...]:
    """UpdateStackSet (when the stack set changes), then one operation per group of identical overrides."""
    by_id = {state.account_id: state for state in states}
    updates: dict[tuple[str, tuple[str, ...]], list[AccountChange]] = {}
    overrides_of: dict[str, Mapping[str, str]] = {}

    def add(
        into: dict[tuple[str, tuple[str, ...]], list[AccountChange]],
        state: AccountState,
        regions: tuple[str, ...],
        change: AccountChange,
    ) -> None:
        into.setdefault((state.digest, regions), []).append(change)
        overrides_of[state.digest] = state.overrides

    for state in states:
        if state.stale:
            add(
                updates,
                state,
                state.stale,
                AccountChange(state.account_id, state.name, state.reason, state.before, state.overrides),
            )
    stack_set_reason = "; ".join(delta.reasons)
    refreshed: dict[tuple[str, tuple[str, ...]], list[AccountChange]] = {}
    if delta.needs_update:
        covered = {(a, r) for a in target.accounts for r in target.regions} if target else set()
        for state in states:
            left_out = tuple(r for r in state.current if (state.account_id, r) not in covered)
            if left_out:
                # UpdateStackSet cannot carry per-account overrides: every account the target leaves out is
                # refreshed by an UpdateStackInstances of its own group, so every LastOperationId stays meaningful.
                add(
                    updates,
                    state,
                    left_out,
                    AccountChange(state.account_id, state.name, stack_set_reason, state.overrides, state.overrides),
                )
        if target is not None:
            for account_id in target.refresh:
                state = by_id[account_id]
                if state.missing:
                    add(refreshed, state, state.missing, AccountChange(account_id, state.name, stack_set_reason))
    creates: dict[tuple[str, tuple[str, ...]], list[AccountChange]] = {}
    for state in states:
        if state.missing:
            add(
                creates,
                state,
                state.missing,
                AccountChange(state.account_id, state.name, "new stack instance", None, state.overrides),
            )

    update_steps = _group_steps("u", updates, overrides_of, marker)
    create_steps = _group_steps("c", creates, overrides_of, marker)
    if delta.needs_update and stack_set is not None and target is not None:
        update_stack_set = UpdateStackSet(
            name=settings.name,
            operation_id=operation_id(
                "s", target.overrides, [marker, "s", target.accounts, target.regions, dict(shared_parameters)]
            ),
            accounts=target.accounts,
            regions=target.regions,
            overrides=dict(target.overrides or {}),
            reasons=delta.reasons,
            parameters=dict(shared_parameters),
            parameter_changes=dict(delta.parameter_changes),
            tags={**stack_set.tags, OWNER_TAG_KEY: OWNER_TAG_VALUE},
            enable_managed_execution=delta.managed_execution_off,
        )
        if target.after_creates:
            # A template change marks every instance OUTDATED: whatever is refreshed comes after it.
            refresh_steps = _group_steps("r", refreshed, overrides_of, marker)
            return (*create_steps, update_stack_set, *update_steps, *refresh_steps)
        return (update_stack_set, *update_steps, *create_steps)
    return (*update_steps, *create_steps)


def _group_steps(
    verb: str,
    groups: Mapping[tuple[str, tuple[str, ...]], list[AccountChange]],
    overrides_of: Mapping[str, Mapping[str, str]],
    marker: list[Any],
) -> list[Step]:
    steps: list[Step] = []
    for (digest, regions), group in sorted(groups.items(), key=lambda item: item[1][0].account_id):
        overrides = dict(overrides_of[digest])
        for start in range(0, len(group), MAX_ACCOUNTS_PER_OPERATION):
            changes = tuple(group[start : start + MAX_ACCOUNTS_PER_OPERATION])
            accounts = tuple(change.account_id for change in changes)
            op = operation_id(
                "c" if verb == "c" else "u", overrides, [marker, verb, list(accounts), regions, overrides]
            )
            if verb == "c":
                steps.append(CreateInstances(op, accounts, regions, overrides, changes))
            else:
                steps.append(UpdateInstances(op, accounts, regions, overrides, changes))
    return steps


# -- phase 6: deletions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deletions:
    steps: tuple[DeleteInstances, ...] = ()
    # Instances of accounts (or regions) the config no longer lists, kept without --prune.
    kept_orphans: tuple[str, ...] = ()
    # What the admin must do by hand afterwards (the stacks of INOPERABLE instances).
    warnings: tuple[str, ...] = ()


def plan_deletions(
    config: Config,
    snapshot: Snapshot,
    marker: list[Any],
    *,
    prune: bool,
    watched: frozenset[str] = frozenset(),
    settings: StackSetSettings | None = None,
) -> Deletions:
    """Instances of disabled accounts always; of accounts or regions gone from the config only with --prune, so a
    truncated config cannot wipe out watches. INOPERABLE instances, whatever their account, are removed with
    RetainStacks=true, what AWS documents for them: deleting their stack again would fail again.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstance.html"""
    settings = settings or config.stack_set
    regions = tuple(settings.regions)
    # ``watched``: accounts the coverage phase keeps (new_accounts: defaults, suspended ones) count as listed.
    listed = {account.id for account in config.accounts} | watched
    disabled = config.disabled_account_ids()
    deployed = snapshot.instances_by_account()
    names = config.account_names()
    # (retain stacks, regions) -> changes: DeleteStackInstances deletes accounts x regions with one RetainStacks.
    groups: dict[tuple[bool, tuple[str, ...]], list[AccountChange]] = {}
    orphans: list[str] = []
    warnings: list[str] = []
    for account_id in sorted(deployed):
        instances = deployed[account_id]
        name = names.get(account_id, "")
        broken = tuple(sorted(r for r, i in instances.items() if i.inoperable))
        if broken:
            reasons = {reason for r in broken if (reason := instances[r].status_reason)}
            why = "INOPERABLE" + (f" ({'; '.join(sorted(reasons))})" if reasons else "")
            groups.setdefault((True, broken), []).append(
                AccountChange(
                    account_id,
                    name,
                    f"{why}: AWS excludes it from updates; removed from the stack set keeping its stack "
                    "(RetainStacks=true), which must then be deleted by hand",
                )
            )
            for region in broken:
                stack = instances[region].stack_id or "the StackSet-" + settings.name + "-... stack"
                again = (
                    " (the next rollout deploys the watch again)"
                    if account_id in listed and account_id not in disabled
                    else ""
                )
                warnings.append(
                    f"account {account_id} in {region}: after this rollout, delete {stack} in that account by "
                    f"hand{again}"
                )
        healthy = tuple(sorted(r for r in instances if r not in broken))
        if not healthy:
            continue
        if account_id in disabled:
            groups.setdefault((False, healthy), []).append(AccountChange(account_id, name, "disabled in the config"))
            continue
        gone = healthy if account_id not in listed else tuple(r for r in healthy if r not in regions)
        if not gone:
            continue
        if prune:
            why = "no longer in the config" if account_id not in listed else f"region(s) {', '.join(gone)} removed"
            groups.setdefault((False, gone), []).append(AccountChange(account_id, name, f"{why} (--prune)"))
        else:
            orphans.append(account_id if account_id not in listed else f"{account_id} in {', '.join(gone)}")
    steps = []
    for (retain, delete_regions), group in sorted(groups.items()):
        for start in range(0, len(group), MAX_ACCOUNTS_PER_OPERATION):
            changes = tuple(group[start : start + MAX_ACCOUNTS_PER_OPERATION])
            accounts = tuple(change.account_id for change in changes)
            steps.append(
                DeleteInstances(
                    operation_id("d", None, [marker, "d", list(accounts), delete_regions, retain]),
                    accounts,
                    delete_regions,
                    changes,
                    retain,
                )
            )
    return Deletions(tuple(steps), tuple(orphans), tuple(warnings))


# -- the whole plan -----------------------------------------------------------------------------------------------


def make_plan(
    config: Config,
    template_body: str,
    shared_parameters: Mapping[str, str],
    snapshot: Snapshot,
    *,
    prune: bool = False,
    unit: StackSetUnit | None = None,
) -> Plan:
    unit = unit or watch_unit(config)
    settings = unit.settings
    regions = unit.regions
    check_permission_model(settings, snapshot.stack_set)
    digest_of_template = template_digest(template_body)
    delta = stack_set_delta(snapshot.stack_set, digest_of_template, shared_parameters)
    coverage = plan_coverage(config, snapshot, settings)
    targets, skipped = coverage.targets, coverage.skipped
    warnings = [*snapshot.warnings, *coverage.warnings]
    warnings.extend(_foreign_operation_warnings(snapshot))

    states = classify_accounts(targets, regions, snapshot, unit.overrides)
    for state in states:
        if state.suspended:
            warnings.append(f"account {state.account_id} is suspended; StackSets skips it until it is reinstated")
        if state.in_progress:
            warnings.append(
                f"account {state.account_id}: an operation is deploying its instance in "
                f"{', '.join(state.in_progress)}; it is waited for, not submitted again"
            )
    target = choose_stack_set_target(states, regions) if delta.needs_update else None
    if delta.needs_update and target is None:
        warnings.append(
            f"the stack set must change ({'; '.join(delta.reasons)}) but no account can carry the update now "
            "(every instance is busy or INOPERABLE); the next rollout applies it"
        )
    marker = _state_marker(snapshot, digest_of_template)
    steps: list[Step] = []
    if not delta.exists and regions:
        # A unit without regions (no forward region left) is not created; one that exists is emptied below.
        steps.append(CreateStackSet(settings.name, dict(shared_parameters)))
    steps.extend(instance_steps(states, delta, target, shared_parameters, snapshot.stack_set, marker, settings))
    kept = frozenset(t.account_id for t in targets) | frozenset(coverage.suspended)
    deletions = plan_deletions(config, snapshot, marker, prune=prune, watched=kept, settings=settings)
    steps.extend(deletions.steps)
    warnings.extend(deletions.warnings)
    unchanged = 0 if delta.needs_update else sum(1 for state in states if state.fully_current)
    return Plan(
        stack_set=settings.name,
        steps=tuple(steps),
        unchanged_accounts=unchanged,
        kept_orphans=deletions.kept_orphans,
        skipped_accounts=skipped,
        warnings=tuple(warnings),
        waiting_accounts=tuple(s.account_id for s in states if s.in_progress),
        resuming=tuple(op.operation_id for op in snapshot.pending_operations),
        template_body=template_body,
        unit=unit.key,
    )


def _foreign_operation_warnings(snapshot: Snapshot) -> list[str]:
    return [
        f"operation {op.operation_id} ({op.action or 'unknown action'}, not started by loginwatch-org) is "
        f"{op.status} on the stack set; rollout waits for it before planning"
        for op in snapshot.foreign_operations
    ]


def make_removal_plan(
    config: Config,
    snapshot: Snapshot,
    accounts: tuple[str, ...] = (),
    *,
    retain_stacks: bool = False,
    unit: StackSetUnit | None = None,
) -> Plan:
    """Delete the listed accounts' instances (all when none are listed), then the stack set once empty.
    INOPERABLE instances are always removed with RetainStacks=true: deleting their stacks failed before and
    would fail again (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackInstance.html)."""
    deployed = snapshot.instances_by_account()
    chosen = sorted(accounts) if accounts else sorted(deployed)
    warnings = [f"account {a} has no stack instance; nothing to remove there" for a in chosen if a not in deployed]
    chosen = [a for a in chosen if a in deployed]
    steps: list[Step] = []
    marker = _state_marker(snapshot, "remove")
    for retain in sorted({retain_stacks, True}):
        picked = [
            (a, tuple(sorted(r for r, i in deployed[a].items() if (i.inoperable or retain_stacks) == retain)))
            for a in chosen
        ]
        picked = [(a, regions) for a, regions in picked if regions]
        if not picked:
            continue
        names = tuple(a for a, _ in picked)
        regions = tuple(sorted({r for _, rs in picked for r in rs}))
        reason = "removal requested" + ("" if retain == retain_stacks else " (INOPERABLE: its stack is kept)")
        changes = tuple(AccountChange(a, _name(config, a), reason) for a in names)
        steps.append(
            DeleteInstances(
                operation_id("d", None, [marker, "remove", list(names), regions, retain]),
                names,
                regions,
                changes,
                retain,
            )
        )
    if snapshot.stack_set is not None and set(chosen) == set(deployed):
        steps.append(DeleteStackSet(snapshot.stack_set.name))
    unit = unit or watch_unit(config)
    return Plan(stack_set=unit.name, steps=tuple(steps), warnings=tuple(warnings), unit=unit.key)


def _digest(overrides: Mapping[str, str]) -> str:
    # Thousands of accounts share a handful of override sets: hash each set once.
    return _digest_of_items(tuple(sorted(overrides.items())))


@lru_cache(maxsize=4096)
def _digest_of_items(items: tuple[tuple[str, str], ...]) -> str:
    return overrides_digest(dict(items))


def _known_digest(instance: DeployedInstance) -> str | None:
    if instance.overrides is not None:
        return overrides_digest(instance.overrides)
    return instance.overrides_digest


def _override_reason(instance: DeployedInstance, desired: Mapping[str, str]) -> str:
    if instance.overrides is None:
        return "overrides differ from the config"
    changed = [key for key in desired if instance.overrides.get(key) != desired[key]]
    labels = {RECIPIENTS_PARAMETER: "recipients changed", ALERT_POLICY_PARAMETER: "alert policy changed"}
    return ", ".join(labels.get(key, f"{key} changed") for key in changed) or "parameter overrides changed"


def _retry_reason(instance: DeployedInstance) -> str:
    detail = instance.detailed_status or instance.status
    reason = f"retry: {instance.status}/{detail}"
    return f"{reason} ({instance.status_reason})" if instance.status_reason else reason


def _state_marker(snapshot: Snapshot, salt: str) -> list[Any]:
    # What the step starts from: the same observed state always yields the same OperationId (a rerun finds
    # its own submitted operation), and any later operation on the stack set yields a fresh one.
    stack_set = snapshot.stack_set
    return [
        salt,
        stack_set.template_digest if stack_set else None,
        snapshot.latest_operation_id,
        sorted((i.account_id, i.region, i.last_operation_id or "", i.status) for i in snapshot.instances),
    ]


def _name(config: Config, account_id: str) -> str:
    return config.account_names().get(account_id, "")
