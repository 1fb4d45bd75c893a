"""API calls and StackSet operations of a rollout, by organisation size, against the StackSets double.

    .venv/bin/python bench/rollout_bench.py [--sizes 100,1000,5000] [--groups 10]

For each size: a first rollout, a converged rerun and a one-account recipient change, each as read calls
(StackSets and Organizations), write calls and StackSet operations, beside a naive baseline that describes
every instance to plan and submits and waits for one operation per account; and the planner's CPU time.
Then the other units: the forwarders stack set (every enabled member account in every forward region, no
per-account values) and the management account's plain stacks (its watch and a forwarder per region, on moto
in-process), first rollout and converged rerun.
The doubles answer instantly, so the figures are call counts and CPU, not AWS latency.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loginwatch_org.config import Config
from loginwatch_org.plan import account_overrides, forwarders_unit, make_plan
from loginwatch_org.templates import build_template, shared_parameters, template_body
from loginwatch_org.workflow import Clients, make_executor, prepare
from tests.doubles.organizations import OrganizationsDouble
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, account_ids, config_for, organization, with_recipients

Row = tuple[str, int, int, int]


def _measure(
    double: StackSetsDouble, organizations: OrganizationsDouble, action: Any, name: str = "loginwatch"
) -> tuple[int, int, int]:
    double.reset_calls()
    organizations.calls.clear()
    operations_before = len(double.operations(name)) if _exists(double, name) else 0
    action()
    operations = len(double.operations(name)) - operations_before
    return double.count(kind="read") + len(organizations.calls), double.count(kind="write"), operations


def _exists(double: StackSetsDouble, name: str = "loginwatch") -> bool:
    try:
        double.operations(name)
    except Exception:
        return False
    return True


def _rollout(double: StackSetsDouble, organizations: OrganizationsDouble, config: Config) -> None:
    clients = Clients(double.client(), organizations)
    executor = make_executor(config, clients, sleep=lambda _seconds: None)
    prepared = prepare(config, clients, executor=executor)
    executor.apply(prepared.plan)


def _naive_rollout(double: StackSetsDouble, config: Config, *, first: bool) -> None:
    """What a per-account loop does: describe every instance, then one operation per differing account."""
    client = double.client()
    body = template_body(build_template(config))
    if first:
        client.create_stack_set(
            StackSetName="loginwatch",
            TemplateBody=body,
            PermissionModel="SERVICE_MANAGED",
            AutoDeployment={"Enabled": False},
            ManagedExecution={"Active": True},
            Tags=[{"Key": "managed-by", "Value": "loginwatch-org"}],
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in shared_parameters(config).items()],
        )
    deployed: dict[str, dict[str, str]] = {}
    if not first:
        token = None
        while True:
            page = client.list_stack_instances(StackSetName="loginwatch", **({"NextToken": token} if token else {}))
            for summary in page["Summaries"]:
                instance = client.describe_stack_instance(
                    StackSetName="loginwatch",
                    StackInstanceAccount=summary["Account"],
                    StackInstanceRegion=summary["Region"],
                )["StackInstance"]
                deployed[summary["Account"]] = {
                    p["ParameterKey"]: p["ParameterValue"] for p in instance.get("ParameterOverrides", [])
                }
            token = page.get("NextToken")
            if not token:
                break
    operation_ids: list[str] = []
    for watch in config.targets():
        overrides = account_overrides(watch)
        if deployed.get(watch.account_id) == overrides:
            continue
        call = client.update_stack_instances if watch.account_id in deployed else client.create_stack_instances
        response = call(
            StackSetName="loginwatch",
            DeploymentTargets={
                "OrganizationalUnitIds": ["r-ab12"],
                "Accounts": [watch.account_id],
                "AccountFilterType": "INTERSECTION",
            },
            Regions=["us-east-1"],
            ParameterOverrides=[{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()],
        )
        operation_ids.append(response["OperationId"])
    for operation_id in operation_ids:  # a loop that checks each operation it started
        while client.describe_stack_set_operation(StackSetName="loginwatch", OperationId=operation_id)[
            "StackSetOperation"
        ]["Status"] in ("QUEUED", "RUNNING"):
            pass


def _planner_cpu(double: StackSetsDouble, config: Config) -> float:
    from loginwatch_org.aws.reader import StackSetReader
    from loginwatch_org.workflow import desired_overrides

    snapshot = StackSetReader(double.client()).read("loginwatch", desired_overrides(config))
    body = template_body(build_template(config))
    started = time.process_time()
    runs = 5
    for _ in range(runs):
        make_plan(config, body, shared_parameters(config), snapshot)
    return (time.process_time() - started) / runs * 1000


def bench(size: int, groups: int) -> tuple[list[Row], list[Row], float]:
    config = config_for(size, groups)
    changed = with_recipients(config, {account_ids(size)[size // 2]: ["moved@example.com"]})

    members = account_ids(size)
    double = StackSetsDouble(organization(size), MANAGEMENT_ACCOUNT, polls_per_state=1)
    organizations = OrganizationsDouble(members)

    def ours_run(target: Config) -> Any:
        return _measure(double, organizations, lambda: _rollout(double, organizations, target))

    ours = [
        ("first rollout", *ours_run(config)),
        ("converged rerun", *ours_run(config)),
        ("one-account change", *ours_run(changed)),
    ]
    cpu_ms = _planner_cpu(double, changed)

    naive_double = StackSetsDouble(organization(size), MANAGEMENT_ACCOUNT, polls_per_state=1)
    no_organizations = OrganizationsDouble(members)  # the naive loop does not check membership

    def naive_run(target: Config, first: bool) -> Any:
        return _measure(naive_double, no_organizations, lambda: _naive_rollout(naive_double, target, first=first))

    naive = [
        ("first rollout", *naive_run(config, True)),
        ("converged rerun", *naive_run(config, False)),
        ("one-account change", *naive_run(changed, False)),
    ]
    return ours, naive, cpu_ms


def bench_forwarders(size: int, groups: int) -> list[Row]:
    """The forwarders stack set: first rollout and converged rerun."""
    from tests.test_stack_plan import TEMPLATES  # the registered forwarder (a stand-in of its shape until then)

    config = config_for(size, groups)
    unit = forwarders_unit(config)
    double = StackSetsDouble(organization(size), MANAGEMENT_ACCOUNT, polls_per_state=1)
    organizations = OrganizationsDouble(account_ids(size))

    def rollout() -> None:
        clients = Clients(double.client(), organizations)
        executor = make_executor(config, clients, sleep=lambda _seconds: None, unit=unit)
        executor.apply(prepare(config, clients, executor=executor, unit=unit, registry=TEMPLATES).plan)

    return [
        (
            f"forwarders first rollout ({len(unit.regions)} regions)",
            *_measure(double, organizations, rollout, unit.name),
        ),
        ("forwarders converged rerun", *_measure(double, organizations, rollout, unit.name)),
    ]


def bench_management() -> list[tuple[str, int, int]]:
    """The management account's plain stacks on moto in-process: (scenario, read calls, write calls)."""
    import warnings

    import boto3
    from moto import mock_aws

    from loginwatch_org.stack_plan import management_stack_keys
    from loginwatch_org.workflow import Pacing, apply_units, prepare_units
    from tests.test_stack_plan import TEMPLATES

    warnings.filterwarnings("ignore", message="Tried to parse AWS::")
    rows: list[tuple[str, int, int]] = []
    with mock_aws():
        calls: list[str] = []
        clients: dict[str, Any] = {}

        def cloudformation_for(region: str) -> Any:
            if region not in clients:
                client = boto3.client("cloudformation", region_name=region)
                client.meta.events.register(
                    "provide-client-params.cloudformation", lambda model, **_: calls.append(model.name)
                )
                clients[region] = client
            return clients[region]

        config = config_for(1, 1)
        config = config.model_copy(
            update={"management_account": config.management_account.model_copy(update={"id": "123456789012"})}  # type: ignore[union-attr]
        )
        both = Clients(None, None, boto3.client("sts", region_name="us-east-1"), cloudformation_for)
        pacing = Pacing(sleep=lambda _seconds: None)
        for scenario in ("management stacks first rollout", "management stacks converged rerun"):
            calls.clear()
            with contextlib.redirect_stdout(io.StringIO()):  # moto prints the resource types it does not deploy
                state = prepare_units(config, both, only=["management"], wait=True, pacing=pacing, registry=TEMPLATES)
                apply_units(config, both, state, pacing)
            reads = sum(1 for name in calls if name.startswith(("Describe", "List", "Get")))
            rows.append((f"{scenario} ({len(management_stack_keys(config))} stacks)", reads, len(calls) - reads))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--groups", type=int, default=10)
    args = parser.parse_args()
    header = (
        f"{'accounts':>8}  {'scenario':<20} {'reads':>6} {'writes':>6} {'ops':>5}  |"
        f" {'naive reads':>11} {'naive writes':>12} {'naive ops':>9}"
    )
    print(f"{args.groups} distinct recipient groups; StackSets double (operations queue, then run)\n")
    print(header)
    print("-" * len(header))
    cpu: list[tuple[int, float]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        ours, naive, cpu_ms = bench(size, args.groups)
        for (name, reads, writes, ops), (_, n_reads, n_writes, n_ops) in zip(ours, naive, strict=True):
            print(f"{size:>8}  {name:<20} {reads:>6} {writes:>6} {ops:>5}  | {n_reads:>11} {n_writes:>12} {n_ops:>9}")
        cpu.append((size, cpu_ms))
    print("\nplanner CPU time (one plan of a converged organisation with one account changed)")
    for size, ms in cpu:
        print(f"{size:>8} accounts: {ms:8.1f} ms")
    print("\nthe other units (the forwarders carry no per-account values: one group, whatever the recipient groups)")
    header = f"{'accounts':>8}  {'scenario':<44} {'reads':>6} {'writes':>6} {'ops':>5}"
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        for name, reads, writes, ops in bench_forwarders(size, args.groups):
            print(f"{size:>8}  {name:<44} {reads:>6} {writes:>6} {ops:>5}")
    for name, reads, writes in bench_management():
        print(f"{'any':>8}  {name:<44} {reads:>6} {writes:>6} {'-':>5}")


if __name__ == "__main__":
    main()
