"""Turning AWS's failures into messages an org admin can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from loginwatch_org.errors import LoginwatchError


class AwsProblem(LoginwatchError):
    """An AWS call failed in a way the user must fix; the message says how."""


def error_code(error: BaseException) -> str:
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def error_message(error: BaseException) -> str:
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", ""))
    return str(error)


def explain(error: BaseException, call_as: str = "SELF") -> AwsProblem:
    """A one-paragraph explanation of a failed AWS call."""
    name = type(error).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return AwsProblem(
            "No AWS credentials found. Use --profile NAME, the AWS_* environment variables or an instance "
            "role; or try everything locally with --sandbox."
        )
    if name == "ProfileNotFound":
        return AwsProblem(f"{error}. List your profiles with 'aws configure list-profiles'.")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return AwsProblem(f"Cannot reach AWS: {error}. Check --endpoint-url/AWS_ENDPOINT_URL and the network.")
    if name == "ReadTimeoutError":
        # botocore's text names the URL it waited on: "Read timeout on endpoint URL: ...".
        return AwsProblem(
            f"AWS did not answer: {error} (twice). The endpoint accepted the connection but sent no response; "
            "check --endpoint-url/AWS_ENDPOINT_URL, a proxy in between, or the service's health, and run again."
        )
    code = error_code(error)
    message = error_message(error)
    if call_as == "DELEGATED_ADMIN" and "delegated administrator" in message.lower():
        return AwsProblem(
            f"AWS refused the call as delegated administrator ({code}: {message}). Register this account as "
            "a StackSets delegated administrator from the management account (aws organizations "
            "register-delegated-administrator --service-principal member.org.stacksets.cloudformation.amazonaws.com "
            "--account-id ACCOUNT), or set stack_set.call_as: self and run from the management account."
        )
    if code in (
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    ):
        return AwsProblem(f"The AWS credentials were rejected ({code}: {message}). Refresh them and run again.")
    if code in ("AccessDenied", "AccessDeniedException"):
        return AwsProblem(f"Access denied: {message}. The caller needs the StackSets permissions listed in the README.")
    return AwsProblem(f"AWS call failed ({code or name}): {message}")


def is_aws_error(error: BaseException) -> bool:
    return bool(error_code(error)) or type(error).__module__.startswith("botocore")


@contextmanager
def explained(call_as: str = "SELF") -> Iterator[None]:
    """Turn AWS failures raised inside the block into ``AwsProblem`` with an actionable message."""
    try:
        yield
    except AwsProblem:
        raise
    except Exception as error:
        if is_aws_error(error):
            raise explain(error, call_as) from error
        raise
