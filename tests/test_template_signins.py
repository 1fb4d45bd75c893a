"""Which sign-ins reach an inbox: every sample event x every alert policy, routed as AWS would route it.

Each sample is placed in the region CloudTrail recorded it in. Outside us-east-1 it must first match the
forwarder's rule there; then the watch's rule in us-east-1 decides by the account's policy. Both patterns
are read from the exported templates (conditions and Refs resolved for that region and policy) and
evaluated by EventBridge's matcher as the local emulator implements it, not re-implemented here.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from moto.events.models import EventPattern

from loginwatch_org.config import ALERT_POLICIES, load_config
from loginwatch_org.templates import REGISTRY, WATCH_REGION, TemplateSpec
from tests.conftest import EXAMPLE_CONFIG
from tests.signin_events import eventbridge_envelope, load_envelope, load_sample, sample_names

ALL = frozenset({"all"})
FAILURE = frozenset({"all", "failures-only", "root-and-failures"})
ROOT = frozenset({"all", "root-only", "root-and-failures"})
ROOT_FAILURE = ROOT | FAILURE | {"root-only"}
NO_MFA = frozenset({"all", "no-mfa"})
ROOT_NO_MFA = ROOT | NO_MFA
NOBODY: frozenset[str] = frozenset()

# Every sample (invalid ones as CloudTrail wrote them, see signin_events.repaired_raw) -> who gets an email.
EXPECTED: dict[str, frozenset[str]] = {
    "01": ROOT_NO_MFA,
    "02": ALL,
    "03": NOBODY,  # a hand-made test payload without eventSource: not an event CloudTrail sends
    "04": NO_MFA,  # IAM user without MFA, recorded in us-east-2
    "05": ALL,
    "06": FAILURE,
    "07": NOBODY,  # a successful CheckMfa precedes every MFA sign-in: it would double the mail
    "08": NOBODY,
    "09": ROOT_NO_MFA,
    "10": ROOT,
    "11": ROOT_FAILURE,
    "12": ROOT,  # root password change
    "13": ALL,  # us-east-2
    "14": NO_MFA,  # us-east-2
    "15": FAILURE,  # us-east-2, no eventType
    "16": FAILURE,  # us-east-2
    "17": NOBODY,  # Identity Center credential challenge: a prompt, not an outcome
    "18": NOBODY,  # Identity Center credential verified: a step of the sign-in UserAuthentication reports
    "19": ALL,  # Identity Center sign-in completed (UserAuthentication): one email per sign-in
    "20": ALL,
    "21": ALL,
    "22": ALL,
    "23": FAILURE,  # Identity Center wrong password (CredentialVerification failure)
    "24": ALL,
    "25": NOBODY,
    "26": FAILURE,  # smart card rejected (CredentialVerification failure)
    "27": ALL,
    "28": ALL,  # switch role
    "29": NO_MFA,  # recorded in "eu-west-2r" (anonymised), so forwarded
    "30": NO_MFA,
    "31": ALL,  # Identity Center permission set, us-west-2: federated, never "without MFA"
    "32": ALL,  # us-east-2
    "33": ALL,  # assumed role with MFAUsed "No": federated, never "without MFA"
    "34": ALL,
    "35": ALL,  # us-east-2
    "36": ALL,  # SAML
    "37": FAILURE,
    "38": ROOT_FAILURE,
    "39": ROOT_FAILURE,  # recorded in "redacted", so forwarded
    "40": ROOT_FAILURE,
    "41": NO_MFA,
    "42": ALL,  # us-west-2
    "43": FAILURE,  # us-east-2
    "44": ALL,  # Identity Center user, home region us-east-2
}


def _key(name: str) -> str:
    return name.split("_", 1)[0]


# --- a small evaluator for the templates' conditions, enough to read a rule as one region and policy see it


def _resolve(node: Any, refs: dict[str, str], conditions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, refs, conditions) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return refs[node["Ref"]]
    if set(node) == {"Fn::If"}:
        name, then, otherwise = node["Fn::If"]
        return _resolve(then if _holds(name, refs, conditions) else otherwise, refs, conditions)
    return {key: _resolve(value, refs, conditions) for key, value in node.items()}


def _holds(name: str, refs: dict[str, str], conditions: dict[str, Any]) -> bool:
    return bool(_evaluate(conditions[name], refs, conditions))


def _evaluate(node: Any, refs: dict[str, str], conditions: dict[str, Any]) -> Any:
    if isinstance(node, dict) and set(node) == {"Fn::Equals"}:
        left, right = (_evaluate(side, refs, conditions) for side in node["Fn::Equals"])
        return left == right
    if isinstance(node, dict) and set(node) == {"Fn::Not"}:
        return not _evaluate(node["Fn::Not"][0], refs, conditions)
    return _resolve(node, refs, conditions)


@cache
def _template(name: str) -> dict[str, Any]:
    spec: TemplateSpec = REGISTRY[name]
    return dict(spec.build(load_config(EXAMPLE_CONFIG)).to_dict())


def _rule(template: str, logical_id: str, refs: dict[str, str]) -> dict[str, Any]:
    """A rule's state and pattern as deployed with these parameter values, in this region."""
    body = _template(template)
    properties = body["Resources"][logical_id]["Properties"]
    conditions = body.get("Conditions", {})
    return {key: _resolve(properties[key], refs, conditions) for key in ("State", "EventPattern")}


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    return bool(EventPattern.load(json.dumps(pattern)).matches_event(event))


def forwarded(event: dict[str, Any], region: str) -> bool:
    """Does the forwarder deployed in ``region`` send ``event`` (arriving on that region's bus) on?"""
    rule = _rule("forwarder", "ForwardRule", {"AWS::Region": region, "DeadLetterAlarmAction": ""})
    return rule["State"] != "DISABLED" and _matches(rule["EventPattern"], event)


def watched(event: dict[str, Any], policy: str) -> bool:
    """Does the watch in us-east-1, deployed with ``policy``, send ``event`` to its notifier?"""
    rule = _rule("watch", "SignInRule", {"AWS::Region": WATCH_REGION, "AlertOn": policy, "SesIdentityArn": ""})
    return _matches(rule["EventPattern"], event)


def emailed(event: dict[str, Any], policy: str) -> bool:
    reaches_watch = event["region"] == WATCH_REGION or forwarded(event, event["region"])
    return reaches_watch and watched(event, policy)


# --- the table -----------------------------------------------------------------------------------------


def test_table_covers_every_sample() -> None:
    assert sorted(EXPECTED) == sorted(_key(name) for name in sample_names())


@pytest.mark.parametrize("name", sample_names())
def test_who_is_emailed_about_each_sample(name: str) -> None:
    event = load_envelope(name, repair=True)  # placed in the region it was recorded in
    assert {policy for policy in ALERT_POLICIES if emailed(event, policy)} == EXPECTED[_key(name)]


@pytest.mark.parametrize("name", sample_names())
def test_forwarder_lets_through_everything_any_policy_alerts_on(name: str) -> None:
    # Wherever a sign-in is recorded, the forwarder must not be the narrower filter.
    for region in ("us-east-2", "eu-north-1", "ap-southeast-2"):
        event = eventbridge_envelope(load_sample(name, repair=True), region=region)
        if any(watched(event, policy) for policy in ALERT_POLICIES):
            assert forwarded(event, region), (name, region)


@pytest.mark.parametrize("name", ["07", "08"])
def test_successful_mfa_check_never_emails_from_any_region(name: str) -> None:
    for region in (WATCH_REGION, "us-east-2", "eu-west-1"):
        event = eventbridge_envelope(load_sample(name), region=region)
        assert not any(emailed(event, policy) for policy in ALERT_POLICIES)


@pytest.mark.parametrize("region", [WATCH_REGION, "us-east-2", "ap-southeast-2"])
def test_failed_mfa_check_emails_the_failure_policies(region: str) -> None:
    record = load_sample("07") | {"responseElements": {"CheckMfa": "Failure"}}
    event = eventbridge_envelope(record, account="111122223333", region=region)
    assert {policy for policy in ALERT_POLICIES if emailed(event, policy)} == FAILURE


@pytest.mark.parametrize("region", ["us-east-2", "eu-central-1"])
def test_identity_center_failure_in_its_home_region_is_forwarded(region: str) -> None:
    event = eventbridge_envelope(load_sample("23"), region=region)
    assert event["detail-type"] == "AWS Service Event via CloudTrail"
    assert {policy for policy in ALERT_POLICIES if emailed(event, policy)} == FAILURE


def test_forwarded_events_are_never_forwarded_again() -> None:
    # A sign-in from us-east-2, after its forwarder put it on another region's bus, keeps region us-east-2.
    event = eventbridge_envelope(load_sample("11"), region="us-east-2")
    assert forwarded(event, "us-east-2")
    assert not forwarded(event, "eu-west-1")
    assert not forwarded(event, WATCH_REGION)


def test_a_forwarder_deployed_in_the_watch_region_forwards_nothing() -> None:
    rule = _rule("forwarder", "ForwardRule", {"AWS::Region": WATCH_REGION, "DeadLetterAlarmAction": ""})
    assert rule["State"] == "DISABLED"
    elsewhere = _rule("forwarder", "ForwardRule", {"AWS::Region": "us-east-2", "DeadLetterAlarmAction": ""})
    assert elsewhere["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    event = eventbridge_envelope(load_sample("09"), region=WATCH_REGION)
    assert not forwarded(event, WATCH_REGION)
