"""The management account's deployment unit: its desired plain stacks, and the typed steps that take what is
deployed there to what the config says.

Service-managed StackSets never deploy to the management account, so its watch (``<stack_set.name>-watch`` in
us-east-1) and its forwarders (``<stack_set.name>-forwarder`` in every forward region) are plain CloudFormation
stacks. Pure: ``plan`` and ``rollout`` share ``make_management_plan``, so what one prints the other does; a
converged stack yields no step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from troposphere import Template

from loginwatch_org.config import (
    DEFAULT_ENABLED_REGIONS,
    FORWARDER_STACK_SUFFIX,
    WATCH_REGION,
    WATCH_STACK_SUFFIX,
    Config,
)
from loginwatch_org.mail_setup import mail_region
from loginwatch_org.plan import account_overrides
from loginwatch_org.stack_state import CONTINUE_ROLLBACK_STATUS, DeployedStack
from loginwatch_org.state import OWNER_TAG_KEY, OWNER_TAG_VALUE, operation_id
from loginwatch_org.templates import REGISTRY, TemplateSpec, shared_parameters, template_body, template_digest
from loginwatch_org.templates.mail import mail_parameters

WATCH_TEMPLATE = "watch"
FORWARDER_TEMPLATE = "forwarder"
OWNER_TAGS: Mapping[str, str] = {OWNER_TAG_KEY: OWNER_TAG_VALUE}
# How much of a template digest a person reads in a plan; enough to tell two versions apart.
SHORT_DIGEST = 12


def watch_stack_name(config: Config) -> str:
    return config.stack_set.name + WATCH_STACK_SUFFIX


def forwarder_stack_name(config: Config) -> str:
    return config.stack_set.name + FORWARDER_STACK_SUFFIX


@dataclass(frozen=True)
class DesiredStack:
    """One stack as the config wants it. ``template`` names the registry entry the body was built from."""

    name: str
    region: str
    template: str
    parameters: Mapping[str, str]
    tags: Mapping[str, str]
    template_body: str = field(repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.region, self.name)

    @property
    def template_digest(self) -> str:
        return template_digest(self.template_body)


@dataclass(frozen=True)
class ParameterChange:
    key: str
    before: str | None
    after: str


@dataclass(frozen=True)
class CreateStack:
    name: str
    region: str
    template: str
    template_digest: str
    parameters: Mapping[str, str]
    tags: Mapping[str, str]
    token: str
    reason: str = "the stack does not exist yet"


@dataclass(frozen=True)
class UpdateStack:
    name: str
    region: str
    stack_id: str
    template: str
    template_digest: str
    parameters: Mapping[str, str]
    tags: Mapping[str, str]
    token: str
    # (deployed digest, new digest) when the template changed.
    template_change: tuple[str, str] | None = None
    parameter_changes: tuple[ParameterChange, ...] = ()
    tag_changes: tuple[ParameterChange, ...] = ()

    @property
    def reasons(self) -> tuple[str, ...]:
        reasons: list[str] = []
        if self.template_change is not None:
            before, after = self.template_change
            reasons.append(f"template {before[:SHORT_DIGEST]} -> {after[:SHORT_DIGEST]}")
        reasons.extend(
            f"parameter {change.key}: {_shown(change.before)} -> {change.after!r}" for change in self.parameter_changes
        )
        reasons.extend(f"tag {change.key}: {_shown(change.before)} -> {change.after!r}" for change in self.tag_changes)
        return tuple(reasons)


@dataclass(frozen=True)
class DeleteStack:
    name: str
    region: str
    stack_id: str
    reason: str
    token: str


@dataclass(frozen=True)
class ReplaceFailedStack:
    """A stack that can only be deleted (a failed creation: ROLLBACK_COMPLETE and kin), deleted and created
    again from the config. Nothing is lost: such a stack never had working resources."""

    name: str
    region: str
    stack_id: str
    status: str
    status_reason: str | None
    template: str
    template_digest: str
    parameters: Mapping[str, str]
    tags: Mapping[str, str]
    delete_token: str
    create_token: str


StackStep = CreateStack | UpdateStack | DeleteStack | ReplaceFailedStack


@dataclass(frozen=True)
class BlockedStack:
    """A stack the rollout must not touch, and what the admin must do about it."""

    name: str
    region: str
    problem: str


@dataclass(frozen=True)
class StackPlan:
    """The plan for one unit of plain stacks (today: the management account)."""

    unit: str
    steps: tuple[StackStep, ...]
    unchanged: tuple[str, ...] = ()
    # Stacks the config no longer lists; deleted only with --prune.
    kept: tuple[str, ...] = ()
    # Stacks CloudFormation is still working on: the rollout waits for them, then plans again.
    waiting: tuple[str, ...] = ()
    blocked: tuple[BlockedStack, ...] = ()
    # Why this run cannot cover the unit at all (and what to do), e.g. credentials of another account.
    not_covered: str | None = None
    warnings: tuple[str, ...] = ()
    # Registry name -> the exact body the plan was made against (and its digest compared): what is sent.
    template_bodies: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_changes(self) -> bool:
        return bool(self.steps or self.waiting)

    @property
    def operation_count(self) -> int:
        """CloudFormation write requests the steps make (a replacement is a delete and a create)."""
        return sum(2 if isinstance(step, ReplaceFailedStack) else 1 for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        for step in self.steps:
            item: dict[str, Any] = {"action": stack_action_name(step), **asdict(step)}
            if isinstance(step, UpdateStack):
                item["reasons"] = list(step.reasons)
            steps.append(item)
        return {
            "unit": self.unit,
            "has_changes": self.has_changes,
            "steps": steps,
            "unchanged": list(self.unchanged),
            "kept": list(self.kept),
            "waiting": list(self.waiting),
            "blocked": [asdict(item) for item in self.blocked],
            "not_covered": self.not_covered,
            "warnings": list(self.warnings),
        }


def stack_action_name(step: StackStep) -> str:
    return {
        CreateStack: "create-stack",
        UpdateStack: "update-stack",
        DeleteStack: "delete-stack",
        ReplaceFailedStack: "replace-failed-stack",
    }[type(step)]


def stack_label(region: str, name: str) -> str:
    return f"{name} ({region})"


# -- the management account -----------------------------------------------------------------------------------

MANAGEMENT_UNIT = "management account"


def management_stacks(config: Config, registry: Mapping[str, TemplateSpec] = REGISTRY) -> tuple[DesiredStack, ...]:
    """The management account's stacks: its watch in us-east-1 and a forwarder in each forward region; none
    when the config has no management account or disables it."""
    watch = config.management_watch()
    if watch is None:
        return ()
    shared = shared_parameters(config)
    watch_template = registry[WATCH_TEMPLATE].build(config)
    forwarder_template = registry[FORWARDER_TEMPLATE].build(config)
    stacks = [
        _desired(
            watch_stack_name(config),
            WATCH_REGION,
            WATCH_TEMPLATE,
            watch_template,
            {**shared, **account_overrides(watch)},
        )
    ]
    stacks.extend(
        _desired(forwarder_stack_name(config), region, FORWARDER_TEMPLATE, forwarder_template, shared)
        for region in config.forward_regions()
    )
    return tuple(stacks)


def management_stack_keys(config: Config) -> tuple[tuple[str, str], ...]:
    """(region, name) of every stack of the management account the reader should look for: wherever one could
    have been deployed, so that a stack the config no longer wants is seen (and kept or pruned).

    The watch only ever goes to us-east-1. Forwarders are looked for in every region enabled by default (one
    left in a region the config dropped must be found) and in the opt-in regions the config lists; not in
    other opt-in regions, since calls to a region the account has not enabled fail. So a forwarder left in an
    opt-in region dropped from the config is not seen: remove it before dropping the region."""
    regions = sorted((DEFAULT_ENABLED_REGIONS | set(config.forward_regions())) - {WATCH_REGION})
    forwarder = forwarder_stack_name(config)
    return ((WATCH_REGION, watch_stack_name(config)), *((region, forwarder) for region in regions))


def not_management_caller(config: Config, caller_account: str) -> str | None:
    """Why the caller cannot deploy the management account's stacks, or None when it can.

    CloudFormation creates a stack in the caller's own account, and the management account's stacks are
    plain stacks: only credentials of the management account itself can deploy them."""
    management = config.management_account
    if management is None or caller_account == management.id:
        return None
    return (
        f"the management account {management.id} ({management.name}) is not covered by this run: these "
        f"credentials belong to account {caller_account} (for example the StackSets delegated administrator), "
        "and its watch and forwarders are plain stacks that only the management account's own credentials can "
        "deploy. The member accounts are unaffected. To cover it, rerun the same command with management-account "
        "credentials, for example --profile <management-profile>."
    )


def make_management_plan(
    config: Config,
    deployed: Sequence[DeployedStack],
    *,
    prune: bool = False,
    caller_account: str | None = None,
    registry: Mapping[str, TemplateSpec] = REGISTRY,
) -> StackPlan:
    """The management account's plan. ``deployed`` are its stacks as read in the caller's account, which must
    not be read at all when ``caller_account`` is not the management account (the plan then says so)."""
    if caller_account is not None:
        problem = not_management_caller(config, caller_account)
        if problem is not None:
            return StackPlan(MANAGEMENT_UNIT, (), not_covered=problem)
    management = config.management_account
    retire_reason = (
        "the management account is disabled in the config" if management and not management.enabled else None
    )
    return plan_stacks(
        MANAGEMENT_UNIT,
        management_stacks(config, registry),
        deployed,
        prune=prune,
        retire_reason=retire_reason,
    )


def make_management_removal_plan(deployed: Sequence[DeployedStack]) -> StackPlan:
    """``remove``: delete every stack of the management account this tool owns."""
    return plan_stacks(MANAGEMENT_UNIT, (), deployed, retire_reason="removal requested")


# -- the mail account -----------------------------------------------------------------------------------------

MAIL_UNIT = "mail account"
MAIL_TEMPLATE = "mail"
MAIL_STACK_SUFFIX = "-mail"


def mail_stack_name(config: Config) -> str:
    return config.stack_set.name + MAIL_STACK_SUFFIX


def mail_stack_keys(config: Config) -> tuple[tuple[str, str], ...]:
    """(region, name) of the mail stack: in the Region of the SES identity it sends from; none without a mail
    account (a mail stack left behind by a config that dropped ``mail_account`` is removed with ``remove``
    before dropping it)."""
    region = mail_region(config)
    return ((region, mail_stack_name(config)),) if region is not None else ()


def mail_stacks(
    config: Config, organization_id: str, registry: Mapping[str, TemplateSpec] = REGISTRY
) -> tuple[DesiredStack, ...]:
    """The mail account's one stack; ``organization_id`` is the organisation whose watches may send through it."""
    keys = mail_stack_keys(config)
    if not keys:
        return ()
    ((region, name),) = keys
    template = registry[MAIL_TEMPLATE].build(config)
    return (_desired(name, region, MAIL_TEMPLATE, template, mail_parameters(config, organization_id)),)


def not_mail_caller(config: Config, caller_account: str) -> str | None:
    """Why the caller cannot deploy the mail stack, or None when it can: like the management account's, it is
    a plain stack that only the mail account's own credentials can create."""
    mail = config.delivery.mail_account
    if mail is None or caller_account == mail:
        return None
    return (
        f"the mail account {mail} is not covered by this run: these credentials belong to account "
        f"{caller_account}, and its stack is a plain stack that only the mail account's own credentials can deploy. "
        "Deploy it first (member watches send through it), with the same command, mail-account credentials and "
        "--only mail, for example --profile <mail-profile> --only mail."
    )


def make_mail_plan(
    config: Config,
    deployed: Sequence[DeployedStack],
    organization_id: str,
    *,
    prune: bool = False,
    caller_account: str | None = None,
    registry: Mapping[str, TemplateSpec] = REGISTRY,
) -> StackPlan:
    if caller_account is not None:
        problem = not_mail_caller(config, caller_account)
        if problem is not None:
            return StackPlan(MAIL_UNIT, (), not_covered=problem)
    return plan_stacks(MAIL_UNIT, mail_stacks(config, organization_id, registry), deployed, prune=prune)


def make_mail_removal_plan(deployed: Sequence[DeployedStack]) -> StackPlan:
    return plan_stacks(MAIL_UNIT, (), deployed, retire_reason="removal requested")


# -- any unit of plain stacks ---------------------------------------------------------------------------------


def plan_stacks(
    unit: str,
    desired: Iterable[DesiredStack],
    deployed: Iterable[DeployedStack],
    *,
    prune: bool = False,
    retire_reason: str | None = None,
) -> StackPlan:
    """Steps from ``deployed`` to ``desired``. A deployed stack that is no longer desired is deleted when
    ``retire_reason`` says why (explicit intent, such as disabling), else only with ``prune``: a truncated config
    must not wipe out watches."""
    wanted = {stack.key: stack for stack in desired}
    found = {stack.key: stack for stack in deployed}
    steps: list[StackStep] = []
    unchanged: list[str] = []
    kept: list[str] = []
    waiting: list[str] = []
    blocked: list[BlockedStack] = []
    for key in sorted(wanted.keys() | found.keys(), key=_order):
        stack, current = wanted.get(key), found.get(key)
        label = stack_label(*key)
        if current is not None:
            problem = _problem(current)
            if problem is not None:
                blocked.append(BlockedStack(current.name, current.region, problem))
                continue
            if current.in_progress:
                waiting.append(f"{label} is {current.status}")
                continue
        if stack is not None:
            step = _converge(stack, current)
            if step is None:
                unchanged.append(label)
            else:
                steps.append(step)
        elif current is not None:
            if retire_reason is not None:
                steps.append(_delete(current, retire_reason))
            elif prune:
                steps.append(_delete(current, "no longer in the config (--prune)"))
            else:
                kept.append(label)
    bodies = {stack.template: stack.template_body for stack in wanted.values()}
    return StackPlan(
        unit,
        tuple(steps),
        unchanged=tuple(unchanged),
        kept=tuple(kept),
        waiting=tuple(waiting),
        blocked=tuple(blocked),
        template_bodies=bodies,
    )


def _converge(stack: DesiredStack, current: DeployedStack | None) -> StackStep | None:
    digest = stack.template_digest
    if current is None:
        return CreateStack(
            stack.name,
            stack.region,
            stack.template,
            digest,
            dict(stack.parameters),
            dict(stack.tags),
            token=_token("c", stack, None),
        )
    if current.only_deletable:
        return ReplaceFailedStack(
            stack.name,
            stack.region,
            current.stack_id,
            current.status,
            current.status_reason,
            stack.template,
            digest,
            dict(stack.parameters),
            dict(stack.tags),
            delete_token=_token("r", stack, current),
            create_token=_token("c", stack, current),
        )
    template_change = (current.template_digest, digest) if current.template_digest != digest else None
    parameter_changes = _changes(current.parameters, stack.parameters)
    tag_changes = _changes(current.tags, stack.tags)
    if template_change is None and not parameter_changes and not tag_changes:
        return None
    return UpdateStack(
        stack.name,
        stack.region,
        current.stack_id,
        stack.template,
        digest,
        dict(stack.parameters),
        # UpdateStack replaces the stack's tag list: tags someone added are kept, ours set.
        {**current.tags, **stack.tags},
        token=_token("u", stack, current),
        template_change=template_change,
        parameter_changes=parameter_changes,
        tag_changes=tag_changes,
    )


def _delete(current: DeployedStack, reason: str) -> DeleteStack:
    token = operation_id("d", None, [current.region, current.name, current.stack_id, current.last_changed])
    return DeleteStack(current.name, current.region, current.stack_id, reason, token)


def _problem(current: DeployedStack) -> str | None:
    if not current.owned:
        return (
            f"stack {current.name} in {current.region} exists but is not managed by loginwatch-org (it lacks the "
            f"tag {OWNER_TAG_KEY}={OWNER_TAG_VALUE}); it is left alone. Choose another stack_set.name, or delete "
            "the stack if it is a leftover."
        )
    if current.status == CONTINUE_ROLLBACK_STATUS:
        return (
            f"stack {current.name} in {current.region} is {current.status}: an update failed and could not be "
            "rolled back, so CloudFormation accepts no update until the rollback is finished. Look at its events, "
            f"fix the cause, run 'aws cloudformation continue-update-rollback --stack-name {current.name} "
            f"--region {current.region}', then run the rollout again."
        )
    return None


def _changes(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[ParameterChange, ...]:
    return tuple(
        ParameterChange(key, before.get(key), value) for key, value in sorted(after.items()) if before.get(key) != value
    )


def _token(verb: str, stack: DesiredStack, current: DeployedStack | None) -> str:
    """A ClientRequestToken from the step and the state it was planned from: a rerun of the same step (after
    Ctrl-C, or a retried call) repeats it, and any later change gets a new one."""
    state = None if current is None else [current.stack_id, current.status, current.last_changed]
    content = [stack.region, stack.name, stack.template_digest, dict(stack.parameters), dict(stack.tags), state]
    return operation_id(verb, None, content)


def _desired(name: str, region: str, kind: str, template: Template, values: Mapping[str, str]) -> DesiredStack:
    # Each template declares the parameters it takes (the forwarder only the shared alarm action); CloudFormation
    # rejects a parameter the template does not declare.
    declared = template.parameters
    parameters = {key: value for key, value in values.items() if key in declared}
    return DesiredStack(name, region, kind, parameters, dict(OWNER_TAGS), template_body(template))


def _order(key: tuple[str, str]) -> tuple[int, str, str]:
    # The watch region first: a forwarder is useless before the watch it forwards to exists.
    region, name = key
    return (0 if region == WATCH_REGION else 1, region, name)


def _shown(value: str | None) -> str:
    return "(none)" if value is None else repr(value)
