"""A console sign-in in a sandbox account, and the emails it produced.

The event is shaped like the CloudTrail records AWS documents for each kind of sign-in and is put on the
default event bus of the Region it is recorded in, as the account itself (the management account with its own
credentials, a member by assuming its OrganizationAccountAccessRole), so the deployed rules (a forwarder in
that Region, the watch in us-east-1), topic and function carry it exactly as they would in AWS. CloudTrail
delivers a sign-in to EventBridge in the Region it records it in, with ``awsRegion`` that Region:
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-aws-console-sign-in-events.html
https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-cloudtrail.html
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from loginwatch_org import suggest
from loginwatch_org.alert_check import errors_in
from loginwatch_org.aws.dead_letters import messages_waiting
from loginwatch_org.aws.errors import error_code
from loginwatch_org.aws.session import AwsTarget, client
from loginwatch_org.aws.test_alert import queue_url
from loginwatch_org.config import Config
from loginwatch_org.sandbox.control import Sandbox
from loginwatch_org.sandbox.mailbox import SentEmail, one_per_email, read_mailbox

Identity = Literal["root", "iam-user", "sso", "failed"]
IDENTITIES: tuple[str, ...] = ("root", "iam-user", "sso", "failed")

_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
_SOURCE_IP = "198.51.100.23"  # a documentation address (RFC 5737)


WATCH_REGION = "us-east-1"


def signin_record(
    account: str, identity: Identity, *, region: str = WATCH_REGION, now: datetime | None = None
) -> dict[str, Any]:
    """A CloudTrail ConsoleLogin record for ``identity`` in ``account``, recorded in ``region``."""
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    record: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventTime": moment,
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": region,
        "sourceIPAddress": _SOURCE_IP,
        "userAgent": _USER_AGENT,
        "requestParameters": None,
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {
            "LoginTo": "https://console.aws.amazon.com/console/home",
            "MobileVersion": "No",
            "MFAUsed": "No",
        },
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    if identity == "root":
        record["userIdentity"] = {
            "type": "Root",
            "principalId": account,
            "arn": f"arn:aws:iam::{account}:root",
            "accountId": account,
        }
    elif identity in ("iam-user", "failed"):
        record["userIdentity"] = {
            "type": "IAMUser",
            "principalId": "AIDACKCEVSQ6C2EXAMPLE",
            "arn": f"arn:aws:iam::{account}:user/alice",
            "accountId": account,
            "userName": "alice",
        }
        if identity == "iam-user":
            record["additionalEventData"].update(
                MFAUsed="Yes", MFAIdentifier=f"arn:aws:iam::{account}:u2f/user/alice/default-EXAMPLE"
            )
        else:
            record["responseElements"] = {"ConsoleLogin": "Failure"}
            record["errorMessage"] = "Failed authentication"
    else:
        role = "AWSReservedSSO_AdministratorAccess_0123456789abcdef"
        record["userIdentity"] = {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEID:alice@example.com",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role}/alice@example.com",
            "accountId": account,
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLEID",
                    "arn": f"arn:aws:iam::{account}:role/aws-reserved/sso.amazonaws.com/{role}",
                    "accountId": account,
                    "userName": role,
                },
                "attributes": {"creationDate": moment, "mfaAuthenticated": "false"},
            },
        }
    return record


def member_target(sandbox: Sandbox, account: str, region: str = WATCH_REGION) -> AwsTarget:
    """Credentials that act in ``account`` in ``region``: the management account's own, or a member's access
    role assumed by the management account, as in AWS."""
    if account == sandbox.management_account:
        return replace(sandbox.target(), region=region)
    sts = client(sandbox.target(), "sts")
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{sandbox.member_role_name}", RoleSessionName="loginwatch-simulate"
    )["Credentials"]
    return replace(
        sandbox.target(),
        region=region,
        access_key_id=credentials["AccessKeyId"],
        secret_access_key=credentials["SecretAccessKey"],
        session_token=credentials["SessionToken"],
    )


def signins_covered(subject: str | None) -> int:
    """How many sign-ins an email stands for: a coalesced email says so in its subject ("[x12]")."""
    for word in (subject or "").split():
        if word.startswith("[x") and word.endswith("]") and word[2:-1].isdigit():
            return int(word[2:-1])
    return 1


# Long enough for a batching window, and for a burst's held-back sign-ins (one email a minute per identity).
DEFAULT_WAIT_SECONDS = 90.0


@dataclass(frozen=True)
class SignInOutcome:
    """What a simulated sign-in caused: the emails SES accepted, and what the functions it ran logged."""

    # The emails SES accepted, each once with all its recipients.
    emails: list[SentEmail]
    # Every log line a function wrote while handling the sign-in; empty when no function ran.
    function_log: list[str]
    # Where CloudTrail recorded the sign-in.
    region: str = WATCH_REGION
    # Whether the account had a watch (its alert topic) in us-east-1 when the sign-in happened.
    watch_deployed: bool = True
    # How many sign-ins were recorded, and how many alerts reached the watch's dead-letter queue meanwhile.
    signins: int = 1
    dead_lettered: int = 0
    # Sign-ins still in the watch's buffer queue when the wait ended (held back to coalesce, or waiting for SES).
    still_buffered: int = 0

    @property
    def signins_covered(self) -> int:
        """How many sign-ins the emails account for."""
        return sum(signins_covered(sent["subject"]) for sent in self.emails)

    @property
    def function_error(self) -> str | None:
        """The error a function failed with (the last line of its traceback, or its timeout)."""
        errors = errors_in(self.function_log)
        return errors[-1] if errors else None

    def why_no_email(self, config: Config, account: str) -> str:
        """Why the sign-in sent no email: the function's own error, or that no watch took it."""
        error = self.function_error
        if error:
            # Lambda retried it and then dead-lettered it (the sandbox does as AWS does): say where it waits.
            return (
                f"the notifier failed: {error}\nThe alert now waits in the watch's dead-letter queue: "
                f"{suggest.command(f'dead-letters {account}')} lists it, and with --replay sends it again"
            )
        if self.function_log:
            return "the notifier ran but sent nothing; its log:\n" + "\n".join(
                f"  | {line}" for line in self.function_log
            )
        management = config.management_watch()
        watches = [*config.targets(), *([management] if management is not None else [])]
        watch = next((t for t in watches if t.account_id == account), None)
        if watch is None:
            return "no watch is deployed there (disabled, not in the config, or no rollout yet)"
        if not self.watch_deployed:
            return f"account {account} has no watch deployed yet; run {suggest.command('rollout')} first"
        # The function never ran: the rule's pattern (the account's policy) did not take the event.
        policy = f"its alert policy is '{watch.alert_on}'"
        if self.region != WATCH_REGION and self.region not in config.forward_regions():
            return (
                f"{self.region} is not in stack_set.forward_from, so no forwarder carried it to the watch in "
                f"{WATCH_REGION}"
            )
        if self.region != WATCH_REGION:
            return f"no forwarder in {self.region} carried it to the watch in {WATCH_REGION}, or {policy}"
        return policy


def simulate_login(
    sandbox: Sandbox,
    account: str,
    identity: Identity,
    *,
    region: str = WATCH_REGION,
    watch_topic: str | None = None,
    count: int = 1,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> SignInOutcome:
    """Record a sign-in to ``account`` in ``region`` (put it on that Region's default bus); return the emails SES
    accepted because of it, in any account (a mail account may send them), and what the watch's functions
    logged. ``watch_topic``: the watch's alert topic name, to tell an account without a watch from one whose
    watch let the sign-in pass."""
    before = {message["message_id"] for message in read_mailbox(sandbox.endpoint_url)}
    target = member_target(sandbox, account, region)
    deployed = watch_topic is None or _topic_exists(replace(target, region=WATCH_REGION), account, watch_topic)
    # The sandbox's own clock stamps the log lines: same host, so nothing logged before this is read.
    started_ms = int(time.time() * 1000)
    watch = replace(target, region=WATCH_REGION)
    waiting = _dead_letters_waiting(watch, account, watch_topic) if deployed and watch_topic else 0
    events = client(target, "events")
    records = [signin_record(account, identity, region=region) for _ in range(count)]
    # PutEvents takes at most 10 entries (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html).
    for start in range(0, len(records), 10):
        response = events.put_events(
            Entries=[
                {
                    "Time": datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
                    "Source": "aws.signin",
                    "DetailType": "AWS Console Sign In via CloudTrail",
                    "Detail": json.dumps(record),
                    "EventBusName": "default",
                }
                for record in records[start : start + 10]
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"the sandbox rejected the event: {response['Entries']}")
    # EventBridge, the forwarders and SNS deliver at once in the sandbox; the notifier reads the buffer queue
    # in batches, as Lambda does, so the emails come when the buffer is empty.
    buffered = _wait_for_buffer(watch, account, watch_topic, wait_seconds) if deployed else 0
    emails = one_per_email([m for m in read_mailbox(sandbox.endpoint_url) if m["message_id"] not in before])
    dead = _dead_letters_waiting(watch, account, watch_topic) - waiting if deployed and watch_topic else 0
    return SignInOutcome(emails, _logged_since(watch, started_ms), region, deployed, count, max(dead, 0), buffered)


def _buffer_queues(target: AwsTarget, account: str, topic_name: str | None) -> list[str]:
    """The queues the watch's topic delivers to; without its name, every queue a function reads in the account."""
    if topic_name is None:
        mappings = client(target, "lambda").get_paginator("list_event_source_mappings").paginate()
        return sorted(
            {
                str(m["EventSourceArn"])
                for page in mappings
                for m in page["EventSourceMappings"]
                if ":sqs:" in m["EventSourceArn"]
            }
        )
    sns = client(target, "sns")
    topic = f"arn:aws:sns:{target.region}:{account}:{topic_name}"
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    return [str(s["Endpoint"]) for s in subscriptions if s["Protocol"] == "sqs"]


def _wait_for_buffer(target: AwsTarget, account: str, topic_name: str | None, wait_seconds: float) -> int:
    """Wait until the watch's buffer queue holds nothing (or ``wait_seconds`` pass); what it still holds."""
    sqs = client(target, "sqs")
    urls = [queue_url(sqs, arn) for arn in _buffer_queues(target, account, topic_name)]
    deadline = time.monotonic() + wait_seconds
    while True:
        held = sum(_held(sqs, url) for url in urls)
        if not held or time.monotonic() >= deadline:
            return held
        time.sleep(0.25)


def _held(sqs: Any, url: str) -> int:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def _dead_letters_waiting(target: AwsTarget, account: str, topic_name: str) -> int:
    """Messages in the dead-letter queue of the watch's notifier (reading the topic's buffer queue)."""
    lambdas = client(target, "lambda")
    endpoints = [
        str(mapping["FunctionArn"])
        for queue in _buffer_queues(target, account, topic_name)
        for mapping in lambdas.list_event_source_mappings(EventSourceArn=queue)["EventSourceMappings"]
    ]
    total = 0
    for function in endpoints:
        configuration = client(target, "lambda").get_function_configuration(FunctionName=function)
        queue = (configuration.get("DeadLetterConfig") or {}).get("TargetArn")
        if not queue:
            continue
        sqs = client(target, "sqs")
        total += messages_waiting(sqs, queue_url(sqs, str(queue)))
    return total


def _topic_exists(target: AwsTarget, account: str, name: str) -> bool:
    sns = client(target, "sns")
    try:
        sns.get_topic_attributes(TopicArn=f"arn:aws:sns:{target.region}:{account}:{name}")
    except Exception as error:
        if error_code(error) == "NotFound":
            return False
        raise
    return True


def _logged_since(target: AwsTarget, started_ms: int) -> list[str]:
    """Every line the account's functions logged from ``started_ms`` on, oldest first."""
    logs = client(target, "logs")
    lines: list[tuple[int, str]] = []
    for page in logs.get_paginator("describe_log_groups").paginate():
        for group in page.get("logGroups", []):
            events = logs.filter_log_events(logGroupName=group["logGroupName"], startTime=started_ms)
            lines += [(event["timestamp"], event["message"]) for event in events.get("events", [])]
    return [message for _, message in sorted(lines, key=lambda line: line[0])]
