"""Send test alerts through deployed watches and read what became of them (``loginwatch-org test-alert``).

- A sign-in event cannot be injected into a real account's EventBridge: events from AWS services carry an
  ``aws.*`` source, and PutEvents refuses a source the caller is not authorized for
  (``NotAuthorizedForSourceException``: https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEventsResultEntry.html).
  So the test enters one hop later: the caller (the StackSets administrator account, ``AdminAccountId``)
  publishes to the watch's topic, whose policy admits that account for ``sns:Publish`` alone
  (https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html). The topic's name is fixed by
  the template, so its ARN is known in every account and Region without reading the stack.
- The evidence is read in the member account through ``member_role`` (``Reader`` of
  ``loginwatch_org.aws.prerequisites``, as ``doctor`` does): the topic's Lambda subscription names the function;
  the function's configuration names its log group and dead-letter queue. The notifier logs one JSON line per
  email with the SES message id and the test id; a failure shows as the errors the function logged and, once
  Lambda's retries are spent, the test in the dead-letter queue
  (one and then two minutes apart:
  https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).
- Reading the dead-letter queue receives with a zero visibility timeout, so every message stays visible to
  whoever handles the queue (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html).
- Accounts are tested concurrently, eight at a time; ``sleep`` and ``clock`` are injected for tests.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from loginwatch_org import DEFAULT_MEMBER_ROLE
from loginwatch_org.alert_check import Evidence, TestAlert, delivered_ids, errors_in
from loginwatch_org.aws.prerequisites import Reader, _why, administrator_reader
from loginwatch_org.aws.session import AwsTarget
from loginwatch_org.aws.workers import worker_pool
from loginwatch_org.config import WATCH_REGION, Config
from loginwatch_org.notifier import PARK_REASON_ATTRIBUTE, TEST_ALERT_KEY
from loginwatch_org.templates.watch import alert_topic_name

CONCURRENCY = 8
POLL_SECONDS = 10.0
# The buffer's batching window and one invocation take under a minute; an alert SES throttles waits in the
# buffer for its next try (30 s, then longer): five minutes covers a first retry or two.
DEFAULT_TIMEOUT_SECONDS = 300.0
# The sandbox reads each buffer within a couple of seconds (its batching window is capped, see
# sandbox/behaviour/sqs_event_source.py), so half a minute covers a cold start as well.
SANDBOX_TIMEOUT_SECONDS = 30.0
SANDBOX_POLL_SECONDS = 0.5
# Log pages read per look: the function's log since the test was sent is short unless sign-ins pour in.
MAX_LOG_PAGES = 10


@dataclass(frozen=True)
class Waiting:
    """How long to look for the outcome; ``timeout`` 0 looks once."""

    timeout: float = DEFAULT_TIMEOUT_SECONDS
    poll: float = POLL_SECONDS
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def in_sandbox(cls) -> Waiting:
        return cls(timeout=SANDBOX_TIMEOUT_SECONDS, poll=SANDBOX_POLL_SECONDS)


def send_test_alerts(
    config: Config,
    target: AwsTarget,
    accounts: Sequence[str],
    *,
    wait: Waiting | None,
    member_role: str = DEFAULT_MEMBER_ROLE,
    progress: Callable[[str], None] | None = None,
) -> list[TestAlert]:
    """One test alert per account and watch Region; with ``wait``, the evidence of each one's fate."""
    reader = administrator_reader(config, target, member_role)
    partition = reader.partition
    management = config.management_watch()
    # The management account's watch is one plain stack in the watch Region; members have one per watch Region.
    jobs = [
        (account, region)
        for account in accounts
        for region in ((WATCH_REGION,) if management and account == management.account_id else config.stack_set.regions)
    ]
    done = [0]
    lock = threading.Lock()

    def one(job: tuple[str, str]) -> TestAlert:
        account, region = job
        topic = f"arn:{partition}:sns:{region}:{account}:{alert_topic_name(config)}"
        alert = _send(reader, topic, account, region, reader.caller_arn)
        if wait is not None and alert.publish_error is None:
            alert = _await(reader, alert, wait)
        with lock:
            done[0] += 1
            if progress is not None:
                progress(f"test-alert: {done[0]}/{len(jobs)} {account} {region}: {alert.outcome}")
        return alert

    with worker_pool(CONCURRENCY) as pool:
        return list(pool.map(one, jobs))


def _send(reader: Reader, topic: str, account: str, region: str, caller_arn: str) -> TestAlert:
    test_id = str(uuid.uuid4())
    request = {
        "test_id": test_id,
        "account": account,
        "requested_by": caller_arn,
        "requested_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    alert = TestAlert(account=account, region=region, topic_arn=topic, test_id=test_id)
    try:
        sns = reader.client(reader.caller_account, "sns", region)
        response = sns.publish(
            TopicArn=topic, Subject="loginwatch test alert", Message=json.dumps({TEST_ALERT_KEY: request})
        )
    except Exception as error:  # refused: the topic is missing or does not admit this account
        return replace(alert, publish_error=_refusal(error, reader.caller_account))
    return replace(alert, sns_message_id=str(response.get("MessageId", "")))


def _refusal(error: BaseException, caller: str) -> str:
    why = _why(error)
    if "AuthorizationError" in why or "AccessDenied" in why:
        return (
            f"{why}. The topic admits test alerts only from the account in its AdminAccountId parameter; this is "
            f"{caller}. Roll out with the config naming this account (management_account.id, or the self-managed "
            "administration_role_arn), or run test-alert from that account"
        )
    if "NotFound" in why:
        return f"{why}. No watch topic there: the account is not rolled out yet, or its watch predates test alerts"
    return why


def _await(reader: Reader, alert: TestAlert, wait: Waiting) -> TestAlert:
    started = wait.clock()
    # The log is read from a minute before the publish: the member's clock and ours may differ a little.
    since_ms = int(time.time() * 1000) - 60_000
    while True:
        evidence = _observe(reader, alert, since_ms)
        waited = wait.clock() - started
        if evidence.ses_message_ids or evidence.dead_letters or waited >= wait.timeout:
            return replace(alert, evidence=evidence, waited_seconds=waited)
        wait.sleep(min(wait.poll, max(wait.timeout - waited, 0.0)))


def _observe(reader: Reader, alert: TestAlert, since_ms: int) -> Evidence:
    account, region = alert.account, alert.region
    try:
        functions = subscribed_functions(reader, account, region, alert.topic_arn)
    except Exception as error:
        return Evidence(unreadable=f"cannot read the topic's subscriptions in {account} ({_why(error)})")
    if not functions:
        return Evidence(unreadable="the topic has no Lambda subscription: the watch is incomplete")
    messages: list[str] = []
    dead: list[tuple[str, str | None]] = []
    problems: list[str] = []
    for function in functions:
        try:
            configuration = reader.client(account, "lambda", region).get_function_configuration(FunctionName=function)
        except Exception as error:
            problems.append(f"cannot read function {function} ({_why(error)})")
            continue
        name = str(configuration.get("FunctionName", function.rsplit(":", 1)[-1]))
        group = (configuration.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{name}"
        try:
            messages += _log_since(reader.client(account, "logs", region), str(group), since_ms)
        except Exception as error:
            problems.append(f"cannot read log group {group} ({_why(error)})")
        queue = (configuration.get("DeadLetterConfig") or {}).get("TargetArn")
        if queue:
            try:
                dead += _dead_letters(reader.client(account, "sqs", region), str(queue), alert.test_id)
            except Exception as error:
                problems.append(f"cannot read dead-letter queue {queue} ({_why(error)})")
    logged = errors_in(messages)
    parked = tuple(reason for _, reason in dead if reason and not any(reason in error for error in logged))
    return Evidence(
        ses_message_ids=delivered_ids(messages, alert.test_id),
        errors=tuple(dict.fromkeys((*logged, *parked))),
        dead_letters=tuple(message_id for message_id, _ in dead),
        unreadable="; ".join(problems) or None,
    )


def subscribed_functions(reader: Reader, account: str, region: str, topic: str) -> list[str]:
    """The functions the topic delivers to: subscribed directly, or reading a queue subscribed to it (the
    watch's buffer queue, through an event source mapping)."""
    sns = reader.client(account, "sns", region)
    functions: list[str] = []
    queues: list[str] = []
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic):
        for subscription in page.get("Subscriptions", []):
            if subscription.get("Protocol") == "lambda":
                functions.append(subscription["Endpoint"])
            elif subscription.get("Protocol") == "sqs":
                queues.append(subscription["Endpoint"])
    if queues:
        lambdas = reader.client(account, "lambda", region)
        for queue in queues:
            for page in lambdas.get_paginator("list_event_source_mappings").paginate(EventSourceArn=queue):
                functions += [m["FunctionArn"] for m in page.get("EventSourceMappings", []) if m.get("FunctionArn")]
    return functions


def _log_since(logs: Any, group: str, since_ms: int) -> list[str]:
    messages: list[str] = []
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=since_ms)
    for number, page in enumerate(pages):
        messages += [str(event.get("message", "")) for event in page.get("events", [])]
        if number + 1 >= MAX_LOG_PAGES:
            break
    return messages


def queue_url(sqs: Any, queue_arn: str) -> str:
    """The URL of the queue an ARN names (GetQueueUrl, with the owner the ARN holds)."""
    _, _, _, _, owner, name = queue_arn.split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=owner)["QueueUrl"])


def _dead_letters(sqs: Any, queue_arn: str, test_id: str) -> list[tuple[str, str | None]]:
    """This test's messages in the dead-letter queue, each with the reason its writer attached (the notifier's
    ``ErrorMessage``, Lambda's or EventBridge's), which may be there before the function's log is."""
    url = queue_url(sqs, queue_arn)
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0, MessageAttributeNames=["All"]
    )
    found: list[tuple[str, str | None]] = []
    for message in received.get("Messages", []):
        if test_id not in str(message.get("Body", "")):
            continue
        attributes = message.get("MessageAttributes") or {}
        reason = next(
            (str(attributes[k]["StringValue"]) for k in (PARK_REASON_ATTRIBUTE, "ERROR_MESSAGE")
             if isinstance(attributes.get(k), dict) and attributes[k].get("StringValue")),
            None,
        )  # fmt: skip
        found.append((str(message.get("MessageId", "")), reason))
    return found
