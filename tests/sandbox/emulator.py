"""The sandbox emulator in tests: its organisation, a sign-in watch template, and helpers that drive it.

The tests start the sandbox as its own process on a free port (``tests/sandbox/conftest.py``) and talk to it over
HTTP with boto3, as the CLI does.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
from troposphere import (
    Equals,
    GetAtt,
    If,
    Parameter,
    Ref,
    Sub,
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


@dataclass
class Sandbox:
    endpoint_url: str
    state: dict[str, Any]
    state_file: Path

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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


WATCH_BUS: Final = "arn:${AWS::Partition}:events:us-east-1:${AWS::AccountId}:event-bus/default"


def forwarder_template(*, bus_allowed: str = WATCH_BUS) -> str:
    """A minimal forwarder (the product's is ``REGISTRY["forwarder"]``): a rule for the sign-ins recorded in its
    Region, sending them to the us-east-1 default bus through a role that may put events on ``bus_allowed`` only,
    dead-lettering failures. Tests use it where they need a forwarder the product would never deploy."""
    template = Template()
    dead_letters = template.add_resource(sqs.Queue("DeadLetterQueue"))
    role = template.add_resource(
        iam.Role(
            "ForwarderRole",
            AssumeRolePolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:SourceAccount": Ref("AWS::AccountId")}},
                    }
                ],
            },
            Policies=[
                iam.Policy(
                    PolicyName="put-on-the-watch-bus",
                    PolicyDocument={
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": Sub(bus_allowed)}],
                    },
                )
            ],
        )
    )
    template.add_resource(
        events.Rule(
            "ForwardRule",
            State="ENABLED",
            EventPattern={"source": ["aws.signin"], "region": [Ref("AWS::Region")]},
            Targets=[
                events.Target(
                    Id="watch-region-bus",
                    Arn=Sub(WATCH_BUS),
                    RoleArn=GetAtt(role, "Arn"),
                    DeadLetterConfig=events.DeadLetterConfig(Arn=GetAtt(dead_letters, "Arn")),
                )
            ],
        )
    )
    return str(template.to_json())
