"""Read, and replay, what waits in the dead-letter queues of the watches and forwarders
(``loginwatch-org dead-letters``).

- Where the queues are: each sign-in rule's target names its dead-letter queue (ListRules, then
  ListTargetsByRule: https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_ListTargetsByRule.html).
  The watch's rule targets the watch's topic, whose name the template fixes; a forwarder's rule targets the
  watch Region's default bus. The notifier to replay through is the topic's Lambda subscriber, as ``test-alert``
  finds it.
- Accounts are read through ``member_role`` with the administrator's credentials, as ``test-alert`` and
  ``doctor`` do (``Reader``), eight at a time.
- Listing receives with a zero visibility timeout, so every message stays where it is for whoever else reads
  the queue; ApproximateNumberOfMessages gives the count beyond what is listed
  (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html,
  https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_GetQueueAttributes.html).
- Replaying receives with a visibility timeout longer than the notifier's run, invokes the account's notifier
  synchronously (RequestResponse) with the message's event, and deletes the message only when the function
  returned without an error, that is after SES accepted its email; a message that fails again is made visible
  again at once (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html,
  https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import replace
from typing import Any

from loginwatch_org import DEFAULT_MEMBER_ROLE
from loginwatch_org.aws.prerequisites import Reader, _why, administrator_reader
from loginwatch_org.aws.session import AwsTarget
from loginwatch_org.aws.test_alert import queue_url, subscribed_functions
from loginwatch_org.aws.workers import worker_pool
from loginwatch_org.config import WATCH_REGION, Config
from loginwatch_org.dead_letters import DeadLetter, QueueReading, Replay, read, replay_event
from loginwatch_org.templates.patterns import SIGNIN_SOURCE
from loginwatch_org.templates.watch import alert_topic_name

CONCURRENCY = 8
APPROXIMATE_COUNTS = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
# Messages listed per queue: a storm can leave thousands, and the count says how many there are.
LIST_LIMIT = 50
# Longer than the notifier's 30 s timeout, so that a message being replayed is not replayed twice at once.
REPLAY_VISIBILITY_SECONDS = 120


def read_dead_letters(
    config: Config,
    target: AwsTarget,
    accounts: Sequence[str],
    *,
    replay: bool = False,
    member_role: str = DEFAULT_MEMBER_ROLE,
    progress: Callable[[str], None] | None = None,
) -> list[QueueReading]:
    """Every dead-letter queue of ``accounts`` in the watch Region and every forward Region, listed; with
    ``replay``, each readable message sent through its account's notifier again."""
    reader = administrator_reader(config, target, member_role)
    regions = (WATCH_REGION, *config.forward_regions())
    jobs = [(account, region) for account in accounts for region in regions]
    done = [0]
    lock = threading.Lock()

    def one(job: tuple[str, str]) -> list[QueueReading]:
        account, region = job
        readings = _read_region(reader, config, account, region)
        with lock:
            done[0] += 1
            if progress is not None and done[0] % len(regions) == 0:
                progress(f"dead-letters: {done[0] // len(regions)}/{len(accounts)} account(s) read")
        return readings

    with worker_pool(CONCURRENCY) as pool:
        readings = [reading for found in pool.map(one, jobs) for reading in found]
    if not replay:
        return readings
    functions = {(r.account_id, r.region): r for r in readings if r.function_name}
    with worker_pool(CONCURRENCY) as pool:
        return list(pool.map(lambda r: _replay(reader, r, functions.get((r.account_id, WATCH_REGION))), readings))


def _read_region(reader: Reader, config: Config, account: str, region: str) -> list[QueueReading]:
    """The dead-letter queues of the account's sign-in rules in ``region``: the watch's rule (its target the
    watch's topic, whose name the template fixes) and the forwarder's (its target the watch Region's default
    bus). A watch's rule, topic subscription and function share one queue."""
    topic = f"arn:{reader.partition}:sns:{region}:{account}:{alert_topic_name(config)}"
    watch_bus = f"arn:{reader.partition}:events:{WATCH_REGION}:{account}:event-bus/default"
    kinds = {topic: "watch", watch_bus: "forwarder"}
    found: dict[str, str] = {}
    try:
        events = reader.client(account, "events", region)
        for page in events.get_paginator("list_rules").paginate(EventBusName="default"):
            for rule in page.get("Rules", []):
                if SIGNIN_SOURCE not in str(rule.get("EventPattern") or ""):
                    continue
                targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName="default").get("Targets", [])
                for target in targets:
                    queue = (target.get("DeadLetterConfig") or {}).get("Arn")
                    if target.get("Arn") in kinds and queue:
                        found.setdefault(str(queue), kinds[str(target["Arn"])])
    except Exception as error:
        return [QueueReading(account, region, "", None, unreadable=f"cannot read the sign-in rules ({_why(error)})")]
    function = None
    if region == WATCH_REGION and "watch" in found.values():
        with suppress(Exception):
            function = next(iter(subscribed_functions(reader, account, region, topic)), None)
    sqs = reader.client(account, "sqs", region)
    readings: list[QueueReading] = []
    for queue_arn, kind in sorted(found.items()):
        name = queue_arn.split(":")[5]
        try:
            url = queue_url(sqs, queue_arn)
        except Exception as error:
            readings.append(QueueReading(account, region, kind, None, unreadable=f"cannot find {name} ({_why(error)})"))
            continue
        reading = QueueReading(
            account, region, kind, url, function_name=function if kind == "watch" else None, topic_arn=topic
        )
        readings.append(_list(sqs, reading))
    return readings


def _list(sqs: Any, reading: QueueReading) -> QueueReading:
    try:
        waiting = messages_waiting(sqs, str(reading.queue_url))
        letters = _receive(sqs, str(reading.queue_url), visibility=0, limit=LIST_LIMIT) if waiting else []
    except Exception as error:
        return replace(reading, unreadable=f"cannot read the queue ({_why(error)})")
    # The count is approximate; what was received is certain.
    return replace(reading, waiting=max(waiting, len(letters)), letters=tuple(letters))


def messages_waiting(sqs: Any, url: str) -> int:
    """Messages in the queue, those received but not yet deleted (by a replay still running, or one that
    stopped midway) included."""
    counted = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(APPROXIMATE_COUNTS))
    return sum(int(counted.get("Attributes", {}).get(name, 0)) for name in APPROXIMATE_COUNTS)


def _receive(sqs: Any, url: str, *, visibility: int, limit: int) -> list[DeadLetter]:
    letters: dict[str, DeadLetter] = {}
    while len(letters) < limit:
        response = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit - len(letters)),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
            AttributeNames=["SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        batch = [read(message) for message in response.get("Messages", [])]
        fresh = [letter for letter in batch if letter.message_id not in letters]
        if not fresh:
            break
        letters.update((letter.message_id, letter) for letter in fresh)
    return sorted(letters.values(), key=lambda letter: letter.sent_at or "")


def _replay(reader: Reader, reading: QueueReading, watch: QueueReading | None) -> QueueReading:
    if reading.unreadable or not reading.waiting:
        return reading
    if watch is None or not watch.function_name:
        return replace(reading, unreadable=f"no watch in {WATCH_REGION} to replay through: roll the account out first")
    sqs = reader.client(reading.account_id, "sqs", reading.region)
    functions = reader.client(reading.account_id, "lambda", WATCH_REGION)
    try:
        letters = _receive(sqs, str(reading.queue_url), visibility=REPLAY_VISIBILITY_SECONDS, limit=reading.waiting)
    except Exception as error:
        return replace(reading, unreadable=f"cannot receive from the queue ({_why(error)})")
    replays = [_send_again(sqs, functions, reading, watch, letter) for letter in letters]
    for letter, outcome in zip(letters, replays, strict=True):
        if not outcome.delivered:
            # Visible again at once, so that a replay right after the fix finds it.
            with suppress(Exception):
                sqs.change_message_visibility(
                    QueueUrl=reading.queue_url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
                )
    return replace(reading, letters=tuple(letters), replays=tuple(replays), waiting=max(reading.waiting, len(letters)))


def _send_again(sqs: Any, functions: Any, reading: QueueReading, watch: QueueReading, letter: DeadLetter) -> Replay:
    event = replay_event(letter, watch.topic_arn or "")
    if event is None and letter.writer == "ses":
        why = "a notice from SES about an alert it accepted, nothing to send again: fix or replace the address"
        return Replay(letter.message_id, False, f"{why}; left in the queue (kept 14 days)")
    if event is None:
        return Replay(letter.message_id, False, "nothing readable to replay; left in the queue")
    try:
        response = functions.invoke(
            FunctionName=watch.function_name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
    except Exception as error:
        return Replay(letter.message_id, False, f"cannot invoke {watch.function_name} ({_why(error)})")
    payload = response.get("Payload")
    body = payload.read().decode("utf-8", errors="replace") if hasattr(payload, "read") else str(payload or "")
    if response.get("FunctionError"):
        try:
            message = str(json.loads(body).get("errorMessage") or body)
        except (ValueError, AttributeError):
            message = body
        return Replay(letter.message_id, False, f"the notifier failed again: {' '.join(message.split())[:300]}")
    try:
        sqs.delete_message(QueueUrl=reading.queue_url, ReceiptHandle=letter.receipt_handle)
    except Exception as error:
        # Sent, but still queued: a second replay would send it twice, so say so.
        return Replay(letter.message_id, True, f"sent, but not deleted from the queue ({_why(error)})")
    return Replay(letter.message_id, True)
