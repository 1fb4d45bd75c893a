"""Lambda: an asynchronous invocation that fails is retried, then dead-lettered.

SNS invokes a subscribed function asynchronously (https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html).
When the function returns an error, Lambda retries it ``MaximumRetryAttempts`` times (two unless the
function's event invoke configuration says otherwise), and an event that fails every attempt goes to the
function's dead-letter queue with three attributes: ``RequestID`` (String), ``ErrorCode`` (Number, the HTTP
status code) and ``ErrorMessage`` (String, the first 1 KB of the error message); without a dead-letter queue
or on-failure destination, Lambda discards it
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html,
https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq).
moto calls the function once and forgets the outcome, so a rejected alert vanished instead of waiting in the
queue and raising the watch's alarm.

Retries follow one another at once: AWS waits about one and then two minutes between them, which changes when
an alert is dead-lettered, never whether. Not modelled: the event age limit, throttling, on-failure
destinations, an SNS topic as the dead-letter target.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Final

from moto.awslambda.models import LambdaFunction
from moto.utilities.arns import parse_arn

from loginwatch_org.sandbox.behaviour._core import Patches
from loginwatch_org.sandbox.behaviour.lambda_configuration import dead_letter_target

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()

DEFAULT_RETRY_ATTEMPTS: Final = 2
# An asynchronous invocation is accepted with 202; the function's error is reported with a 200 response.
_FUNCTION_ERROR_STATUS: Final = "200"
_ERROR_MESSAGE_BYTES: Final = 1024


def retry_attempts(function: LambdaFunction) -> int:
    configs = getattr(function, "event_invoke_config", None) or []
    if configs:
        value = configs[0].config.get("MaximumRetryAttempts")
        if value is not None:
            return int(value)
    return DEFAULT_RETRY_ATTEMPTS


def invoke_async(function: LambdaFunction, payload: str) -> bool:
    """Run an asynchronous invocation to its end: True when an attempt succeeded, False when the event was
    dead-lettered (or discarded, without a dead-letter queue)."""
    request_id = str(uuid.uuid4())
    error = ""
    for _attempt in range(1 + retry_attempts(function)):
        headers: dict[str, str] = {}
        result = function.invoke(payload, {"x-amz-invocation-type": "Event"}, headers)
        if "x-amz-function-error" not in headers:
            return True
        error = _error_message(result)
    _dead_letter(function, payload, request_id, error)
    return False


def _error_message(result: Any) -> str:
    text = result.decode("utf-8", errors="replace") if isinstance(result, bytes) else str(result or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict) and parsed.get("errorMessage") is not None:
        return str(parsed["errorMessage"])
    return text


def _dead_letter(function: LambdaFunction, payload: str, request_id: str, error: str) -> None:
    from moto.sqs.models import sqs_backends

    target = dead_letter_target(function)
    logger.warning("Function %s failed every attempt of an asynchronous invocation: %s", function.function_name, error)
    if not target or parse_arn(target).service != "sqs":
        return
    queue = parse_arn(target)
    truncated = error.encode("utf-8")[:_ERROR_MESSAGE_BYTES].decode("utf-8", errors="ignore")
    attributes = {
        "RequestID": {"DataType": "String", "StringValue": request_id},
        "ErrorCode": {"DataType": "Number", "StringValue": _FUNCTION_ERROR_STATUS},
        "ErrorMessage": {"DataType": "String", "StringValue": truncated or "Unhandled"},
    }
    try:
        sqs_backends[queue.account][queue.region].send_message(
            queue_name=queue.resource_id, message_body=payload, message_attributes=attributes
        )
    except Exception:
        logger.exception("Dead-lettering an invocation of %s to %s failed", function.function_name, target)
