"""StackSets in the sandbox (``behaviour/stacksets.py``): targets, overrides, stack set updates."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.sandbox.emulator import (
    DEV,
    LAB,
    LAB2,
    MANAGEMENT,
    OU_NESTED,
    OU_SANDBOXES,
    OU_WORKLOADS,
    PROD,
    REGION,
    ROOT,
    SENDER,
    SHARED,
    Sandbox,
    create_stack_set,
    deploy_to_ou,
    deployed_function,
    instance_accounts,
    override_parameter,
)


def test_intersection_deploys_only_to_the_listed_accounts(sandbox: Sandbox) -> None:
    cloudformation = create_stack_set(sandbox, "loginwatch", recipients="security@example.com")
    operation = cloudformation.create_stack_instances(
        StackSetName="loginwatch",
        Regions=[REGION],
        DeploymentTargets={
            "OrganizationalUnitIds": [OU_WORKLOADS, OU_SANDBOXES],
            "Accounts": [DEV, LAB, SHARED],
            "AccountFilterType": "INTERSECTION",
        },
    )
    assert instance_accounts(cloudformation, "loginwatch") == [DEV, LAB]
    results = cloudformation.list_stack_set_operation_results(
        StackSetName="loginwatch", OperationId=operation["OperationId"]
    )["Summaries"]
    assert sorted(r["Account"] for r in results) == [DEV, LAB]
    for account in (DEV, LAB):
        function = deployed_function(sandbox, account)
        assert function is not None
        assert function["Environment"]["Variables"] == {
            "SENDER": SENDER,
            "RECIPIENTS": "security@example.com",
        }
    for account in (PROD, LAB2, SHARED):
        assert deployed_function(sandbox, account) is None

    # DIFFERENCE adds the rest of the OUs; the root reaches every account but the management one.
    cloudformation.create_stack_instances(
        StackSetName="loginwatch",
        Regions=[REGION],
        DeploymentTargets={
            "OrganizationalUnitIds": [ROOT],
            "Accounts": [LAB2],
            "AccountFilterType": "DIFFERENCE",
        },
    )
    assert instance_accounts(cloudformation, "loginwatch") == sorted([DEV, PROD, LAB, SHARED])
    assert deployed_function(sandbox, MANAGEMENT) is None

    # A create naming both OUs and accounts must say how to combine them.
    with pytest.raises(ClientError, match="AccountFilterType"):
        cloudformation.create_stack_instances(
            StackSetName="loginwatch",
            Regions=[REGION],
            DeploymentTargets={"OrganizationalUnitIds": [OU_SANDBOXES], "Accounts": [LAB2]},
        )

    # Deleting by OU with DIFFERENCE removes those instances and their resources; retained stacks stay.
    cloudformation.delete_stack_instances(
        StackSetName="loginwatch",
        Regions=[REGION],
        DeploymentTargets={
            "OrganizationalUnitIds": [OU_WORKLOADS],
            "Accounts": [DEV],
            "AccountFilterType": "DIFFERENCE",
        },
        RetainStacks=False,
    )
    cloudformation.delete_stack_instances(
        StackSetName="loginwatch",
        Regions=[REGION],
        DeploymentTargets={
            "OrganizationalUnitIds": [ROOT],
            "Accounts": [SHARED],
            "AccountFilterType": "INTERSECTION",
        },
        RetainStacks=True,
    )
    assert instance_accounts(cloudformation, "loginwatch") == [DEV, LAB]
    assert deployed_function(sandbox, PROD) is None
    assert deployed_function(sandbox, SHARED) is not None


def test_parameter_overrides_update_the_deployed_function(sandbox: Sandbox) -> None:
    cloudformation = create_stack_set(sandbox, "loginwatch", recipients="security@example.com")
    deploy_to_ou(cloudformation, ROOT)
    assert instance_accounts(cloudformation, "loginwatch") == sorted([DEV, PROD, LAB, LAB2, SHARED])

    override_parameter(cloudformation, OU_WORKLOADS, DEV, "Recipients", "dev-team@example.com")
    dev = deployed_function(sandbox, DEV)
    assert dev is not None and dev["Environment"]["Variables"]["RECIPIENTS"] == "dev-team@example.com"
    prod = deployed_function(sandbox, PROD)
    assert prod is not None and prod["Environment"]["Variables"]["RECIPIENTS"] == "security@example.com"
    described = cloudformation.describe_stack_instance(
        StackSetName="loginwatch", StackInstanceAccount=DEV, StackInstanceRegion=REGION
    )["StackInstance"]
    override = {"ParameterKey": "Recipients", "ParameterValue": "dev-team@example.com"}
    assert described["ParameterOverrides"] == [override]

    # A stack set update reaches every instance; the override survives it.
    cloudformation.update_stack_set(
        StackSetName="loginwatch",
        UsePreviousTemplate=True,
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[
            {"ParameterKey": "Sender", "UsePreviousValue": True},
            {"ParameterKey": "Recipients", "ParameterValue": "soc@example.com"},
        ],
    )
    for account, expected in (
        (DEV, "dev-team@example.com"),
        (PROD, "soc@example.com"),
        (SHARED, "soc@example.com"),
    ):
        function = deployed_function(sandbox, account)
        assert function is not None and function["Environment"]["Variables"]["RECIPIENTS"] == expected

    # An empty override list puts the stack set's value back.
    cloudformation.update_stack_instances(
        StackSetName="loginwatch",
        Regions=[REGION],
        DeploymentTargets={"OrganizationalUnitIds": [OU_WORKLOADS]},
        ParameterOverrides=[],
    )
    dev = deployed_function(sandbox, DEV)
    assert dev is not None and dev["Environment"]["Variables"]["RECIPIENTS"] == "soc@example.com"


# An organisation with a nested OU, for the target selection on its own.
CHILD_OUS = {ROOT: [OU_WORKLOADS, OU_SANDBOXES], OU_SANDBOXES: [OU_NESTED]}
ACCOUNTS_BY_PARENT = {
    ROOT: [MANAGEMENT, SHARED],
    OU_WORKLOADS: [DEV, PROD],
    OU_SANDBOXES: [LAB],
    OU_NESTED: [LAB2],
}


def select(ous: list[str], accounts: list[str], filter_type: str | None, operation: Any) -> list[str]:
    from loginwatch_org.sandbox.behaviour.stacksets import select_target_accounts

    return select_target_accounts(
        organizational_unit_ids=ous,
        accounts=accounts,
        filter_type=filter_type,
        operation=operation,
        child_ous=CHILD_OUS,
        accounts_by_parent=ACCOUNTS_BY_PARENT,
        management_account=MANAGEMENT,
    )


@pytest.mark.parametrize(
    ("ous", "accounts", "filter_type", "operation", "expected"),
    [
        ([OU_WORKLOADS, OU_SANDBOXES], [DEV, LAB2, SHARED], "INTERSECTION", "create", [DEV, LAB2]),
        ([OU_SANDBOXES], [LAB], "DIFFERENCE", "create", [LAB2]),
        ([OU_WORKLOADS], [SHARED], "UNION", "update", [DEV, PROD, SHARED]),
        ([OU_WORKLOADS], [SHARED], None, "delete", [DEV, PROD, SHARED]),
        ([OU_WORKLOADS], [SHARED], "NONE", "update", [DEV, PROD]),
        ([ROOT], [], None, "create", [SHARED, DEV, PROD, LAB, LAB2]),
        ([], [PROD], None, "update", [PROD]),
        ([ROOT], [MANAGEMENT], "INTERSECTION", "create", []),
    ],
)
def test_target_account_selection(
    ous: list[str], accounts: list[str], filter_type: str | None, operation: Any, expected: list[str]
) -> None:
    assert select(ous, accounts, filter_type, operation) == expected


@pytest.mark.parametrize("filter_type", [None, "UNION", "SOME"])
def test_create_needs_a_filter_that_can_create(filter_type: str | None) -> None:
    from moto.cloudformation.exceptions import ValidationError

    with pytest.raises(ValidationError):
        select([OU_WORKLOADS], [DEV], filter_type, "create")
