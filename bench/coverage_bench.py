"""Read calls and wall time of `plan` and `status` with coverage, by organisation size, on the doubles.

    .venv/bin/python bench/coverage_bench.py [--sizes 100,1000,5000] [--latency-ms 20] [--ous 10] [--runs 3]

For each size, a converged organisation (every account watched, and forwarders from ``--regions`` regions) is
planned and its status read as the commands do: both stack set units (the member watches and the forwarders),
with one set of clients per command. Once with the stack sets targeting the root (the organisation is one
ListAccounts listing, pages of 20) and once targeting ``--ous`` OUs (each walked with ListAccountsForParent,
four at a time). Every call to either double waits ``--latency-ms`` first, as an AWS round trip would, so the
wall time shows what reading the organisation once per command, beside the stack instance pages, and the OUs
beside each other, saves: "sequential" is the same command with every read made one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loginwatch_org.aws import organization as organization_module
from loginwatch_org.aws import reader
from loginwatch_org.config import DEFAULT_ENABLED_REGIONS, WATCH_REGION, Config
from loginwatch_org.workflow import (
    Clients,
    Pacing,
    account_statuses,
    apply_units,
    prepare_units,
    watched_accounts,
)
from tests.doubles.organizations import OrganizationsDouble
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, config_for, organization


class Slow:
    """Every method call of ``inner`` waits ``latency`` seconds first (a round trip), then answers."""

    def __init__(self, inner: Any, latency: float) -> None:
        self._inner = inner
        self._latency = latency

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if not callable(method) or name.startswith("_"):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self._latency)
            return method(*args, **kwargs)

        return call


class _InPlace:
    """A ThreadPoolExecutor that runs each task when it is submitted: the reader made sequential."""

    def __init__(self, max_workers: int = 1) -> None:
        pass

    def __enter__(self) -> _InPlace:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:
            future.set_exception(error)
        return future

    def map(self, fn: Callable[..., Any], items: Any) -> Iterator[Any]:
        return map(fn, items)


@contextmanager
def _sequential() -> Iterator[None]:
    originals = [(module, module.ThreadPoolExecutor) for module in (reader, organization_module)]
    for module, _ in originals:
        module.ThreadPoolExecutor = _InPlace  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        for module, original in originals:
            module.ThreadPoolExecutor = original  # type: ignore[misc]


# The stack set units: the plain stacks of the management and mail accounts read no organisation.
UNITS = ["watch", "forwarders"]
FORWARD_REGIONS = sorted(DEFAULT_ENABLED_REGIONS - {WATCH_REGION})
QUIET = Pacing(sleep=lambda _seconds: None)


def _world(size: int, ous: int, by_ou: bool, regions: int) -> tuple[StackSetsDouble, OrganizationsDouble, Config]:
    layout = organization(size, ous=ous)
    units = sorted(key for key in layout if key.startswith("ou-"))
    extra: dict[str, Any] = {"forward_from": FORWARD_REGIONS[:regions]}
    if by_ou:
        extra["organizational_units"] = units
    config = config_for(size, 10, stack_set_extra=extra)
    double = StackSetsDouble(layout, MANAGEMENT_ACCOUNT, polls_per_state=1)
    org = OrganizationsDouble(layout=layout, management_account=MANAGEMENT_ACCOUNT)
    clients = Clients(double.client(), org)
    apply_units(config, clients, prepare_units(config, clients, only=UNITS, wait=True, pacing=QUIET), QUIET)
    return double, org, config


def _timed(double: StackSetsDouble, org: OrganizationsDouble, action: Callable[[], Any]) -> tuple[int, int, float]:
    double.reset_calls()
    org.calls.clear()
    started = time.perf_counter()
    action()
    return double.count(kind="read"), len(org.calls), (time.perf_counter() - started) * 1000


def bench(
    size: int, ous: int, by_ou: bool, regions: int, latency: float, runs: int
) -> list[tuple[str, int, int, float, float]]:
    double, org, config = _world(size, ous, by_ou, regions)

    def command() -> Clients:
        """Each command connects afresh, as the CLI does: nothing read by an earlier one is reused."""
        return Clients(Slow(double.client(), latency), Slow(org, latency))

    def plan() -> None:
        state = prepare_units(config, command(), only=UNITS)
        assert not state.plan.has_changes, state.plan

    def status() -> None:
        state = prepare_units(config, command(), only=UNITS)
        watch = state.state("watch")
        assert watch is not None and watch.snapshot is not None
        watched = watched_accounts(config, watch.snapshot)
        rows = account_statuses(config, watch.snapshot)
        assert not any(row.account_id in watched and row.needs_attention for row in rows)
        assert not any(state.unit_problems(config, key) for key in UNITS)

    rows = []
    for name, action in (("plan", plan), ("status", status)):
        walls: list[float] = []
        sequentials: list[float] = []
        for _ in range(runs):  # interleaved, so a busy moment of a shared machine hits both alike
            cfn_reads, org_reads, wall = _timed(double, org, action)
            walls.append(wall)
            with _sequential():
                sequentials.append(_timed(double, org, action)[2])
        rows.append((name, cfn_reads, org_reads, statistics.median(walls), statistics.median(sequentials)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--ous", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--regions", type=int, default=2, help=f"forwarder regions (at most {len(FORWARD_REGIONS)})")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    header = (
        f"{'accounts':>8}  {'targets':<8} {'command':<7} {'StackSets reads':>15} {'Organizations reads':>19}"
        f" {'wall':>9} {'sequential':>11}"
    )
    print(
        f"converged organisation, every account in the config, forwarders from {args.regions} region(s); "
        f"{args.latency_ms:g} ms a call; "
        f"median of {args.runs} runs\n"
    )
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        for by_ou in (False, True):
            label = f"{args.ous} OUs" if by_ou else "root"
            rows = bench(size, args.ous, by_ou, args.regions, latency, args.runs)
            for name, cfn_reads, org_reads, wall, sequential in rows:
                print(
                    f"{size:>8}  {label:<8} {name:<7} {cfn_reads:>15} {org_reads:>19}"
                    f" {wall:>7.0f}ms {sequential:>9.0f}ms"
                )


if __name__ == "__main__":
    main()
