"""The sign-in alert email: what recipients see for real sign-in events, and how it is sent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from loginwatch_org import notifier
from loginwatch_org.notifier import Alert, compose_alert, handler
from tests.signin_events import (
    eventbridge_envelope,
    invalid_sample_names,
    load_envelope,
    load_raw,
    load_sample,
    sns_records,
    valid_sample_names,
)

SENDER = "alerts@example.com"
RECIPIENTS = ["secops@example.com", "oncall@example.com"]
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
DIRECT_TYPES = ("Root", "IAMUser")


def alert_for(name: str, account_name: str | None = "payments-prod") -> Alert:
    return compose_alert(load_envelope(name), account_name)


def field(alert: Alert, label: str) -> str:
    """Value of one 'Label: value' line of the plain-text body."""
    match = re.search(rf"^{re.escape(label)}:\s+(.*)$", alert.text, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{alert.text}"
    return match.group(1)


def identity_type(name: str) -> Any:
    identity = load_sample(name).get("userIdentity")
    return identity.get("type") if isinstance(identity, dict) else None


FEDERATED_SAMPLES = [n for n in valid_sample_names() if identity_type(n) not in (*DIRECT_TYPES, None)]


# --- who signed in, and did it work -------------------------------------------------------------------


def test_root_sign_in_is_flagged_first_in_subject() -> None:
    alert = alert_for("09")
    assert alert.subject.startswith("[ROOT] ")
    assert alert.subject.endswith("Console sign-in to 111122223333 (payments-prod) by root")
    assert field(alert, "Who") == "root user of account 111122223333"
    assert field(alert, "Principal ARN") == "arn:aws:iam::111122223333:root"
    assert field(alert, "Account") == "111122223333 (payments-prod)"


def test_root_failure_is_flagged_with_error_message() -> None:
    alert = alert_for("11")
    assert alert.subject.startswith("[ROOT] [FAILED] Console sign-in to 111122223333 (payments-prod) by root")
    assert field(alert, "Result") == "Failure: Failed authentication"
    assert "Failure: Failed authentication" in alert.html


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("06", "Failed authentication"),
        ("15", "Failed authentication"),
        ("16", "No username found in supplied account"),
        ("43", "Failed authentication"),
        ("39", "Not a valid response for the provided request id: aws_ccV60redacted"),
    ],
)
def test_failures_are_flagged_with_error_message(name: str, error: str) -> None:
    alert = alert_for(name)
    assert "[FAILED]" in alert.subject
    assert field(alert, "Result") == f"Failure: {error}"
    assert error in alert.html


def test_failure_without_error_message_still_flagged() -> None:
    alert = alert_for("37")
    assert alert.subject.startswith("[FAILED] Console sign-in to 111122223333")
    assert field(alert, "Result") == "Failure"
    assert field(alert, "Who") == "IAM user alice"


def test_identity_center_failure_read_from_service_event_details() -> None:
    alert = alert_for("23")
    assert alert.subject.startswith("[FAILED] Identity Center credential check")
    assert field(alert, "Result") == "Failure"


def test_success_is_not_flagged() -> None:
    alert = alert_for("05")
    assert alert.subject == "Console sign-in to 111122223333 (payments-prod) by IAM user anaya"
    assert field(alert, "Result") == "Success"
    assert field(alert, "Who") == "IAM user anaya"


@pytest.mark.parametrize(
    ("name", "mfa"),
    [
        ("05", "Yes (device arn:aws:iam::111122223333:u2f/user/anaya/default-AAAAAAAABBBBBBBBCCCCCCCCDD)"),
        ("10", "Yes (device arn:aws:iam::111122223333:mfa/root-account-mfa-device)"),
        ("13", "Yes"),
        ("35", "Yes (device arn:aws:iam::12345:mfa/homer_simpson)"),
        ("04", "No"),
        ("09", "No"),
        ("29", "No"),
    ],
)
def test_mfa_shown_for_root_and_iam_users(name: str, mfa: str) -> None:
    assert field(alert_for(name), "MFA used") == mfa


@pytest.mark.parametrize(("name", "reported"), [("06", "Yes"), ("11", "No"), ("15", "No")])
def test_failed_sign_in_does_not_claim_mfa_was_used_or_skipped(name: str, reported: str) -> None:
    alert = alert_for(name)
    assert field(alert, "MFA used") == f"not reached: the sign-in failed (event reports MFAUsed: {reported})"


def test_zero_width_characters_cannot_disguise_a_user_name() -> None:
    record = load_sample("04")
    record["userIdentity"]["userName"] = "ad\u200bmin\u2060"
    alert = compose_alert(eventbridge_envelope(record))
    assert "\u200b" not in alert.subject + alert.text + alert.html
    assert "\u2060" not in alert.subject + alert.text + alert.html


def test_uppercase_yes_counts_as_mfa() -> None:
    alert = alert_for("10")
    assert load_sample("10")["additionalEventData"]["MFAUsed"] == "YES"
    assert field(alert, "MFA used").startswith("Yes")
    assert "NO MFA" not in alert.subject


def test_successful_sign_in_without_mfa_is_flagged() -> None:
    assert alert_for("09").subject.startswith("[ROOT] [NO MFA] ")
    assert alert_for("04").subject.startswith("[NO MFA] ")
    # A failed attempt did not get in, so missing MFA is not the news there.
    assert "NO MFA" not in alert_for("11").subject


def test_mfa_check_shows_device_type() -> None:
    alert = alert_for("07")
    assert alert.subject.startswith("Console MFA check in 111122223333")
    assert field(alert, "MFA type") == "U2F MFA"
    assert field(alert, "Result") == "Success"


@pytest.mark.parametrize("name", FEDERATED_SAMPLES)
def test_federated_sign_ins_never_claim_no_mfa(name: str) -> None:
    alert = alert_for(name)
    assert field(alert, "MFA used").startswith("not recorded")
    for part in (alert.subject, alert.text, alert.html):
        assert "without MFA" not in part
        assert "NO MFA" not in part
    assert not re.search(r"MFA used:\s+No", alert.text)


@pytest.mark.parametrize(
    ("name", "user", "permission_set"),
    [
        ("31", "nicholas.hakmiller", "DevAdmin"),
        ("32", "foo@bar.com", "developer_admin"),
        ("42", "russell.leighton", "DevAdmin"),
    ],
)
def test_identity_center_permission_set_and_user(name: str, user: str, permission_set: str) -> None:
    alert = alert_for(name)
    assert f"by {user} (SSO {permission_set})" in alert.subject
    assert field(alert, "Who") == f"IAM Identity Center user {user} with permission set {permission_set}"
    assert field(alert, "Permission set") == permission_set
    assert field(alert, "Role").startswith(f"AWSReservedSSO_{permission_set}_")
    assert f"{user}" in alert.html and f"{permission_set}" in alert.html


def test_identity_center_role_without_reserved_name_shows_role() -> None:
    alert = alert_for("34")
    assert field(alert, "Who") == "IAM Identity Center user tester@example.com with role testrole_34c15ddd84cb4648"


def test_saml_provider_shown() -> None:
    alert = alert_for("36")
    assert "by tester@domain.tld (SAML Okta)" in alert.subject
    assert field(alert, "SAML provider") == "arn:aws:iam::123456789012:saml-provider/Okta"
    assert "via identity provider Okta" in field(alert, "Who")
    assert field(alert, "MFA used").startswith("not recorded for federated sign-ins")


def test_switch_role_shows_where_from() -> None:
    alert = alert_for("28")
    assert alert.subject.startswith("Console role switch into 776613361644")
    assert field(alert, "Switched from") == "arn:aws:iam::203016562928:user/bob@example.com"
    assert "switched from arn:aws:iam::203016562928:user/bob@example.com" in field(alert, "Who")
    assert "arn:aws:iam::203016562928:user/bob@example.com" in alert.html
    assert field(alert, "Redirect to") == "https://console.aws.amazon.com/console/home"


def test_plain_assumed_role_shows_role_and_session() -> None:
    alert = alert_for("27")
    assert alert.subject.endswith("by role my-role/my-session-name")
    assert field(alert, "Who") == "role my-role, session my-session-name"


def test_identity_center_user_shown() -> None:
    alert = alert_for("44")
    assert alert.subject.startswith("Identity Center sign-in for redacted")
    assert "by redacted@example.com (Identity Center)" in alert.subject
    assert field(alert, "Who") == "IAM Identity Center user redacted@example.com"
    assert field(alert, "Identity Center user id") == "redacted"
    assert field(alert, "Credential type") == "EXTERNAL_IDP"


def test_unknown_identity_type_shows_user_name() -> None:
    record = load_sample("17") | {"eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn"}
    alert = compose_alert(eventbridge_envelope(record))
    assert alert.subject.endswith("by user1")
    assert field(alert, "Who") == "user user1 (identity type Unknown)"


def test_hidden_user_name_is_explained() -> None:
    who = field(alert_for("16"), "Who")
    assert who.startswith("IAM user HIDDEN_DUE_TO_SECURITY_REASONS (AWS hides user names")


# --- the other facts a recipient needs ------------------------------------------------------------------


def test_all_facts_present_for_a_full_event() -> None:
    envelope = load_envelope("01")
    alert = compose_alert(envelope, "payments-prod")
    assert field(alert, "Source IP") == "0.0.0.0"
    assert field(alert, "Time (UTC)") == "2016-01-05T18:21:27Z"
    assert field(alert, "Region") == "us-east-1"
    assert field(alert, "User agent").startswith("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_5)")
    assert field(alert, "Event") == "ConsoleLogin"
    assert field(alert, "CloudTrail event id") == "324731c0-64b3-4421-b552-dfc3c27df4f6"
    assert field(alert, "EventBridge event id") == "6f87d04b-9f74-4f04-a780-7acf4b0a9b38"
    for value in ("0.0.0.0", "us-east-1", "324731c0-64b3-4421-b552-dfc3c27df4f6", "payments-prod"):
        assert value in alert.html


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("32", "2022-03-16T19:17:41Z (recorded as 2022-03-16 19:17:41)"),
        ("31", "2024-06-02T19:41:40Z (recorded as 2024-06-02 19:41:40.000000000)"),
        ("05", "2022-11-10T16:24:34Z"),
        ("39", "redacted (not a recognised timestamp)"),
    ],
)
def test_time_normalised_to_utc(name: str, shown: str) -> None:
    assert field(alert_for(name), "Time (UTC)") == shown


def test_time_with_offset_converted_to_utc() -> None:
    record = load_sample("05") | {"eventTime": "2022-11-10T18:24:34.5+02:00"}
    assert field(compose_alert(record), "Time (UTC)") == (
        "2022-11-10T16:24:34.500000Z (recorded as 2022-11-10T18:24:34.5+02:00)"
    )


def test_bare_record_accepted_and_account_name_optional() -> None:
    alert = compose_alert(load_sample("09"))
    assert alert.subject == "[ROOT] [NO MFA] Console sign-in to 111122223333 by root"
    assert field(alert, "EventBridge event id") == "none (not delivered by EventBridge)"


def test_principal_account_shown_when_different() -> None:
    alert = alert_for("33")
    assert field(alert, "Account") == "111111111111111 (payments-prod)"
    assert field(alert, "Principal account") == "11111"
    assert alert.subject.endswith("by role asdsda")


def test_login_url_shown_without_tokens() -> None:
    alert = alert_for("19")
    assert field(alert, "Signing in to") == "https://d-1234567890.awsapps.com/start/"
    for secret in ("auth_code", "wdc_csrf_token", "11OawSqh1qmg4ePRn3DGfmBk"):
        assert secret not in alert.text and secret not in alert.html


# --- incomplete and malformed events ------------------------------------------------------------------


def test_missing_user_identity_is_named() -> None:
    alert = alert_for("03")
    assert alert.subject.startswith("[INCOMPLETE] Console sign-in to 123456789012")
    for part in (alert.text, alert.html):
        assert "userIdentity missing from the event" in part
    mfa = field(alert, "MFA used")
    assert mfa.startswith("unknown") and "without MFA" not in alert.text
    assert field(alert, "Time (UTC)") == "2025-07-31T18:00:00Z (EventBridge time)"


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        (
            "34",
            ["sign-in result missing", "eventTime missing", "awsRegion (region) missing", "sourceIPAddress"],
        ),
        ("37", ["eventTime missing", "sourceIPAddress", "userAgent", "eventID"]),
        ("38", ["eventTime missing", "sourceIPAddress", "userAgent", "eventID"]),
        ("30", ["sourceIPAddress", "userAgent", "eventID"]),
    ],
)
def test_stripped_records_name_what_is_missing(name: str, missing: list[str]) -> None:
    alert = compose_alert(load_sample(name))
    assert "Problems with this event:" in alert.text
    for item in missing:
        assert item in alert.text
        assert item in alert.html


@pytest.mark.parametrize("name", ["37", "38"])
def test_mfa_without_additional_event_data(name: str) -> None:
    assert field(alert_for(name), "MFA used") == "not recorded (additionalEventData missing from the event)"


def test_stripped_root_failure_still_flagged() -> None:
    assert alert_for("38").subject.startswith("[ROOT] [FAILED] Console sign-in to 111122223333")


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"detail": None}, "event detail missing"),
        ({"detail": ["ConsoleLogin"]}, "event detail is a list, not an object"),
        ({"detail": 42}, "event detail is a number, not an object"),
        ({"detail": "ConsoleLogin"}, "event detail is a string, not an object"),
        ({}, "userIdentity missing from the event"),
        ({"detail": {"userIdentity": ["Root"]}}, "userIdentity is a list, not an object"),
        ({"detail": {"userIdentity": {"type": None}}}, "userIdentity.type missing from the event"),
        ({"detail": {"eventName": None, "responseElements": None}}, "eventName missing from the event"),
    ],
)
def test_malformed_events_do_not_crash(event: dict[str, Any], problem: str) -> None:
    alert = compose_alert(event)
    assert problem in alert.text
    assert problem in alert.html
    assert "\n" not in alert.subject


def test_wrong_value_types_do_not_crash() -> None:
    record: dict[str, Any] = {
        "eventName": 7,
        "eventTime": 1700000000,
        "userIdentity": {"type": "IAMUser", "userName": ["a", "b"], "arn": {"x": 1}, "sessionContext": "s"},
        "responseElements": ["Success"],
        "additionalEventData": "MFAUsed=Yes",
        "errorMessage": None,
        "sourceIPAddress": True,
        "userAgent": 3.5,
        "awsRegion": None,
        "eventID": {"id": None},
    }
    alert = compose_alert(eventbridge_envelope(record, account="111122223333", event_id="e-1"))
    assert field(alert, "Who") == 'IAM user ["a", "b"]'
    assert field(alert, "Source IP") == "true"
    assert field(alert, "MFA used") == "not recorded (additionalEventData is a string, not an object)"
    assert field(alert, "Time (UTC)") == "1700000000 (not a recognised timestamp)"

    for identity in (None, {}, {"type": "AssumedRole", "sessionContext": {"sessionIssuer": None}}):
        compose_alert({"detail": {"userIdentity": identity}})
    compose_alert({"detail": {"userIdentity": {"type": "FederatedUser", "principalId": None}}})
    compose_alert({"detail": {"additionalEventData": None, "serviceEventDetails": "x"}})


@pytest.mark.parametrize("name", valid_sample_names())
def test_every_valid_sample_composes(name: str) -> None:
    for event in (load_envelope(name), load_sample(name)):
        alert = compose_alert(event, "payments-prod")
        assert 0 < len(alert.subject) <= 200
        assert "\n" not in alert.subject and "\r" not in alert.subject
        assert not CONTROL.search(alert.subject)
        assert not CONTROL.search(alert.text.replace("\n", ""))
        assert alert.text.strip() and alert.html.startswith("<!DOCTYPE html>")
        assert "<script" not in alert.html


# --- hostile values ---------------------------------------------------------------------------------


def hostile_alert() -> Alert:
    record = load_sample("05")
    record["userIdentity"]["userName"] = "<script>alert(1)</script>"
    record["userIdentity"]["arn"] = 'arn:aws:iam::111122223333:user/"><img src=x onerror=alert(1)>'
    record["userAgent"] = "Mozilla/5.0\r\nBcc: evil@example.com\u2028\u202eevil"
    record["sourceIPAddress"] = "192.0.2.1\x00\x1b[31m"
    return compose_alert(eventbridge_envelope(record, account="111122223333", event_id="evt-1"), "prod\r\nX: y")


def test_hostile_values_are_escaped_in_html() -> None:
    alert = hostile_alert()
    assert "<script>" not in alert.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in alert.html
    assert "<img" not in alert.html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in alert.html


def test_hostile_values_cannot_inject_headers_or_lines() -> None:
    alert = hostile_alert()
    assert "\r" not in alert.subject and "\n" not in alert.subject
    assert not CONTROL.search(alert.subject)
    assert "prod\ufffd\ufffdX: y" in alert.subject
    for part in (alert.text, alert.html):
        assert "\r" not in part
        assert "\nBcc:" not in part
        assert "\u2028" not in part and "\u202e" not in part and "\x00" not in part and "\x1b" not in part
    assert field(alert, "User agent") == "Mozilla/5.0\ufffd\ufffdBcc: evil@example.com\ufffd\ufffdevil"


def test_very_long_values_are_capped() -> None:
    record = load_sample("05")
    record["userIdentity"]["userName"] = "a" * 5000
    record["userAgent"] = "U" * 5000
    alert = compose_alert(record)
    assert len(alert.subject) == 200 and alert.subject.endswith("\u2026")
    assert alert.subject.startswith("Console sign-in to 111122223333 by IAM user aaa")
    assert len(field(alert, "User agent")) == 1000
    assert "U" * 1001 not in alert.html


def test_root_and_failure_flags_survive_truncation() -> None:
    record = load_sample("11")
    record["recipientAccountId"] = "9" * 400
    alert = compose_alert(record)
    assert alert.subject.startswith("[ROOT] [FAILED] ")
    assert len(alert.subject) == 200


# --- sending ------------------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SENDER": SENDER,
        "RECIPIENTS": " , ".join(RECIPIENTS) + ",",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_REGION", "SOURCE_ARN", "ACCOUNT_NAME"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _fresh_alias_cache() -> Iterator[None]:
    notifier._ALIAS_CACHE.clear()
    yield
    notifier._ALIAS_CACHE.clear()


@pytest.fixture
def ses(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress=SENDER)
        yield ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


def one_email(ses: Any) -> Any:
    """The email SES sent, once to each recipient (one send per address); returns the first copy."""
    messages = ses.sent_messages
    assert [m.destinations["ToAddresses"] for m in messages] == [[r] for r in RECIPIENTS]
    assert len({(m.subject, m.body) for m in messages}) == 1
    return messages[0]


def test_handler_sends_email_through_ses(
    ses: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACCOUNT_NAME", "payments-prod")
    envelope = eventbridge_envelope(load_sample("11"), event_id="eb-1234")
    result = handler(sns_records(envelope), None)

    assert result["count"] == 1
    sent = one_email(ses)
    assert result["message_ids"] == [m.id for m in ses.sent_messages]
    assert sent.source == SENDER
    assert sent.subject == "[ROOT] [FAILED] Console sign-in to 111122223333 (payments-prod) by root"
    for value in (
        "Failure: Failed authentication",
        "192.0.2.0",
        "a4fbbe77-91a0-4238-804a-64314184edb6",
        "eb-1234",
    ):
        assert value in sent.body

    [line] = capsys.readouterr().out.strip().splitlines()
    log = json.loads(line)
    assert log["ses_message_ids"] == [m.id for m in ses.sent_messages]
    assert log["event_id"] == "a4fbbe77-91a0-4238-804a-64314184edb6"
    assert log["eventbridge_id"] == "eb-1234"
    assert log["outcome"] == "failure" and log["root"] is True
    assert log["recipients"] == 2
    assert "192.0.2.0" not in line and "Mozilla" not in line


def test_account_alias_names_the_account_when_no_name_is_configured(ses: Any) -> None:
    boto3.client("iam", region_name="us-east-1").create_account_alias(AccountAlias="payments-prod")
    handler(sns_records(eventbridge_envelope(load_sample("11"), account="111122223333")), None)
    sent = one_email(ses)
    assert "(payments-prod)" in sent.subject


def test_handler_sends_one_email_per_record(ses: Any) -> None:
    events = [load_envelope(n) for n in ("05", "31", "44")]
    result = handler(sns_records(*events), None)
    assert result["count"] == 3
    subjects = [m.subject for m in ses.sent_messages][:: len(RECIPIENTS)]
    assert subjects[1].endswith("by nicholas.hakmiller (SSO DevAdmin)")
    assert subjects[2].endswith("by redacted@example.com (Identity Center)")


@pytest.mark.parametrize("name", invalid_sample_names())
def test_unparseable_payload_still_alerts(ses: Any, name: str) -> None:
    raw = load_raw(name)
    result = handler(sns_records(raw), None)
    assert result["count"] == 1
    sent = one_email(ses)
    assert "could not be parsed" in sent.subject
    assert sent.subject.startswith("[UNPARSEABLE]")
    assert "could not be parsed" in sent.body
    assert "signin.amazonaws.com" in sent.body
    assert "<script" not in sent.body


def test_unparseable_text_part_keeps_raw_payload() -> None:
    raw = load_raw("24")
    record = sns_records(raw)["Records"][0]
    alert, facts = notifier._alert_for(record, "payments-prod")
    assert facts["parse_error"] is True
    assert "could not be parsed" in alert.text
    assert '"sourceIPAddress": "AWS Internal"' in alert.text
    assert "&quot;sourceIPAddress&quot;: &quot;AWS Internal&quot;" in alert.html


@pytest.mark.parametrize("message", ["", "not json at all", "<marquee>\r\nBcc: x@example.com</marquee>"])
def test_garbage_messages_still_alert(ses: Any, message: str) -> None:
    handler(sns_records(message), None)
    sent = one_email(ses)
    assert "could not be parsed" in sent.subject
    assert "<marquee>" not in sent.body
    assert "\r" not in sent.subject


def test_record_without_message_still_alerts(ses: Any) -> None:
    handler({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "m-1"}}]}, None)
    sent = one_email(ses)
    assert "could not be parsed" in sent.subject
    assert "m-1" in sent.body


def test_json_that_is_not_an_object_still_alerts(ses: Any) -> None:
    handler(sns_records("[1, 2]", "null"), None)
    subjects = [m.subject for m in ses.sent_messages][:: len(RECIPIENTS)]
    assert len(subjects) == 2
    assert all(s.startswith("[INCOMPLETE]") for s in subjects)


def test_direct_eventbridge_invocation_still_alerts(ses: Any) -> None:
    result = handler(load_envelope("09"), None)
    assert result["count"] == 1
    assert ses.sent_messages[0].subject.startswith("[ROOT]")


def test_ses_failure_makes_handler_raise(aws_env: None) -> None:
    with mock_aws():  # sender never verified: SES rejects the message
        with pytest.raises(RuntimeError, match=r"not delivered.*secops@example\.com: MessageRejected"):
            handler(sns_records(load_envelope("05")), None)
        assert ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages == []


def test_missing_configuration_makes_handler_raise(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECIPIENTS", " , ")
    with pytest.raises(RuntimeError, match="RECIPIENTS"):
        handler(sns_records(load_envelope("05")), None)


class RecordingSes:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def send_email(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {"MessageId": f"msg-{len(self.requests)}"}


def test_send_request_shape_and_source_arn(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = "arn:aws:ses:eu-west-1:999988887777:identity/example.com"
    monkeypatch.setenv("SOURCE_ARN", arn)
    client = RecordingSes()
    regions: list[str] = []

    def fake_client(source_arn: str) -> RecordingSes:
        regions.append(source_arn)
        return client

    monkeypatch.setattr(notifier, "_ses_client", fake_client)
    assert handler(sns_records(load_envelope("36")), None) == {"count": 1, "message_ids": ["msg-1", "msg-2"]}
    request, second = client.requests
    assert second["Destination"] == {"ToAddresses": [RECIPIENTS[1]]}
    assert regions == [arn]
    assert request["SourceArn"] == arn
    assert request["Source"] == SENDER
    assert request["Destination"] == {"ToAddresses": [RECIPIENTS[0]]}
    message = request["Message"]
    assert message["Subject"]["Charset"] == "UTF-8"
    assert message["Body"]["Text"]["Charset"] == message["Body"]["Html"]["Charset"] == "UTF-8"
    assert "SAML provider" in message["Body"]["Text"]["Data"]
    assert "SAML provider" in message["Body"]["Html"]["Data"]


def test_source_arn_left_out_when_empty(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_ARN", "  ")
    client = RecordingSes()
    monkeypatch.setattr(notifier, "_ses_client", lambda source_arn: client)
    handler(sns_records(load_envelope("05")), None)
    assert "SourceArn" not in client.requests[0]


def test_ses_client_uses_region_of_sending_identity(aws_env: None) -> None:
    arn = "arn:aws:ses:eu-west-1:999988887777:identity/example.com"
    assert notifier._ses_client(arn).meta.region_name == "eu-west-1"
    assert notifier._ses_client("").meta.region_name == "us-east-1"


# --- Identity Center sign-in steps and the region a sign-in was recorded in -----------------------------


def test_identity_center_sign_in_names_the_user_and_the_factors() -> None:
    alert = alert_for("21")
    assert alert.subject == "Identity Center sign-in for 111122223333 (payments-prod) by user1 (Identity Center)"
    assert field(alert, "Who") == "IAM Identity Center user user1"
    assert field(alert, "Result") == "Success"
    assert field(alert, "Credential type") == "PASSWORD,TOTP"
    assert field(alert, "MFA used").startswith("not recorded as such (Identity Center lists the factors")


def test_identity_center_wrong_password_is_a_failure_by_name() -> None:
    alert = alert_for("23")
    assert alert.subject == (
        "[FAILED] Identity Center credential check for 111122223333 (payments-prod) by user1 (Identity Center)"
    )
    assert field(alert, "Result") == "Failure"
    assert field(alert, "Event") == "CredentialVerification"
    assert field(alert, "Who") == "IAM Identity Center user user1"


def test_identity_center_failure_without_user_name_is_not_named_by_account_number() -> None:
    # The smart-card sample, as CloudTrail wrote it: userIdentity holds the account id as principalId, no name.
    alert = compose_alert(load_envelope("26", repair=True), "payments-prod")
    assert alert.subject == (
        "[FAILED] Identity Center credential check for 509318101470 (payments-prod) by an unnamed Identity Center user"
    )
    assert field(alert, "Who") == "IAM Identity Center user (no user name recorded)"
    assert field(alert, "Credential type") == "SMARTCARD"


def test_external_identity_provider_sign_in_leaves_mfa_to_the_provider() -> None:
    alert = alert_for("20")
    assert field(alert, "Credential type") == "EXTERNAL_IDP"
    assert field(alert, "MFA used") == "not recorded: the external identity provider checks it"


def test_forced_mfa_registration_is_shown() -> None:
    assert field(alert_for("22"), "MFA device") == "registration required at this sign-in"


@pytest.mark.parametrize(
    ("name", "watch_region", "shown"),
    [
        ("04", "us-east-1", "us-east-2, forwarded to the watch in us-east-1"),
        ("42", "us-east-1", "us-west-2, forwarded to the watch in us-east-1"),
        ("05", "us-east-1", "us-east-1"),
        ("04", None, "us-east-2"),
        # The envelope says where the event originated when the record says something else, or nothing.
        ("02", "us-east-1", "global (EventBridge region us-east-1)"),
        ("34", "us-east-1", "us-east-1 (EventBridge region)"),
    ],
)
def test_region_is_where_the_sign_in_was_recorded(name: str, watch_region: str | None, shown: str) -> None:
    alert = compose_alert(load_envelope(name), "payments-prod", watch_region)
    assert field(alert, "Region") == shown


def test_forwarded_identity_center_sign_in_names_its_home_region(
    ses: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # Lambda names its own region here
    handler(sns_records(load_envelope("44")), None)
    sent = one_email(ses)
    assert "us-east-2, forwarded to the watch in us-east-1" in sent.body
    assert json.loads(capsys.readouterr().out)["region"] == "us-east-2"
