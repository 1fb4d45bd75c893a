"""The EventBridge patterns of the sign-in events each alert policy emails about.

Filtering happens in the rule's pattern, so a sign-in that no policy cares about never runs code.

CloudTrail hands sign-in records to EventBridge with ``source: aws.signin`` under two detail-types
(https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-signin.html,
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html):

- console sign-ins (``eventType: AwsConsoleSignIn``: ConsoleLogin, CheckMfa, SwitchRole, ...) arrive as
  "AWS Console Sign In via CloudTrail", their outcome in ``responseElements.<eventName>``;
- IAM Identity Center's own sign-in steps (``eventType: AwsServiceEvent``) arrive as "AWS Service Event
  via CloudTrail", their outcome in ``serviceEventDetails.<eventName>``
  (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/non-api-aws-service-events.html).

Identity Center records one ``CredentialChallenge`` and one ``CredentialVerification`` per factor it asks
for, and one ``UserAuthentication`` only once every factor passed; a failed factor ends the sign-in with
a failed ``CredentialVerification`` and no ``UserAuthentication``
(https://docs.aws.amazon.com/singlesignon/latest/userguide/understanding-sign-in-events.html). So one
email per Identity Center sign-in means: ``UserAuthentication`` for each completed sign-in, and each failed
``CredentialVerification`` (a wrong password or code). A challenge (a prompt, always "Success") and a
passed verification (a step of a sign-in that ``UserAuthentication`` reports) never email.
"""

from __future__ import annotations

from typing import Any

from troposphere import AWSHelperFn

SIGNIN_SOURCE = "aws.signin"
SIGNIN_DETAIL_TYPE = "AWS Console Sign In via CloudTrail"
SERVICE_EVENT_DETAIL_TYPE = "AWS Service Event via CloudTrail"
# The console sign-in events a person would want to hear about. CheckMfa follows every MFA sign-in's
# ConsoleLogin, so only its failures (a wrong or stolen second factor) alert; a success would double every email.
WATCHED_EVENTS: tuple[str, ...] = (
    "ConsoleLogin",
    "SwitchRole",
    "PasswordUpdated",
    "ExternalIdPDirectoryLogin",
)
FAILURE_EVENTS: tuple[str, ...] = (*WATCHED_EVENTS, "CheckMfa")
# Identity Center: the completed sign-in, and the steps whose failure is worth an email. UserAuthentication
# is not documented to fail, but if AWS ever records a failed one, it is a failure like any other.
IDENTITY_CENTER_SIGN_IN = "UserAuthentication"
IDENTITY_CENTER_FAILURE_EVENTS: tuple[str, ...] = ("CredentialVerification", IDENTITY_CENTER_SIGN_IN)


def _failures() -> list[dict[str, Any]]:
    # The outcome key names the event, so no eventName is needed beside it.
    console = [{"responseElements": {name: ["Failure"]}} for name in FAILURE_EVENTS]
    identity_center = [{"serviceEventDetails": {name: ["Failure"]}} for name in IDENTITY_CENTER_FAILURE_EVENTS]
    return [*console, *identity_center]


def event_pattern(policy: str) -> dict[str, Any]:
    """The EventBridge pattern that lets through exactly the sign-ins ``policy`` alerts on."""
    root = {"eventName": list(WATCHED_EVENTS), "userIdentity": {"type": ["Root"]}}
    detail: dict[str, Any] = {"eventSource": ["signin.amazonaws.com"]}
    detail_types = [SIGNIN_DETAIL_TYPE, SERVICE_EVENT_DETAIL_TYPE]
    if policy == "all":
        detail["$or"] = [
            {"eventName": [*WATCHED_EVENTS, IDENTITY_CENTER_SIGN_IN]},
            {"responseElements": {"CheckMfa": ["Failure"]}},
            {"serviceEventDetails": {"CredentialVerification": ["Failure"]}},
        ]
    elif policy == "root-only":
        detail_types = [SIGNIN_DETAIL_TYPE]
        detail.update(root)
    elif policy == "failures-only":
        detail["$or"] = _failures()
    elif policy == "root-and-failures":
        detail["$or"] = [root, *_failures()]
    elif policy == "no-mfa":
        # CloudTrail records MFAUsed only for root and IAM users; federated and Identity Center sign-ins carry
        # no MFA fact, so they are never called "without MFA".
        # Only successful sign-ins: a failed one got nobody in, whatever MFAUsed says.
        detail_types = [SIGNIN_DETAIL_TYPE]
        detail.update(
            {
                "eventName": ["ConsoleLogin"],
                "userIdentity": {"type": ["Root", "IAMUser"]},
                "additionalEventData": {"MFAUsed": [{"equals-ignore-case": "no"}]},
                "responseElements": {"ConsoleLogin": ["Success"]},
            }
        )
    else:
        raise ValueError(f"unknown alert policy {policy!r}")
    return {"source": [SIGNIN_SOURCE], "detail-type": detail_types, "detail": detail}


def forwarded_pattern(region: str | AWSHelperFn) -> dict[str, Any]:
    """Every sign-in any policy could alert on (the union; the watch filters by policy), recorded in ``region``.

    ``all`` lets through a superset of every other policy, and the tests hold it to that. Matching only events
    that originated in the forwarder's own region keeps an event that was forwarded into this bus from being
    sent on again: ``region`` is the region an event originated in
    (https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html).
    """
    return {**event_pattern("all"), "region": [region]}
