"""The sandbox emulator: an organisation on 127.0.0.1 that the real AWS calls of the product work against.

Most tests start the sandbox as its own process on a free port and talk to it over HTTP with boto3,
as the CLI does; a few check the target selection and the patch bookkeeping directly.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from troposphere import (
    Equals,
    GetAtt,
    If,
    Parameter,
    Ref,
    Template,
    awslambda,
    cloudwatch,
    events,
    iam,
    logs,
    sns,
    sqs,
)

from loginwatch_org.sandbox.mailbox import SentEmail, read_mailbox

REGION = "us-east-1"
MANAGEMENT = "999988887777"
ROOT = "r-ab12"
OU_WORKLOADS = "ou-ab12-11111111"
OU_SANDBOXES = "ou-ab12-22222222"
OU_NESTED = "ou-ab12-33333333"
DEV, PROD, LAB, LAB2, SHARED = "111122223333", "222233334444", "333344445555", "444455556666", "555566667777"
SENDER = "alerts@example.com"
ORGANISATION: dict[str, Any] = {
    "management_account": MANAGEMENT,
    "root_id": ROOT,
    "organizational_units": {OU_WORKLOADS: [DEV, PROD], OU_SANDBOXES: [LAB, LAB2]},
    "accounts_in_root": [SHARED],
    "account_names": {
        MANAGEMENT: "management",
        DEV: "dev",
        PROD: "prod",
        LAB: "lab",
        LAB2: "lab2",
        SHARED: "shared",
    },
    "sender": SENDER,
}
SIGN_IN = "AWS Console Sign In via CloudTrail"

# The deployed function: one email per sign-in event, to RECIPIENTS, from SENDER.
FUNCTION_CODE = """\
import json
import os

import boto3


def handler(event, context):
    ses = boto3.client("ses")
    for record in event["Records"]:
        sign_in = json.loads(record["Sns"]["Message"])
        who = sign_in["detail"]["userIdentity"]
        ses.send_email(
            Source=os.environ["SENDER"],
            Destination={"ToAddresses": os.environ["RECIPIENTS"].split(",")},
            Message={
                "Subject": {"Data": f"Console sign-in to {sign_in['account']} by {who['type']}"},
                "Body": {
                    "Text": {
                        "Data": json.dumps(
                            {
                                "detail": sign_in["detail"],
                                "topic": record["Sns"]["TopicArn"],
                                "sns_subject": record["Sns"]["Subject"],
                                "function": context.function_name,
                            }
                        )
                    },
                    "Html": {"Data": f"<p>{who.get('userName', 'root')}</p>"},
                },
            },
        )
    print("notified", os.environ["RECIPIENTS"])
    return {"notified": len(event["Records"])}
"""


def sign_in_template(*, extras: bool = False) -> str:
    """Rule on console sign-ins -> SNS topic -> Lambda that emails via SES.

    ``RootOnly`` narrows the rule to sign-ins by the root user; ``extras`` adds the other
    resource types the product's template uses.
    """
    template = Template(Description="Console sign-in alerts")
    sender = template.add_parameter(Parameter("Sender", Type="String"))
    recipients = template.add_parameter(Parameter("Recipients", Type="String"))
    root_only = template.add_parameter(Parameter("RootOnly", Type="String", Default="false"))
    template.add_condition("OnlyRoot", Equals(Ref(root_only), "true"))
    topic = template.add_resource(sns.Topic("AlertTopic"))
    template.add_resource(
        sns.TopicPolicy(
            "AlertTopicPolicy",
            Topics=[Ref(topic)],
            PolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sns:Publish",
                        "Resource": Ref(topic),
                    }
                ],
            },
        )
    )
    role = template.add_resource(
        iam.Role(
            "NotifierRole",
            AssumeRolePolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
        )
    )
    variables = {"SENDER": Ref(sender), "RECIPIENTS": Ref(recipients)}
    function_properties: dict[str, Any] = {
        "Runtime": "python3.12",
        "Handler": "index.handler",
        "Role": GetAtt(role, "Arn"),
        "Timeout": 30,
        "Code": awslambda.Code(ZipFile=FUNCTION_CODE),
        "Environment": awslambda.Environment(Variables=variables),
    }
    if extras:
        log_group = template.add_resource(logs.LogGroup("NotifierLogs", RetentionInDays=30))
        dead_letters = template.add_resource(sqs.Queue("NotifierDeadLetters"))
        template.add_resource(
            sqs.QueuePolicy(
                "NotifierDeadLettersPolicy",
                Queues=[Ref(dead_letters)],
                PolicyDocument={
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "FunctionFailures",
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": GetAtt(dead_letters, "Arn"),
                        }
                    ],
                },
            )
        )
        function_properties["LoggingConfig"] = awslambda.LoggingConfig(LogGroup=Ref(log_group))
        dead_letters_arn = GetAtt(dead_letters, "Arn")
        function_properties["DeadLetterConfig"] = awslambda.DeadLetterConfig(TargetArn=dead_letters_arn)
    function = template.add_resource(awslambda.Function("Notifier", **function_properties))
    template.add_resource(
        sns.SubscriptionResource(
            "NotifierSubscription", TopicArn=Ref(topic), Protocol="lambda", Endpoint=GetAtt(function, "Arn")
        )
    )
    template.add_resource(
        awslambda.Permission(
            "TopicInvokesNotifier",
            Action="lambda:InvokeFunction",
            FunctionName=Ref(function),
            Principal="sns.amazonaws.com",
            SourceArn=Ref(topic),
        )
    )
    every_sign_in = {"source": ["aws.signin"], "detail-type": [SIGN_IN]}
    root_sign_in = {**every_sign_in, "detail": {"userIdentity": {"type": ["Root"]}}}
    template.add_resource(
        events.Rule(
            "SignInRule",
            EventPattern=If("OnlyRoot", root_sign_in, every_sign_in),
            Targets=[events.Target(Id="alert-topic", Arn=Ref(topic))],
        )
    )
    if extras:
        template.add_resource(
            awslambda.EventInvokeConfig(
                "NotifierRetries", FunctionName=Ref(function), Qualifier="$LATEST", MaximumRetryAttempts=1
            )
        )
        template.add_resource(
            cloudwatch.Alarm(
                "NotifierErrors",
                Namespace="AWS/Lambda",
                MetricName="Errors",
                Dimensions=[cloudwatch.MetricDimension(Name="FunctionName", Value=Ref(function))],
                Statistic="Sum",
                Period=300,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
            )
        )
    return str(template.to_json())


# ---------------------------------------------------------------------------------------------
# Running the sandbox
# ---------------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    endpoint_url: str
    state: dict[str, Any]

    def management(self) -> boto3.Session:
        return boto3.Session(region_name=REGION, **self.state["credentials"])

    def member(self, account: str) -> boto3.Session:
        """Credentials in ``account`` the way the product gets them: assume the member role."""
        if account == self.state["management_account"]:
            return self.management()  # AWS creates the member role in member accounts only
        sts = self.management().client("sts", endpoint_url=self.endpoint_url)
        role = f"arn:aws:iam::{account}:role/{self.state['member_role_name']}"
        credentials = sts.assume_role(RoleArn=role, RoleSessionName="sandbox-test")["Credentials"]
        return boto3.Session(
            region_name=REGION,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def client(self, session: boto3.Session, service: str) -> Any:
        return session.client(service, endpoint_url=self.endpoint_url)

    def mailbox(self, account: str | None = None) -> list[SentEmail]:
        return read_mailbox(self.endpoint_url, account)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    state_file = tmp_path / "sandbox.json"
    log_file = tmp_path / "sandbox.log"
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "loginwatch_org.sandbox.server",
        "--state-file",
        str(state_file),
        "--organization-json",
        json.dumps(ORGANISATION),
        "--port",
        str(port),
    ]
    with log_file.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not state_file.exists():
            if process.poll() is not None:
                pytest.fail(f"the sandbox exited with {process.returncode}:\n{log_file.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the sandbox was not ready within 60s:\n{log_file.read_text()}")
            time.sleep(0.05)
        state = json.loads(state_file.read_text())
        assert state["port"] == port
        assert state["endpoint_url"] == f"http://127.0.0.1:{port}"
        yield Sandbox(endpoint_url=state["endpoint_url"], state=state)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert not state_file.exists(), "the sandbox removes its state file when it stops"


def create_stack_set(sandbox: Sandbox, name: str, *, recipients: str, extras: bool = False) -> Any:
    cloudformation = sandbox.client(sandbox.management(), "cloudformation")
    cloudformation.create_stack_set(
        StackSetName=name,
        TemplateBody=sign_in_template(extras=extras),
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": False},
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[
            {"ParameterKey": "Sender", "ParameterValue": SENDER},
            {"ParameterKey": "Recipients", "ParameterValue": recipients},
        ],
    )
    return cloudformation


def deploy_to_ou(cloudformation: Any, ou: str) -> None:
    cloudformation.create_stack_instances(
        StackSetName="loginwatch", Regions=[REGION], DeploymentTargets={"OrganizationalUnitIds": [ou]}
    )


def override_parameter(cloudformation: Any, ou: str, account: str, key: str, value: str) -> None:
    """Give one account of ``ou`` its own parameter value, the way the product targets a single account."""
    cloudformation.update_stack_instances(
        StackSetName="loginwatch",
        Regions=[REGION],
        DeploymentTargets={"OrganizationalUnitIds": [ou], "Accounts": [account], "AccountFilterType": "INTERSECTION"},
        ParameterOverrides=[{"ParameterKey": key, "ParameterValue": value}],
    )


def deployed_function(sandbox: Sandbox, account: str) -> dict[str, Any] | None:
    functions = sandbox.client(sandbox.member(account), "lambda").list_functions()["Functions"]
    assert len(functions) <= 1
    return functions[0] if functions else None


def sign_in(sandbox: Sandbox, account: str, user_type: str = "IAMUser", source: str = "aws.signin") -> None:
    identity = {"type": user_type, "userName": "alice"} if user_type == "IAMUser" else {"type": user_type}
    detail = {
        "eventName": "ConsoleLogin",
        "userIdentity": identity,
        "responseElements": {"ConsoleLogin": "Success"},
    }
    result = sandbox.client(sandbox.member(account), "events").put_events(
        Entries=[{"Source": source, "DetailType": SIGN_IN, "Detail": json.dumps(detail)}]
    )
    assert result["FailedEntryCount"] == 0


def logged(logs_client: Any, group: str) -> list[str]:
    """Every line of the one log stream in ``group``."""
    [stream] = logs_client.describe_log_streams(logGroupName=group)["logStreams"]
    found = logs_client.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])
    return [event["message"] for event in found["events"]]


def instance_accounts(cloudformation: Any, name: str) -> list[str]:
    return sorted(s["Account"] for s in cloudformation.list_stack_instances(StackSetName=name)["Summaries"])


# ---------------------------------------------------------------------------------------------
# The organisation
# ---------------------------------------------------------------------------------------------


def test_sandbox_holds_the_configured_organisation(sandbox: Sandbox) -> None:
    assert sandbox.state["management_account"] == MANAGEMENT
    management = sandbox.management()
    assert sandbox.client(management, "sts").get_caller_identity()["Account"] == MANAGEMENT
    organizations = sandbox.client(management, "organizations")
    assert [r["Id"] for r in organizations.list_roots()["Roots"]] == [ROOT]
    ous = organizations.list_organizational_units_for_parent(ParentId=ROOT)["OrganizationalUnits"]
    assert sorted(ou["Id"] for ou in ous) == [OU_WORKLOADS, OU_SANDBOXES]
    workloads = organizations.list_accounts_for_parent(ParentId=OU_WORKLOADS)["Accounts"]
    assert sorted(a["Id"] for a in workloads) == [DEV, PROD]
    in_root = organizations.list_accounts_for_parent(ParentId=ROOT)["Accounts"]
    assert sorted(a["Id"] for a in in_root) == sorted([MANAGEMENT, SHARED])
    names = {a["Id"]: a["Name"] for a in organizations.list_accounts()["Accounts"]}
    assert names == ORGANISATION["account_names"]
    cloudformation = sandbox.client(management, "cloudformation")
    assert cloudformation.describe_organizations_access()["Status"] == "ENABLED"

    member = sandbox.member(LAB)
    assert sandbox.client(member, "sts").get_caller_identity()["Account"] == LAB
    assert SENDER in sandbox.client(member, "ses").list_identities()["Identities"]
    assert sandbox.mailbox() == []


def test_mailbox_reads_every_way_of_sending(sandbox: Sandbox) -> None:
    member = sandbox.member(DEV)
    ses = sandbox.client(member, "ses")
    ses.send_email(
        Source=SENDER,
        Destination={"ToAddresses": ["a@example.com"]},
        Message={"Subject": {"Data": "text only"}, "Body": {"Text": {"Data": "plain"}}},
    )
    sandbox.client(member, "sesv2").send_email(
        FromEmailAddress=SENDER,
        Destination={"ToAddresses": ["b@example.com", "c@example.com"]},
        Content={
            "Simple": {
                "Subject": {"Data": "both parts"},
                "Body": {"Text": {"Data": "plain"}, "Html": {"Data": "<b>rich</b>"}},
            }
        },
    )
    raw = (
        f"From: {SENDER}\r\nTo: d@example.com\r\nSubject: raw\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        "--b\r\nContent-Type: text/html\r\n\r\n<i>rich</i>\r\n--b--\r\n"
    )
    ses.send_raw_email(RawMessage={"Data": raw.encode()})
    with pytest.raises(ClientError, match="not verified"):
        ses.send_email(
            Source="someone@else.example",
            Destination={"ToAddresses": ["a@example.com"]},
            Message={"Subject": {"Data": "rejected"}, "Body": {"Text": {"Data": "x"}}},
        )

    mail = sandbox.mailbox(DEV)
    assert [(m["subject"], m["to"], m["text"], m["html"]) for m in mail] == [
        ("text only", ["a@example.com"], "plain", None),
        ("both parts", ["b@example.com", "c@example.com"], "plain", "<b>rich</b>"),
        ("raw", ["d@example.com"], "plain", "<i>rich</i>"),
    ]
    assert {m["account"] for m in mail} == {DEV}
    assert {m["source"] for m in mail} == {SENDER}
    assert len({m["message_id"] for m in mail}) == 3
    assert sandbox.mailbox(PROD) == []


# ---------------------------------------------------------------------------------------------
# StackSets
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Sign-in events -> email
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The behaviour module on its own
# ---------------------------------------------------------------------------------------------


# An organisation with a nested OU, for the target selection on its own.
CHILD_OUS = {ROOT: [OU_WORKLOADS, OU_SANDBOXES], OU_SANDBOXES: [OU_NESTED]}
ACCOUNTS_BY_PARENT = {
    ROOT: [MANAGEMENT, SHARED],
    OU_WORKLOADS: [DEV, PROD],
    OU_SANDBOXES: [LAB],
    OU_NESTED: [LAB2],
}


def select(ous: list[str], accounts: list[str], filter_type: str | None, operation: Any) -> list[str]:
    from loginwatch_org.sandbox.behaviour import select_target_accounts

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


def test_apply_is_idempotent_and_revert_restores_moto() -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.cloudformation import parsing
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.events.models import Rule

    from loginwatch_org.sandbox import behaviour

    assert not behaviour.is_applied()
    originals = (Rule.send_to_targets, LambdaFunction._invoke_lambda, parsing.resource_class_from_type)
    try:
        behaviour.apply(endpoint_url="http://127.0.0.1:1")
        patched = (Rule.send_to_targets, LambdaFunction._invoke_lambda, parsing.resource_class_from_type)
        behaviour.apply(endpoint_url="http://127.0.0.1:2")
        assert behaviour.is_applied()
        assert (
            Rule.send_to_targets,
            LambdaFunction._invoke_lambda,
            parsing.resource_class_from_type,
        ) == patched
        assert all(p is not o for p, o in zip(patched, originals, strict=True))
        added = parsing.resource_class_from_type("AWS::SNS::Subscription")
        assert added.__name__ == "SnsSubscriptionResource"
        assert hasattr(CloudFormationResponse, "describe_organizations_access")
    finally:
        behaviour.revert()
    assert not behaviour.is_applied()
    assert (
        Rule.send_to_targets,
        LambdaFunction._invoke_lambda,
        parsing.resource_class_from_type,
    ) == originals
    assert not hasattr(CloudFormationResponse, "describe_organizations_access")
