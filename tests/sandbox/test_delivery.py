"""A sign-in event to an email: CloudFormation resource types, EventBridge, SNS, the Lambda runner and SES."""

from __future__ import annotations

import json

from tests.sandbox.emulator import (
    DEV,
    LAB,
    LAB2,
    OU_SANDBOXES,
    OU_WORKLOADS,
    PROD,
    REGION,
    SENDER,
    SHARED,
    Sandbox,
    create_stack_set,
    deploy_to_ou,
    deployed_function,
    logged,
    override_parameter,
    sign_in,
    sign_in_template,
)


def test_sign_in_in_a_member_account_emails_that_accounts_recipients(sandbox: Sandbox) -> None:
    cloudformation = create_stack_set(sandbox, "loginwatch", recipients="security@example.com")
    deploy_to_ou(cloudformation, OU_WORKLOADS)
    override_parameter(cloudformation, OU_WORKLOADS, PROD, "Recipients", "prod-oncall@example.com,cto@example.com")

    sign_in(sandbox, PROD)

    [email] = sandbox.mailbox()
    assert email["account"] == PROD
    assert email["source"] == SENDER
    assert email["to"] == ["prod-oncall@example.com", "cto@example.com"]
    assert email["subject"] == f"Console sign-in to {PROD} by IAMUser"
    assert email["text"] is not None
    delivered = json.loads(email["text"])
    assert delivered["detail"]["userIdentity"]["userName"] == "alice"
    # The function got the notification of its own topic, in its own account.
    assert delivered["topic"].startswith(f"arn:aws:sns:{REGION}:{PROD}:")
    assert delivered["sns_subject"] is None
    prod_function = deployed_function(sandbox, PROD)
    assert prod_function is not None and delivered["function"] == prod_function["FunctionName"]
    assert email["html"] == "<p>alice</p>"
    assert email["message_id"]
    assert sandbox.mailbox(DEV) == []

    sign_in(sandbox, DEV)
    [dev_email] = sandbox.mailbox(DEV)
    assert dev_email["to"] == ["security@example.com"]
    assert len(sandbox.mailbox()) == 2

    # The function's output went to its log group, as in AWS.
    function = deployed_function(sandbox, DEV)
    assert function is not None
    group = f"/aws/lambda/{function['FunctionName']}"
    assert "notified security@example.com" in logged(sandbox.client(sandbox.member(DEV), "logs"), group)


def test_events_the_rule_does_not_match_send_nothing(sandbox: Sandbox) -> None:
    cloudformation = create_stack_set(sandbox, "loginwatch", recipients="security@example.com")
    deploy_to_ou(cloudformation, OU_SANDBOXES)
    # The lab account only wants to hear about root sign-ins: its rule's pattern changes with it.
    override_parameter(cloudformation, OU_SANDBOXES, LAB, "RootOnly", "true")

    sign_in(sandbox, LAB, "IAMUser")
    sign_in(sandbox, LAB, "Root", source="aws.console")
    sign_in(sandbox, SHARED, "Root")  # no instance in this account
    assert sandbox.mailbox() == []

    sign_in(sandbox, LAB, "Root")
    sign_in(sandbox, LAB2, "IAMUser")
    delivered = sorted((e["account"], e["subject"]) for e in sandbox.mailbox())
    assert delivered == [
        (LAB, f"Console sign-in to {LAB} by Root"),
        (LAB2, f"Console sign-in to {LAB2} by IAMUser"),
    ]


def test_resource_types_moto_lacks_are_created(sandbox: Sandbox) -> None:
    cloudformation = create_stack_set(sandbox, "loginwatch", recipients="security@example.com", extras=True)
    cloudformation.create_stack_instances(
        StackSetName="loginwatch",
        Regions=[REGION],
        DeploymentTargets={
            "OrganizationalUnitIds": [OU_WORKLOADS],
            "Accounts": [DEV],
            "AccountFilterType": "INTERSECTION",
        },
    )
    member = sandbox.member(DEV)
    function = deployed_function(sandbox, DEV)
    assert function is not None
    name = function["FunctionName"]

    [topic] = sandbox.client(member, "sns").list_topics()["Topics"]
    policy = json.loads(
        sandbox.client(member, "sns").get_topic_attributes(TopicArn=topic["TopicArn"])["Attributes"]["Policy"]
    )
    assert policy["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    [queue_url] = sandbox.client(member, "sqs").list_queues()["QueueUrls"]
    queue = sandbox.client(member, "sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"])
    assert json.loads(queue["Attributes"]["Policy"])["Statement"][0]["Sid"] == "FunctionFailures"
    retries = sandbox.client(member, "lambda").get_function_event_invoke_config(FunctionName=name)
    assert retries["MaximumRetryAttempts"] == 1
    [alarm] = sandbox.client(member, "cloudwatch").describe_alarms()["MetricAlarms"]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": name}]

    # With LoggingConfig the function's output goes to the template's own log group.
    sign_in(sandbox, DEV)
    assert len(sandbox.mailbox(DEV)) == 1
    logs_client = sandbox.client(member, "logs")
    groups = [g["logGroupName"] for g in logs_client.describe_log_groups()["logGroups"]]
    [group] = [g for g in groups if "NotifierLogs" in g]
    assert "notified security@example.com" in logged(logs_client, group)


def test_self_managed_instances_deliver_too(sandbox: Sandbox) -> None:
    cloudformation = sandbox.client(sandbox.management(), "cloudformation")
    cloudformation.create_stack_set(
        StackSetName="loginwatch-self",
        TemplateBody=sign_in_template(),
        PermissionModel="SELF_MANAGED",
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[
            {"ParameterKey": "Sender", "ParameterValue": SENDER},
            {"ParameterKey": "Recipients", "ParameterValue": "security@example.com"},
        ],
    )
    cloudformation.create_stack_instances(StackSetName="loginwatch-self", Accounts=[SHARED], Regions=[REGION])
    [stack] = sandbox.client(sandbox.member(SHARED), "cloudformation").describe_stacks()["Stacks"]
    assert stack["StackName"].startswith("StackSet-loginwatch-self-")
    sign_in(sandbox, SHARED)
    [email] = sandbox.mailbox(SHARED)
    assert email["to"] == ["security@example.com"]
