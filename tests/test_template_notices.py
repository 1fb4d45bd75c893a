"""Without a mail account each watch keeps the configuration set its alerts are sent with, and SES's notices
about them (bounces, complaints, rejections) become dead letters; with one, the mail stack keeps it instead."""

from __future__ import annotations

import json
from typing import Any

from loginwatch_org.config import Config, load_config
from loginwatch_org.templates import build_template, template_body
from tests.conftest import EXAMPLE_CONFIG, own_ses_example


def _watch(config: Config) -> dict[str, Any]:
    return dict(json.loads(template_body(build_template(config))))


def test_an_own_ses_watch_turns_ses_notices_into_dead_letters_only_ses_may_send() -> None:
    resources = _watch(own_ses_example())["Resources"]
    assert resources["AlertConfigurationSet"]["Properties"]["Name"] == "loginwatch-alerts"
    destination = resources["AlertDeliveryProblems"]["Properties"]["EventDestination"]
    assert destination["MatchingEventTypes"] == ["bounce", "complaint", "reject", "renderingFailure"]
    assert destination["SnsDestination"] == {"TopicARN": {"Ref": "DeliveryNoticeTopic"}}

    [publisher] = resources["DeliveryNoticeTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert publisher["Principal"] == {"Service": "ses.amazonaws.com"} and publisher["Action"] == "sns:Publish"
    source = json.dumps(publisher["Condition"])
    assert "configuration-set/loginwatch-alerts" in source  # that set only, not any SES sender

    subscription = resources["DeliveryNoticeSubscription"]["Properties"]
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    statements = resources["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [from_notices] = [s for s in statements if s.get("Sid") == "DeliveryNoticesFromSes"]
    assert from_notices["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Ref": "DeliveryNoticeTopic"}

    function = resources["NotifierFunction"]["Properties"]
    assert function["Environment"]["Variables"]["CONFIGURATION_SET"] == "loginwatch-alerts"
    policy = json.dumps(resources["NotifierRole"]["Properties"]["Policies"])
    assert "configuration-set/loginwatch-alerts" in policy  # a send naming the set is authorized on it too


def test_an_identity_with_a_default_configuration_set_keeps_it_and_the_watch_adds_none() -> None:
    config = own_ses_example()
    config = config.model_copy(update={"delivery": config.delivery.model_copy(update={"configuration_set": "org"})})
    resources = _watch(config)["Resources"]
    assert not {"AlertConfigurationSet", "DeliveryNoticeTopic", "DeliveryNoticeSubscription"} & set(resources)
    assert "CONFIGURATION_SET" not in resources["NotifierFunction"]["Properties"]["Environment"]["Variables"]


def test_a_watch_sending_through_the_mail_account_leaves_the_set_to_the_mail_stack() -> None:
    resources = _watch(load_config(EXAMPLE_CONFIG))["Resources"]  # the example sends through its mail account
    assert "AlertConfigurationSet" not in resources and "DeliveryNoticeTopic" not in resources
