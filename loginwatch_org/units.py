"""One plan over every deployment unit: the member watch stack set, the forwarders stack set, the management
account's plain stacks and the mail account's plain stack.

Pure, like ``plan`` and ``stack_plan``: each unit is planned on its own (``plan.make_plan`` for a stack set,
``stack_plan.plan_stacks`` for plain stacks) and ``DeploymentPlan`` only gathers them, in the order they are
applied, so that every command loops over units instead of branching on their kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loginwatch_org.cost import CostChange
from loginwatch_org.errors import UsageError
from loginwatch_org.plan import (
    FORWARDERS_UNIT,
    MAIL_UNIT_KEY,
    MANAGEMENT_UNIT_KEY,
    UNIT_KEYS,
    WATCH_UNIT,
    Plan,
)
from loginwatch_org.stack_plan import StackPlan

UNIT_TITLES = {
    MAIL_UNIT_KEY: "mail account",
    WATCH_UNIT: "member watch stack set",
    FORWARDERS_UNIT: "member forwarders stack set",
    MANAGEMENT_UNIT_KEY: "management account",
}

UnitPlanBody = Plan | StackPlan


@dataclass(frozen=True)
class UnitPlan:
    """One unit's plan: ``key`` is the name ``--only`` takes; ``plan`` its steps, whichever kind it is."""

    key: str
    plan: UnitPlanBody

    @property
    def kind(self) -> str:
        return "stack-set" if isinstance(self.plan, Plan) else "stacks"

    @property
    def has_changes(self) -> bool:
        return self.plan.has_changes

    @property
    def operation_count(self) -> int:
        return self.plan.operation_count

    @property
    def not_covered(self) -> str | None:
        return self.plan.not_covered if isinstance(self.plan, StackPlan) else None

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "unit": self.key, "kind": self.kind, "title": UNIT_TITLES[self.key]}


@dataclass(frozen=True)
class DeploymentPlan:
    """Every selected unit's plan, in the order a rollout applies them."""

    units: tuple[UnitPlan, ...]
    # The fixed monthly cost before and after (None: not priced, e.g. a plan built by hand in a test).
    cost: CostChange | None = None

    @property
    def has_changes(self) -> bool:
        return any(unit.has_changes for unit in self.units)

    @property
    def operation_count(self) -> int:
        """StackSet operations plus plain-stack write requests, over every unit."""
        return sum(unit.operation_count for unit in self.units)

    def unit(self, key: str) -> UnitPlan | None:
        return next((unit for unit in self.units if unit.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "has_changes": self.has_changes,
            "operation_count": self.operation_count,
            "units": [unit.to_dict() for unit in self.units],
            **({"cost": self.cost.to_dict()} if self.cost is not None else {}),
        }


def selected_units(only: Iterable[str] | None) -> tuple[str, ...]:
    """The units a command covers, in application order: all, or those ``--only`` names."""
    chosen = list(only or ())
    unknown = [key for key in chosen if key not in UNIT_KEYS]
    if unknown:
        raise UsageError(f"--only {unknown[0]}: a unit is one of {', '.join(UNIT_KEYS)}")
    return tuple(key for key in UNIT_KEYS if not chosen or key in chosen)
