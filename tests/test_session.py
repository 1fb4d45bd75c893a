"""Clients are built the way boto3 users expect, and throttling is retried by botocore."""

from __future__ import annotations

import pytest

from loginwatch_org.aws.session import AwsTarget, client


def test_throttling_is_retried_adaptively() -> None:
    cloudformation = client(AwsTarget(), "cloudformation")
    retries = cloudformation.meta.config.retries
    assert retries["mode"] == "adaptive"
    assert retries["total_max_attempts"] >= 5
    assert "loginwatch-org/" in cloudformation.meta.config.user_agent_extra


def test_administrator_region_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = client(AwsTarget(region="eu-west-1", endpoint_url="http://127.0.0.1:5999"), "cloudformation")
    assert explicit.meta.region_name == "eu-west-1"
    assert explicit.meta.endpoint_url == "http://127.0.0.1:5999"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5998")
    from_env = client(AwsTarget(), "cloudformation")
    assert from_env.meta.endpoint_url == "http://127.0.0.1:5998"
    assert from_env.meta.region_name == "us-east-1"


def test_explicit_keys_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKINGKEY00")
    sandbox = client(AwsTarget(access_key_id="AKIA000011112222SBOX", secret_access_key="testing"), "sts")
    assert sandbox._request_signer._credentials.access_key == "AKIA000011112222SBOX"
