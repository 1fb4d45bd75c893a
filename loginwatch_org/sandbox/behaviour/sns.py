"""SNS: the notification record a Lambda subscriber receives."""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

from moto.awslambda.utils import get_backend as get_lambda_backend
from moto.sns.models import Subscription
from moto.utilities.arns import parse_arn

from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()


@PATCHES.wrap(Subscription, "publish")
def _make_subscription_publish(original: Any) -> Any:
    """A Lambda subscriber gets the real notification: its topic and subscription ARNs, message id,
    timestamp, subject (null when there is none) and message attributes.

    moto hands every function the same fixed sample record (``arn:aws:sns:EXAMPLE``, subject
    ``TestInvoke``, sample attributes), and looks the function up in the topic's account.
    https://docs.aws.amazon.com/lambda/latest/dg/with-sns.html
    """

    @functools.wraps(original)
    def publish(
        self: Subscription,
        message: str,
        message_id: str,
        subject: str | None = None,
        message_attributes: dict[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
    ) -> None:
        if self.protocol != "lambda":
            original(
                self,
                message,
                message_id,
                subject,
                message_attributes,
                group_id,
                deduplication_id,
                message_structure,
            )
            return
        # The subscription's filter policy and per-protocol messages, exactly as moto applies them.
        matcher = self._filter_policy_matcher
        if matcher is not None and not matcher.matches(message_attributes, message):
            return
        if message_structure == "json":
            message = self._parse_message_structure(message, self.protocol)
        function = parse_arn(self.endpoint)
        name, _, qualifier = function.resource_id.partition(":")
        sns_url = f"https://sns.{self.topic.arn.split(':')[3]}.amazonaws.com"
        timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        notification = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": self.topic.arn,
            "Subject": subject,
            "Message": message,
            "Timestamp": timestamp,
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": f"{sns_url}/SimpleNotificationService-sandbox.pem",
            "UnsubscribeUrl": f"{sns_url}/?Action=Unsubscribe&SubscriptionArn={self.arn}",
            "MessageAttributes": {
                key: {"Type": value.get("Type"), "Value": value.get("Value")}
                for key, value in (message_attributes or {}).items()
            },
        }
        event = {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": self.arn,
                    "Sns": notification,
                }
            ]
        }
        backend = get_lambda_backend(function.account, function.region)
        target = backend._lambdas.get_function_by_name_or_arn_with_qualifier(name, qualifier or None)
        target.invoke(json.dumps(event), {}, {})

    return publish
