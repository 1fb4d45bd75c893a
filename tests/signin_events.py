"""Sample console sign-in events and the envelopes AWS wraps them in on the way to the notifier."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

SAMPLES_DIR = Path(__file__).parent / "data" / "signin-events"

# CloudTrail hands sign-in records to EventBridge under a detail-type chosen by the record's eventType:
# console sign-ins (AwsConsoleSignIn) and AWS service events (AwsServiceEvent, e.g. IAM Identity Center's
# CredentialVerification and UserAuthentication) arrive differently.
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html
DETAIL_TYPE = "AWS Console Sign In via CloudTrail"
SERVICE_EVENT_DETAIL_TYPE = "AWS Service Event via CloudTrail"
TOPIC_ARN = "arn:aws:sns:us-east-1:111122223333:loginwatch-signin-alerts"


def sample_path(name: str) -> Path:
    """Path of a sample, by full file name or by its two-digit prefix (e.g. ``"09"``)."""
    exact = SAMPLES_DIR / name
    if exact.is_file():
        return exact
    matches = sorted(SAMPLES_DIR.glob(f"{name}_*.json"))
    if len(matches) != 1:
        raise FileNotFoundError(f"no single sample named {name!r} in {SAMPLES_DIR.name}")
    return matches[0]


def sample_names() -> list[str]:
    return sorted(p.name for p in SAMPLES_DIR.glob("*.json"))


def is_valid_json(name: str) -> bool:
    try:
        json.loads(sample_path(name).read_text(encoding="utf-8"))
    except ValueError:
        return False
    return True


def valid_sample_names() -> list[str]:
    return [n for n in sample_names() if is_valid_json(n)]


def invalid_sample_names() -> list[str]:
    return [n for n in sample_names() if not is_valid_json(n)]


def load_raw(name: str) -> str:
    """The sample's text exactly as published (some samples are not valid JSON)."""
    return sample_path(name).read_text(encoding="utf-8")


# What broke the invalid samples on their way into documentation, never into AWS: a key that lost its
# opening quote ("{ UserAuthentication": ...) and markdown's backslash before dots in a URL.
_UNQUOTED_KEY = re.compile(r'([{,]\s*)([A-Za-z]+)"\s*:')
_MARKDOWN_ESCAPE = re.compile(r"\\\.")


def repaired_raw(name: str) -> str:
    """The sample as CloudTrail wrote it: the publishing damage above undone, nothing else changed."""
    return _MARKDOWN_ESCAPE.sub(".", _UNQUOTED_KEY.sub(r'\1"\2":', load_raw(name)))


def load_sample(name: str, repair: bool = False) -> dict[str, Any]:
    """The bare CloudTrail record of a sample, whatever shape it was published in.

    EventBridge envelopes yield their ``detail``; CloudTrail log files (``{"Records": [...]}``) and
    JSON arrays yield their first record. ``repair`` reads the invalid samples through ``repaired_raw``.
    """
    data: Any = json.loads(repaired_raw(name) if repair else load_raw(name))
    if isinstance(data, list):
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("Records"), list):
        data = data["Records"][0]
    if isinstance(data, dict) and "detail" in data and "detail-type" in data:
        data = data["detail"]
    if not isinstance(data, dict):
        raise ValueError(f"sample {name!r} does not hold a JSON object")
    return data


def load_envelope(name: str, repair: bool = False) -> dict[str, Any]:
    """A sample as EventBridge delivers it: the published envelope for ``eb_`` samples, else a new one."""
    data: Any = json.loads(repaired_raw(name) if repair else load_raw(name))
    if isinstance(data, dict) and "detail-type" in data:
        return data
    return eventbridge_envelope(load_sample(name, repair))


def eventbridge_envelope(
    record: Any,
    account: str | None = None,
    event_id: str | None = None,
    region: str | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    """Wrap a CloudTrail record the way EventBridge does for ``aws.signin`` events.

    Account, region and time default to the record's own values where it has them: EventBridge puts
    the region CloudTrail recorded the event in into ``region``. The detail-type follows the eventType.
    """
    rec = record if isinstance(record, dict) else {}
    service_event = rec.get("eventType") == "AwsServiceEvent"
    identity = rec.get("userIdentity")
    identity_account = identity.get("accountId") if isinstance(identity, dict) else None
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": SERVICE_EVENT_DETAIL_TYPE if service_event else DETAIL_TYPE,
        "source": "aws.signin",
        "account": account or rec.get("recipientAccountId") or identity_account or "111122223333",
        "time": time or rec.get("eventTime") or "2024-01-01T00:00:00Z",
        "region": region or rec.get("awsRegion") or "us-east-1",
        "resources": [],
        "detail": record,
    }


def sns_record(message: Any, topic_arn: str = TOPIC_ARN, message_id: str | None = None) -> dict[str, Any]:
    """One SNS delivery record; ``message`` is sent verbatim when it is a string, else as JSON."""
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{topic_arn}:{uuid.uuid4()}",
        "Sns": {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic_arn,
            "Subject": None,
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": "2024-06-02T19:41:41.123Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000.pem",
            "UnsubscribeUrl": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}",
            "MessageAttributes": {},
        },
    }


def sns_records(*events: Any, topic_arn: str = TOPIC_ARN) -> dict[str, Any]:
    """The Lambda event SNS sends for the given messages (dicts are JSON-encoded, strings sent as is)."""
    return {"Records": [sns_record(event, topic_arn=topic_arn) for event in events]}
