"""Checks that the StackSets test double behaves as the AWS CloudFormation API reference describes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from tests.doubles.stacksets import StackSetsClient, StackSetsDouble

MGMT = "999999999999"
ROOT = "r-ab12"
OU_A = "ou-ab12-aaaaaaaa"
OU_B = "ou-ab12-bbbbbbbb"
A1, A2, A3 = "111111111111", "111111111112", "111111111113"
B1, B2 = "222222222221", "222222222222"
REGION = "us-east-1"
TEMPLATE = '{"Resources": {}}'
ACTIVE = ("QUEUED", "RUNNING", "STOPPING")


def small_org() -> dict[str, list[str]]:
    return {ROOT: [MGMT], OU_A: [A1, A2, A3], OU_B: [B1, B2]}


def big_org(n: int, n_ous: int = 10) -> dict[str, list[str]]:
    accounts = [f"{i:012d}" for i in range(1, n + 1)]
    org: dict[str, list[str]] = {ROOT: [MGMT]}
    for k in range(n_ous):
        org[f"ou-ab12-{k:08d}"] = accounts[k::n_ous]
    return org


def service_set(client: StackSetsClient, name: str = "lw", *, managed: bool = False) -> None:
    client.create_stack_set(
        StackSetName=name,
        TemplateBody=TEMPLATE,
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": False},
        Parameters=[
            {"ParameterKey": "Recipients", "ParameterValue": "ops@example.com"},
            {"ParameterKey": "Level", "ParameterValue": "info"},
        ],
        Capabilities=["CAPABILITY_NAMED_IAM"],
        ManagedExecution={"Active": managed},
    )


def self_set(client: StackSetsClient, name: str = "lw-self", *, managed: bool = False) -> None:
    client.create_stack_set(
        StackSetName=name,
        TemplateBody=TEMPLATE,
        Parameters=[{"ParameterKey": "Recipients", "ParameterValue": "ops@example.com"}],
        ManagedExecution={"Active": managed},
    )


def wait(client: StackSetsClient, name: str, operation_id: str, limit: int = 100) -> list[str]:
    """Poll an operation until it finishes; returns every status seen."""
    seen: list[str] = []
    for _ in range(limit):
        status = client.describe_stack_set_operation(StackSetName=name, OperationId=operation_id)["StackSetOperation"][
            "Status"
        ]
        seen.append(status)
        if status not in ACTIVE:
            return seen
    raise AssertionError(f"operation {operation_id} still {seen[-1]} after {limit} polls")


def all_instances(client: StackSetsClient, name: str, **kwargs: Any) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    for page in client.get_paginator("list_stack_instances").paginate(StackSetName=name, **kwargs):
        summaries.extend(page["Summaries"])
    return summaries


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def double() -> StackSetsDouble:
    return StackSetsDouble(small_org(), MGMT)


@pytest.fixture
def client(double: StackSetsDouble) -> StackSetsClient:
    return double.client()


# --------------------------------------------------------------------------- asynchronous operations


def test_operation_moves_through_queued_and_running_one_poll_at_a_time() -> None:
    double = StackSetsDouble(small_org(), MGMT, polls_per_state=2)
    client = double.client()
    service_set(client)
    op = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_A]}, Regions=[REGION]
    )["OperationId"]

    # Nothing has been deployed yet: instances are listed, OUTDATED and PENDING.
    pending = double.instances("lw")
    assert set(pending) == {A1, A2, A3}
    assert {(i["status"], i["detailed_status"]) for i in pending.values()} == {("OUTDATED", "PENDING")}
    assert all(i["last_operation_id"] == op for i in pending.values())

    assert wait(client, "lw", op) == ["QUEUED", "QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"]
    done = double.instances("lw")
    assert {(i["status"], i["detailed_status"]) for i in done.values()} == {("CURRENT", "SUCCEEDED")}
    assert all(i["stack_id"] for i in done.values())


def test_running_operation_shows_first_batch_running(client: StackSetsClient, double: StackSetsDouble) -> None:
    service_set(client)
    op = client.create_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [OU_A]},
        Regions=[REGION],
        OperationPreferences={"MaxConcurrentCount": 2, "FailureToleranceCount": 1},
    )["OperationId"]
    client.describe_stack_set_operation(StackSetName="lw", OperationId=op)  # QUEUED
    described = client.describe_stack_set_operation(StackSetName="lw", OperationId=op)["StackSetOperation"]
    assert described["Status"] == "RUNNING"
    detailed = [s["StackInstanceStatus"]["DetailedStatus"] for s in all_instances(client, "lw")]
    assert sorted(detailed) == ["PENDING", "RUNNING", "RUNNING"]
    results = client.list_stack_set_operation_results(StackSetName="lw", OperationId=op)["Summaries"]
    assert sorted(r["Status"] for r in results) == ["PENDING", "RUNNING", "RUNNING"]


def test_zero_polls_per_state_finishes_on_first_poll() -> None:
    double = StackSetsDouble(small_org(), MGMT, polls_per_state=0)
    client = double.client()
    self_set(client)
    op = client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"]
    assert wait(client, "lw-self", op) == ["SUCCEEDED"]


def test_operation_description_has_the_reference_fields(client: StackSetsClient) -> None:
    service_set(client)
    op = client.create_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [OU_B]},
        Regions=[REGION],
        OperationPreferences={"FailureToleranceCount": 1, "MaxConcurrentCount": 2},
        OperationId="rollout-1",
    )
    assert op["OperationId"] == "rollout-1"
    assert op["ResponseMetadata"]["HTTPStatusCode"] == 200
    wait(client, "lw", "rollout-1")
    described = client.describe_stack_set_operation(StackSetName="lw", OperationId="rollout-1")["StackSetOperation"]
    assert described["Action"] == "CREATE"
    assert described["StackSetId"].startswith("lw:")
    assert described["OperationPreferences"]["FailureToleranceCount"] == 1
    assert described["DeploymentTargets"] == {"OrganizationalUnitIds": [OU_B]}
    assert described["EndTimestamp"] >= described["CreationTimestamp"]
    assert described["StatusDetails"]["FailedStackInstancesCount"] == 0


def test_unknown_operation_is_operation_not_found(client: StackSetsClient) -> None:
    service_set(client)
    with pytest.raises(ClientError) as exc:
        client.describe_stack_set_operation(StackSetName="lw", OperationId="nope")
    assert error_of(exc) == ("OperationNotFoundException", 404)


# --------------------------------------------------------------------------- concurrency


def test_second_write_without_managed_execution_is_refused(client: StackSetsClient, double: StackSetsDouble) -> None:
    service_set(client)
    first = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_A]}, Regions=[REGION]
    )["OperationId"]
    with pytest.raises(ClientError) as exc:
        client.create_stack_instances(
            StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_B]}, Regions=[REGION]
        )
    assert error_of(exc) == ("OperationInProgressException", 409)
    assert "is in progress" in exc.value.response["Error"]["Message"]
    assert [o["operation_id"] for o in double.operations("lw")] == [first]

    wait(client, "lw", first)
    second = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_B]}, Regions=[REGION]
    )["OperationId"]
    assert wait(client, "lw", second)[-1] == "SUCCEEDED"
    assert set(double.instances("lw")) == {A1, A2, A3, B1, B2}


def test_managed_execution_queues_and_waiting_on_the_later_operation_drives_both(
    client: StackSetsClient, double: StackSetsDouble
) -> None:
    service_set(client, managed=True)
    first = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_A]}, Regions=[REGION]
    )["OperationId"]
    second = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_B]}, Regions=[REGION]
    )["OperationId"]
    statuses = {o["operation_id"]: o["status"] for o in double.operations("lw")}
    assert statuses == {first: "QUEUED", second: "QUEUED"}

    seen = wait(client, "lw", second)
    # The later operation stays QUEUED until the earlier one has finished, then runs itself.
    assert seen[-1] == "SUCCEEDED"
    assert seen[:3] == ["QUEUED", "QUEUED", "QUEUED"]
    assert [o["status"] for o in double.operations("lw")] == ["SUCCEEDED", "SUCCEEDED"]
    assert double.instances("lw")[A1]["last_operation_id"] == first
    assert double.instances("lw")[B1]["last_operation_id"] == second


def test_describe_of_finished_operation_does_not_advance_others(client: StackSetsClient) -> None:
    service_set(client, managed=True)
    first = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_A]}, Regions=[REGION]
    )["OperationId"]
    wait(client, "lw", first)
    second = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_B]}, Regions=[REGION]
    )["OperationId"]
    for _ in range(5):
        client.describe_stack_set_operation(StackSetName="lw", OperationId=first)
    listed = client.list_stack_set_operations(StackSetName="lw")["Summaries"]
    assert {(s["OperationId"], s["Status"]) for s in listed} == {(second, "QUEUED"), (first, "SUCCEEDED")}


def test_delete_stack_set_with_operation_in_progress_is_refused(client: StackSetsClient) -> None:
    self_set(client)
    client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])
    with pytest.raises(ClientError) as exc:
        client.delete_stack_set(StackSetName="lw-self")
    assert error_of(exc) == ("OperationInProgressException", 409)


def test_retrying_a_refused_write_lets_the_blocking_operation_finish(
    client: StackSetsClient, double: StackSetsDouble
) -> None:
    self_set(client)
    first = client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"]
    refusals = 0
    while True:
        try:
            client.create_stack_instances(StackSetName="lw-self", Accounts=[A2], Regions=[REGION])
            break
        except ClientError as error:
            assert error.response["Error"]["Code"] == "OperationInProgressException"
            refusals += 1
            assert refusals < 10
    # Each refusal is one step of the blocking operation: QUEUED, RUNNING, then finished.
    assert refusals == 3
    assert double.operations("lw-self")[0]["status"] == "SUCCEEDED"
    assert double.instances("lw-self")[A1]["last_operation_id"] == first


# --------------------------------------------------------------------------- operation ids


def test_operation_id_reuse_is_refused_and_starts_nothing(client: StackSetsClient, double: StackSetsDouble) -> None:
    self_set(client, managed=True)
    client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], OperationId="op-1")
    with pytest.raises(ClientError) as exc:
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A2], Regions=[REGION], OperationId="op-1")
    assert error_of(exc) == ("OperationIdAlreadyExistsException", 409)
    assert len(double.operations("lw-self")) == 1
    assert set(double.instances("lw-self")) == {A1}

    # Still refused once the first operation has finished: the operation id still exists.
    wait(client, "lw-self", "op-1")
    with pytest.raises(ClientError) as exc:
        client.update_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], OperationId="op-1")
    assert error_of(exc) == ("OperationIdAlreadyExistsException", 409)
    assert len(double.operations("lw-self")) == 1


def test_operation_id_is_checked_before_operation_in_progress(client: StackSetsClient) -> None:
    self_set(client)
    client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], OperationId="op-1")
    with pytest.raises(ClientError) as exc:
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], OperationId="op-1")
    assert error_of(exc)[0] == "OperationIdAlreadyExistsException"


def test_operation_ids_are_per_stack_set(client: StackSetsClient) -> None:
    self_set(client, "one")
    self_set(client, "two")
    client.create_stack_instances(StackSetName="one", Accounts=[A1], Regions=[REGION], OperationId="same")
    client.create_stack_instances(StackSetName="two", Accounts=[A1], Regions=[REGION], OperationId="same")


def test_operation_id_pattern_is_enforced(client: StackSetsClient) -> None:
    self_set(client)
    with pytest.raises(ClientError) as exc:
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], OperationId="a_b")
    assert error_of(exc) == ("ValidationError", 400)


def test_generated_operation_ids_are_deterministic() -> None:
    ids = []
    for _ in range(2):
        client = StackSetsDouble(small_org(), MGMT).client()
        self_set(client)
        ids.append(
            client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"]
        )
    assert ids[0] == ids[1]


# --------------------------------------------------------------------------- targeting


def create_and_wait(client: StackSetsClient, targets: dict[str, Any]) -> str:
    op = client.create_stack_instances(StackSetName="lw", DeploymentTargets=targets, Regions=[REGION])
    wait(client, "lw", op["OperationId"])
    return str(op["OperationId"])


def test_intersection_targets_only_listed_accounts_in_the_ous(client: StackSetsClient, double: StackSetsDouble) -> None:
    service_set(client)
    create_and_wait(
        client, {"OrganizationalUnitIds": [OU_A], "Accounts": [A2, B1], "AccountFilterType": "INTERSECTION"}
    )
    assert set(double.instances("lw")) == {A2}
    assert double.instances("lw")[A2]["organizational_unit_id"] == OU_A


def test_difference_excludes_listed_accounts(client: StackSetsClient, double: StackSetsDouble) -> None:
    service_set(client)
    create_and_wait(
        client,
        {"OrganizationalUnitIds": [OU_A, OU_B], "Accounts": [A2, B1], "AccountFilterType": "DIFFERENCE"},
    )
    assert set(double.instances("lw")) == {A1, A3, B2}


def test_root_targets_every_account_except_the_management_account(
    client: StackSetsClient, double: StackSetsDouble
) -> None:
    service_set(client)
    create_and_wait(client, {"OrganizationalUnitIds": [ROOT]})
    instances = double.instances("lw")
    assert set(instances) == {A1, A2, A3, B1, B2}
    assert {i["organizational_unit_id"] for i in instances.values()} == {ROOT}
    summaries = all_instances(client, "lw")
    assert all(s["OrganizationalUnitId"] == ROOT for s in summaries)


def test_union_on_update_adds_accounts_from_other_ous(client: StackSetsClient, double: StackSetsDouble) -> None:
    service_set(client)
    create_and_wait(client, {"OrganizationalUnitIds": [ROOT]})
    op = client.update_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [OU_A], "Accounts": [B1], "AccountFilterType": "UNION"},
        Regions=[REGION],
    )["OperationId"]
    wait(client, "lw", op)
    touched = {a for a, i in double.instances("lw").items() if i["last_operation_id"] == op}
    assert touched == {A1, A2, A3, B1}


@pytest.mark.parametrize(
    "targets",
    [
        {"OrganizationalUnitIds": ["ou-ab12-zzzzzzzz"]},
        {"OrganizationalUnitIds": [OU_A], "Accounts": [A1]},
        {"OrganizationalUnitIds": [OU_A], "Accounts": [B1], "AccountFilterType": "UNION"},
        {"Accounts": [A1]},
        {"OrganizationalUnitIds": [OU_A], "AccountFilterType": "INTERSECTION"},
    ],
    ids=[
        "unknown-ou",
        "accounts-without-filter",
        "union-on-create",
        "accounts-only",
        "intersection-no-accounts",
    ],
)
def test_invalid_service_managed_create_targets(client: StackSetsClient, targets: dict[str, Any]) -> None:
    service_set(client)
    with pytest.raises(ClientError) as exc:
        client.create_stack_instances(StackSetName="lw", DeploymentTargets=targets, Regions=[REGION])
    assert error_of(exc) == ("ValidationError", 400)


def test_service_managed_rejects_plain_accounts(client: StackSetsClient) -> None:
    service_set(client)
    with pytest.raises(ClientError) as exc:
        client.create_stack_instances(StackSetName="lw", Accounts=[A1], Regions=[REGION])
    assert error_of(exc) == ("ValidationError", 400)


def test_self_managed_accepts_accounts_or_deployment_target_accounts(
    client: StackSetsClient, double: StackSetsDouble
) -> None:
    self_set(client)
    op = client.create_stack_instances(
        StackSetName="lw-self", DeploymentTargets={"Accounts": [A1, MGMT]}, Regions=[REGION]
    )["OperationId"]
    wait(client, "lw-self", op)
    # Self-managed stack sets may deploy to any account, the administrator's own included.
    assert set(double.instances("lw-self")) == {A1, MGMT}
    assert "OrganizationalUnitId" not in all_instances(client, "lw-self")[0]


def test_update_of_missing_instance_is_stack_instance_not_found(client: StackSetsClient) -> None:
    self_set(client)
    wait(
        client,
        "lw-self",
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"],
    )
    with pytest.raises(ClientError) as exc:
        client.update_stack_instances(StackSetName="lw-self", Accounts=[A1, A2], Regions=[REGION])
    assert error_of(exc) == ("StackInstanceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        client.describe_stack_instance(StackSetName="lw-self", StackInstanceAccount=A2, StackInstanceRegion=REGION)
    assert error_of(exc) == ("StackInstanceNotFoundException", 404)


def test_creating_an_existing_current_instance_is_a_no_op(client: StackSetsClient, double: StackSetsDouble) -> None:
    self_set(client)
    first = client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"]
    wait(client, "lw-self", first)
    second = client.create_stack_instances(StackSetName="lw-self", Accounts=[A1, A2], Regions=[REGION])["OperationId"]
    wait(client, "lw-self", second)
    instances = double.instances("lw-self")
    assert instances[A1]["last_operation_id"] == first
    assert instances[A2]["last_operation_id"] == second
    results = client.list_stack_set_operation_results(StackSetName="lw-self", OperationId=second)["Summaries"]
    assert [r["Account"] for r in results] == [A2]


def test_stack_set_lookup_by_id_and_missing_stack_set(client: StackSetsClient) -> None:
    self_set(client)
    stack_set_id = client.describe_stack_set(StackSetName="lw-self")["StackSet"]["StackSetId"]
    assert client.describe_stack_set(StackSetName=stack_set_id)["StackSet"]["StackSetName"] == "lw-self"
    with pytest.raises(ClientError) as exc:
        client.describe_stack_set(StackSetName="missing")
    assert error_of(exc) == ("StackSetNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        self_set(client)
    assert error_of(exc) == ("NameAlreadyExistsException", 409)


# --------------------------------------------------------------------------- failures and tolerance


def test_failing_account_ends_outdated_and_operation_succeeds_within_tolerance() -> None:
    double = StackSetsDouble(small_org(), MGMT, failing_accounts={A2: "Execution role missing"})
    client = double.client()
    service_set(client)
    op = client.create_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [OU_A, OU_B]},
        Regions=[REGION],
        OperationPreferences={"FailureTolerancePercentage": 100, "MaxConcurrentPercentage": 100},
    )["OperationId"]
    assert wait(client, "lw", op)[-1] == "SUCCEEDED"  # AWS reports success despite a failed account
    failed = double.instances("lw")[A2]
    assert (failed["status"], failed["detailed_status"], failed["status_reason"]) == (
        "OUTDATED",
        "FAILED",
        "Execution role missing",
    )
    assert failed["stack_id"] is None
    summary = client.list_stack_instances(StackSetName="lw", StackInstanceAccount=A2)["Summaries"][0]
    assert summary["StatusReason"] == "Execution role missing"
    assert "StackId" not in summary
    described = client.describe_stack_set_operation(StackSetName="lw", OperationId=op)["StackSetOperation"]
    assert described["StatusDetails"]["FailedStackInstancesCount"] == 1
    failed_results = client.list_stack_set_operation_results(
        StackSetName="lw", OperationId=op, Filters=[{"Name": "OPERATION_RESULT_STATUS", "Values": "FAILED"}]
    )["Summaries"]
    assert [(r["Account"], r["StatusReason"]) for r in failed_results] == [(A2, "Execution role missing")]
    assert failed_results[0]["AccountGateResult"]["Status"] == "SKIPPED"


def test_operation_fails_over_tolerance_and_cancels_the_rest() -> None:
    double = StackSetsDouble(small_org(), MGMT, failing_accounts={A2: "boom"})
    client = double.client()
    service_set(client)
    # Default preferences: failure tolerance 0, one account at a time.
    op = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_A, OU_B]}, Regions=[REGION]
    )["OperationId"]
    assert wait(client, "lw", op)[-1] == "FAILED"
    results = {
        r["Account"]: r["Status"]
        for r in client.list_stack_set_operation_results(StackSetName="lw", OperationId=op)["Summaries"]
    }
    assert results == {A1: "SUCCEEDED", A2: "FAILED", A3: "CANCELLED", B1: "CANCELLED", B2: "CANCELLED"}
    instances = double.instances("lw")
    assert (instances[A1]["status"], instances[A3]["status"]) == ("CURRENT", "OUTDATED")
    assert instances[A3]["detailed_status"] == "CANCELLED"


def test_percentage_tolerance_rounds_down() -> None:
    double = StackSetsDouble(small_org(), MGMT, failing_accounts={A1: "boom"})
    client = double.client()
    service_set(client)
    # 5 targets * 30 % = 1.5 -> 1 failure tolerated.
    op = client.create_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [ROOT]},
        Regions=[REGION],
        OperationPreferences={"FailureTolerancePercentage": 30, "MaxConcurrentPercentage": 100},
    )["OperationId"]
    assert wait(client, "lw", op)[-1] == "SUCCEEDED"
    double.failing_accounts[A2] = "boom too"
    op = client.update_stack_set(
        StackSetName="lw",
        UsePreviousTemplate=True,
        OperationPreferences={"FailureTolerancePercentage": 30, "MaxConcurrentPercentage": 100},
    )["OperationId"]
    assert wait(client, "lw", op)[-1] == "FAILED"


def test_fixed_account_recovers_on_a_new_operation(client: StackSetsClient, double: StackSetsDouble) -> None:
    double.failing_accounts[A1] = "boom"
    self_set(client)
    first = client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"]
    assert wait(client, "lw-self", first)[-1] == "FAILED"
    del double.failing_accounts[A1]
    retry = client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"]
    assert wait(client, "lw-self", retry)[-1] == "SUCCEEDED"
    assert double.instances("lw-self")[A1]["status"] == "CURRENT"
    assert double.instances("lw-self")[A1]["status_reason"] is None


def test_operation_preferences_pairs_are_mutually_exclusive(client: StackSetsClient) -> None:
    self_set(client)
    for prefs in (
        {"FailureToleranceCount": 1, "FailureTolerancePercentage": 10},
        {"MaxConcurrentCount": 1, "MaxConcurrentPercentage": 10},
        {"ConcurrencyMode": "WHATEVER"},
    ):
        with pytest.raises(ClientError) as exc:
            client.create_stack_instances(
                StackSetName="lw-self", Accounts=[A1], Regions=[REGION], OperationPreferences=prefs
            )
        assert error_of(exc) == ("ValidationError", 400)


def test_soft_failure_tolerance_runs_at_full_concurrency() -> None:
    double = StackSetsDouble(small_org(), MGMT, failing_accounts={A1: "boom", A2: "boom"})
    client = double.client()
    service_set(client)
    op = client.create_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [OU_A]},
        Regions=[REGION],
        OperationPreferences={"MaxConcurrentCount": 3, "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"},
    )["OperationId"]
    assert wait(client, "lw", op)[-1] == "FAILED"
    # All three were attempted in one batch, so none was cancelled.
    statuses = sorted(o["status"] for o in double.operations("lw")[0]["results"])
    assert statuses == ["FAILED", "FAILED", "SUCCEEDED"]


# --------------------------------------------------------------------------- listing and pagination


def test_pagination_across_250_instances() -> None:
    org = {ROOT: [MGMT], OU_A: [f"{i:012d}" for i in range(1, 251)]}
    double = StackSetsDouble(org, MGMT, polls_per_state=0)
    client = double.client()
    service_set(client)
    op = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_A]}, Regions=[REGION]
    )["OperationId"]
    wait(client, "lw", op)

    double.reset_calls()
    sizes = []
    accounts: list[str] = []
    kwargs: dict[str, Any] = {"StackSetName": "lw"}
    while True:
        page = client.list_stack_instances(**kwargs)
        sizes.append(len(page["Summaries"]))
        accounts.extend(s["Account"] for s in page["Summaries"])
        if "NextToken" not in page:
            break
        kwargs["NextToken"] = page["NextToken"]
    assert sizes == [100, 100, 50]
    assert len(set(accounts)) == 250
    assert double.count("list_stack_instances") == 3

    small = client.list_stack_instances(StackSetName="lw", MaxResults=30)
    assert len(small["Summaries"]) == 30
    assert len(all_instances(client, "lw", PaginationConfig={"PageSize": 60})) == 250

    results_pages = list(
        client.get_paginator("list_stack_set_operation_results").paginate(StackSetName="lw", OperationId=op)
    )
    assert [len(p["Summaries"]) for p in results_pages] == [100, 100, 50]


def test_page_size_knob_and_bad_tokens() -> None:
    double = StackSetsDouble(small_org(), MGMT, page_size=2)
    client = double.client()
    service_set(client)
    wait(client, "lw", create_and_wait_id(client))
    first = client.list_stack_instances(StackSetName="lw")
    assert len(first["Summaries"]) == 2
    with pytest.raises(ClientError) as exc:
        client.list_stack_instances(StackSetName="lw", NextToken="not-a-token")
    assert error_of(exc) == ("ValidationError", 400)
    with pytest.raises(ClientError) as exc:
        client.list_stack_set_operations(StackSetName="lw", NextToken=first["NextToken"])
    assert error_of(exc) == ("ValidationError", 400)
    with pytest.raises(ClientError) as exc:
        client.list_stack_instances(StackSetName="lw", MaxResults=500)
    assert error_of(exc) == ("ValidationError", 400)


def create_and_wait_id(client: StackSetsClient) -> str:
    return str(
        client.create_stack_instances(
            StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [ROOT]}, Regions=[REGION]
        )["OperationId"]
    )


def test_last_operation_id_follows_the_operations_that_touch_each_instance(
    client: StackSetsClient, double: StackSetsDouble
) -> None:
    service_set(client)
    create = create_and_wait(client, {"OrganizationalUnitIds": [ROOT]})
    update = client.update_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [OU_B]},
        Regions=[REGION],
        ParameterOverrides=[{"ParameterKey": "Level", "ParameterValue": "debug"}],
    )["OperationId"]
    wait(client, "lw", update)
    by_account = {s["Account"]: s["LastOperationId"] for s in all_instances(client, "lw")}
    assert by_account == {A1: create, A2: create, A3: create, B1: update, B2: update}
    filtered = all_instances(client, "lw", Filters=[{"Name": "LAST_OPERATION_ID", "Values": update}])
    assert {s["Account"] for s in filtered} == {B1, B2}
    assert double.instances("lw")[B1]["overrides"] == {"Level": "debug"}


def test_list_stack_instances_filters(client: StackSetsClient, double: StackSetsDouble) -> None:
    double.failing_accounts[B2] = "boom"
    service_set(client)
    client.create_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [ROOT]},
        Regions=[REGION],
        OperationPreferences={"FailureToleranceCount": 5, "MaxConcurrentCount": 5},
    )
    double.finish_all()
    failed = client.list_stack_instances(StackSetName="lw", Filters=[{"Name": "DETAILED_STATUS", "Values": "FAILED"}])[
        "Summaries"
    ]
    assert [s["Account"] for s in failed] == [B2]
    assert client.list_stack_instances(StackSetName="lw", StackInstanceRegion="eu-west-1")["Summaries"] == []


# --------------------------------------------------------------------------- parameters and updates


def test_parameter_overrides_follow_the_reference_semantics(client: StackSetsClient, double: StackSetsDouble) -> None:
    self_set(client)
    client.update_stack_set(
        StackSetName="lw-self",
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "Recipients", "UsePreviousValue": True},
            {"ParameterKey": "Level", "ParameterValue": "info"},
        ],
    )
    double.finish_all()
    op = client.create_stack_instances(
        StackSetName="lw-self",
        Accounts=[A1],
        Regions=[REGION],
        ParameterOverrides=[
            {"ParameterKey": "Recipients", "ParameterValue": "a1@example.com"},
            {"ParameterKey": "Level", "ParameterValue": "debug"},
        ],
    )["OperationId"]
    wait(client, "lw-self", op)
    described = client.describe_stack_instance(
        StackSetName="lw-self", StackInstanceAccount=A1, StackInstanceRegion=REGION
    )["StackInstance"]
    assert described["ParameterOverrides"] == [
        {"ParameterKey": "Recipients", "ParameterValue": "a1@example.com"},
        {"ParameterKey": "Level", "ParameterValue": "debug"},
    ]
    assert described["Status"] == "CURRENT"

    # UsePreviousValue keeps an override; a parameter left out of the list goes back to the set's value.
    op = client.update_stack_instances(
        StackSetName="lw-self",
        Accounts=[A1],
        Regions=[REGION],
        ParameterOverrides=[{"ParameterKey": "Recipients", "UsePreviousValue": True}],
    )["OperationId"]
    wait(client, "lw-self", op)
    assert double.instances("lw-self")[A1]["overrides"] == {"Recipients": "a1@example.com"}

    # No ParameterOverrides at all keeps every override.
    wait(
        client,
        "lw-self",
        client.update_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"],
    )
    assert double.instances("lw-self")[A1]["overrides"] == {"Recipients": "a1@example.com"}

    with pytest.raises(ClientError) as exc:
        client.update_stack_instances(
            StackSetName="lw-self",
            Accounts=[A1],
            Regions=[REGION],
            ParameterOverrides=[{"ParameterKey": "NotInTheSet", "ParameterValue": "x"}],
        )
    assert error_of(exc) == ("ValidationError", 400)


def test_update_stack_set_marks_all_outdated_and_redeploys_targets(
    client: StackSetsClient, double: StackSetsDouble
) -> None:
    service_set(client)
    create_and_wait(client, {"OrganizationalUnitIds": [ROOT]})
    op = client.update_stack_set(
        StackSetName="lw",
        TemplateBody='{"Resources": {"X": {}}}',
        DeploymentTargets={"OrganizationalUnitIds": [OU_A]},
        Regions=[REGION],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["OperationId"]
    # The stack set itself changes at once.
    assert client.describe_stack_set(StackSetName="lw")["StackSet"]["TemplateBody"] == '{"Resources": {"X": {}}}'
    assert {i["status"] for i in double.instances("lw").values()} == {"OUTDATED"}
    wait(client, "lw", op)
    statuses = {a: i["status"] for a, i in double.instances("lw").items()}
    assert statuses == {A1: "CURRENT", A2: "CURRENT", A3: "CURRENT", B1: "OUTDATED", B2: "OUTDATED"}

    double.failing_accounts[B1] = "Quota exceeded"
    op = client.update_stack_set(
        StackSetName="lw",
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "Recipients", "ParameterValue": "sec@example.com"},
            {"ParameterKey": "Level", "UsePreviousValue": True},
        ],
        OperationPreferences={"FailureToleranceCount": 2, "MaxConcurrentCount": 3},
    )["OperationId"]
    assert wait(client, "lw", op)[-1] == "SUCCEEDED"
    parameters = client.describe_stack_set(StackSetName="lw")["StackSet"]["Parameters"]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in parameters} == {
        "Recipients": "sec@example.com",
        "Level": "info",
    }
    instances = double.instances("lw")
    assert instances[B1]["status"] == "OUTDATED"
    assert instances[B1]["status_reason"] == "Quota exceeded"
    assert all(i["status"] == "CURRENT" for a, i in instances.items() if a != B1)


def test_update_stack_set_needs_exactly_one_template_source(client: StackSetsClient) -> None:
    self_set(client)
    with pytest.raises(ClientError) as exc:
        client.update_stack_set(StackSetName="lw-self")
    assert error_of(exc) == ("ValidationError", 400)


# --------------------------------------------------------------------------- deletion


def test_delete_stack_set_fails_while_instances_remain(client: StackSetsClient, double: StackSetsDouble) -> None:
    service_set(client)
    create_and_wait(client, {"OrganizationalUnitIds": [OU_A]})
    with pytest.raises(ClientError) as exc:
        client.delete_stack_set(StackSetName="lw")
    assert error_of(exc) == ("StackSetNotEmptyException", 409)

    op = client.delete_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [OU_A]},
        Regions=[REGION],
        RetainStacks=False,
    )["OperationId"]
    assert double.instances("lw")[A1]["detailed_status"] == "PENDING"
    wait(client, "lw", op)
    assert double.instances("lw") == {}
    client.delete_stack_set(StackSetName="lw")
    with pytest.raises(ClientError) as exc:
        client.describe_stack_set(StackSetName="lw")
    assert error_of(exc) == ("StackSetNotFoundException", 404)
    listed = client.list_stack_sets()["Summaries"]
    assert [(s["StackSetName"], s["Status"]) for s in listed] == [("lw", "DELETED")]
    assert client.list_stack_sets(Status="ACTIVE")["Summaries"] == []


def test_failed_delete_leaves_inoperable_instance_and_retain_stacks_removes_it() -> None:
    double = StackSetsDouble(small_org(), MGMT)
    client = double.client()
    self_set(client)
    wait(
        client,
        "lw-self",
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"],
    )
    double.failing_accounts[A1] = "Access denied"
    op = client.delete_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], RetainStacks=False)
    assert wait(client, "lw-self", op["OperationId"])[-1] == "FAILED"
    assert double.instances("lw-self")[A1]["status"] == "INOPERABLE"
    op = client.delete_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], RetainStacks=True)
    assert wait(client, "lw-self", op["OperationId"])[-1] == "SUCCEEDED"
    assert double.instances("lw-self") == {}


# --------------------------------------------------------------------------- stop and drift


def test_stop_operation_goes_through_stopping_and_cancels_unstarted_work(
    client: StackSetsClient, double: StackSetsDouble
) -> None:
    service_set(client)
    op = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [ROOT]}, Regions=[REGION]
    )["OperationId"]
    client.describe_stack_set_operation(StackSetName="lw", OperationId=op)  # QUEUED
    client.describe_stack_set_operation(StackSetName="lw", OperationId=op)  # RUNNING
    client.stop_stack_set_operation(StackSetName="lw", OperationId=op)
    assert wait(client, "lw", op) == ["STOPPING", "STOPPED"]
    statuses = sorted(r["status"] for r in double.operations("lw")[0]["results"])
    assert statuses == ["CANCELLED"] * 4 + ["SUCCEEDED"]
    assert sorted(i["detailed_status"] for i in double.instances("lw").values()) == ["CANCELLED"] * 4 + ["SUCCEEDED"]
    with pytest.raises(ClientError) as exc:
        client.stop_stack_set_operation(StackSetName="lw", OperationId=op)
    assert error_of(exc) == ("InvalidOperationException", 400)


def test_drift_detection_runs_as_an_operation() -> None:
    double = StackSetsDouble(small_org(), MGMT, drifted_accounts={B1})
    client = double.client()
    service_set(client)
    create_and_wait(client, {"OrganizationalUnitIds": [OU_B]})
    op = client.detect_stack_set_drift(StackSetName="lw")["OperationId"]
    with pytest.raises(ClientError) as exc:
        client.detect_stack_set_drift(StackSetName="lw")
    assert error_of(exc) == ("OperationInProgressException", 409)
    assert wait(client, "lw", op)[-1] == "SUCCEEDED"
    assert {a: i["drift_status"] for a, i in double.instances("lw").items()} == {B1: "DRIFTED", B2: "IN_SYNC"}
    details = client.describe_stack_set(StackSetName="lw")["StackSet"]["StackSetDriftDetectionDetails"]
    assert (details["DriftStatus"], details["DriftedStackInstancesCount"]) == ("DRIFTED", 1)


# --------------------------------------------------------------------------- callers


def test_delegated_admin_not_registered_is_refused_on_every_call() -> None:
    double = StackSetsDouble(small_org(), MGMT, delegated_admin_registered=False)
    client = double.client()
    service_set(client)
    calls: list[Callable[[], object]] = [
        lambda: client.describe_stack_set(StackSetName="lw", CallAs="DELEGATED_ADMIN"),
        lambda: client.list_stack_sets(CallAs="DELEGATED_ADMIN"),
        lambda: client.create_stack_instances(
            StackSetName="lw",
            DeploymentTargets={"OrganizationalUnitIds": [OU_A]},
            Regions=[REGION],
            CallAs="DELEGATED_ADMIN",
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == ("ValidationError", 400)
        assert exc.value.response["Error"]["Message"] == "Account used is not a delegated administrator"
    assert double.operations("lw") == []

    double.delegated_admin_registered = True
    assert client.describe_stack_set(StackSetName="lw", CallAs="DELEGATED_ADMIN")["StackSet"]["StackSetName"] == "lw"


def test_caller_account_rules_for_service_managed_stack_sets() -> None:
    member = StackSetsDouble(small_org(), MGMT, caller_account=A1)
    client = member.client()
    with pytest.raises(ClientError) as exc:
        service_set(client)
    assert error_of(exc) == ("ValidationError", 400)
    assert "management account or delegated admin" in exc.value.response["Error"]["Message"]
    client.create_stack_set(
        StackSetName="lw",
        TemplateBody=TEMPLATE,
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": False},
        CallAs="DELEGATED_ADMIN",
    )

    management = StackSetsDouble(small_org(), MGMT, caller_account=MGMT).client()
    with pytest.raises(ClientError) as exc:
        management.list_stack_sets(CallAs="DELEGATED_ADMIN")
    assert exc.value.response["Error"]["Message"] == "Account used is not a delegated administrator"


def test_service_managed_stack_set_requires_auto_deployment(client: StackSetsClient) -> None:
    with pytest.raises(ClientError) as exc:
        client.create_stack_set(StackSetName="lw", TemplateBody=TEMPLATE, PermissionModel="SERVICE_MANAGED")
    assert error_of(exc) == ("ValidationError", 400)


# --------------------------------------------------------------------------- client-side validation


def test_botocore_parameter_validation_applies(client: StackSetsClient, double: StackSetsDouble) -> None:
    self_set(client)
    double.reset_calls()
    with pytest.raises(ParamValidationError):
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Region=[REGION])
    with pytest.raises(ParamValidationError):
        client.delete_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])  # no RetainStacks
    assert double.calls == []  # rejected before any request is sent
    with pytest.raises(ClientError) as exc:
        client.create_stack_instances(StackSetName="lw-self", Accounts=["123"], Regions=[REGION])
    assert error_of(exc) == ("ValidationError", 400)


# --------------------------------------------------------------------------- instrumentation and faults


def test_calls_are_recorded_and_counted(client: StackSetsClient, double: StackSetsDouble) -> None:
    self_set(client)
    op = client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION])["OperationId"]
    wait(client, "lw-self", op)
    client.list_stack_instances(StackSetName="lw-self")
    assert [name for name, _ in double.calls] == [
        "create_stack_set",
        "create_stack_instances",
        "describe_stack_set_operation",
        "describe_stack_set_operation",
        "describe_stack_set_operation",
        "list_stack_instances",
    ]
    assert double.calls[1][1]["Accounts"] == [A1]
    assert double.count(kind="write") == 2
    assert double.count(kind="read") == 4
    assert double.count("describe_stack_set_operation") == 3
    double.reset_calls()
    assert double.count() == 0


def test_fail_next_raises_then_recovers(client: StackSetsClient, double: StackSetsDouble) -> None:
    self_set(client)
    double.fail_next("list_stack_instances", "Throttling", "Rate exceeded", times=2)
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            client.list_stack_instances(StackSetName="lw-self")
        assert error_of(exc) == ("Throttling", 400)
        assert exc.value.response["Error"]["Message"] == "Rate exceeded"
    assert client.list_stack_instances(StackSetName="lw-self")["Summaries"] == []
    assert double.count("list_stack_instances") == 3
    with pytest.raises(ValueError):
        double.fail_next("list_stacks_instances", "Throttling")


def test_fail_next_applied_loses_the_response_but_keeps_the_operation(
    client: StackSetsClient, double: StackSetsDouble
) -> None:
    self_set(client)
    double.fail_next("create_stack_instances", "InternalFailure", applied=True)
    with pytest.raises(ClientError):
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], OperationId="op-1")
    # The request was accepted, so retrying it with the same id is reported as a duplicate.
    with pytest.raises(ClientError) as exc:
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], OperationId="op-1")
    assert error_of(exc)[0] == "OperationIdAlreadyExistsException"
    assert wait(client, "lw-self", "op-1")[-1] == "SUCCEEDED"


def test_interrupt_leaves_submitted_operations_running(double: StackSetsDouble) -> None:
    client = double.client()
    service_set(client)
    op = client.create_stack_instances(
        StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_A]}, Regions=[REGION]
    )["OperationId"]
    double.interrupt_after(2)
    client.describe_stack_set_operation(StackSetName="lw", OperationId=op)
    with pytest.raises(KeyboardInterrupt):
        client.describe_stack_set_operation(StackSetName="lw", OperationId=op)
    # The interrupted request never reached the service; the operation is still there, unfinished.
    assert double.operations("lw")[0]["status"] == "QUEUED"

    resumed = double.client()
    assert wait(resumed, "lw", op)[-1] == "SUCCEEDED"
    assert {i["status"] for i in double.instances("lw").values()} == {"CURRENT"}


def test_interrupt_applied_submits_the_write(double: StackSetsDouble) -> None:
    client = double.client()
    service_set(client)
    double.interrupt_after(1, applied=True)
    with pytest.raises(KeyboardInterrupt):
        client.create_stack_instances(
            StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [OU_A]}, Regions=[REGION]
        )
    [op] = double.operations("lw")
    assert op["status"] == "QUEUED"
    double.finish_all()
    assert double.operations("lw")[0]["status"] == "SUCCEEDED"


# --------------------------------------------------------------------------- scale


def test_five_thousand_account_organisation_pages_and_fails_per_account() -> None:
    double = StackSetsDouble(big_org(5000), MGMT, failing_accounts={"000000000042": "boom"})
    client = double.client()
    service_set(client)
    prefs = {
        "FailureTolerancePercentage": 5,
        "MaxConcurrentPercentage": 100,
        "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
    }
    op = client.create_stack_instances(
        StackSetName="lw",
        DeploymentTargets={"OrganizationalUnitIds": [ROOT]},
        Regions=[REGION],
        OperationPreferences=prefs,
    )["OperationId"]
    assert wait(client, "lw", op)[-1] == "SUCCEEDED"
    summaries = all_instances(client, "lw")
    assert len(summaries) == 5000
    op = client.update_stack_set(
        StackSetName="lw", TemplateBody='{"Resources": {"Y": {}}}', OperationPreferences=prefs
    )["OperationId"]
    assert wait(client, "lw", op)[-1] == "SUCCEEDED"
    assert double.count("list_stack_instances") == 50
    assert sum(1 for i in double.instances("lw").values() if i["status"] == "CURRENT") == 4999


# --------------------------------------------------------------------------- eventual consistency, INOPERABLE


def test_operation_results_and_list_lag_behind_a_finished_operation() -> None:
    # ListStackSetOperationResults / ListStackSetOperations: "eventually consistent reads".
    double = StackSetsDouble(small_org(), MGMT, stale_reads=2)
    client = double.client()
    service_set(client)
    op = create_and_wait(client, {"OrganizationalUnitIds": [OU_B]})
    assert (
        client.describe_stack_set_operation(StackSetName="lw", OperationId=op)["StackSetOperation"]["Status"]
        == "SUCCEEDED"
    )
    for _ in range(2):
        results = client.list_stack_set_operation_results(StackSetName="lw", OperationId=op)["Summaries"]
        assert {r["Status"] for r in results} <= {"PENDING", "RUNNING"}
        listed = client.list_stack_set_operations(StackSetName="lw")["Summaries"]
        assert listed[0]["Status"] == "RUNNING"
    results = client.list_stack_set_operation_results(StackSetName="lw", OperationId=op)["Summaries"]
    assert {r["Status"] for r in results} == {"SUCCEEDED"}
    assert client.list_stack_set_operations(StackSetName="lw")["Summaries"][0]["Status"] == "SUCCEEDED"


def test_operation_list_order_is_not_by_time(client: StackSetsClient) -> None:
    service_set(client, managed=True)
    ids = ["zz-first", "aa-second", "mm-third"]
    for op_id, ou in zip(ids, [OU_A, OU_B, OU_A], strict=True):
        client.create_stack_instances(
            StackSetName="lw", DeploymentTargets={"OrganizationalUnitIds": [ou]}, Regions=[REGION], OperationId=op_id
        )
    listed = [s["OperationId"] for s in client.list_stack_set_operations(StackSetName="lw")["Summaries"]]
    assert listed == sorted(ids)


def test_inoperable_instance_is_excluded_from_updates() -> None:
    double = StackSetsDouble(small_org(), MGMT)
    client = double.client()
    self_set(client)
    wait(
        client,
        "lw-self",
        client.create_stack_instances(StackSetName="lw-self", Accounts=[A1, A2], Regions=[REGION])["OperationId"],
    )
    double.failing_accounts[A1] = "Access denied"
    op = client.delete_stack_instances(StackSetName="lw-self", Accounts=[A1], Regions=[REGION], RetainStacks=False)
    wait(client, "lw-self", op["OperationId"])
    del double.failing_accounts[A1]
    op = client.update_stack_instances(
        StackSetName="lw-self",
        Accounts=[A1, A2],
        Regions=[REGION],
        OperationPreferences={"FailureToleranceCount": 1, "MaxConcurrentCount": 2},
    )
    wait(client, "lw-self", op["OperationId"])
    results = client.list_stack_set_operation_results(StackSetName="lw-self", OperationId=op["OperationId"])
    by_account = {r["Account"]: (r["Status"], r.get("StatusReason")) for r in results["Summaries"]}
    assert by_account == {A1: ("FAILED", "Stack instance is INOPERABLE"), A2: ("SUCCEEDED", None)}
    assert double.instances("lw-self")[A1]["status"] == "INOPERABLE"
