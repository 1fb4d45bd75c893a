"""A console sign-in in a sandbox account, and the emails it produced.

The event is shaped like the CloudTrail records AWS documents for each kind of sign-in and is put on the
account's default event bus as the account itself (by assuming its OrganizationAccountAccessRole), so the
deployed rule, topic and function carry it exactly as they would in AWS.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from loginwatch_org.aws.session import AwsTarget, client
from loginwatch_org.sandbox.control import Sandbox
from loginwatch_org.sandbox.mailbox import SentEmail, read_mailbox

Identity = Literal["root", "iam-user", "sso", "failed"]
IDENTITIES: tuple[str, ...] = ("root", "iam-user", "sso", "failed")

_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
_SOURCE_IP = "198.51.100.23"  # a documentation address (RFC 5737)


def signin_record(account: str, identity: Identity, *, now: datetime | None = None) -> dict[str, Any]:
    """A CloudTrail ConsoleLogin record for ``identity`` in ``account``."""
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    record: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventTime": moment,
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "awsRegion": "us-east-1",
        "sourceIPAddress": _SOURCE_IP,
        "userAgent": _USER_AGENT,
        "requestParameters": None,
        "responseElements": {"ConsoleLogin": "Success"},
        "additionalEventData": {
            "LoginTo": "https://console.aws.amazon.com/console/home",
            "MobileVersion": "No",
            "MFAUsed": "No",
        },
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsConsoleSignIn",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    if identity == "root":
        record["userIdentity"] = {
            "type": "Root",
            "principalId": account,
            "arn": f"arn:aws:iam::{account}:root",
            "accountId": account,
        }
    elif identity in ("iam-user", "failed"):
        record["userIdentity"] = {
            "type": "IAMUser",
            "principalId": "AIDACKCEVSQ6C2EXAMPLE",
            "arn": f"arn:aws:iam::{account}:user/alice",
            "accountId": account,
            "userName": "alice",
        }
        if identity == "iam-user":
            record["additionalEventData"].update(
                MFAUsed="Yes", MFAIdentifier=f"arn:aws:iam::{account}:u2f/user/alice/default-EXAMPLE"
            )
        else:
            record["responseElements"] = {"ConsoleLogin": "Failure"}
            record["errorMessage"] = "Failed authentication"
    else:
        role = "AWSReservedSSO_AdministratorAccess_0123456789abcdef"
        record["userIdentity"] = {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEID:alice@example.com",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role}/alice@example.com",
            "accountId": account,
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLEID",
                    "arn": f"arn:aws:iam::{account}:role/aws-reserved/sso.amazonaws.com/{role}",
                    "accountId": account,
                    "userName": role,
                },
                "attributes": {"creationDate": moment, "mfaAuthenticated": "false"},
            },
        }
    return record


def member_target(sandbox: Sandbox, account: str) -> AwsTarget:
    """Credentials that act in ``account``: the management account assumes its access role, as in AWS."""
    if account == sandbox.management_account:
        return sandbox.target()
    sts = client(sandbox.target(), "sts")
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{sandbox.member_role_name}", RoleSessionName="loginwatch-simulate"
    )["Credentials"]
    return AwsTarget(
        region="us-east-1",
        endpoint_url=sandbox.endpoint_url,
        access_key_id=credentials["AccessKeyId"],
        secret_access_key=credentials["SecretAccessKey"],
        session_token=credentials["SessionToken"],
    )


def simulate_login(sandbox: Sandbox, account: str, identity: Identity) -> list[SentEmail]:
    """Put a sign-in event on ``account``'s default bus; return the emails SES accepted because of it."""
    before = {message["message_id"] for message in read_mailbox(sandbox.endpoint_url, account)}
    events = client(member_target(sandbox, account), "events")
    response = events.put_events(
        Entries=[
            {
                "Source": "aws.signin",
                "DetailType": "AWS Console Sign In via CloudTrail",
                "Detail": json.dumps(signin_record(account, identity)),
                "EventBusName": "default",
            }
        ]
    )
    if response.get("FailedEntryCount"):
        raise RuntimeError(f"the sandbox rejected the event: {response['Entries']}")
    # The sandbox delivers synchronously: the function has run by the time PutEvents returns.
    return [m for m in read_mailbox(sandbox.endpoint_url, account) if m["message_id"] not in before]
