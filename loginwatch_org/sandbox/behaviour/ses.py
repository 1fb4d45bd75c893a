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
listed address, counts it, and never delivers it, so it never reaches the mailbox. Not modelled: bounces and
complaints as events, and addresses added to the list by them.
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
