from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern

from loginwatch_org.config import ALERT_POLICIES, load_config
from loginwatch_org.templates import (
    TEMPLATE_BODY_LIMIT,
    build_template,
    event_pattern,
    render,
    template_body,
)
from tests.conftest import EXAMPLE_CONFIG, ROOT
from tests.signin_events import eventbridge_envelope, load_sample


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return build_template(load_config(EXAMPLE_CONFIG)).to_dict()


def test_body_fits_the_stack_set_limit() -> None:
    body = template_body(build_template(load_config(EXAMPLE_CONFIG)))
    assert len(body.encode("utf-8")) <= TEMPLATE_BODY_LIMIT


def test_rendering_is_deterministic() -> None:
    first = render(build_template(load_config(EXAMPLE_CONFIG)))
    second = render(build_template(load_config(EXAMPLE_CONFIG)))
    assert first == second


def test_lambda_source_is_the_notifier_module(template: dict[str, Any]) -> None:
    code = template["Resources"]["NotifierFunction"]["Properties"]["Code"]["ZipFile"]
    assert code == (ROOT / "loginwatch_org" / "notifier.py").read_text(encoding="utf-8")
    function = template["Resources"]["NotifierFunction"]["Properties"]
    assert function["Handler"] == "index.handler"
    assert function["Architectures"] == ["arm64"]
    assert function["Runtime"].startswith("python3.")
    assert function["MemorySize"] <= 256


def test_committed_template_is_current() -> None:
    committed = (ROOT / "templates" / "watch.yaml").read_text(encoding="utf-8")
    assert committed == render(build_template(load_config(EXAMPLE_CONFIG))), (
        "templates/watch.yaml is stale: run loginwatch-org export -o templates/watch.yaml"
    )


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_cfn_lint_finds_nothing(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"template.{fmt}"
    path.write_text(render(build_template(load_config(EXAMPLE_CONFIG)), fmt), encoding="utf-8")  # type: ignore[arg-type]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for policy in properties.get("Policies", []):
            found.extend(policy["PolicyDocument"]["Statement"])
    return found


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    statements = _statements(template)
    assert statements
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), statement
        if statement["Resource"] == "*":
            # IAM has no resource type for ListAccountAliases; nothing narrower exists.
            assert actions == ["iam:ListAccountAliases"]
    ses = next(s for s in statements if s["Action"] == "ses:SendEmail")
    assert ses["Condition"] == {"StringEquals": {"ses:FromAddress": {"Ref": "Sender"}}}
    assert "Fn::If" in ses["Resource"]


def test_only_the_rule_publishes_to_the_topic(template: dict[str, Any]) -> None:
    statement = template["Resources"]["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert len(statement) == 1
    assert statement[0]["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement[0]["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["SignInRule", "Arn"]}}}


def test_every_failure_path_ends_in_the_encrypted_dead_letter_queue(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    dlq = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert resources["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert resources["SignInRule"]["Properties"]["Targets"][0]["DeadLetterConfig"] == {"Arn": dlq}
    assert resources["NotifierSubscription"]["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": dlq}
    assert resources["NotifierFunction"]["Properties"]["DeadLetterConfig"] == {"TargetArn": dlq}
    assert resources["NotifierRetries"]["Properties"]["MaximumRetryAttempts"] == 2
    alarm = resources["DeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    assert resources["NotifierLogGroup"]["Properties"]["RetentionInDays"] > 0


def test_rule_matches_on_source_and_detail(template: dict[str, Any]) -> None:
    for policy in ALERT_POLICIES:
        pattern = event_pattern(policy)
        assert pattern["source"] == ["aws.signin"]
        assert pattern["detail"]["eventSource"] == ["signin.amazonaws.com"]


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    # EventBridge's matching as the local emulator implements it (TestEventPattern itself is not emulated).
    return bool(EventPattern.load(json.dumps(pattern)).matches_event(event))


# (sample, policies that must alert on it)
EXPECTED = {
    "01_eb_root-consolelogin-success-noMFA_aws-doc.json": {"all", "root-only", "root-and-failures", "no-mfa"},
    "10_ct_root-consolelogin-success-MFA-uppercase-YES_aws-ct-doc.json": {
        "all",
        "root-only",
        "root-and-failures",
    },
    "05_ct_iamuser-consolelogin-success-MFA-u2f-MFAIdentifier_aws-ct-doc.json": {"all"},
    "41_ct_iamuser-consolelogin-success-tlsDetails-p_enrichment_panther.json": {"all", "no-mfa"},
    "06_ct_iamuser-consolelogin-failure-failed-authentication-no-arn_aws-ct-doc.json": {
        "all",
        "failures-only",
        "root-and-failures",
    },
    "11_ct_root-consolelogin-failure-failed-authentication_aws-ct-doc.json": {
        "all",
        "root-only",
        "failures-only",
        "root-and-failures",
    },
    "07_ct_iamuser-checkmfa-u2f_aws-ct-doc.json": set(),  # a successful CheckMfa follows every MFA sign-in
    "08_ct_iamuser-checkmfa-multiple-mfa-devices_aws-ct-doc.json": set(),
    # Identity Center: one email per completed sign-in (UserAuthentication), and every failed factor.
    "19_ct_sso-unknown-userauthentication-password_aws-sso-doc.json": {"all"},
    "44_ct_identitycenteruser-userauthentication-external-idp-redacted-2025_elastic.json": {"all"},
    "23_ct_sso-unknown-credentialverification-password-failure_aws-sso-doc.json": {
        "all",
        "failures-only",
        "root-and-failures",
    },
    "17_ct_sso-unknown-credentialchallenge-password_aws-sso-doc.json": set(),
    "18_ct_sso-unknown-credentialverification-password-success_aws-sso-doc.json": set(),
    "31_ct_assumedrole-sso-AWSReservedSSO-consolelogin-us-west-2-tlsDetails_panther.json": {"all"},
    "28_ct_assumedrole-switchrole-cross-account-success_davxiao-blog.json": {"all"},
    "40_ct_root-passwordupdated-failure-typo-key-accesKeyId_panther.json": {
        "all",
        "root-only",
        "failures-only",
        "root-and-failures",
    },
}


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_alert_policies_filter_in_eventbridge(sample: str) -> None:
    record = load_sample(sample)
    event = eventbridge_envelope(record, account="111122223333")
    matched = {policy for policy in ALERT_POLICIES if _matches(event_pattern(policy), event)}
    assert matched == EXPECTED[sample]


def test_failed_check_mfa_alerts() -> None:
    record = load_sample("07_ct_iamuser-checkmfa-u2f_aws-ct-doc.json")
    record["responseElements"] = {"CheckMfa": "Failure"}
    event = eventbridge_envelope(record, account="111122223333")
    assert _matches(event_pattern("all"), event)
    assert _matches(event_pattern("failures-only"), event)
