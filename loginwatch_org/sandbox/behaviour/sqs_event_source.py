"""Lambda: an SQS event source mapping polls its queue, batches, and honours partial batch responses.

Lambda polls the queue, waits up to the mapping's batching window or until the batch is full, invokes the
function synchronously with the batch, and deletes the batch when the invocation succeeds. A function error
leaves every message of the batch in flight until the queue's visibility timeout returns it. With
``ReportBatchItemFailures`` the function may name the messages that failed (``batchItemFailures``): only the
others are deleted; a failure entry without a valid message ID fails the whole batch
(https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html,
https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). A message received more than the
queue's ``maxReceiveCount`` times moves to its dead-letter queue (moto's receive does that already).

moto delivered each message the moment it was sent, one invocation per message, deleted the batch whatever the
function answered and reported every message as received once, so a throttled alert could never wait in the
queue and be sent later. Here one thread per mapping polls the queue through moto's own SQS backend (its
receive counts, visibility timeouts, delays and redrive), with the mapping's batching window capped by
``LOGINWATCH_SANDBOX_BATCHING_WINDOW_SECONDS`` (default 2 s) so a demo does not wait 20 s for a batch: that
changes when a batch is read, never whether. Not modelled: more than one batch in flight per mapping
(``ScalingConfig``), the 6 MB payload limit, filter criteria.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Final

from moto.awslambda.models import EventSourceMapping, LambdaBackend
from moto.utilities.arns import parse_arn

from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()

BATCHING_WINDOW_ENVIRONMENT: Final = "LOGINWATCH_SANDBOX_BATCHING_WINDOW_SECONDS"
DEFAULT_BATCHING_WINDOW_SECONDS: Final = 2.0
_POLL_SECONDS: Final = 0.2
_REPORT_BATCH_ITEM_FAILURES: Final = "ReportBatchItemFailures"

_stop = threading.Event()
_pollers: dict[str, threading.Thread] = {}
_pollers_lock = threading.Lock()


@PATCHES.on_revert
def _stop_pollers() -> None:
    _stop.set()
    with _pollers_lock:
        threads = list(_pollers.values())
        _pollers.clear()
    for thread in threads:
        thread.join(timeout=5)
    _stop.clear()


def batching_window_cap() -> float:
    raw = os.environ.get(BATCHING_WINDOW_ENVIRONMENT, "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_BATCHING_WINDOW_SECONDS
    except ValueError:
        return DEFAULT_BATCHING_WINDOW_SECONDS


@PATCHES.wrap(LambdaBackend, "create_event_source_mapping")
def _create_event_source_mapping(original: Any) -> Any:
    def create(self: LambdaBackend, spec: dict[str, Any]) -> EventSourceMapping:
        mapping: EventSourceMapping = original(self, spec)
        source = parse_arn(mapping.event_source_arn)
        if source.service == "sqs":
            queue = _queue(mapping)
            if queue is not None:
                # The queue no longer invokes the function itself: the poller does, as Lambda would.
                queue.lambda_event_source_mappings.pop(mapping.function_arn, None)
            _start_poller(self, mapping)
        return mapping

    return create


def _start_poller(backend: LambdaBackend, mapping: EventSourceMapping) -> None:
    thread = threading.Thread(
        target=_poll, args=(backend, mapping), name=f"sqs-event-source-{mapping.uuid[:8]}", daemon=True
    )
    with _pollers_lock:
        _pollers[mapping.uuid] = thread
    thread.start()


def _queue(mapping: EventSourceMapping) -> Any:
    from moto.sqs.models import sqs_backends

    source = parse_arn(mapping.event_source_arn)
    return sqs_backends[source.account][source.region].queues.get(source.resource_id)


def _poll(backend: LambdaBackend, mapping: EventSourceMapping) -> None:
    window_opened: float | None = None
    while not _stop.wait(_POLL_SECONDS):
        if backend._event_source_mappings.get(mapping.uuid) is not mapping:
            return
        queue = _queue(mapping)
        if queue is None:
            return
        if not mapping.enabled or not queue.messages:
            window_opened = None
            continue
        now = time.monotonic()
        window_opened = now if window_opened is None else window_opened
        window = min(float(mapping.max_batch_window or 0), batching_window_cap())
        if len(queue.messages) < mapping.batch_size and now - window_opened < window:
            continue
        window_opened = None
        try:
            _deliver_one_batch(backend, mapping, queue)
        except Exception:
            logger.exception("Polling %s for %s failed", mapping.event_source_arn, mapping.function_arn)


def _deliver_one_batch(backend: LambdaBackend, mapping: EventSourceMapping, queue: Any) -> None:
    from moto.sqs.models import sqs_backends

    sqs = sqs_backends[queue.account_id][queue.region]
    messages = sqs.receive_message(queue.name, mapping.batch_size, 0, int(queue.visibility_timeout), ["All"])
    if not messages:
        return
    event = {"Records": [_record(message, queue) for message in messages]}
    response_headers: dict[str, Any] = {}
    payload = backend.invoke(
        function_name=mapping.function_arn,
        qualifier=None,
        body=json.dumps(event),
        headers={},
        response_headers=response_headers,
    )
    if "x-amz-function-error" in response_headers:
        logger.warning(
            "%s failed a batch of %d; it returns after the visibility timeout", mapping.function_arn, len(messages)
        )
        return
    failed = _failed_ids(mapping, payload, {message.id for message in messages})
    if failed is None:
        logger.warning("%s reported an invalid batch item failure; the whole batch returns", mapping.function_arn)
        return
    for message in messages:
        if message.id not in failed and message.receipt_handle:
            sqs.delete_message(queue.name, message.receipt_handle)


def _failed_ids(mapping: EventSourceMapping, payload: Any, batch: set[str]) -> set[str] | None:
    """The messages the function says failed; None when the response fails the whole batch."""
    if _REPORT_BATCH_ITEM_FAILURES not in (mapping.function_response_types or []):
        return set()
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload or "")
    try:
        response = json.loads(text) if text else None
    except ValueError:
        return set()
    if not isinstance(response, dict) or not response.get("batchItemFailures"):
        return set()
    failed: set[str] = set()
    for entry in response["batchItemFailures"]:
        identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if identifier not in batch:
            return None
        failed.add(identifier)
    return failed


def _record(message: Any, queue: Any) -> dict[str, Any]:
    """One message as Lambda hands it to the function (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html)."""
    return {
        "messageId": message.id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": {
            "ApproximateReceiveCount": str(message.approximate_receive_count),
            "SentTimestamp": str(message.sent_timestamp),
            "SenderId": str(getattr(message, "sender_id", "") or ""),
            "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
        },
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType", "String"),
            }
            for name, value in (message.message_attributes or {}).items()
        },
        "md5OfBody": message.body_md5,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.queue_arn,
        "awsRegion": queue.region,
    }
