"""Read calls and wall time of `plan` and `status` with coverage, by organisation size, on the doubles.

    .venv/bin/python bench/coverage_bench.py [--sizes 100,1000,5000] [--latency-ms 20] [--ous 10] [--runs 3]

For each size, a converged organisation (every account watched) is planned and its status read, once with the
stack set targeting the root (the organisation is one ListAccounts listing, pages of 20) and once targeting
``--ous`` OUs (each walked with ListAccountsForParent, four at a time). Every call to either double waits
``--latency-ms`` first, as an AWS round trip would, so the wall time shows what reading the organisation beside
the stack instance pages, and the OUs beside each other, saves: "sequential" is the same command with every
read made one after the other.
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

from loginwatch_org.aws import reader
from loginwatch_org.config import Config
from loginwatch_org.workflow import Clients, account_statuses, make_executor, prepare, read_snapshot, watched_accounts
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
    original = reader.ThreadPoolExecutor
    reader.ThreadPoolExecutor = _InPlace  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        reader.ThreadPoolExecutor = original  # type: ignore[misc]


def _world(size: int, ous: int, by_ou: bool) -> tuple[StackSetsDouble, OrganizationsDouble, Config]:
    layout = organization(size, ous=ous)
    units = sorted(key for key in layout if key.startswith("ou-"))
    extra = {"organizational_units": units} if by_ou else None
    config = config_for(size, 10, stack_set_extra=extra)
    double = StackSetsDouble(layout, MANAGEMENT_ACCOUNT, polls_per_state=1)
    org = OrganizationsDouble(layout=layout, management_account=MANAGEMENT_ACCOUNT)
    clients = Clients(double.client(), org)
    executor = make_executor(config, clients, sleep=lambda _seconds: None)
    executor.apply(prepare(config, clients, executor=executor).plan)
    return double, org, config


def _timed(double: StackSetsDouble, org: OrganizationsDouble, action: Callable[[], Any]) -> tuple[int, int, float]:
    double.reset_calls()
    org.calls.clear()
    started = time.perf_counter()
    action()
    return double.count(kind="read"), len(org.calls), (time.perf_counter() - started) * 1000


def bench(size: int, ous: int, by_ou: bool, latency: float, runs: int) -> list[tuple[str, int, int, float, float]]:
    double, org, config = _world(size, ous, by_ou)
    clients = Clients(Slow(double.client(), latency), Slow(org, latency))

    def plan() -> None:
        prepared = prepare(config, clients)
        assert not prepared.plan.has_changes, prepared.plan.steps

    def status() -> None:
        snapshot = read_snapshot(config, clients)
        watched = watched_accounts(config, snapshot)
        rows = account_statuses(config, snapshot)
        assert not any(row.account_id in watched and row.needs_attention for row in rows)

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
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    header = (
        f"{'accounts':>8}  {'targets':<8} {'command':<7} {'StackSets reads':>15} {'Organizations reads':>19}"
        f" {'wall':>9} {'sequential':>11}"
    )
    print(
        f"converged organisation, every account in the config; {args.latency_ms:g} ms a call; "
        f"median of {args.runs} runs\n"
    )
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        for by_ou in (False, True):
            label = f"{args.ous} OUs" if by_ou else "root"
            for name, cfn_reads, org_reads, wall, sequential in bench(size, args.ous, by_ou, latency, args.runs):
                print(
                    f"{size:>8}  {label:<8} {name:<7} {cfn_reads:>15} {org_reads:>19}"
                    f" {wall:>7.0f}ms {sequential:>9.0f}ms"
                )


if __name__ == "__main__":
    main()
