"""The StackSets double's simulated time: operations take as long as their waves, the concurrent-instance quota
and managed execution say, and a rollout's units overlap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from loginwatch_org.aws.workers import worker_pool
from loginwatch_org.workflow import Pacing, apply_units, prepare_units
from tests.doubles.clients import moto_with_bucket_policies
from tests.doubles.stacksets import StackSetsClient, StackSetsDouble
from tests.doubles.timing import SimulatedClock, SlotPool, Timing
from tests.orgs import MANAGEMENT_ACCOUNT, organization
from tests.test_stack_plan import TEMPLATES
from tests.test_stackset_double import ROOT, big_org, service_set
from tests.test_units import FORWARDERS, Org, org_config

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

MINUTE = 60.0


def timed(timing: Timing, accounts: int = 100) -> tuple[StackSetsDouble, StackSetsClient]:
    double = StackSetsDouble(big_org(accounts), "999999999999", timing=timing)
    client = double.client()
    service_set(client, managed=True)
    return double, client


def status(client: StackSetsClient, operation_id: str) -> str:
    return str(
        client.describe_stack_set_operation(StackSetName="lw", OperationId=operation_id)["StackSetOperation"]["Status"]
    )


def create(client: StackSetsClient, accounts: list[str], regions: list[str], percentage: int = 25) -> str:
    return str(
        client.create_stack_instances(
            StackSetName="lw",
            DeploymentTargets={
                "OrganizationalUnitIds": [ROOT],
                "Accounts": accounts,
                "AccountFilterType": "INTERSECTION",
            },
            Regions=regions,
            OperationPreferences={
                "MaxConcurrentPercentage": percentage,
                "FailureTolerancePercentage": 10,
                "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
                "RegionConcurrencyType": "PARALLEL",
            },
        )["OperationId"]
    )


def accounts(count: int, first: int = 1) -> list[str]:
    return [f"{i:012d}" for i in range(first, first + count)]


def test_an_operation_takes_one_instance_time_per_wave() -> None:
    timing = Timing(instance_seconds=2 * MINUTE)
    _double, client = timed(timing)
    operation = create(client, accounts(100), ["us-east-1", "eu-west-1"])  # 25% of 100: 4 waves per Region
    assert status(client, operation) == "RUNNING"
    timing.clock.sleep(8 * MINUTE - 1)
    assert status(client, operation) == "RUNNING"
    timing.clock.sleep(1)
    assert status(client, operation) == "SUCCEEDED"


def test_the_concurrent_instance_quota_queues_the_excess() -> None:
    timing = Timing(instance_seconds=2 * MINUTE, concurrent_instances=30)
    _double, client = timed(timing)
    # 100% of 100 accounts in two Regions asks for 200 at once; 30 at a time is 7 waves (one pool, the slower reading).
    operation = create(client, accounts(100), ["us-east-1", "eu-west-1"], percentage=100)
    timing.clock.sleep(14 * MINUTE - 1)
    assert status(client, operation) == "RUNNING"
    timing.clock.sleep(1)
    assert status(client, operation) == "SUCCEEDED"


def test_read_per_region_the_quota_binds_each_region_on_its_own() -> None:
    timing = Timing(instance_seconds=2 * MINUTE, concurrent_instances=30, per_region=True)
    _double, client = timed(timing)
    operation = create(client, accounts(100), ["us-east-1", "eu-west-1"], percentage=100)
    timing.clock.sleep(8 * MINUTE)  # ceil(100 / 30) waves in each Region, side by side
    assert status(client, operation) == "SUCCEEDED"


@pytest.mark.parametrize(("reading", "minutes"), [("queued", 8), ("concurrent", 4)])
def test_managed_execution_runs_operations_on_other_instances_side_by_side_only_when_read_so(
    reading: str, minutes: int
) -> None:
    timing = Timing(instance_seconds=2 * MINUTE, managed_execution=reading)  # type: ignore[arg-type]
    _double, client = timed(timing)
    first = create(client, accounts(50), ["us-east-1"], percentage=50)  # 2 waves
    second = create(client, accounts(50, first=51), ["us-east-1"], percentage=50)
    timing.clock.sleep(minutes * MINUTE - 1)
    assert status(client, second) == "RUNNING"
    timing.clock.sleep(1)
    assert status(client, second) == "SUCCEEDED"
    assert status(client, first) == "SUCCEEDED"


def test_operations_on_the_same_instances_queue_under_either_reading() -> None:
    timing = Timing(instance_seconds=2 * MINUTE, managed_execution="concurrent")
    _double, client = timed(timing)
    first = create(client, accounts(10), ["us-east-1"], percentage=100)
    update = client.update_stack_instances(
        StackSetName="lw",
        DeploymentTargets={
            "OrganizationalUnitIds": [ROOT],
            "Accounts": accounts(10),
            "AccountFilterType": "INTERSECTION",
        },
        Regions=["us-east-1"],
        ParameterOverrides=[{"ParameterKey": "Recipients", "ParameterValue": "new@example.com"}],
        OperationPreferences={"MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 100},
    )["OperationId"]
    assert status(client, update) == "QUEUED"
    timing.clock.sleep(2 * MINUTE)
    assert status(client, first) == "SUCCEEDED"
    assert status(client, update) == "RUNNING"


def test_a_stack_set_refuses_instances_beyond_its_quota() -> None:
    timing = Timing(instances_per_stack_set=150)
    double, client = timed(timing)
    create(client, accounts(100), ["us-east-1"])
    with pytest.raises(ClientError) as refused:
        create(client, accounts(100), ["eu-west-1"])
    assert refused.value.response["Error"]["Code"] == "LimitExceededException"
    assert len(double.instances("lw")) == 100


def test_a_task_starts_at_its_submitters_time_and_waits_on_its_own() -> None:
    clock = SimulatedClock()
    clock.sleep(30)
    seen: list[float] = []

    def task(seconds: float) -> None:
        seen.append(clock.now())
        clock.sleep(seconds)

    with worker_pool(2) as pool:
        list(pool.map(task, [10, 50]))
    assert seen == [30, 30]
    assert clock.now() == 30 and clock.latest == 80  # side by side: the longer of the two, not their sum
    clock.sync()
    assert clock.now() == 80


def test_the_slot_pool_starts_what_the_quota_has_room_for() -> None:
    pool = SlotPool(capacity=10, span=100)
    pool.reserve(0, 6)
    pool.reserve(50, 4)
    assert pool.take(0, 4) == (100, 4)  # 50-100 holds all 10; at 100 the first six slots come free
    assert pool.take(20, 8) == (100, 6)
    assert pool.take(200, 20) == (200, 10)


@pytest.fixture
def timed_org() -> Iterator[tuple[Org, Timing]]:
    timing = Timing(instance_seconds=2 * MINUTE, managed_execution="queued")
    with moto_with_bucket_policies():
        yield Org(StackSetsDouble(organization(24), MANAGEMENT_ACCOUNT, timing=timing)), timing


def test_a_rollout_applies_the_watch_and_the_forwarders_side_by_side(timed_org: tuple[Org, Timing]) -> None:
    org, timing = timed_org
    config = org_config(24, groups=1).model_copy(
        update={
            "stack_set": org_config(24, groups=1).stack_set.model_copy(
                update={
                    "operation_preferences": org_config(24, groups=1).stack_set.operation_preferences.model_copy(
                        update={"max_concurrent_percentage": 100}
                    )
                }
            )
        }
    )
    pacing = Pacing(sleep=timing.clock.sleep, clock=timing.clock.now)
    state = prepare_units(config, org.clients, only=["watch", "forwarders"], registry=TEMPLATES, pacing=pacing)
    outcomes = apply_units(config, org.clients, state, pacing)
    assert [o.key for o in outcomes] == ["watch", "forwarders"] and all(not o.problems for o in outcomes)
    watch = org.double.operations("loginwatch")
    forwarders = org.double.operations(FORWARDERS)
    # Each unit is one wave of two minutes (100% concurrency, Regions in parallel); one after the other would
    # take twice that, and the forwarders' operation would start only after the watch's ended.
    assert forwarders[0]["created"] < watch[-1]["ended"]
    assert timing.clock.latest < 2 * 2 * MINUTE + 2 * MINUTE
