"""What waits in the watches' dead-letter queues, each message unwrapped to the sign-in it carries.

Pure: ``aws/dead_letters.py`` reads the queues and replays; this module turns one SQS message into a
``DeadLetter`` and back into the event the notifier takes. Three writers share a watch's queue, and a
forwarder's queue has the first kind only; their bodies differ:

* EventBridge, when a rule could not deliver (the sign-in rule to the topic, a forwarder to the watch's bus):
  the event itself, with ``ERROR_CODE`` and ``ERROR_MESSAGE`` attributes
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html).
* SNS, when the topic could not invoke the function: the notification it could not deliver, the published
  message (the event) inside (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html); a raw
  message (the event as published) is read too.
* Lambda, when the function failed every attempt: the function's own event (SNS records, the event in each
  record's ``Sns.Message``), with ``RequestID``, ``ErrorCode`` and ``ErrorMessage`` attributes
  (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq).

* SES, through the watch's delivery notice topic when every account sends for itself: a notification whose
  message is an SES event (``eventType`` Bounce, Complaint, Reject or Rendering Failure, the alert's ``mail``
  inside) about an email SES had accepted (https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html).
  It is a notice, not an alert: nothing to send again.

A body that is none of these is kept as it is and summarised as unreadable: a dead letter is never dropped
because its content is odd.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from loginwatch_org.notifier import PARK_REASON_ATTRIBUTE, RECIPIENTS_ATTRIBUTE, TEST_ALERT_KEY, compose_alert

Writer = Literal["rule", "topic", "function", "notifier", "ses", "unknown"]
WRITER_WORDS: Mapping[Writer, str] = {
    "rule": "EventBridge could not deliver it",
    "topic": "SNS could not deliver it to the notifier's buffer, or the notifier failed it on every receive",
    "function": "the notifier failed every attempt",
    "notifier": "SES refused some recipients",
    "ses": "SES accepted the alert but could not deliver it",
    "unknown": "an unreadable message",
}
SUMMARY_LIMIT = 160


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    writer: Writer
    # The sign-in event (or test alert request) the message carries; None when the body could not be read.
    event: Mapping[str, Any] | None
    summary: str
    reason: str
    sent_at: str | None = None
    receipt_handle: str = field(default="", repr=False, compare=False)
    # The function's own event, when Lambda wrote the message: replayed as it was.
    function_event: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    # Whom the alert is still owed to, when the notifier parked it for some recipients only (None: everyone).
    recipients: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "writer": self.writer,
            "sent_at": self.sent_at,
            "summary": self.summary,
            "reason": self.reason,
            **({"recipients": self.recipients.split(",")} if self.recipients else {}),
        }


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def _attribute(message: Mapping[str, Any], name: str) -> str | None:
    value = (message.get("MessageAttributes") or {}).get(name)
    if isinstance(value, Mapping) and value.get("StringValue") is not None:
        return str(value["StringValue"])
    return None


def _sent_at(message: Mapping[str, Any]) -> str | None:
    raw = str((message.get("Attributes") or {}).get("SentTimestamp", ""))
    try:
        when = datetime.fromtimestamp(int(raw) / 1000, UTC)
    except (TypeError, ValueError):
        return None
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _records_event(body: Any) -> Mapping[str, Any] | None:
    """The event inside the first SNS record of a Lambda event, if the body is one."""
    records = body.get("Records") if isinstance(body, Mapping) else None
    if isinstance(records, list) and records and isinstance(records[0], Mapping):
        sns = records[0].get("Sns")
        if isinstance(sns, Mapping):
            inner = _json(sns.get("Message"))
            return inner if isinstance(inner, Mapping) else {}
    return None


def read(message: Mapping[str, Any]) -> DeadLetter:
    """One received SQS message (``ReceiveMessage`` with attribute names and message attributes) as a dead letter."""
    body = _json(message.get("Body"))
    message_id = str(message.get("MessageId", ""))
    sent_at = _sent_at(message)
    receipt = str(message.get("ReceiptHandle", ""))
    writer: Writer
    function_event: Mapping[str, Any] | None = None
    if _attribute(message, "RequestID") is not None and (event := _records_event(body)) is not None:
        writer, function_event = "function", body
        reason = _attribute(message, "ErrorMessage") or "the function returned an error"
    elif isinstance(body, Mapping) and body.get("Type") == "Notification" and "Message" in body:
        parsed = _json(body.get("Message"))
        event = parsed if isinstance(parsed, Mapping) else None
        if event is not None and isinstance(event.get("mail"), Mapping) and "eventType" in event:
            return _ses_notice(message, event, message_id, sent_at, receipt)
        if _attribute(message, RECIPIENTS_ATTRIBUTE) is not None:
            # Parked by the notifier itself: SES refused these recipients (the others have the email).
            writer = "notifier"
            reason = _attribute(message, PARK_REASON_ATTRIBUTE) or WRITER_WORDS["notifier"]
        else:
            writer = "topic"
            reason = (
                "SNS could not deliver it to the buffer queue, or the notifier failed it on every receive "
                "(see the function's log)"
            )
    elif isinstance(body, Mapping) and (_attribute(message, "ERROR_CODE") or "detail-type" in body):
        writer, event = "rule", body
        code, text = _attribute(message, "ERROR_CODE"), _attribute(message, "ERROR_MESSAGE")
        reason = ": ".join(part for part in (code, text) if part) or "EventBridge could not deliver it"
    else:
        writer, event = "unknown", None
        reason = "the message is none of the shapes EventBridge, SNS and Lambda write"
    return DeadLetter(
        message_id=message_id,
        writer=writer,
        event=event if isinstance(event, Mapping) else None,
        summary=summarise(event if isinstance(event, Mapping) else None, str(message.get("Body", ""))),
        reason=_one_line(reason),
        sent_at=sent_at,
        receipt_handle=receipt,
        function_event=function_event,
        recipients=_attribute(message, RECIPIENTS_ATTRIBUTE),
    )


def _ses_notice(
    message: Mapping[str, Any], notice: Mapping[str, Any], message_id: str, sent_at: str | None, receipt: str
) -> DeadLetter:
    """An SES event about an alert it had accepted: whom it did not reach, and SES's words for why."""
    kind = str(notice.get("eventType"))
    mail = notice["mail"]
    headers = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), Mapping) else {}
    subject = str(headers.get("subject") or "(no subject)")
    detail: Mapping[str, Any] = {}
    for key in ("bounce", "complaint", "reject", "failure"):
        if isinstance(notice.get(key), Mapping):
            detail = notice[key]
    listed = detail.get("bouncedRecipients") or detail.get("complainedRecipients") or []
    addresses = [str(r.get("emailAddress")) for r in listed if isinstance(r, Mapping) and r.get("emailAddress")]
    if not addresses:
        addresses = [str(a) for a in mail.get("destination") or [] if isinstance(a, str)]
    kinds = [str(detail[k]) for k in ("bounceType", "bounceSubType", "complaintFeedbackType") if detail.get(k)]
    codes = [str(r.get("diagnosticCode")) for r in listed if isinstance(r, Mapping) and r.get("diagnosticCode")]
    why = "; ".join([*codes, *([str(detail["reason"])] if detail.get("reason") else [])])
    reason = f"SES {kind}" + (f" ({', '.join(kinds)})" if kinds else "") + (f": {why}" if why else "")
    when = str(mail.get("timestamp") or "?")
    return DeadLetter(
        message_id=message_id,
        writer="ses",
        event=None,
        summary=_one_line(f"{when} {kind.lower()} of alert {subject!r} to {', '.join(addresses) or '?'}"),
        reason=_one_line(reason),
        sent_at=sent_at,
        receipt_handle=receipt,
        recipients=",".join(addresses) or None,
    )


def _one_line(text: str, limit: int = SUMMARY_LIMIT) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def summarise(event: Mapping[str, Any] | None, body: str = "") -> str:
    """One line for a person: when, and the alert's own subject (who signed in where, and how it went)."""
    if event is None:
        return _one_line(f"unreadable message: {body[:80]!r}")
    if isinstance(event.get(TEST_ALERT_KEY), Mapping):
        request = event[TEST_ALERT_KEY]
        asked_at, asked_by = request.get("requested_at", "?"), request.get("requested_by", "?")
        return _one_line(f"{asked_at} test alert requested by {asked_by}")
    detail = event.get("detail")
    when = (detail.get("eventTime") if isinstance(detail, Mapping) else None) or event.get("time") or "?"
    return _one_line(f"{when} {compose_alert(dict(event)).subject}")


def replay_event(letter: DeadLetter, topic_arn: str, now: datetime | None = None) -> dict[str, Any] | None:
    """The event to invoke the notifier with: the function's own event when Lambda wrote the message, else the
    carried event wrapped as the topic would have delivered it (None: nothing readable to replay)."""
    if letter.function_event is not None:
        return dict(letter.function_event)
    if letter.event is None:
        return None
    stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    notification: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Subject": None,
        "Message": json.dumps(letter.event),
        "Timestamp": stamp,
        "MessageAttributes": {},
    }
    record: dict[str, Any] = {"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": notification}
    if letter.recipients:
        # Only those SES refused: the others have had the email. The notifier reads the attribute as SQS
        # delivers it, and never widens it beyond the configured recipients.
        record["messageAttributes"] = {RECIPIENTS_ATTRIBUTE: {"stringValue": letter.recipients, "dataType": "String"}}
    return {"Records": [record]}


@dataclass(frozen=True)
class Replay:
    message_id: str
    delivered: bool
    error: str | None = None


@dataclass(frozen=True)
class QueueReading:
    """One dead-letter queue of one account and Region: how many wait, and those listed (or replayed)."""

    account_id: str
    region: str
    # "watch" (its rule, topic subscription and function share the queue) or "forwarder".
    kind: str
    queue_url: str | None
    waiting: int = 0
    letters: tuple[DeadLetter, ...] = ()
    replays: tuple[Replay, ...] = ()
    unreadable: str | None = None
    function_name: str | None = field(default=None, repr=False)
    topic_arn: str | None = field(default=None, repr=False)

    @property
    def oldest(self) -> str | None:
        stamps = [letter.sent_at for letter in self.letters if letter.sent_at]
        return min(stamps) if stamps else None

    @property
    def left(self) -> int:
        """What still waits after a replay (the count before it, less what was delivered)."""
        return max(self.waiting - sum(1 for r in self.replays if r.delivered), 0)

    def to_dict(self) -> dict[str, Any]:
        replays = {r.message_id: {"replayed": r.delivered, "replay_error": r.error} for r in self.replays}
        return {
            "account_id": self.account_id,
            "region": self.region,
            "kind": self.kind,
            "queue_url": self.queue_url,
            "waiting": self.waiting,
            "oldest": self.oldest,
            "unreadable": self.unreadable,
            "letters": [{**letter.to_dict(), **replays.get(letter.message_id, {})} for letter in self.letters],
        }


def waiting_total(readings: Sequence[QueueReading]) -> int:
    return sum(reading.left for reading in readings)


def render_text(
    readings: Sequence[QueueReading], names: Mapping[str, str], accounts: int, regions: int, *, replayed: bool
) -> str:
    """Each queue where alerts wait, its letters one line each (with what the replay did), and a closing line."""
    lines: list[str] = []
    for reading in readings:
        label = f"{reading.account_id} ({names.get(reading.account_id, '?')}) {reading.region}"
        if reading.unreadable:
            lines.append(f"! {label}: {reading.unreadable}")
        if not reading.waiting:
            continue
        oldest = f", oldest {reading.oldest}" if reading.oldest else ""
        lines.append(f"{label} {reading.kind}: {reading.waiting} waiting{oldest}")
        outcomes = {replay.message_id: replay for replay in reading.replays}
        for letter in reading.letters:
            line = f"    {letter.summary}: {WRITER_WORDS[letter.writer]}: {letter.reason}"
            outcome = outcomes.get(letter.message_id)
            if outcome is not None:
                line += (
                    " -> replayed, email accepted" + (f" ({outcome.error})" if outcome.error else "")
                    if outcome.delivered
                    else f" -> still waiting: {outcome.error}"
                )
            lines.append(line)
        if len(reading.letters) < reading.waiting:
            lines.append(f"    ... and {reading.waiting - len(reading.letters)} more")
    scope = f"{accounts} account(s) in {regions} Region(s)"
    waiting = waiting_total(readings)
    queues = sum(1 for reading in readings if reading.left)
    if replayed:
        delivered = sum(1 for reading in readings for replay in reading.replays if replay.delivered)
        lines.append(f"Replayed {delivered} alert(s) of {scope}; {waiting} still waiting.")
    elif waiting:
        lines.append(f"{waiting} alert(s) waiting in {queues} dead-letter queue(s) of {scope}.")
    else:
        lines.append(f"No alert waits in the dead-letter queues of {scope}.")
    return "\n".join(lines)


def document(readings: Sequence[QueueReading], accounts: int, regions: Sequence[str]) -> dict[str, Any]:
    return {
        "accounts_read": accounts,
        "regions": list(regions),
        "waiting": waiting_total(readings),
        "queues": [reading.to_dict() for reading in readings if reading.waiting or reading.unreadable],
    }
