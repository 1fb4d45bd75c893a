"""Test alerts: the watch's entry point for them, the [TEST] mail, and how their outcome is judged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from loginwatch_org.alert_check import Evidence, TestAlert, all_succeeded, delivered_ids, errors_in, render_text
from loginwatch_org.config import Config, load_config
from loginwatch_org.notifier import TEST_ALERT_KEY, handler
from loginwatch_org.templates import build_template, shared_parameters
from loginwatch_org.templates.parameters import ADMIN_ACCOUNT_PARAMETER
from loginwatch_org.templates.watch import alert_topic_name
from tests.conftest import EXAMPLE_CONFIG
from tests.signin_events import eventbridge_envelope, load_sample, sns_records

TOPIC = "arn:aws:sns:us-east-1:111122223333:loginwatch-sign-in-alerts"


def _resolve(value: Any, parameters: dict[str, str], conditions: dict[str, bool]) -> Any:
    """The template value CloudFormation would deploy: Ref, Sub, Fn::If and AWS::NoValue resolved."""
    if isinstance(value, list):
        resolved = [_resolve(item, parameters, conditions) for item in value]
        return [item for item in resolved if item is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        return _NO_VALUE if name == "AWS::NoValue" else parameters.get(name, f"<{name}>")
    if set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        for name, replacement in {**parameters, "AWS::Partition": "aws"}.items():
            text = text.replace("${" + name + "}", replacement)
        return text
    if set(value) == {"Fn::If"}:
        name, when_true, when_false = value["Fn::If"]
        return _resolve(when_true if conditions[name] else when_false, parameters, conditions)
    return {key: _resolve(item, parameters, conditions) for key, item in value.items()}


_NO_VALUE = object()


def _topic_policy(config: Config) -> list[dict[str, Any]]:
    template = build_template(config).to_dict()
    parameters = {**shared_parameters(config), "AlertTopic": TOPIC}
    conditions = {"AdminMayTest": parameters[ADMIN_ACCOUNT_PARAMETER] != ""}
    document = template["Resources"]["AlertTopicPolicy"]["Properties"]["PolicyDocument"]
    statements: list[dict[str, Any]] = _resolve(document, parameters, conditions)["Statement"]
    return statements


def _admits(statements: list[dict[str, Any]], account: str, action: str, resource: str) -> bool:
    """Whether a principal of ``account`` (not a service) is allowed ``action`` on ``resource``."""
    for statement in statements:
        principals = statement.get("Principal", {}).get("AWS")
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if (
            statement["Effect"] == "Allow"
            and principals in (account, f"arn:aws:iam::{account}:root", "*")
            and action in actions
            and statement["Resource"] == resource
        ):
            return True
    return False


@pytest.fixture
def example() -> Config:
    return load_config(EXAMPLE_CONFIG)


def test_topic_policy_admits_the_administrator_account_to_publish_only(example: Config) -> None:
    admin = "999988887777"  # the example's management account: a service-managed stack set with call_as: self
    statements = _topic_policy(example)
    assert _admits(statements, admin, "sns:Publish", TOPIC)
    for other_action in ("sns:Subscribe", "sns:SetTopicAttributes", "sns:*"):
        assert not _admits(statements, admin, other_action, TOPIC)
    assert not _admits(statements, admin, "sns:Publish", TOPIC.replace("sign-in-alerts", "other"))
    for stranger in ("111122223333", "444455556666", "*"):
        assert not _admits(statements, stranger, "sns:Publish", TOPIC)
    # Every other principal is a service, bound to the rule's ARN.
    others = [s for s in statements if "AWS" not in s["Principal"]]
    assert [s["Principal"] for s in others] == [{"Service": "events.amazonaws.com"}]


def test_no_administrator_account_known_means_no_test_entry(example: Config, tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace("call_as: self", "call_as: delegated-admin")
    (tmp_path / "accounts.yaml").write_text(text, encoding="utf-8")
    delegated = load_config(tmp_path / "accounts.yaml")
    assert shared_parameters(delegated)[ADMIN_ACCOUNT_PARAMETER] == ""
    statements = _topic_policy(delegated)
    assert not any("AWS" in s["Principal"] for s in statements)


def test_self_managed_administrator_is_the_account_of_its_role(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace(
        "  permission_model: service-managed      # or self-managed\n",
        "  permission_model: self-managed\n"
        "  administration_role_arn: arn:aws:iam::123456789012:role/AWSCloudFormationStackSetAdministrationRole\n",
    )
    (tmp_path / "accounts.yaml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "accounts.yaml")
    assert shared_parameters(config)[ADMIN_ACCOUNT_PARAMETER] == "123456789012"
    assert _admits(_topic_policy(config), "123456789012", "sns:Publish", TOPIC)


def test_topic_name_is_fixed_by_the_stack_set_name(example: Config) -> None:
    topic = build_template(example).to_dict()["Resources"]["AlertTopic"]["Properties"]
    assert topic["TopicName"] == alert_topic_name(example) == "loginwatch-sign-in-alerts"


# --- the notifier ------------------------------------------------------------------------------------------


@pytest.fixture
def ses(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "SENDER": "alerts@example.com",
        "RECIPIENTS": "security@example.com",
        "ACCOUNT_NAME": "payments-prod",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SOURCE_ARN", raising=False)
    with mock_aws():
        boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress="alerts@example.com")
        yield ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


def _test_message(**overrides: str) -> dict[str, Any]:
    request = {
        "test_id": "5321725d-a5e8-4abe-bfc1-88ca869db96e",
        "account": "111122223333",
        "requested_by": "arn:aws:sts::999988887777:assumed-role/Admin/jane",
        "requested_at": "2026-12-01T14:44:51Z",
        **overrides,
    }
    return {TEST_ALERT_KEY: request}


def test_test_alert_mail_is_marked_and_says_who_sent_it(ses: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = handler(sns_records(_test_message(), topic_arn=TOPIC), None)
    [sent] = ses.sent_messages
    assert sent.subject == "[TEST] Test alert for 111122223333 (payments-prod) from the loginwatch administrator"
    for shown in (
        "nobody signed in",
        "StackSets administrator",
        "arn:aws:sts::999988887777:assumed-role/Admin/jane",
        "2026-12-01T14:44:51Z",
        "5321725d-a5e8-4abe-bfc1-88ca869db96e",
    ):
        assert shown in sent.body
    # The log line the command reads: the SES message id with the test's id.
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert delivered_ids([json.dumps(line) for line in logged], "5321725d-a5e8-4abe-bfc1-88ca869db96e") == tuple(
        result["message_ids"]
    )


def test_test_alert_names_the_account_of_the_topic_not_the_claim(ses: Any) -> None:
    handler(
        sns_records(_test_message(account="444455556666", requested_by="<b>x</b>\r\nBcc: a@b"), topic_arn=TOPIC), None
    )
    [sent] = ses.sent_messages
    assert "111122223333" in sent.subject and "444455556666" not in sent.subject
    assert "\r\nBcc" not in sent.body and "<b>x</b>" not in sent.body.split("<!DOCTYPE", 1)[-1]


def test_a_sign_in_is_never_marked_test(ses: Any) -> None:
    handler(sns_records(eventbridge_envelope(load_sample("11")), topic_arn=TOPIC), None)
    [sent] = ses.sent_messages
    assert "[TEST]" not in sent.subject and "nobody signed in" not in sent.body


# --- judging the outcome ------------------------------------------------------------------------------------

ALERT = TestAlert(account="111122223333", region="us-east-1", topic_arn=TOPIC, test_id="t-1", sns_message_id="m-1")


def test_errors_are_read_from_the_aws_runtime_and_from_split_tracebacks() -> None:
    aws = "[ERROR] MessageRejected: Email address is not verified.\nTraceback (most recent call last):\n  File x"
    split = ["Traceback (most recent call last):", '  File "index.py", line 3', "RuntimeError: SENDER must be set"]
    assert errors_in([aws, "START RequestId: 1", "Task timed out after 30.03 seconds"]) == (
        "MessageRejected: Email address is not verified.",
        "Task timed out after 30.03 seconds",
    )
    assert errors_in(split) == ("RuntimeError: SENDER must be set",)
    assert errors_in(['{"level": "INFO", "message": "sign-in alert sent"}']) == ()


def test_only_the_tests_own_log_line_proves_delivery() -> None:
    mine = json.dumps({"message": "sign-in alert sent", "ses_message_id": "ses-1", "test_id": "t-1"})
    other = json.dumps({"message": "sign-in alert sent", "ses_message_id": "ses-2", "test_id": "t-2"})
    assert delivered_ids([other, mine, "t-1 mentioned in passing"], "t-1") == ("ses-1",)


@pytest.mark.parametrize(
    ("alert", "outcome", "says"),
    [
        (ALERT, "sent", "pass --wait"),
        (TestAlert("1", "r", TOPIC, "t", publish_error="AuthorizationError: no"), "failed", "SNS refused"),
        (ALERT.__class__(**{**ALERT.__dict__, "evidence": Evidence(ses_message_ids=("s",))}), "delivered", "s"),
        (ALERT.__class__(**{**ALERT.__dict__, "evidence": Evidence(dead_letters=("d",))}), "failed", "dead-letter"),
        (ALERT.__class__(**{**ALERT.__dict__, "evidence": Evidence(errors=("Boom",))}), "failed", "Boom"),
        (ALERT.__class__(**{**ALERT.__dict__, "evidence": Evidence(), "waited_seconds": 300}), "unconfirmed", "300 s"),
    ],
)
def test_outcome_and_reason(alert: TestAlert, outcome: str, says: str) -> None:
    assert alert.outcome == outcome
    assert says in alert.reason
    assert all_succeeded([alert]) is (outcome in ("delivered", "sent"))
    assert render_text([alert]).startswith(outcome)


def test_no_alerts_is_no_success() -> None:
    assert not all_succeeded([])


def test_wait_polls_until_delivery_and_gives_up_at_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from loginwatch_org.aws import test_alert

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    looks = iter([Evidence(), Evidence(errors=("retrying",)), Evidence(ses_message_ids=("ses-1",))])
    monkeypatch.setattr(test_alert, "_observe", lambda reader, alert, since_ms: next(looks))
    waiting = test_alert.Waiting(timeout=300, poll=10, sleep=sleep, clock=lambda: now[0])
    delivered = test_alert._await(None, ALERT, waiting)  # type: ignore[arg-type]
    assert delivered.outcome == "delivered" and slept == [10, 10]

    monkeypatch.setattr(test_alert, "_observe", lambda reader, alert, since_ms: Evidence())
    now[0], slept[:] = 0.0, []
    silent = test_alert._await(None, ALERT, test_alert.Waiting(timeout=25, poll=10, sleep=sleep, clock=lambda: now[0]))
    assert silent.outcome == "unconfirmed" and slept == [10, 10, 5] and silent.waited_seconds == 25
