"""Drift detection on a stack set (``behaviour/stackset_drift.py``), as ``status --drift`` runs it."""

from __future__ import annotations

from typing import Any

from tests.sandbox.emulator import (
    DEV,
    LAB,
    LAB2,
    OU_SANDBOXES,
    OU_WORKLOADS,
    PROD,
    Sandbox,
    create_stack_set,
    deploy_to_ou,
)


def drift_statuses(cloudformation: Any) -> dict[str, str]:
    summaries = cloudformation.list_stack_instances(StackSetName="loginwatch")["Summaries"]
    return {summary["Account"]: summary["DriftStatus"] for summary in summaries}


def detect(cloudformation: Any, operation_id: str) -> dict[str, Any]:
    """DetectStackSetDrift, then the operation as DescribeStackSetOperation reports it."""
    started = cloudformation.detect_stack_set_drift(StackSetName="loginwatch", OperationId=operation_id)
    assert started["OperationId"] == operation_id
    operation: dict[str, Any] = cloudformation.describe_stack_set_operation(
        StackSetName="loginwatch", OperationId=operation_id
    )["StackSetOperation"]
    return operation


def test_drift_detection_reports_each_instance_and_the_stack_set(sandbox: Sandbox) -> None:
    cloudformation = create_stack_set(sandbox, "loginwatch", recipients="security@example.com")
    deploy_to_ou(cloudformation, OU_WORKLOADS)
    deploy_to_ou(cloudformation, OU_SANDBOXES)
    members = [DEV, PROD, LAB, LAB2]
    assert drift_statuses(cloudformation) == dict.fromkeys(members, "NOT_CHECKED")
    never = cloudformation.describe_stack_set(StackSetName="loginwatch")["StackSet"]
    assert never["StackSetDriftDetectionDetails"]["DriftStatus"] == "NOT_CHECKED"

    first = detect(cloudformation, "drift-1")
    assert (first["Action"], first["Status"]) == ("DETECT_DRIFT", "SUCCEEDED")
    assert first["StackSetDriftDetectionDetails"]["DriftStatus"] == "IN_SYNC"
    assert first["StackSetDriftDetectionDetails"]["InSyncStackInstancesCount"] == 4
    assert drift_statuses(cloudformation) == dict.fromkeys(members, "IN_SYNC")
    results = cloudformation.list_stack_set_operation_results(StackSetName="loginwatch", OperationId="drift-1")
    assert sorted(result["Account"] for result in results["Summaries"]) == sorted(members)

    # Someone edits the recipients of one account's function by hand.
    functions = sandbox.client(sandbox.member(LAB), "lambda")
    [function] = functions.list_functions()["Functions"]
    variables = dict(function["Environment"]["Variables"], RECIPIENTS="someone-else@example.com")
    functions.update_function_configuration(FunctionName=function["FunctionName"], Environment={"Variables": variables})

    second = detect(cloudformation, "drift-2")
    details = second["StackSetDriftDetectionDetails"]
    assert (details["DriftStatus"], details["DriftedStackInstancesCount"], details["TotalStackInstancesCount"]) == (
        "DRIFTED",
        1,
        4,
    )
    assert drift_statuses(cloudformation) == {DEV: "IN_SYNC", PROD: "IN_SYNC", LAB: "DRIFTED", LAB2: "IN_SYNC"}
    described = cloudformation.describe_stack_set(StackSetName="loginwatch")["StackSet"]
    assert described["StackSetDriftDetectionDetails"]["DriftStatus"] == "DRIFTED"
    assert "LastDriftCheckTimestamp" in described["StackSetDriftDetectionDetails"]
