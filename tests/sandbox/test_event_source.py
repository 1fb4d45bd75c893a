"""An SQS event source mapping: batching window, partial batch responses, visibility and redrive."""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

from tests.sandbox.emulator import DEV, Sandbox

# Reports every message whose body starts with "fail" as failed; raises when one says "crash".
FUNCTION_CODE = """\
def handler(event, context):
    records = event["Records"]
    receives = ",".join(r["attributes"]["ApproximateReceiveCount"] for r in records)
    owed = ",".join((r["messageAttributes"].get("Recipients") or {}).get("stringValue") or "-" for r in records)
    print("batch", len(records), "receives", receives, "recipients", owed)
    if any(r["body"] == "crash" for r in records):
        raise RuntimeError("crashed")
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if r["body"].startswith("fail")]}
"""


def _code() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("reader.py", FUNCTION_CODE)
    return buffer.getvalue()


def _queue_with_reader(sandbox: Sandbox, name: str, *, max_receives: int) -> tuple[Any, str, str, str]:
    session = sandbox.member(DEV)
    sqs = sandbox.client(session, "sqs")
    dead_letters = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dead_letters_arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letters_arn, "maxReceiveCount": max_receives}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    role = sandbox.client(session, "iam").create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    awslambda = sandbox.client(session, "lambda")
    awslambda.create_function(
        FunctionName=f"{name}-reader",
        Runtime="python3.12",
        Role=role,
        Handler="reader.handler",
        Code={"ZipFile": _code()},
        Timeout=10,
    )
    awslambda.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName=f"{name}-reader",
        BatchSize=10,
        MaximumBatchingWindowInSeconds=20,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    return sqs, queue, dead_letters, f"/aws/lambda/{name}-reader"


def _bodies(sqs: Any, queue: str) -> list[str]:
    found = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=30)
    return sorted(message["Body"] for message in found.get("Messages", []))


def _wait_until(condition: Any, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the event source mapping did not get there in time"
        time.sleep(0.3)


def _batches(sandbox: Sandbox, group: str) -> list[list[str]]:
    """The batch line each invocation logged, oldest first."""
    logs = sandbox.client(sandbox.member(DEV), "logs")
    events = logs.filter_log_events(logGroupName=group)["events"]
    return [
        event["message"].split()
        for event in sorted(events, key=lambda e: e["timestamp"])
        if event["message"].startswith("batch")
    ]


def _waiting(sqs: Any, queue: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_a_batch_waits_for_its_window_and_only_the_reported_failures_return(sandbox: Sandbox) -> None:
    sqs, queue, dead_letters, group = _queue_with_reader(sandbox, "batched", max_receives=2)
    sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "1", "MessageBody": "ok-1"},
            {"Id": "2", "MessageBody": "ok-2"},
            {
                "Id": "3",
                "MessageBody": "fail-1",
                "MessageAttributes": {"Recipients": {"DataType": "String", "StringValue": "a@example.com"}},
            },
        ],
    )

    # The failed message is received again after the visibility timeout, then moves to the dead-letter queue.
    _wait_until(lambda: _waiting(sqs, queue) == 0 and _waiting(sqs, dead_letters) == 1)
    assert _bodies(sqs, dead_letters) == ["fail-1"]
    batches = _batches(sandbox, group)
    # One invocation for the three messages the window gathered, then one for the failure alone.
    assert batches[0][:2] == ["batch", "3"]
    assert batches[0][-1].split(",").count("a@example.com") == 1
    assert [batch[:4] for batch in batches[1:]] == [["batch", "1", "receives", "2"]]


def test_a_function_error_returns_the_whole_batch_until_the_queue_gives_up_on_it(sandbox: Sandbox) -> None:
    sqs, queue, dead_letters, group = _queue_with_reader(sandbox, "crashing", max_receives=3)
    sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[{"Id": "1", "MessageBody": "ok-1"}, {"Id": "2", "MessageBody": "crash"}],
    )

    _wait_until(lambda: _waiting(sqs, dead_letters) == 2)
    assert _bodies(sqs, dead_letters) == ["crash", "ok-1"]
    assert _waiting(sqs, queue) == 0
    assert [batch[3] for batch in _batches(sandbox, group)] == ["1,1", "2,2", "3,3"]
