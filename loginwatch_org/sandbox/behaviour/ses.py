"""SES: a sent message keeps both its text and its HTML part, for the sandbox's mailbox; and SES's sending
limits hold.

moto sends whatever it is asked to. AWS does not: each account and Region has a maximum sending rate and a
24-hour quota, both counted in recipients, and SES answers a send beyond either with a ``Throttling`` error
("Maximum sending rate exceeded." or "Daily message quota exceeded.") and drops the message
(https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html). An account still in the SES
sandbox may also send only to verified addresses and domains, 200 a day and one a second
(https://docs.aws.amazon.com/ses/latest/dg/request-production-access.html). The quota is the one
``prerequisites`` reports (``send_quota``, with its knobs to lower it). A message is allowed when nothing was
sent in the last second, whatever its recipients; the rate then counts every recipient.

The account-level suppression list is modelled (Put/Get/DeleteSuppressedDestination): SES accepts a send to a
listed address, counts it, and never delivers it, so it never reaches the mailbox.

A send that names a configuration set publishes SES's events about it to the set's SNS event destination, for
the event types it matches, when the topic's policy lets ses.amazonaws.com publish for that set
(https://docs.aws.amazon.com/ses/latest/dg/event-publishing-add-event-destination-sns.html; the event's shape:
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html): a Bounce with subtype
``OnAccountSuppressionList`` for a suppressed recipient, and the mailbox simulator's bounce and complaint for
``bounce@simulator.amazonses.com`` and ``complaint@simulator.amazonses.com``
(https://docs.aws.amazon.com/ses/latest/dg/send-an-email-from-console.html#send-email-simulator). Not modelled:
delivery, open and click events; addresses added to the suppression list by bounces.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from typing import Any, Final

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ses.exceptions import MessageRejectedError
from moto.ses.models import SESBackend
from moto.ses.responses import EmailResponse
from moto.sesv2 import urls as sesv2_urls
from moto.sesv2.responses import SESV2Response

from loginwatch_org.sandbox.behaviour._core import Patches
from loginwatch_org.sandbox.behaviour.prerequisites import send_quota

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()

_DAY_SECONDS: Final = 86400.0
_lock = threading.Lock()
# (account, Region) -> (when, recipients) of every message sent in the last 24 hours.
_sent: dict[tuple[str, str], deque[tuple[float, int]]] = defaultdict(deque)


# (account, Region) -> address (lower case) -> (reason, when): the account-level suppression list.
_suppressed: dict[tuple[str, str], dict[str, tuple[str, float]]] = defaultdict(dict)


@PATCHES.on_revert
def _forget_sends() -> None:
    with _lock:
        _sent.clear()
        _suppressed.clear()


def suppressed(account: str, region: str, address: str) -> bool:
    with _lock:
        return address.lower() in _suppressed[(account, region)]


class Throttling(ServiceException):
    code = "Throttling"


class NotFoundException(ServiceException):
    code = "NotFoundException"


class ConfigurationSetDoesNotExist(ServiceException):
    code = "ConfigurationSetDoesNotExist"


def check_limits(backend: SESBackend, recipients: list[str], moment: float) -> None:
    """Raise what SES raises when a send to ``recipients`` at ``moment`` is beyond the account's limits (the
    caller holds ``_lock``)."""
    quota = send_quota(backend.account_id, backend.region_name)
    if not quota.production:
        unverified = [address for address in recipients if not backend._is_verified_address(address)]
        if unverified:
            raise MessageRejectedError(
                "Email address is not verified. The following identities failed the check in region "
                f"{backend.region_name.upper()}: {', '.join(unverified)}"
            )
    window = _sent[(backend.account_id, backend.region_name)]
    while window and moment - window[0][0] >= _DAY_SECONDS:
        window.popleft()
    day = sum(count for _, count in window)
    second = sum(count for when, count in window if moment - when < 1.0)
    if day + len(recipients) > quota.max_24_hour_send:
        raise Throttling("Daily message quota exceeded.")
    if second and second + len(recipients) > quota.max_send_rate:
        raise Throttling("Maximum sending rate exceeded.")


@PATCHES.wrap(SESBackend, "send_email")
def _make_send_email(original: Any) -> Any:
    @functools.wraps(original)
    def send_email(self: SESBackend, source: str, subject: str, body: str, destinations: dict[str, list[str]]) -> Any:
        recipients = [address for addresses in destinations.values() for address in addresses]
        with _lock:
            moment = time.monotonic()
            check_limits(self, recipients, moment)
            message = original(self, source, subject, body, destinations)
            # Only a message SES accepted counts against the quota, a suppressed address included.
            _sent[(self.account_id, self.region_name)].append((moment, len(recipients)))
            listed = _suppressed[(self.account_id, self.region_name)]
            if recipients and all(address.lower() in listed for address in recipients):
                # SES accepts a send to an address on the account's suppression list and never delivers it
                # (https://docs.aws.amazon.com/ses/latest/dg/sending-email-suppression-list.html): it never
                # reaches the mailbox.
                self.sent_messages.remove(message)
        return message

    return send_email


def _record_parts(messages: list[Any], message_id: str, text: str | None, html: str | None) -> None:
    for message in reversed(messages):
        if getattr(message, "id", None) == message_id:
            message.text_part = text
            message.html_part = html
            return


@PATCHES.wrap(EmailResponse, "send_email")
def _make_ses_v1_send_email(original: Any) -> Any:
    """SendEmail keeps the text and the HTML body (moto keeps only one of them).

    https://docs.aws.amazon.com/ses/latest/APIReference/API_Body.html
    """

    @functools.wraps(original)
    def send_email(self: EmailResponse) -> Any:
        configuration_set = self._get_param("ConfigurationSetName")
        if configuration_set and configuration_set not in self.backend.config_sets:
            # SendEmail naming a configuration set the account does not have fails.
            # https://docs.aws.amazon.com/ses/latest/APIReference/API_SendEmail.html (ConfigurationSetDoesNotExist)
            raise ConfigurationSetDoesNotExist(f"Configuration set <{configuration_set}> does not exist.")
        result = original(self)
        if configuration_set and isinstance(result, ActionResult) and isinstance(result.result, dict):
            destinations = self._get_param("Destination", {}) or {}
            addressed = [
                str(address)
                for field in ("ToAddresses", "CcAddresses", "BccAddresses")
                for address in destinations.get(field) or []
            ]
            subject = str(self._get_param("Message.Subject.Data") or "")
            publish_delivery_notices(
                self.backend, str(configuration_set), str(self._get_param("Source") or ""), subject, addressed,
                str(result.result.get("MessageId")),
            )  # fmt: skip
        body = (self._get_param("Message") or {}).get("Body") or {}
        text = self._get_param("Message.Body.Text.Data") or (body.get("Text") or {}).get("Data")
        html = self._get_param("Message.Body.Html.Data") or (body.get("Html") or {}).get("Data")
        if isinstance(result, ActionResult) and isinstance(result.result, dict):
            _record_parts(self.backend.sent_messages, str(result.result.get("MessageId")), text, html)
        return result

    return send_email


@PATCHES.wrap(SESV2Response, "send_email")
def _make_ses_v2_send_email(original: Any) -> Any:
    """SESv2 SendEmail keeps the text and the HTML body (moto keeps only one of them).

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_Body.html
    """

    @functools.wraps(original)
    def send_email(self: SESV2Response) -> Any:
        result = original(self)
        try:
            body = json.loads(self.body)["Content"]["Simple"]["Body"]
            message_id = json.loads(result)["MessageId"]
        except (KeyError, TypeError, ValueError):
            return result
        text = (body.get("Text") or {}).get("Data")
        html = (body.get("Html") or {}).get("Data")
        _record_parts(self.sesv2_backend.core_backend.sent_messages, message_id, text, html)
        return result

    return send_email


@PATCHES.replace(SESV2Response, "put_suppressed_destination")
def _put_suppressed_destination(self: SESV2Response) -> str:
    """PutSuppressedDestination: add an address (reason BOUNCE or COMPLAINT) to the account-level list.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_PutSuppressedDestination.html
    """
    request = json.loads(self.body or "{}")
    with _lock:
        _suppressed[(self.current_account, self.region)][str(request["EmailAddress"]).lower()] = (
            str(request.get("Reason") or "BOUNCE"),
            time.time(),
        )
    return "{}"


def _address(self: SESV2Response) -> str:
    return urllib.parse.unquote(self.path.rstrip("/").rsplit("/", 1)[-1]).lower()


@PATCHES.replace(SESV2Response, "get_suppressed_destination")
def _get_suppressed_destination(self: SESV2Response) -> Any:
    """GetSuppressedDestination: the address's entry, or NotFoundException when it is not on the list.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_GetSuppressedDestination.html
    """
    address = _address(self)
    with _lock:
        entry = _suppressed[(self.current_account, self.region)].get(address)
    if entry is None:
        raise NotFoundException(f"Email address {address} does not exist on your suppression list.")
    reason, when = entry
    return json.dumps({"SuppressedDestination": {"EmailAddress": address, "Reason": reason, "LastUpdateTime": when}})


@PATCHES.replace(SESV2Response, "delete_suppressed_destination")
def _delete_suppressed_destination(self: SESV2Response) -> str:
    address = _address(self)
    with _lock:
        if _suppressed[(self.current_account, self.region)].pop(address, None) is None:
            raise NotFoundException(f"Email address {address} does not exist on your suppression list.")
    return "{}"


_SUPPRESSION_PATHS: Final = {
    "{0}/v2/email/suppression/addresses$": SESV2Response.dispatch,
    "{0}/v2/email/suppression/addresses/(?P<EmailAddress>[^/]+)$": SESV2Response.dispatch,
}
PATCHES.wrap(sesv2_urls, "url_paths")(lambda original: {**original, **_SUPPRESSION_PATHS})


_SIMULATED: Final = {
    "bounce@simulator.amazonses.com": ("Bounce", "Permanent", "General", "smtp; 550 5.1.1 user unknown"),
    "complaint@simulator.amazonses.com": ("Complaint", "", "", ""),
}


def publish_delivery_notices(
    backend: SESBackend, configuration_set: str, source: str, subject: str, recipients: list[str], message_id: str
) -> None:
    """SES's events about an accepted send, to the configuration set's SNS event destination."""
    listed = _suppressed[(backend.account_id, backend.region_name)]
    for address in recipients:
        if address.lower() in listed:
            event = ("Bounce", "Permanent", "OnAccountSuppressionList", "Amazon SES did not send the message to this "
                     "address because it is on the suppression list for your account.")  # fmt: skip
        elif address.lower() in _SIMULATED:
            event = _SIMULATED[address.lower()]
        else:
            continue
        try:
            _publish(backend, configuration_set, source, subject, address, message_id, event)
        except Exception:  # a notice that cannot be published is lost, as SES's would be; the send stands
            logger.exception("Publishing SES's %s event for %s failed", event[0], address)


def _publish(
    backend: SESBackend,
    configuration_set: str,
    source: str,
    subject: str,
    address: str,
    message_id: str,
    event: tuple[str, str, str, str],
) -> None:
    from moto.sns.models import sns_backends
    from moto.utilities.arns import parse_arn

    from loginwatch_org.sandbox.behaviour import _policies

    kind, bounce_type, subtype, diagnostic = event
    destination = backend.config_set_event_destination.get(configuration_set) or {}
    matching = [str(t).lower() for t in destination.get("MatchingEventTypes") or []]
    topic_arn = (destination.get("SnsDestination") or {}).get("TopicARN")
    if not topic_arn or not destination.get("Enabled", True) or kind.lower() not in matching:
        return
    topic = parse_arn(str(topic_arn))
    sns = sns_backends[topic.account][topic.region]
    set_arn = f"arn:aws:ses:{backend.region_name}:{backend.account_id}:configuration-set/{configuration_set}"
    policy = _policies.document(sns.get_topic(str(topic_arn)).policy)

    def is_ses(principal: Any) -> bool:
        return isinstance(principal, dict) and "ses.amazonaws.com" in _policies.values(principal.get("Service"))

    context = {"aws:SourceArn": set_arn, "aws:SourceAccount": backend.account_id}
    if not _policies.allowed([policy], "sns:Publish", str(topic_arn), context, is_ses):
        logger.warning("SES may not publish to %s for %s: its %s event is dropped", topic_arn, set_arn, kind)
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    mail = {
        "timestamp": stamp,
        "source": source,
        "messageId": message_id,
        "destination": [address],
        "commonHeaders": {"from": [source], "to": [address], "subject": subject},
        "tags": {"ses:configuration-set": [configuration_set]},
    }
    notice: dict[str, Any] = {"eventType": kind, "mail": mail}
    if kind == "Bounce":
        recipient = {"emailAddress": address, "action": "failed", "status": "5.1.1", "diagnosticCode": diagnostic}
        notice["bounce"] = {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [recipient],
            "timestamp": stamp,
            "feedbackId": message_id,
        }
    else:
        notice["complaint"] = {
            "complainedRecipients": [{"emailAddress": address}],
            "timestamp": stamp,
            "feedbackId": message_id,
            "complaintFeedbackType": "abuse",
        }
    sns.publish(message=json.dumps(notice), arn=str(topic_arn), subject=None)
