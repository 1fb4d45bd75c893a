"""The fixed monthly cost of what a unit has deployed, and of what its plan leaves deployed.

Pure, like the planners it reads: a stack set's cost is its instances times what its template's resources
cost by existing (``cost.py``), before and after the plan's steps; plain stacks are counted one by one. A
unit this run cannot cover (other credentials) costs, as far as this plan knows, what it costs now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from loginwatch_org.cost import CostChange, UnitCost, body_resource_types
from loginwatch_org.plan import CreateInstances, DeleteInstances, DeleteStackSet, Plan
from loginwatch_org.stack_plan import CreateStack, DeleteStack, ReplaceFailedStack, StackPlan, UpdateStack
from loginwatch_org.stack_state import DeployedStack
from loginwatch_org.state import Snapshot


def stack_set_cost(key: str, plan: Plan, snapshot: Snapshot | None) -> tuple[UnitCost, UnitCost]:
    deployed = snapshot.stack_set if snapshot is not None else None
    now_types = dict(deployed.resource_types) if deployed is not None else {}
    instances = {(i.account_id, i.region) for i in snapshot.instances} if snapshot is not None else set()
    now = UnitCost(key, len(instances) if deployed is not None else 0, now_types)
    after_instances = set(instances)
    for step in plan.steps:
        if isinstance(step, CreateInstances):
            after_instances |= _pairs(step.accounts, step.regions)
        elif isinstance(step, DeleteInstances):
            after_instances -= _pairs(step.accounts, step.regions)
        elif isinstance(step, DeleteStackSet):
            after_instances.clear()
    after_types = body_resource_types(plan.template_body) if plan.template_body else now_types
    return now, UnitCost(key, len(after_instances), after_types)


def _pairs(accounts: Iterable[str], regions: Iterable[str]) -> set[tuple[str, str]]:
    return {(account, region) for account in accounts for region in regions}


def stacks_cost(key: str, plan: StackPlan, deployed: Sequence[DeployedStack]) -> tuple[UnitCost, UnitCost]:
    now = {stack.key: dict(stack.resource_types) for stack in deployed}
    after = dict(now)
    if plan.not_covered is None:
        for step in plan.steps:
            stack_key = (step.region, step.name)
            if isinstance(step, DeleteStack):
                after.pop(stack_key, None)
            elif isinstance(step, CreateStack | UpdateStack | ReplaceFailedStack):
                after[stack_key] = body_resource_types(plan.template_bodies.get(step.template, ""))
    return _stacks(key, now.values()), _stacks(key, after.values())


def _stacks(key: str, stacks: Iterable[Mapping[str, int]]) -> UnitCost:
    """Plain stacks as one copy of everything they hold together."""
    total: Counter[str] = Counter()
    count = 0
    for types in stacks:
        total.update(types)
        count += 1
    return UnitCost(key, 1 if count else 0, dict(total))


def deployment_cost(units: Iterable[tuple[UnitCost, UnitCost]]) -> CostChange:
    pairs = list(units)
    return CostChange(tuple(now for now, _ in pairs), tuple(after for _, after in pairs))
