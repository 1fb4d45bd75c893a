"""Desired (config + template) versus deployed (snapshot): a typed, printable list of steps.

Pure: ``plan`` and ``rollout`` call the same ``make_plan``, so what ``plan`` prints is exactly what
``rollout`` does. Accounts with identical parameter overrides share one operation, so the number of
StackSet operations grows with the number of distinct recipient/policy groups, not with accounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from loginwatch_org.config import AccountWatch, Config
from loginwatch_org.errors import LoginwatchError
from loginwatch_org.state import (
    OWNER_TAG_KEY,
    OWNER_TAG_VALUE,
    DeployedInstance,
    Snapshot,
    operation_id,
    overrides_digest,
)
from loginwatch_org.templates import ALERT_POLICY_PARAMETER, RECIPIENTS_PARAMETER, template_digest


def account_overrides(watch: AccountWatch) -> dict[str, str]:
    """The parameter overrides one account's stack instance carries."""
    return {RECIPIENTS_PARAMETER: ",".join(watch.recipients), ALERT_POLICY_PARAMETER: watch.alert_on}


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
OPERATION_STEPS = (UpdateStackSet, CreateInstances, UpdateInstances, DeleteInstances)


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
    # The exact body the plan was made against (and its digest compared); what the executor sends.
    template_body: str = field(default="", repr=False, compare=False)

    @property
    def has_changes(self) -> bool:
        return bool(self.steps)

    @property
    def operation_count(self) -> int:
        return sum(isinstance(step, OPERATION_STEPS) for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack_set": self.stack_set,
            "has_changes": self.has_changes,
            "steps": [{"action": action_name(step), **_plain(asdict(step))} for step in self.steps],
            "unchanged_accounts": self.unchanged_accounts,
            "kept_orphans": list(self.kept_orphans),
            "skipped_accounts": list(self.skipped_accounts),
            "warnings": list(self.warnings),
        }


def action_name(step: Step) -> str:
    return {
        CreateStackSet: "create-stack-set",
        UpdateStackSet: "update-stack-set",
        CreateInstances: "create-instances",
        UpdateInstances: "update-instances",
        DeleteInstances: "delete-instances",
        DeleteStackSet: "delete-stack-set",
    }[type(step)]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@dataclass
class _Group:
    overrides: dict[str, str]
    regions: tuple[str, ...]
    accounts: list[str] = field(default_factory=list)
    changes: list[AccountChange] = field(default_factory=list)


class PlanError(LoginwatchError):
    """The config cannot be reached from the deployed state by a rollout; the message says what to do."""


def make_plan(
    config: Config,
    template_body: str,
    shared_parameters: Mapping[str, str],
    snapshot: Snapshot,
    *,
    prune: bool = False,
) -> Plan:
    settings = config.stack_set
    regions = tuple(settings.regions)
    digest_of_template = template_digest(template_body)
    deployed = snapshot.instances_by_account()
    targets = [t for t in config.targets() if t.account_id not in snapshot.accounts_outside_organization]
    skipped = tuple(t.account_id for t in config.targets() if t.account_id in snapshot.accounts_outside_organization)
    warnings = list(snapshot.warnings)
    for account_id in skipped:
        warnings.append(f"account {account_id} is in the config but not in the organisation; it is skipped")

    steps: list[Step] = []
    stack_set = snapshot.stack_set
    wanted_model = settings.permission_model.replace("-", "_").upper()
    if stack_set is not None and stack_set.permission_model != wanted_model:
        raise PlanError(
            f"stack set '{settings.name}' is {stack_set.permission_model} but the config says "
            f"{settings.permission_model}; StackSets cannot change the permission model of a stack set. Remove it "
            "(loginwatch-org remove) and roll out again, or give the new one another stack_set.name."
        )
    template_changed = stack_set is not None and stack_set.template_digest != digest_of_template
    parameter_changes: dict[str, tuple[str | None, str]] = {}
    if stack_set is None:
        steps.append(CreateStackSet(settings.name, dict(shared_parameters)))
    else:
        for key, value in shared_parameters.items():
            if stack_set.parameters.get(key) != value:
                parameter_changes[key] = (stack_set.parameters.get(key), value)
    stack_set_changed = (
        template_changed or bool(parameter_changes) or (stack_set is not None and not stack_set.managed_execution)
    )

    creates: dict[tuple[str, tuple[str, ...]], _Group] = {}
    updates: dict[tuple[str, tuple[str, ...]], _Group] = {}
    # Accounts whose overrides are right and need only the stack set's change: UpdateStackSet target candidates.
    current_by_digest: dict[str, list[str]] = {}
    unchanged = 0
    desired_by_account = {watch.account_id: account_overrides(watch) for watch in targets}

    for watch in targets:
        desired = desired_by_account[watch.account_id]
        digest = overrides_digest(desired)
        instances = deployed.get(watch.account_id, {})
        missing = tuple(region for region in regions if region not in instances)
        present = tuple(region for region in regions if region in instances)
        if missing:
            group = creates.setdefault((digest, missing), _Group(desired, missing))
            group.accounts.append(watch.account_id)
            group.changes.append(AccountChange(watch.account_id, watch.name, "new stack instance", None, desired))
        if not present:
            continue
        reasons: list[str] = []
        before: Mapping[str, str] | None = None
        for region in present:
            instance = instances[region]
            if _known_digest(instance) != digest:
                before = instance.overrides
                reasons.append(_override_reason(instance, desired))
            elif instance.suspended:
                warnings.append(f"account {watch.account_id} is suspended; StackSets skips it until it is reinstated")
            elif not instance.healthy:
                reasons.append(_retry_reason(instance))
        if reasons:
            group = updates.setdefault((digest, present), _Group(desired, present))
            group.accounts.append(watch.account_id)
            group.changes.append(
                AccountChange(watch.account_id, watch.name, "; ".join(dict.fromkeys(reasons)), before, desired)
            )
        elif stack_set_changed and not missing:
            current_by_digest.setdefault(digest, []).append(watch.account_id)
        elif stack_set_changed:
            # UpdateStackSet would name a region where this account has no instance yet: refresh its
            # existing instances with its own group instead.
            group = updates.setdefault((digest, present), _Group(desired, present))
            group.accounts.append(watch.account_id)
            group.changes.append(AccountChange(watch.account_id, watch.name, "the stack set changed", desired, desired))
        elif not missing:
            unchanged += 1

    state_marker = _state_marker(snapshot, digest_of_template)
    if stack_set is not None and stack_set_changed:
        reasons = _stack_set_reasons(template_changed, parameter_changes, stack_set.managed_execution)
        # UpdateStackSet cannot carry per-account overrides, so it targets the largest group of accounts whose
        # overrides are already right, and its OperationId carries their digest. Every other account is
        # refreshed by an UpdateStackInstances of its own group: every LastOperationId stays meaningful.
        target_digest = max(current_by_digest, key=lambda d: (len(current_by_digest[d]), d), default="")
        names = config.account_names()
        for digest, account_ids in current_by_digest.items():
            if digest == target_digest:
                continue
            group_overrides = desired_by_account[account_ids[0]]
            group = updates.setdefault((digest, regions), _Group(group_overrides, regions))
            for account_id in account_ids:
                group.accounts.append(account_id)
                group.changes.append(AccountChange(account_id, names.get(account_id, ""), "; ".join(reasons)))
        accounts = tuple(current_by_digest.get(target_digest, ()))
        overrides: Mapping[str, str] = desired_by_account[accounts[0]] if accounts else {}
        target_regions = regions
        if not accounts and updates:
            # No account is right yet, but naming no targets would make AWS update every instance, only for
            # the group operations to update them again. Target the smallest group; its overrides still change
            # afterwards, so this OperationId claims no digest.
            smallest = min(updates.values(), key=lambda g: (len(g.accounts), g.accounts[0]))
            accounts, target_regions = tuple(smallest.accounts), smallest.regions
            overrides = {}
        steps.append(
            UpdateStackSet(
                name=settings.name,
                operation_id=operation_id(
                    "s", overrides or None, [state_marker, "s", accounts, target_regions, dict(shared_parameters)]
                ),
                accounts=accounts,
                regions=target_regions,
                overrides=overrides,
                reasons=tuple(reasons),
                parameters=dict(shared_parameters),
                parameter_changes=parameter_changes,
                tags={**stack_set.tags, OWNER_TAG_KEY: OWNER_TAG_VALUE},
            )
        )
    for (_, group_regions), group in sorted(updates.items(), key=lambda item: item[1].accounts[0]):
        steps.append(
            UpdateInstances(
                operation_id("u", group.overrides, [state_marker, "u", group.accounts, group_regions, group.overrides]),
                tuple(group.accounts),
                group_regions,
                group.overrides,
                tuple(group.changes),
            )
        )
    for (_, group_regions), group in sorted(creates.items(), key=lambda item: item[1].accounts[0]):
        steps.append(
            CreateInstances(
                operation_id("c", group.overrides, [state_marker, "c", group.accounts, group_regions, group.overrides]),
                tuple(group.accounts),
                group_regions,
                group.overrides,
                tuple(group.changes),
            )
        )

    listed = {account.id for account in config.accounts}
    disabled = config.disabled_account_ids()
    # (account, regions to delete, why); an account or a region the config no longer lists is only deleted
    # with --prune, so a truncated config cannot wipe out watches. Disabling an account is explicit intent.
    deletions: list[tuple[str, tuple[str, ...], str]] = []
    orphans: list[str] = []
    for account_id in sorted(deployed):
        deployed_regions = tuple(sorted(deployed[account_id]))
        if account_id in disabled:
            deletions.append((account_id, deployed_regions, "disabled in the config"))
            continue
        gone = deployed_regions if account_id not in listed else tuple(r for r in deployed_regions if r not in regions)
        if not gone:
            continue
        if prune:
            why = "no longer in the config" if account_id not in listed else f"region(s) {', '.join(gone)} removed"
            deletions.append((account_id, gone, f"{why} (--prune)"))
        else:
            orphans.append(account_id if account_id not in listed else f"{account_id} in {', '.join(gone)}")
    # DeleteStackInstances deletes accounts x regions, so each distinct region set is one operation.
    by_regions: dict[tuple[str, ...], list[AccountChange]] = {}
    for account_id, gone, why in deletions:
        by_regions.setdefault(gone, []).append(AccountChange(account_id, _name(config, account_id), why))
    for delete_regions, changes in sorted(by_regions.items()):
        accounts = tuple(change.account_id for change in changes)
        steps.append(
            DeleteInstances(
                operation_id("d", None, [state_marker, "d", accounts, delete_regions]),
                accounts,
                delete_regions,
                tuple(changes),
            )
        )
    return Plan(
        stack_set=settings.name,
        steps=tuple(steps),
        unchanged_accounts=unchanged,
        kept_orphans=tuple(orphans),
        skipped_accounts=skipped,
        warnings=tuple(warnings),
        template_body=template_body,
    )


def make_removal_plan(
    config: Config, snapshot: Snapshot, accounts: tuple[str, ...] = (), *, retain_stacks: bool = False
) -> Plan:
    """Delete the listed accounts' instances (all when none are listed), then the stack set once empty."""
    deployed = snapshot.instances_by_account()
    chosen = sorted(accounts) if accounts else sorted(deployed)
    warnings = [f"account {a} has no stack instance; nothing to remove there" for a in chosen if a not in deployed]
    chosen = [a for a in chosen if a in deployed]
    steps: list[Step] = []
    if chosen:
        regions = tuple(sorted({r for a in chosen for r in deployed[a]}))
        changes = tuple(AccountChange(a, _name(config, a), "removal requested") for a in chosen)
        marker = _state_marker(snapshot, "remove")
        steps.append(
            DeleteInstances(
                operation_id("d", None, [marker, "remove", chosen, regions, retain_stacks]),
                tuple(chosen),
                regions,
                changes,
                retain_stacks,
            )
        )
    if snapshot.stack_set is not None and set(chosen) == set(deployed):
        steps.append(DeleteStackSet(snapshot.stack_set.name))
    return Plan(stack_set=config.stack_set.name, steps=tuple(steps), warnings=tuple(warnings))


def _stack_set_reasons(
    template_changed: bool, parameter_changes: Mapping[str, tuple[str | None, str]], managed_execution: bool
) -> list[str]:
    reasons: list[str] = []
    if template_changed:
        reasons.append("the template changed")
    if parameter_changes:
        reasons.append("shared parameters changed: " + ", ".join(sorted(parameter_changes)))
    if not managed_execution:
        reasons.append("managed execution is off (operations would conflict instead of queueing)")
    return reasons


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
