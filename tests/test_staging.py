"""Staging a template too large to send inline (``aws/staging.py``), against moto's S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from loginwatch_org.aws.staging import StagingError, TemplateStager, staging_bucket_name
from loginwatch_org.sandbox import behaviour
from loginwatch_org.templates import TEMPLATE_BODY_LIMIT, TEMPLATE_URL_LIMIT, template_digest

ACCOUNT = "123456789012"  # moto's default account
LARGE = json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}, "Metadata": {"pad": "x" * 60_000}})


@pytest.fixture
def s3_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        # moto applies a bucket policy without its conditions; the sandbox's S3 behaviour evaluates them.
        behaviour.apply()
        clients: dict[str, Any] = {}

        def factory(region: str) -> Any:
            clients.setdefault(region, boto3.client("s3", region_name=region))
            return clients[region]

        try:
            yield factory
        finally:
            behaviour.revert()


def test_a_body_within_the_limit_is_sent_inline_and_s3_is_not_touched(s3_for: Any) -> None:
    body = json.dumps({"Resources": {}})
    assert TemplateStager(s3_for, ACCOUNT).source(body, "us-east-1") == {"TemplateBody": body}
    assert s3_for("us-east-1").list_buckets()["Buckets"] == []


def test_a_larger_body_is_put_in_a_locked_down_bucket_of_the_account_and_passed_by_url(s3_for: Any) -> None:
    notes: list[str] = []
    stager = TemplateStager(s3_for, ACCOUNT, notes.append)
    assert len(LARGE) > TEMPLATE_BODY_LIMIT
    source = stager.source(LARGE, "us-east-1")
    bucket = staging_bucket_name(ACCOUNT, "us-east-1")
    key = f"templates/{template_digest(LARGE)}.json"
    assert source == {"TemplateURL": f"https://{bucket}.s3.us-east-1.amazonaws.com/{key}"}
    s3 = s3_for("us-east-1")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode() == LARGE
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    [deny] = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Status"] == "Enabled" and rule["Expiration"]["Days"] == 30
    assert any("creating S3 bucket" in note for note in notes)

    # The same template again (another unit, a rerun in this command) is not put twice.
    before = len(notes)
    assert stager.source(LARGE, "us-east-1") == source
    assert len(notes) == before
    # A rerun (a new command) finds the bucket and puts the object again under the same name.
    assert TemplateStager(s3_for, ACCOUNT).source(LARGE, "us-east-1") == source


def test_each_region_has_its_own_bucket(s3_for: Any) -> None:
    source = TemplateStager(s3_for, ACCOUNT).source(LARGE, "eu-west-1")
    bucket = staging_bucket_name(ACCOUNT, "eu-west-1")
    assert source["TemplateURL"].startswith(f"https://{bucket}.s3.eu-west-1.amazonaws.com/templates/")
    assert s3_for("eu-west-1").get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"


def test_a_bucket_of_that_name_owned_by_another_account_is_refused() -> None:
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
        with pytest.raises(StagingError, match="not this account's"):
            TemplateStager(lambda _region: s3, ACCOUNT).source(LARGE, "us-east-1")
        stub.assert_no_pending_responses()  # nothing was put


def test_a_body_too_large_even_for_s3_or_with_no_way_to_stage_it_is_a_clear_error(s3_for: Any) -> None:
    huge = "x" * (TEMPLATE_URL_LIMIT + 1)
    with pytest.raises(StagingError, match="at most 1 MB"):
        TemplateStager(s3_for, ACCOUNT).source(huge, "us-east-1")
    with pytest.raises(StagingError, match="no S3 client"):
        TemplateStager(None, None).source(LARGE, "us-east-1")


def test_a_bucket_left_half_made_by_an_interrupted_run_is_locked_down_by_the_next(s3_for: Any) -> None:
    bucket = staging_bucket_name(ACCOUNT, "us-east-1")
    s3 = s3_for("us-east-1")
    s3.create_bucket(Bucket=bucket)  # created, then the run stopped before its settings were applied
    TemplateStager(s3_for, ACCOUNT).source(LARGE, "us-east-1")
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    [deny] = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["Expiration"]["Days"] == 30
