"""The sandbox's mail account: AssumeRole honours the sending role's trust policy, and mail leaves from there."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.iam.models import iam_backends
from moto.ses.models import ses_backends
from moto.sts.models import sts_backends

from loginwatch_org import notifier
from loginwatch_org.config import Config, load_config
from loginwatch_org.mail_setup import WATCH_ROLE_PATH, mail_role_arn
from loginwatch_org.sandbox.behaviour import mail_account
from loginwatch_org.sandbox.behaviour.mail_account import Caller, assume_role_allowed
from loginwatch_org.templates import template_body
from loginwatch_org.templates.mail import build_mail_template, mail_parameters
from tests.signin_events import eventbridge_envelope, load_sample

REGION = "eu-west-1"
SENDER = "alerts@example.com"
OUTSIDER = "000011112222"  # an AWS account that is not in the organisation
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@dataclass
class Org:
    management: str
    mail: str
    member: str
    organization_id: str
    config: Config


def _session(credentials: dict[str, Any], region: str = REGION) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=region,
    )


def _admin(account: str) -> boto3.Session:
    """The management account's way into a member account, through the sandbox's AssumeRole."""
    sts = boto3.client("sts", region_name="us-east-1")
    role = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
    return _session(sts.assume_role(RoleArn=role, RoleSessionName="setup")["Credentials"])


def _function_credentials(account: str, role_name: str, path: str = WATCH_ROLE_PATH) -> dict[str, str]:
    """A Lambda function's role session, minted as Lambda does (the service assumes the execution role)."""
    iam = iam_backends[account]["aws"]
    role = iam.create_role(
        role_name=role_name,
        assume_role_policy_document=json.dumps(LAMBDA_TRUST),
        path=path,
        permissions_boundary=None,
        description="",
        tags=[],
        max_session_duration="3600",
        linked_service=None,
    )
    session = sts_backends[account]["aws"].assume_role(
        region_name=REGION,
        role_session_name="NotifierFunction",
        role_arn=role.arn,
        policy="",
        duration=3600,
        external_id="",
    )
    return {
        "AccessKeyId": session.access_key_id,
        "SecretAccessKey": session.secret_access_key,
        "SessionToken": session.session_token,
    }


@pytest.fixture
def installed() -> Iterator[None]:
    applied = []
    for patch in mail_account.PATCHES:
        original = vars(patch.owner)[patch.name]
        setattr(patch.owner, patch.name, patch.make(original))
        applied.append((patch, original))
    yield
    for patch, original in reversed(applied):
        setattr(patch.owner, patch.name, original)


@pytest.fixture
def org(installed: None, write_config: Callable[[str], Path]) -> Iterator[Org]:
    with mock_aws():
        organizations = boto3.client("organizations", region_name="us-east-1")
        described = organizations.create_organization(FeatureSet="ALL")["Organization"]
        mail, member = (
            organizations.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"][
                "AccountId"
            ]
            for name in ("mail", "workloads")
        )
        config = load_config(
            write_config(
                f"""
                stack_set:
                  organizational_units: [r-ab12]
                delivery:
                  sender: {SENDER}
                  mail_account: "{mail}"
                  ses_identity_arn: arn:aws:ses:{REGION}:{mail}:identity/example.com
                defaults:
                  recipients: [security@example.com]
                accounts:
                  - id: "{member}"
                    name: workloads
                """
            )
        )
        # The mail stack, as the rollout deploys it in the mail account.
        parameters = mail_parameters(config, described["Id"])
        _admin(mail).client("cloudformation").create_stack(
            StackName="loginwatch-mail",
            TemplateBody=template_body(build_mail_template(config)),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        # The sender is verified in the mail account only, as the sandbox's server seeds it.
        ses_backends[mail][REGION].verify_email_identity(SENDER)
        ses_backends[member][REGION].verify_email_identity("someone-else@example.org")
        yield Org(described["MasterAccountId"], mail, member, described["Id"], config)


def _assume_mail_role(credentials: dict[str, str], org: Org) -> dict[str, Any]:
    role = mail_role_arn(org.config)
    assert role is not None
    sts = _session(credentials).client("sts")
    return dict(sts.assume_role(RoleArn=role, RoleSessionName="NotifierFunction")["Credentials"])


def test_a_watch_function_of_the_organisation_assumes_the_sending_role(org: Org) -> None:
    credentials = _assume_mail_role(_function_credentials(org.member, "watch-NotifierRole-1"), org)
    identity = _session(credentials).client("sts").get_caller_identity()
    assert identity["Account"] == org.mail
    assert identity["Arn"].startswith(f"arn:aws:sts::{org.mail}:assumed-role/loginwatch-mail-sender/")


def test_an_account_outside_the_organisation_is_refused(org: Org) -> None:
    outsider = _function_credentials(OUTSIDER, "watch-NotifierRole-1")
    with pytest.raises(ClientError) as refused:
        _assume_mail_role(outsider, org)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert f"arn:aws:iam::{OUTSIDER}:role{WATCH_ROLE_PATH}watch-NotifierRole-1" in str(refused.value)


def test_other_roles_of_the_organisation_are_refused(org: Org) -> None:
    elsewhere = _function_credentials(org.member, "some-other-function", path="/")
    with pytest.raises(ClientError) as refused:
        _assume_mail_role(elsewhere, org)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_a_role_that_does_not_exist_cannot_be_assumed(org: Org) -> None:
    sts = _session(_function_credentials(org.member, "watch-NotifierRole-1")).client("sts")
    with pytest.raises(ClientError) as refused:
        sts.assume_role(RoleArn=f"arn:aws:iam::{org.mail}:role/no-such-role", RoleSessionName="NotifierFunction")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_the_organisations_access_role_still_admits_only_the_management_account(org: Org) -> None:
    assert _admin(org.member).client("sts").get_caller_identity()["Account"] == org.member
    sts = _session(_function_credentials(org.mail, "watch-NotifierRole-1")).client("sts")
    with pytest.raises(ClientError):
        sts.assume_role(
            RoleArn=f"arn:aws:iam::{org.member}:role/OrganizationAccountAccessRole", RoleSessionName="lateral"
        )


@pytest.fixture
def watch_env(org: Org, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    credentials = _function_credentials(org.member, "watch-NotifierRole-1")
    assert org.config.delivery.ses_identity_arn is not None
    environment = {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
        "SENDER": SENDER,
        "RECIPIENTS": "security@example.com",
        "ACCOUNT_NAME": "workloads",
        "SOURCE_ARN": org.config.delivery.ses_identity_arn,
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    # A Lambda process starts with its role's credentials; boto3's default session would keep the test's.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    notifier._MAIL_ROLE_CACHE.clear()
    return environment


def _sign_in(account: str) -> dict[str, Any]:
    envelope = eventbridge_envelope(load_sample("11"), account=account)
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "m-1", "Message": json.dumps(envelope)}}]}


def test_a_member_accounts_sign_in_is_mailed_by_the_mail_account(
    org: Org, watch_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_ROLE_ARN", str(mail_role_arn(org.config)))
    result = notifier.handler(_sign_in(org.member), None)
    [sent] = ses_backends[org.mail][REGION].sent_messages
    assert result["message_ids"] == [sent.id]
    assert sent.source == SENDER
    assert f"Console sign-in to {org.member} (workloads)" in sent.subject
    assert ses_backends[org.member][REGION].sent_messages == []


def test_without_the_sending_role_a_member_account_cannot_send(org: Org, watch_env: dict[str, str]) -> None:
    # The sender is verified in the mail account only, as on AWS: the member's own SES refuses it.
    with pytest.raises(RuntimeError, match=r"security@example\.com: MessageRejected"):
        notifier.handler(_sign_in(org.member), None)
    assert ses_backends[org.mail][REGION].sent_messages == []


CALLER = Caller(
    account="111122223333", principal_arn="arn:aws:iam::111122223333:role/loginwatch/f", organization_id="o-a"
)


@pytest.mark.parametrize(
    ("condition", "allowed"),
    [
        ({"StringEquals": {"aws:PrincipalOrgID": "o-a"}}, True),
        ({"StringEquals": {"aws:PrincipalOrgID": ["o-b", "o-a"]}}, True),
        ({"StringEquals": {"aws:PrincipalOrgID": "o-b"}}, False),
        ({"StringEquals": {"AWS:PrincipalOrgId": "o-a"}}, True),  # key names are not case-sensitive
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/loginwatch/*"}}, True),
        ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/other/*"}}, False),
        ({"StringEquals": {"sts:ExternalId": "x"}}, False),  # absent from the request
        ({"StringNotEquals": {"sts:ExternalId": "x"}}, True),  # a missing key passes a negated test
        ({"StringEqualsIfExists": {"sts:ExternalId": "x"}}, True),
        ({"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}, False),  # not modelled: refused
    ],
)
def test_trust_conditions(condition: dict[str, Any], allowed: bool) -> None:
    policy = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole", "Condition": condition}
        ]
    }
    assert assume_role_allowed(policy, CALLER) is allowed


def test_a_deny_wins_and_outsiders_are_not_admitted_by_account_principals() -> None:
    allow = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"}
    deny = {**allow, "Effect": "Deny", "Principal": {"AWS": "*"}}
    assert assume_role_allowed({"Statement": [allow]}, CALLER)
    assert not assume_role_allowed({"Statement": [allow, deny]}, CALLER)
    outsider = Caller(
        account=OUTSIDER, principal_arn=f"arn:aws:iam::{OUTSIDER}:role/loginwatch/f", organization_id=None
    )
    assert not assume_role_allowed({"Statement": [allow]}, outsider)
    service_only = {"Statement": [{**allow, "Principal": {"Service": "lambda.amazonaws.com"}}]}
    assert not assume_role_allowed(service_only, CALLER)
