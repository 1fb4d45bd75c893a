"""Clients are built the way boto3 users expect, and throttling is retried by botocore."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from loginwatch_org.aws.session import (
    CONNECT_ATTEMPTS,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    THROTTLE_ATTEMPTS,
    AwsTarget,
    client,
)


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


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _count_sends(made: Any) -> list[str]:
    sends: list[str] = []
    made.meta.events.register("before-send", lambda request, **_: sends.append(request.url))
    return sends


def test_an_unreachable_endpoint_fails_after_a_small_budget_saying_what_it_tries() -> None:
    said: list[str] = []
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    cloudformation = client(AwsTarget(endpoint_url=endpoint), "cloudformation", progress=said.append)
    sends = _count_sends(cloudformation)
    with pytest.raises(EndpointConnectionError):
        cloudformation.describe_stack_set(StackSetName="loginwatch")
    assert len(sends) == CONNECT_ATTEMPTS == 2
    assert cloudformation.meta.config.connect_timeout <= 5
    assert said == [
        f"using cloudformation at {endpoint} (region us-east-1)",
        f"cannot connect to {endpoint}; trying again (attempt 2 of 2)",
    ]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def test_server_errors_keep_the_full_retry_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.endpoint
    from botocore.awsrequest import AWSResponse

    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda _seconds: None)
    cloudformation = client(AwsTarget(endpoint_url=f"http://127.0.0.1:{_closed_port()}"), "cloudformation")
    sends = _count_sends(cloudformation)
    body = b"<ErrorResponse><Error><Code>InternalFailure</Code><Message>x</Message></Error></ErrorResponse>"
    cloudformation.meta.events.register(
        "before-send", lambda request, **_: AWSResponse(request.url, 500, {}, _Raw(body))
    )
    with pytest.raises(ClientError):
        cloudformation.describe_stack_set(StackSetName="loginwatch")
    assert len(sends) == THROTTLE_ATTEMPTS


def test_a_server_that_never_answers_fails_after_two_reads_saying_so() -> None:
    from botocore.exceptions import ReadTimeoutError

    from tests.silent_server import silent_server

    said: list[str] = []
    with silent_server() as server:
        cloudformation = client(
            AwsTarget(endpoint_url=server.url, read_timeout=1), "cloudformation", progress=said.append
        )
        sends = _count_sends(cloudformation)
        with pytest.raises(ReadTimeoutError):
            cloudformation.describe_stack_set(StackSetName="loginwatch")
    assert len(sends) == CONNECT_ATTEMPTS == 2
    assert said[-1] == f"no answer from {server.url} within 1 s; trying again (attempt 2 of 2)"


def test_every_client_waits_a_bounded_time_for_an_answer() -> None:
    # Two attempts at the default read timeout, plus botocore's backoff (at most 1 s before the second), must end
    # a command under half a minute: botocore's own default would wait 60 s a try, ten tries.
    cloudformation = client(AwsTarget(), "cloudformation")
    assert cloudformation.meta.config.read_timeout == READ_TIMEOUT
    assert CONNECT_ATTEMPTS * READ_TIMEOUT + CONNECT_TIMEOUT + 1 < 30
