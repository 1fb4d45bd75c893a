"""Dead letters unwrapped: each writer's body shape to the sign-in it carries, a line a person can read, and the
event a replay hands the notifier."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loginwatch_org.dead_letters import DeadLetter, QueueReading, Replay, document, read, render_text, replay_event
from loginwatch_org.notifier import TEST_ALERT_KEY, _alert_for
from tests.signin_events import TOPIC_ARN, load_envelope, sns_record, sns_records, valid_sample_names

SENT = "1796637600000"  # 2026-12-07T10:00:00Z


def _message(body: Any, **attributes: str) -> dict[str, Any]:
    return {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": body if isinstance(body, str) else json.dumps(body),
        "Attributes": {"SentTimestamp": SENT},
        "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
    }


def _event() -> dict[str, Any]:
    return load_envelope(valid_sample_names()[0])


def test_each_writers_body_yields_the_same_sign_in() -> None:
    event = _event()
    from_rule = read(_message(event, ERROR_CODE="SQS_ERROR", ERROR_MESSAGE="topic gone"))
    from_topic = read(_message(sns_record(event)["Sns"]))
    from_function = read(
        _message(sns_records(event), RequestID="req-1", ErrorCode="200", ErrorMessage="MessageRejected")
    )
    assert [d.writer for d in (from_rule, from_topic, from_function)] == ["rule", "topic", "function"]
    assert from_rule.event == from_topic.event == from_function.event == event
    assert len({d.summary for d in (from_rule, from_topic, from_function)}) == 1
    assert from_rule.reason == "SQS_ERROR: topic gone"
    assert from_function.reason == "MessageRejected"
    assert from_rule.sent_at == "2026-12-07T10:00:00Z"


def test_a_replay_hands_the_notifier_what_it_would_have_received() -> None:
    event = _event()
    function_event = sns_records(event)
    letter = read(_message(function_event, RequestID="req-1", ErrorCode="200", ErrorMessage="boom"))
    # Lambda's own event is replayed as it was.
    assert replay_event(letter, TOPIC_ARN) == function_event
    # Another writer's event is wrapped as the topic delivers it, and the notifier composes the same alert.
    wrapped = replay_event(read(_message(event, ERROR_CODE="x")), TOPIC_ARN)
    assert wrapped is not None
    [record] = wrapped["Records"]
    assert record["Sns"]["TopicArn"] == TOPIC_ARN
    assert _alert_for(record, None)[0].subject == _alert_for(function_event["Records"][0], None)[0].subject


@pytest.mark.parametrize(
    "body", ["", "not json", "[1, 2]", '"a string"', "null", json.dumps({"Records": "x"}), "{" * 5000]
)
def test_any_body_is_kept_and_summarised_never_dropped(body: str) -> None:
    letter = read(_message(body))
    assert letter.message_id == "m-1"
    assert letter.summary
    assert len(letter.summary) <= 160
    if letter.event is None:
        assert replay_event(letter, TOPIC_ARN) is None


def test_hostile_values_in_any_field_still_summarise() -> None:
    hostile = _event()
    hostile["detail"] = {"userIdentity": [1, {"x": None}], "eventTime": {"nested": True}, "sourceIPAddress": 10**30}
    letter = read(_message(hostile, ERROR_CODE="x"))
    assert letter.writer == "rule" and letter.summary


def test_a_test_alert_is_named_as_one() -> None:
    request = {TEST_ALERT_KEY: {"requested_at": "2026-12-07T10:00:00Z", "requested_by": "arn:aws:iam::1:user/a"}}
    letter = read(_message(sns_records(request), RequestID="r", ErrorCode="200", ErrorMessage="e"))
    assert letter.summary == "2026-12-07T10:00:00Z test alert requested by arn:aws:iam::1:user/a"


def _reading(waiting: int, letters: tuple[DeadLetter, ...], replays: tuple[Replay, ...] = ()) -> QueueReading:
    return QueueReading("111122223333", "us-east-2", "forwarder", "url", waiting, letters, replays)


def test_the_text_names_each_queue_and_the_json_what_a_replay_did() -> None:
    letter = read(_message(_event(), ERROR_CODE="NO_PERMISSIONS", ERROR_MESSAGE="bus refuses"))
    waiting = _reading(3, (letter,))
    text = render_text([waiting], {"111122223333": "payments"}, 9, 17, replayed=False)
    assert "111122223333 (payments) us-east-2 forwarder: 3 waiting, oldest 2026-12-07T10:00:00Z" in text
    assert "EventBridge could not deliver it: NO_PERMISSIONS: bus refuses" in text
    assert "... and 2 more" in text
    assert text.endswith("3 alert(s) waiting in 1 dead-letter queue(s) of 9 account(s) in 17 Region(s).")

    replayed = _reading(1, (letter,), (Replay("m-1", True),))
    assert render_text([replayed], {}, 1, 17, replayed=True).endswith(
        "Replayed 1 alert(s) of 1 account(s) in 17 Region(s); 0 still waiting."
    )
    assert document([replayed], 1, ["us-east-2"])["queues"][0]["letters"][0]["replayed"] is True
    assert document([_reading(0, ())], 1, ["us-east-2"])["queues"] == []


def test_an_alert_the_notifier_parked_for_one_refused_address_is_replayed_to_that_address_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loginwatch_org import notifier

    event = _event()
    letter = read(
        _message(
            sns_record(event)["Sns"],
            Recipients="oncall@example.com",
            ErrorMessage="oncall@example.com: MessageRejected: Email address is not verified.",
        )
    )
    assert letter.writer == "notifier"
    assert letter.recipients == "oncall@example.com"
    assert "not verified" in letter.reason
    assert letter.to_dict()["recipients"] == ["oncall@example.com"]

    sent: list[list[str]] = []

    class Ses:
        def send_email(self, **request: Any) -> dict[str, str]:
            sent.append(request["Destination"]["ToAddresses"])
            return {"MessageId": "ses-1"}

    monkeypatch.setenv("SENDER", "alerts@example.com")
    monkeypatch.setenv("RECIPIENTS", "secops@example.com,oncall@example.com")
    monkeypatch.setenv("ACCOUNT_NAME", "payments-prod")
    monkeypatch.setattr(notifier, "_ses_client", lambda source_arn: Ses())
    replay = replay_event(letter, TOPIC_ARN)
    assert replay is not None
    assert notifier.handler(replay, None)["count"] == 1
    assert sent == [["oncall@example.com"]]
