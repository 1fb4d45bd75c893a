"""SNS: the notification record a Lambda subscriber receives, and email subscriptions that need confirming.

Email. SNS sends an email subscriber a confirmation request first and delivers nothing until the subscriber
confirms it (ConfirmSubscription with the token of that request); then each message published to the
topic is emailed from no-reply@sns.amazonaws.com, with the publish's subject or "AWS Notification Message".
moto delivers nothing to email subscribers. The sandbox records both the confirmation requests and the
deliveries in the mailbox (``emails()``), and ConfirmSubscription checks the token.
https://docs.aws.amazon.com/sns/latest/dg/sns-email-notifications.html
https://docs.aws.amazon.com/sns/latest/api/API_ConfirmSubscription.html
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from moto.awslambda.utils import get_backend as get_lambda_backend
from moto.core.responses import ActionResult
from moto.sns.exceptions import SNSInvalidParameter
from moto.sns.models import SNSBackend, Subscription
from moto.sns.responses import SNSResponse
from moto.utilities.arns import parse_arn

from loginwatch_org.sandbox.behaviour._core import Patches
from loginwatch_org.sandbox.behaviour.lambda_async import invoke_async

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from loginwatch_org.sandbox.mailbox import SentEmail

PATCHES: Final = Patches()

SNS_SENDER: Final = "no-reply@sns.amazonaws.com"
_EMAIL_PROTOCOLS: Final = frozenset({"email", "email-json"})
_lock = threading.Lock()
_emails: list[SentEmail] = []
_tokens: dict[str, str] = {}  # confirmation token -> subscription ARN


def emails(account: str | None = None) -> list[SentEmail]:
    """What SNS emailed from topics of ``account`` (or of every account), oldest first."""
    with _lock:
        return [dict(sent) for sent in _emails if account is None or sent["account"] == account]  # type: ignore[misc]


@PATCHES.on_revert
def _forget_emails() -> None:
    with _lock:
        _emails.clear()
        _tokens.clear()


def _record(topic_arn: str, to: str, subject: str, text: str) -> None:
    from loginwatch_org.sandbox.mailbox import SentEmail

    sent = SentEmail(
        account=parse_arn(topic_arn).account,
        source=SNS_SENDER,
        to=[to],
        subject=subject,
        text=text,
        html=None,
        message_id=str(uuid.uuid4()),
    )
    with _lock:
        _emails.append(sent)


@PATCHES.wrap(SNSBackend, "subscribe")
def _make_subscribe(original: Any) -> Any:
    """An email subscription starts pending, and its endpoint gets the confirmation request."""

    @functools.wraps(original)
    def subscribe(self: SNSBackend, topic_arn: str, endpoint: str, protocol: str) -> Subscription:
        subscription: Subscription = original(self, topic_arn, endpoint, protocol)
        if protocol in _EMAIL_PROTOCOLS and not subscription.confirmed:
            token = uuid.uuid4().hex
            with _lock:
                _tokens[token] = subscription.arn
            _record(
                topic_arn,
                endpoint,
                "AWS Notification - Subscription Confirmation",
                f"You have chosen to subscribe to the topic:\n{topic_arn}\n\n"
                f"To confirm this subscription, call ConfirmSubscription with this token:\n{token}\n",
            )
        return subscription

    return subscribe


@PATCHES.replace(SNSResponse, "confirm_subscription")
def _confirm_subscription(self: SNSResponse) -> ActionResult:
    """ConfirmSubscription: the token of a confirmation request of that topic confirms its subscription."""
    topic_arn = str(self._get_param("TopicArn") or "")
    self.backend.get_topic(topic_arn)  # NotFound for a topic that does not exist
    with _lock:
        subscription_arn = _tokens.get(str(self._get_param("Token") or ""))
    subscription = self.backend.subscriptions.get(subscription_arn or "")
    if subscription is None or subscription.topic.arn != topic_arn:
        raise SNSInvalidParameter("Invalid parameter: Token")
    subscription.confirmed = True
    return ActionResult({"SubscriptionArn": subscription.arn})


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
        if self.protocol in _EMAIL_PROTOCOLS:
            _email(self, message, message_id, subject, message_attributes, message_structure)
            return
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
        # SNS invokes the function asynchronously: Lambda's retries and dead-letter queue apply.
        invoke_async(target, json.dumps(event))

    return publish


def _email(
    subscription: Subscription,
    message: str,
    message_id: str,
    subject: str | None,
    message_attributes: dict[str, Any] | None,
    message_structure: str | None,
) -> None:
    """A confirmed email subscriber receives the message (email-json: the notification JSON)."""
    if not subscription.confirmed:
        return
    matcher = subscription._filter_policy_matcher
    if matcher is not None and not matcher.matches(message_attributes, message):
        return
    if message_structure == "json":
        message = subscription._parse_message_structure(message, subscription.protocol)
    text = message
    if subscription.protocol == "email-json":
        text = json.dumps(
            {"Type": "Notification", "MessageId": message_id, "TopicArn": subscription.topic.arn, "Message": message}
        )
    _record(subscription.topic.arn, subscription.endpoint, subject or "AWS Notification Message", text)
