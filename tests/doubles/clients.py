"""What ``session.client`` hands the CLI in tests that run it against the StackSets double.

The watch's body is larger than CloudFormation takes inline, so a rollout stages it in S3 under the caller's
account: the double gets a fake S3 (which it reads ``TemplateURL`` from) and STS names the caller. The caller is
not the management account unless a test asks for it, so the management account's own stacks (plain
CloudFormation, which the double does not emulate) stay out of reach, reported as not covered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto import mock_aws

from loginwatch_org.aws import session
from loginwatch_org.sandbox import behaviour
from loginwatch_org.workflow import Clients
from tests.doubles.s3 import FakeS3
from tests.doubles.stacksets import StackSetsDouble

# Who the credentials belong to by default: an account outside every test organisation.
CALLER_ACCOUNT = "444400004444"


class CallerSts:
    """GetCallerIdentity only: the account a rollout stages its templates in."""

    def __init__(self, account: str) -> None:
        self.account = account

    def get_caller_identity(self) -> dict[str, str]:
        return {"Account": self.account, "Arn": f"arn:aws:iam::{self.account}:user/admin"}


def double_clients(
    fake: StackSetsDouble, *, caller: str = CALLER_ACCOUNT, **others: Any
) -> Callable[[session.AwsTarget, str, Any], Any]:
    """A stand-in for ``session.client``: the double's CloudFormation, a fake S3 of ``caller``'s shared with the
    double, STS naming ``caller``, and any ``others`` by service name; None for anything else."""
    if fake.s3 is None:
        fake.s3 = FakeS3(caller)
    s3 = fake.s3

    def client(target: session.AwsTarget, service: str, progress: Any = None) -> Any:
        if service == "cloudformation":
            return fake.client()
        if service == "s3":
            return s3.client(target.region or "us-east-1")
        if service == "sts":
            return CallerSts(caller)
        return others.get(service)

    return client


def staging_clients(fake: StackSetsDouble, caller: str = CALLER_ACCOUNT, **others: Any) -> Clients:
    """``Clients`` on the double that can stage a template in a fake S3 of ``caller``'s, as a rollout needs."""
    if fake.s3 is None:
        fake.s3 = FakeS3(caller)
    return Clients(fake.client(), sts=CallerSts(caller), s3_for=fake.s3.client, **others)


@contextmanager
def moto_with_bucket_policies() -> Iterator[None]:
    """moto in-process, its S3 evaluating bucket-policy conditions as the sandbox does (moto applies every Deny
    unconditionally, so the staging bucket's TLS-only policy would refuse everything)."""
    with mock_aws():
        behaviour.apply(only=["s3"])
        try:
            yield
        finally:
            behaviour.revert()
