"""The notifier reading its buffer queue: coalescing, per-recipient sends, pacing and parking."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from loginwatch_org import notifier
from tests.signin_events import eventbridge_envelope, load_sample, sns_record

RECIPIENTS = ["secops@example.com", "oncall@example.com"]
BUFFER = "https://sqs.us-east-1.amazonaws.com/111122223333/buffer"
DEAD_LETTERS = "https://sqs.us-east-1.amazonaws.com/111122223333/dead-letters"
ACCOUNT = "111122223333"


def _error(code: str, message: str = "refused") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "SendEmail")


class FakeSes:
    """SES that accepts, refuses some addresses, or starts throttling after ``allow`` sends (its rate, or with
    ``quota_spent`` its daily quota)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.refuse: dict[str, ClientError] = {}
        self.allow: int | None = None
        self.quota_spent = False
        self.fail_with: Exception | None = None
        self.attempts = 0

    def send_email(self, **request: Any) -> dict[str, Any]:
        [to] = request["Destination"]["ToAddresses"]
        self.attempts += 1
        if self.fail_with is not None:
            raise self.fail_with
        if to in self.refuse:
            raise self.refuse[to]
        if self.allow is not None and len(self.sent) >= self.allow:
            reason = "Daily message quota exceeded." if self.quota_spent else "Maximum sending rate exceeded."
            raise _error("Throttling", reason)
        self.sent.append(request)
        return {"MessageId": f"ses-{len(self.sent)}"}

    def subjects(self) -> list[str]:
        return [r["Message"]["Subject"]["Data"] for r in self.sent]


class FakeSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.delays: dict[str, int] = {}

    def send_message(self, **request: Any) -> dict[str, Any]:
        self.sent.append(request)
        return {"MessageId": f"sqs-{len(self.sent)}"}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert QueueUrl == BUFFER and len(Entries) <= 10
        for entry in Entries:
            self.delays[entry["ReceiptHandle"]] = entry["VisibilityTimeout"]
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    now = [1000.0]
    monkeypatch.setattr("loginwatch_org.notifier.time.monotonic", lambda: now[0])

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr("loginwatch_org.notifier.time.sleep", sleep)
    notifier._LAST_EMAILED.clear()
    yield now
    notifier._LAST_EMAILED.clear()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> tuple[FakeSes, FakeSqs]:
    ses, sqs = FakeSes(), FakeSqs()
    for key, value in {
        "SENDER": "alerts@example.com",
        "RECIPIENTS": ",".join(RECIPIENTS),
        "ACCOUNT_NAME": "payments-prod",
        "BUFFER_QUEUE_URL": BUFFER,
        "DEAD_LETTER_QUEUE_URL": DEAD_LETTERS,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(notifier, "_ses_client", lambda source_arn: ses)
    monkeypatch.setattr(notifier, "_sqs_client", lambda: sqs)
    return ses, sqs


def _failed(user: str = "mallory", ip: str = "198.51.100.7", second: int = 0, account: str = ACCOUNT) -> Any:
    record = load_sample("16")
    record["userIdentity"] = {"type": "IAMUser", "accountId": account, "userName": user}
    record["recipientAccountId"] = account
    record["sourceIPAddress"] = ip
    record["eventID"] = f"event-{user}-{ip}-{second}"
    record["eventTime"] = f"2026-12-07T10:{second // 60:02d}:{second % 60:02d}Z"
    return eventbridge_envelope(record, account=account)


def _root() -> Any:
    return eventbridge_envelope(load_sample("11"), account=ACCOUNT)


def _success() -> Any:
    return eventbridge_envelope(load_sample("05"), account=ACCOUNT)


def _queued(events: list[Any], receives: int = 1, recipients: str | None = None, start: int = 0) -> dict[str, Any]:
    """The event an SQS event source mapping delivers for messages that SNS put on the buffer queue."""
    records = []
    for number, event in enumerate(events, start=start):
        attributes = {"stringValue": recipients, "dataType": "String"} if recipients is not None else None
        records.append(
            {
                "messageId": f"m-{number}",
                "receiptHandle": f"r-{number}",
                "body": event if isinstance(event, str) else json.dumps(sns_record(event)["Sns"]),
                "attributes": {"ApproximateReceiveCount": str(receives)},
                "messageAttributes": {"Recipients": attributes} if attributes else {},
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:{ACCOUNT}:buffer",
            }
        )
    return {"Records": records}


def _failures(result: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in result["batchItemFailures"]]


def test_a_storm_of_failures_is_one_email_that_counts_them_and_root_and_success_stay_single(
    aws: tuple[FakeSes, FakeSqs],
) -> None:
    ses, _sqs = aws
    storm = [_failed(ip=f"198.51.100.{n % 3}", second=n) for n in range(30)]
    result = notifier.handler(_queued([*storm, _root(), _success()]), None)

    assert _failures(result) == []
    subjects = ses.subjects()
    assert len(subjects) == 3 * len(RECIPIENTS)  # each email once to each address
    [coalesced] = {s for s in subjects if "[x30]" in s}
    assert (
        coalesced
        == "[FAILED] [x30] 30 failed console sign-in attempts to 111122223333 (payments-prod) by IAM user mallory"
    )
    assert any(s.startswith("[ROOT] [FAILED]") for s in subjects)
    assert any("[FAILED]" not in s for s in subjects)
    body = next(r for r in ses.sent if "[x30]" in r["Message"]["Subject"]["Data"])["Message"]["Body"]["Text"]["Data"]
    assert "30 failed, coalesced into this one email" in body
    assert "198.51.100.0 (10), 198.51.100.1 (10), 198.51.100.2 (10)" in body
    assert "2026-12-07T10:00:00Z" in body and "2026-12-07T10:00:29Z" in body


def test_the_next_batch_of_the_same_storm_waits_for_one_email_a_minute(
    aws: tuple[FakeSes, FakeSqs], clock: list[float]
) -> None:
    ses, sqs = aws
    notifier.handler(_queued([_failed(second=0)]), None)
    assert len(ses.sent) == len(RECIPIENTS)  # the first failure leaves at once

    clock[0] += 20
    later = notifier.handler(_queued([_failed(second=n) for n in range(1, 6)], start=10), None)
    assert len(ses.sent) == len(RECIPIENTS)  # held back, not lost
    assert _failures(later) == [f"m-{n}" for n in range(10, 15)]
    assert set(sqs.delays.values()) == {40}  # until the minute since the last email is over

    clock[0] += 41
    notifier.handler(_queued([_failed(second=n) for n in range(1, 6)], receives=2, start=10), None)
    assert ses.subjects()[-1].startswith("[FAILED] [x5] 5 failed")


def test_an_attacker_trying_many_user_names_gets_one_email_for_the_account(aws: tuple[FakeSes, FakeSqs]) -> None:
    ses, _sqs = aws
    result = notifier.handler(_queued([_failed(user=f"user{n}", second=n) for n in range(12)]), None)
    assert _failures(result) == []
    [subject] = set(ses.subjects())
    assert subject.startswith(
        "[FAILED] [x12] 12 failed console sign-in attempts to 111122223333 (payments-prod) by 12 identities"
    )


def test_other_accounts_are_never_coalesced_together(aws: tuple[FakeSes, FakeSqs]) -> None:
    ses, _sqs = aws
    notifier.handler(_queued([_failed(account=ACCOUNT), _failed(account="444455556666")]), None)
    assert len(set(ses.subjects())) == 2


def test_a_rejected_address_stops_nobody_else_and_is_parked_for_that_address_alone(
    aws: tuple[FakeSes, FakeSqs],
) -> None:
    ses, sqs = aws
    ses.refuse["oncall@example.com"] = _error("MessageRejected", "Email address is not verified.")
    result = notifier.handler(_queued([_root()]), None)

    assert _failures(result) == []
    assert [r["Destination"]["ToAddresses"] for r in ses.sent] == [["secops@example.com"]]
    [parked] = sqs.sent
    assert parked["QueueUrl"] == DEAD_LETTERS
    assert parked["MessageAttributes"]["Recipients"]["StringValue"] == "oncall@example.com"
    assert "Email address is not verified" in parked["MessageAttributes"]["ErrorMessage"]["StringValue"]
    assert json.loads(parked["MessageBody"])["Type"] == "Notification"


def test_ses_throttling_returns_the_batch_to_the_queue_with_a_growing_delay(
    aws: tuple[FakeSes, FakeSqs], clock: list[float]
) -> None:
    ses, sqs = aws
    ses.allow = 0
    started = clock[0]
    result = notifier.handler(_queued([_root(), _success()], receives=3), None)
    assert _failures(result) == ["m-0", "m-1"]
    # The rate is waited out for at most the pacing budget, then the queue takes over.
    assert clock[0] - started >= notifier.PACE_BUDGET_SECONDS - notifier.PACE_SECONDS * 1.5
    assert clock[0] - started <= notifier.PACE_BUDGET_SECONDS
    # Both come back together (one draw for the batch), after between half and all of 120 s on a third receive.
    [delay] = set(sqs.delays.values())
    assert sorted(sqs.delays) == ["r-0", "r-1"] and 60 <= delay <= 120
    assert sqs.sent == []  # nothing parked: SES only said "later"
    assert [notifier.retry_delay(n, 1.0) for n in (1, 2, 3, 5, 6, 50)] == [30, 60, 120, 480, 900, 900]
    assert [notifier.retry_delay(n, 0.0) for n in (1, 2, 6)] == [15, 30, 450]


def test_a_rate_refusal_is_waited_out_within_the_invocation(
    aws: tuple[FakeSes, FakeSqs], clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    ses, sqs = aws
    ses.allow = 1
    started = clock[0]

    def rate_passes(seconds: float) -> None:
        clock[0] += seconds
        ses.allow = None  # the next second has room again

    monkeypatch.setattr("loginwatch_org.notifier.time.sleep", rate_passes)
    result = notifier.handler(_queued([_root()]), None)
    assert _failures(result) == [] and sqs.sent == []
    assert [r["Destination"]["ToAddresses"] for r in ses.sent] == [[r] for r in RECIPIENTS]
    assert 0.5 <= clock[0] - started <= 1.5


def test_a_spent_daily_quota_is_not_waited_for(aws: tuple[FakeSes, FakeSqs], clock: list[float]) -> None:
    ses, _sqs = aws
    ses.allow, ses.quota_spent = 0, True
    started = clock[0]
    result = notifier.handler(_queued([_root()]), None)
    assert _failures(result) == ["m-0"] and ses.attempts == 1 and clock[0] == started


def test_sending_stops_before_the_invocation_times_out(aws: tuple[FakeSes, FakeSqs]) -> None:
    ses, sqs = aws

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return int((notifier.DEADLINE_MARGIN_SECONDS - 1) * 1000)

    result = notifier.handler(_queued([_root(), _success()]), Context())
    # Nothing is sent so late: both come back soon instead of the whole batch after a timeout.
    assert ses.sent == [] and _failures(result) == ["m-0", "m-1"]
    assert all(delay <= notifier.RETRY_BASE_SECONDS for delay in sqs.delays.values())


def test_throttled_between_recipients_requeues_a_copy_for_those_still_waiting(aws: tuple[FakeSes, FakeSqs]) -> None:
    ses, sqs = aws
    ses.allow, ses.quota_spent = 1, True
    result = notifier.handler(_queued([_root()]), None)
    assert _failures(result) == []  # secops has it; the copy carries the rest
    [copy] = sqs.sent
    assert copy["QueueUrl"] == BUFFER
    assert copy["MessageAttributes"]["Recipients"]["StringValue"] == "oncall@example.com"
    assert 15 <= copy["DelaySeconds"] <= 30

    ses.allow = None
    notifier.handler(_queued([_root()], recipients="oncall@example.com"), None)
    assert [r["Destination"]["ToAddresses"] for r in ses.sent] == [["secops@example.com"], ["oncall@example.com"]]


def test_a_message_attribute_can_narrow_but_never_widen_the_recipients(aws: tuple[FakeSes, FakeSqs]) -> None:
    ses, _sqs = aws
    notifier.handler(_queued([_root()], recipients="attacker@example.net,ONCALL@example.com"), None)
    assert [r["Destination"]["ToAddresses"] for r in ses.sent] == [["oncall@example.com"]]
    ses.sent.clear()
    notifier.handler(_queued([_root()], recipients="attacker@example.net"), None)
    assert [r["Destination"]["ToAddresses"] for r in ses.sent] == [[r] for r in RECIPIENTS]


def test_an_error_nobody_named_is_retried_then_parked(aws: tuple[FakeSes, FakeSqs]) -> None:
    ses, sqs = aws
    ses.fail_with = RuntimeError("boom")
    first = notifier.handler(_queued([_root()], receives=1), None)
    assert _failures(first) == ["m-0"] and sqs.sent == []
    last = notifier.handler(_queued([_root()], receives=notifier.UNEXPECTED_ERROR_RECEIVES), None)
    assert _failures(last) == []
    [parked] = sqs.sent
    assert parked["QueueUrl"] == DEAD_LETTERS
    assert parked["MessageAttributes"]["Recipients"]["StringValue"] == ",".join(RECIPIENTS)


def test_sending_that_can_never_work_is_parked_at_once(aws: tuple[FakeSes, FakeSqs]) -> None:
    ses, sqs = aws
    ses.fail_with = _error("AccessDenied", "not authorized to perform ses:SendEmail")
    result = notifier.handler(_queued([_root(), _failed()]), None)
    assert _failures(result) == []
    assert [m["QueueUrl"] for m in sqs.sent] == [DEAD_LETTERS, DEAD_LETTERS]
    assert all("AccessDenied" in m["MessageAttributes"]["ErrorMessage"]["StringValue"] for m in sqs.sent)


def test_a_park_that_fails_keeps_the_message_in_the_buffer(aws: tuple[FakeSes, FakeSqs]) -> None:
    ses, sqs = aws
    ses.fail_with = _error("AccessDenied")

    def unavailable(**request: Any) -> None:
        raise _error("ServiceUnavailable")

    sqs.send_message = unavailable  # type: ignore[method-assign,assignment]
    assert _failures(notifier.handler(_queued([_root()]), None)) == ["m-0"]


@pytest.mark.parametrize("body", ["", "not json", "[1, 2]", '{"Type": "Notification", "Message": 7}', "\u202e\x00"])
def test_hostile_bodies_in_a_batch_still_alert(aws: tuple[FakeSes, FakeSqs], body: str) -> None:
    ses, _sqs = aws
    result = notifier.handler(_queued([body, _failed()]), None)
    assert _failures(result) == []
    assert len(ses.sent) == 2 * len(RECIPIENTS)
    assert all("\u202e" not in s and "\x00" not in s for s in ses.subjects())


def test_the_configured_configuration_set_is_named_in_every_send(
    aws: tuple[FakeSes, FakeSqs], monkeypatch: pytest.MonkeyPatch
) -> None:
    ses, _sqs = aws
    notifier.handler(_queued([_root()]), None)
    assert all("ConfigurationSetName" not in request for request in ses.sent)
    ses.sent.clear()
    monkeypatch.setenv("CONFIGURATION_SET", "loginwatch-alerts")
    notifier.handler(_queued([_root()]), None)
    assert [request["ConfigurationSetName"] for request in ses.sent] == ["loginwatch-alerts"] * len(RECIPIENTS)


# Any value JSON can carry, in any field a failed sign-in's email reads: the batch still becomes emails whose
# counts add up, and the notifier never raises on an event's content.
ANY_JSON: list[Any] = [None, 0, -1.5, True, "", "x" * 5000, [], ["a", 1], {}, {"a": {"b": [None]}}, "\u202e\x00"]
FIELDS = [
    ("userIdentity",),
    ("userIdentity", "userName"),
    ("userIdentity", "type"),
    ("sourceIPAddress",),
    ("userAgent",),
    ("eventTime",),
    ("eventID",),
    ("awsRegion",),
    ("responseElements",),
    ("responseElements", "ConsoleLogin"),
    ("additionalEventData",),
    ("errorMessage",),
]


def _covered(subject: str) -> int:
    found = re.search(r"\[x(\d+)\]", subject)
    return int(found.group(1)) if found else 1


@pytest.mark.parametrize("path", FIELDS, ids=".".join)
def test_any_json_value_in_any_field_still_alerts_and_the_counts_add_up(
    aws: tuple[FakeSes, FakeSqs], path: tuple[str, ...]
) -> None:
    ses, _sqs = aws
    for number, value in enumerate(ANY_JSON):
        ses.sent.clear()
        notifier._LAST_EMAILED.clear()
        events = [_failed(second=number * 3 + n) for n in range(3)]
        target = events[1]["detail"]
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target.get(key), dict) else target
        target[path[-1]] = value
        result = notifier.handler(_queued(events), None)
        assert _failures(result) == [], (path, value)
        to_first = [r for r in ses.sent if r["Destination"]["ToAddresses"] == [RECIPIENTS[0]]]
        assert sum(_covered(r["Message"]["Subject"]["Data"]) for r in to_first) == 3, (path, value)
        for request in to_first:
            subject = request["Message"]["Subject"]["Data"]
            assert "\n" not in subject and "\x00" not in subject and len(subject) <= 998
