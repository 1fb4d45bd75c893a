"""Simulated minutes a rollout takes in AWS, by organisation size and recipient groups, next to the quotas' bound.

    .venv/bin/python bench/rollout_time.py [--sizes 1000,5000] [--groups 1,5,50] [--instance-minutes 2] [--json]

Each row runs the real engine (plan, then every unit applied as ``rollout`` applies them) against the StackSets
double with simulated time (``tests/doubles/timing.py``): a stack instance takes ``--instance-minutes``, each
operation runs in waves of its per-Region concurrency, the concurrent-instance quota is shared by every stack
set of the administrator account, and the management account's plain stacks (moto, in-process) take the same
time per stack. Under two readings of managed execution: ``queued``, the operations of one stack set run one
after another; ``concurrent``, those on different stack instances run side by side. The quota is read the slower
way (one pool for every Region). Scenarios: a first rollout, a template change, and one account's recipients.

``bound`` is the least time the quotas allow for the same work: every stack instance deployment, spread over
the concurrent-instance quota, and (queued reading) the stack set with the most operations, one instance time
each. The mail account's stack is deployed by its own command, before the first rollout; it is not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loginwatch_org.aws.errors import AwsProblem
from loginwatch_org.config import Config
from loginwatch_org.templates import TemplateSpec
from loginwatch_org.workflow import Clients, Pacing, apply_units, prepare_units
from tests.doubles.organizations import OrganizationsDouble
from tests.doubles.stacksets import StackSetsDouble
from tests.doubles.timing import ManagedExecutionReading, SimulatedClock, TimedStacks, Timing
from tests.orgs import MANAGEMENT_ACCOUNT, account_ids, config_for, organization, with_recipients
from tests.test_stack_plan import TEMPLATES

MOTO_ACCOUNT = "123456789012"  # the account moto's STS names: the management account's plain stacks go there
READINGS: tuple[ManagedExecutionReading, ...] = ("queued", "concurrent")
# The targets at 2 minutes per stack instance: a first rollout of 1,000 accounts in 10 minutes, of 5,000 in 20,
# each within 1.5 times its bound.
TARGET_MINUTES = {1000: 10.0, 5000: 20.0}
BOUND_FACTOR = 1.5


def changed_templates() -> dict[str, TemplateSpec]:
    """The same templates with a new description: a template change every instance must take."""

    def redescribed(spec: TemplateSpec) -> TemplateSpec:
        def build(config: Config) -> Any:
            template = spec.build(config)
            template.set_description(f"{template.description or spec.description} (revised)")
            return template

        return TemplateSpec(spec.name, spec.description, build)

    return {name: redescribed(spec) for name, spec in TEMPLATES.items()}


def org_config(size: int, groups: int, percentage: int | None) -> Config:
    config = config_for(size, groups=groups)
    if percentage is not None:
        preferences = config.stack_set.operation_preferences.model_copy(
            update={"max_concurrent_percentage": percentage}
        )
        config = config.model_copy(
            update={"stack_set": config.stack_set.model_copy(update={"operation_preferences": preferences})}
        )
    assert config.management_account is not None
    return config.model_copy(
        update={"management_account": config.management_account.model_copy(update={"id": MOTO_ACCOUNT})}
    )


class Run:
    """One organisation under one reading: the doubles, the clock, and a rollout that reports its minutes."""

    def __init__(
        self, size: int, reading: ManagedExecutionReading, instance_seconds: float, concurrent_instances: int
    ) -> None:
        import boto3

        self.timing = Timing(
            instance_seconds=instance_seconds, managed_execution=reading, concurrent_instances=concurrent_instances
        )
        self.clock: SimulatedClock = self.timing.clock
        self.double = StackSetsDouble(organization(size), MANAGEMENT_ACCOUNT, timing=self.timing, page_size=100)
        self.organizations = OrganizationsDouble([*account_ids(size), MANAGEMENT_ACCOUNT])
        self._stacks: dict[str, TimedStacks] = {}
        self._sts = boto3.client("sts", region_name="us-east-1")
        self._boto3 = boto3

    def _cloudformation_for(self, region: str) -> Any:
        if region not in self._stacks:
            client = self._boto3.client("cloudformation", region_name=region)
            self._stacks[region] = TimedStacks(client, self.clock, self.timing.instance_seconds)
        return self._stacks[region]

    def _operations(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for name in ("loginwatch", "loginwatch-forwarders"):
            with contextlib.suppress(ValueError, KeyError):
                found[name] = self.double.operations(name)
        return found

    def rollout(self, config: Config, registry: dict[str, TemplateSpec]) -> Rollout:
        clients = Clients(self.double.client(), self.organizations, self._sts, self._cloudformation_for)
        pacing = Pacing(sleep=self.clock.sleep, clock=self.clock.now)
        before = {name: len(operations) for name, operations in self._operations().items()}
        self.clock.sync()
        started = self.clock.now()
        try:
            state = prepare_units(config, clients, wait=True, pacing=pacing, registry=registry)
            outcomes = apply_units(config, clients, state, pacing)
        except AwsProblem:
            # The executor's own limit (PollPolicy.timeout): the operations keep running, and so would a rerun.
            return Rollout(minutes=(self.clock.latest - started) / 60, operations=0, busiest=0, instances=0, stacks=0,
                           gave_up=True)  # fmt: skip
        problems = [problem for outcome in outcomes for problem in outcome.problems.values()]
        if problems:
            raise SystemExit(f"the rollout did not converge: {problems[:3]}")
        new = {name: operations[before.get(name, 0) :] for name, operations in self._operations().items()}
        return Rollout(
            minutes=(self.clock.latest - started) / 60,
            operations=sum(len(operations) for operations in new.values()),
            busiest=max((len(operations) for operations in new.values()), default=0),
            instances=sum(len(op["results"]) for operations in new.values() for op in operations),
            stacks=sum(len(outcome.stacks) for outcome in outcomes),
        )


@dataclass(frozen=True)
class Rollout:
    minutes: float
    operations: int  # StackSet operations
    busiest: int  # operations on the stack set that had the most
    instances: int  # stack instance deployments, over every operation
    stacks: int  # plain stacks written
    gave_up: bool = False  # still waiting when the executor stops waiting

    def bound_minutes(self, timing: Timing) -> float:
        """The least time the quotas allow for the same work (see the module docstring)."""
        work = self.instances + self.stacks
        waves = math.ceil(work / timing.concurrent_instances)
        if timing.managed_execution == "queued":
            waves = max(waves, self.busiest)
        return waves * timing.instance_seconds / 60


def bench(
    size: int,
    groups: int,
    reading: ManagedExecutionReading,
    instance_seconds: float,
    percentage: int | None,
    concurrent_instances: int,
) -> list[dict[str, Any]]:
    run = Run(size, reading, instance_seconds, concurrent_instances)
    config = org_config(size, groups, percentage)
    rows: list[dict[str, Any]] = []
    changed = changed_templates()
    one_account = account_ids(size)[0]
    scenarios: list[tuple[str, Config, dict[str, TemplateSpec]]] = [
        ("first rollout", config, TEMPLATES),
        ("template change", config, changed),
        ("one account", with_recipients(config, {one_account: ["moved@example.com"]}), changed),
    ]
    for scenario, scenario_config, registry in scenarios:
        cpu = time.process_time()
        rollout = run.rollout(scenario_config, registry)
        if rollout.gave_up:
            rows.append(
                {"accounts": size, "groups": groups, "reading": reading, "scenario": scenario, "gave_up": True,
                 "minutes": round(rollout.minutes, 1), "meets_target": False if scenario == "first rollout" else None}
            )  # fmt: skip
            break  # what follows would first wait for what is still running
        bound = rollout.bound_minutes(run.timing)
        target = TARGET_MINUTES.get(size) if scenario == "first rollout" else None
        met = None if target is None else rollout.minutes <= min(target, BOUND_FACTOR * bound)
        rows.append(
            {
                "accounts": size,
                "groups": groups,
                "max_concurrent_percentage": config.stack_set.operation_preferences.max_concurrent_percentage,
                "reading": reading,
                "scenario": scenario,
                "minutes": round(rollout.minutes, 1),
                "bound_minutes": round(bound, 1),
                "operations": rollout.operations,
                "instances": rollout.instances,
                "stacks": rollout.stacks,
                "target_minutes": target,
                "meets_target": met,
                "cpu_seconds": round(time.process_time() - cpu, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--groups", default="1,5,50")
    parser.add_argument("--instance-minutes", type=float, default=2.0)
    parser.add_argument(
        "--max-concurrent-percentage", type=int, help="instead of the default operation preferences' value"
    )
    parser.add_argument(
        "--concurrent-instances",
        type=int,
        default=Timing().concurrent_instances,
        help="the StackSets instance operations quota (the 2023 guide said 3,500)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object: every row, for machines")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Tried to parse AWS::")
    logging.getLogger("moto").setLevel(logging.ERROR)  # the resource types moto does not deploy, once per stack

    from moto import mock_aws

    rows: list[dict[str, Any]] = []
    printed = 0
    if not args.json:
        print(
            f"{args.instance_minutes:g} min per stack instance; {args.concurrent_instances:,} concurrent stack "
            "instances per administrator account (one pool for every Region)\n"
        )
        _print_header()
    with mock_aws():
        for size in (int(s) for s in args.sizes.split(",")):
            for groups in (int(g) for g in args.groups.split(",")):
                for reading in READINGS:
                    rows.extend(
                        bench(
                            size,
                            groups,
                            reading,
                            args.instance_minutes * 60,
                            args.max_concurrent_percentage,
                            args.concurrent_instances,
                        )
                    )
                    if not args.json:
                        for row in rows[printed:]:
                            _print_row(row)
                        printed = len(rows)
    if args.json:
        settings = {"instance_minutes": args.instance_minutes, "concurrent_instances": args.concurrent_instances}
        print(json.dumps({**settings, "rows": rows}, indent=2))


def _print_header() -> None:
    print(
        f"{'accounts':>8} {'groups':>6} {'reading':<10} {'scenario':<16} {'minutes':>8} {'bound':>6} "
        f"{'ops':>5} {'instances':>9} {'target':>7}"
    )
    print("-" * 82)


def _print_row(row: dict[str, Any]) -> None:
    if row.get("gave_up"):
        print(
            f"{row['accounts']:>8} {row['groups']:>6} {row['reading']:<10} {row['scenario']:<16} "
            f"{'>' + format(row['minutes'], '.0f'):>8}  the executor stopped waiting (rerun waits on)",
            flush=True,
        )
        return
    verdict = "" if row["meets_target"] is None else ("met" if row["meets_target"] else "MISSED")
    print(
        f"{row['accounts']:>8} {row['groups']:>6} {row['reading']:<10} {row['scenario']:<16} {row['minutes']:>8.1f} "
        f"{row['bound_minutes']:>6.1f} {row['operations']:>5} {row['instances'] + row['stacks']:>9} {verdict:>7}",
        flush=True,
    )


if __name__ == "__main__":
    main()
