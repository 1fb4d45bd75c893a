"""The EventBridge patterns of the sign-in events each alert policy emails about.

Filtering happens in the rule's pattern, so a sign-in that no policy cares about never runs code.
"""

from __future__ import annotations

from typing import Any

SIGNIN_DETAIL_TYPE = "AWS Console Sign In via CloudTrail"
# The sign-in events a person would want to hear about. CheckMfa follows every MFA sign-in's ConsoleLogin,
# so only its failures (a wrong or stolen second factor) alert; a success would double every email.
WATCHED_EVENTS: tuple[str, ...] = (
    "ConsoleLogin",
    "SwitchRole",
    "PasswordUpdated",
    "ExternalIdPDirectoryLogin",
)
FAILURE_EVENTS: tuple[str, ...] = (*WATCHED_EVENTS, "CheckMfa")


def event_pattern(policy: str) -> dict[str, Any]:
    """The EventBridge pattern that lets through exactly the sign-ins ``policy`` alerts on."""
    failures: list[dict[str, Any]] = [
        {"eventName": [name], "responseElements": {name: ["Failure"]}} for name in FAILURE_EVENTS
    ]
    root = {"eventName": list(WATCHED_EVENTS), "userIdentity": {"type": ["Root"]}}
    detail: dict[str, Any] = {"eventSource": ["signin.amazonaws.com"]}
    if policy == "all":
        detail["$or"] = [{"eventName": list(WATCHED_EVENTS)}, failures[-1]]
    elif policy == "root-only":
        detail.update(root)
    elif policy == "failures-only":
        detail["$or"] = failures
    elif policy == "root-and-failures":
        detail["$or"] = [root, *failures]
    elif policy == "no-mfa":
        # CloudTrail records MFAUsed only for root and IAM users; federated sign-ins carry no MFA fact.
        # Only successful sign-ins: a failed one got nobody in, whatever MFAUsed says.
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
    return {"source": ["aws.signin"], "detail-type": [SIGNIN_DETAIL_TYPE], "detail": detail}
