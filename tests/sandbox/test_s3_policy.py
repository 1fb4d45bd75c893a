"""S3 bucket policies with their conditions (``behaviour/s3.py``) and the template body limit (``cfn_limits``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from loginwatch_org.sandbox import behaviour


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        behaviour.apply()
        try:
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket="staged")
            yield client
        finally:
            behaviour.revert()


def _policy(statement: dict[str, Any]) -> str:
    base = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::staged/*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [{**base, **statement}]})


def test_a_deny_for_requests_without_tls_lets_sandbox_requests_through(s3: Any) -> None:
    s3.put_bucket_policy(Bucket="staged", Policy=_policy({"Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
    s3.put_object(Bucket="staged", Key="a", Body=b"1")
    assert s3.get_object(Bucket="staged", Key="a")["Body"].read() == b"1"


def test_a_deny_whose_conditions_hold_still_denies(s3: Any) -> None:
    s3.put_bucket_policy(Bucket="staged", Policy=_policy({"Condition": {"Bool": {"aws:SecureTransport": "true"}}}))
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="staged", Key="a", Body=b"1")
    assert refused.value.response["Error"]["Code"] in ("403", "AccessDenied")


def test_a_template_body_longer_than_cloudformation_takes_is_refused(s3: Any) -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    body = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Metadata": {"pad": "x" * 52_000}})
    with pytest.raises(ClientError) as refused:
        cloudformation.create_stack(StackName="large", TemplateBody=body)
    assert "length less than or equal to 51200" in str(refused.value)
    # The same template from S3 is accepted.
    s3.put_object(Bucket="staged", Key="large.json", Body=body.encode())
    cloudformation.create_stack(StackName="large", TemplateURL="https://staged.s3.us-east-1.amazonaws.com/large.json")
    assert cloudformation.describe_stacks(StackName="large")["Stacks"][0]["StackName"] == "large"
