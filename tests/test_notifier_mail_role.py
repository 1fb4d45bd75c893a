"""The notifier sends through the mail account's role when MAIL_ROLE_ARN names one, with fakes for STS and SES."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from loginwatch_org import notifier
from tests.signin_events import eventbridge_envelope, load_sample

MAIL_ROLE = "arn:aws:iam::999988887777:role/loginwatch-mail-sender"
IDENTITY = "arn:aws:ses:eu-west-1:999988887777:identity/example.com"
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeAws:
    """Records every client the notifier makes, with the credentials and Region it made it with."""

    now: datetime = START
    lifetime: timedelta = timedelta(hours=1)
    refuse: bool = False
    assumed: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def client(self, service: str, **options: Any) -> Any:
        if service == "sts":
            return _Sts(self)
        if service == "ses":
            return _Ses(self, options)
        raise AssertionError(f"unexpected client {service}")


class _Sts:
    def __init__(self, aws: FakeAws) -> None:
        self.aws = aws

    def assume_role(self, **request: Any) -> dict[str, Any]:
        if self.aws.refuse:
            error = {"Code": "AccessDenied", "Message": "not authorized to perform: sts:AssumeRole"}
            raise ClientError({"Error": error}, "AssumeRole")
        self.aws.assumed.append(request)
        number = len(self.aws.assumed)
        return {
            "Credentials": {
                "AccessKeyId": f"ASIAMAIL{number}",
                "SecretAccessKey": f"secret-{number}",
                "SessionToken": f"token-{number}",
                "Expiration": self.aws.now + self.aws.lifetime,
            }
        }


class _Ses:
    def __init__(self, aws: FakeAws, options: dict[str, Any]) -> None:
        self.aws = aws
        self.options = options

    def send_email(self, **request: Any) -> dict[str, Any]:
        self.aws.sent.append({"client": self.options, "request": request})
        return {"MessageId": f"m-{len(self.aws.sent)}"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    fake = FakeAws()
    monkeypatch.setattr(boto3, "client", fake.client)
    monkeypatch.setattr(notifier, "_now", lambda: fake.now)
    for key, value in {
        "SENDER": "alerts@example.com",
        "RECIPIENTS": "security@example.com",
        "ACCOUNT_NAME": "payments-prod",
        "SOURCE_ARN": IDENTITY,
        "AWS_LAMBDA_FUNCTION_NAME": "StackSet-loginwatch-abc-NotifierFunction-XYZ",
    }.items():
        monkeypatch.setenv(key, value)
    notifier._MAIL_ROLE_CACHE.clear()
    yield fake
    notifier._MAIL_ROLE_CACHE.clear()


def _alert() -> dict[str, Any]:
    envelope = eventbridge_envelope(load_sample("11"))
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "m", "Message": json.dumps(envelope)}}]}


def test_sends_with_the_mail_roles_credentials_in_the_identitys_region(
    aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_ROLE_ARN", MAIL_ROLE)
    notifier.handler(_alert(), None)
    [assumed] = aws.assumed
    assert assumed["RoleArn"] == MAIL_ROLE
    assert assumed["RoleSessionName"] == "StackSet-loginwatch-abc-NotifierFunction-XYZ"
    assert assumed["DurationSeconds"] <= 3600  # role chaining allows one hour at most
    [sent] = aws.sent
    assert sent["client"] == {
        "region_name": "eu-west-1",
        "aws_access_key_id": "ASIAMAIL1",
        "aws_secret_access_key": "secret-1",
        "aws_session_token": "token-1",
    }
    assert sent["request"]["Source"] == "alerts@example.com"
    assert sent["request"]["SourceArn"] == IDENTITY


def test_credentials_are_reused_while_valid_and_renewed_before_they_expire(
    aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_ROLE_ARN", MAIL_ROLE)
    for minutes in (0, 10, 40, 54):
        aws.now = START + timedelta(minutes=minutes)
        notifier.handler(_alert(), None)
    assert len(aws.assumed) == 1
    assert {s["client"]["aws_access_key_id"] for s in aws.sent} == {"ASIAMAIL1"}
    aws.now = START + timedelta(minutes=56)  # within minutes of expiry: a send could outlive them
    notifier.handler(_alert(), None)
    assert len(aws.assumed) == 2
    assert aws.sent[-1]["client"]["aws_access_key_id"] == "ASIAMAIL2"


def test_expired_credentials_are_never_used(aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_ROLE_ARN", MAIL_ROLE)
    notifier.handler(_alert(), None)
    aws.now = START + timedelta(hours=3)
    notifier.handler(_alert(), None)
    assert [s["client"]["aws_access_key_id"] for s in aws.sent] == ["ASIAMAIL1", "ASIAMAIL2"]


def test_without_a_mail_role_the_function_sends_as_its_own_account(
    aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAIL_ROLE_ARN", raising=False)
    notifier.handler(_alert(), None)
    assert aws.assumed == []
    [sent] = aws.sent
    assert sent["client"] == {"region_name": "eu-west-1"}


def test_a_refused_role_fails_the_invocation_so_lambda_retries(aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_ROLE_ARN", MAIL_ROLE)
    aws.refuse = True
    # Invoked directly (a replay), the call fails with the refusal, so Lambda retries and then dead-letters it.
    with pytest.raises(RuntimeError, match=r"ClientError: .*AssumeRole"):
        notifier.handler(_alert(), None)
    assert aws.sent == []  # never sent from the function's own account instead


def test_credentials_of_one_role_are_not_used_for_another(aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_ROLE_ARN", MAIL_ROLE)
    notifier.handler(_alert(), None)
    monkeypatch.setenv("MAIL_ROLE_ARN", MAIL_ROLE.replace("999988887777", "111122223333"))
    notifier.handler(_alert(), None)
    assert [a["RoleArn"] for a in aws.assumed] == [MAIL_ROLE, MAIL_ROLE.replace("999988887777", "111122223333")]
