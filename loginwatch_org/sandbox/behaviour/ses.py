"""SES: a sent message keeps both its text and its HTML part, for the sandbox's mailbox."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any, Final

from moto.core.responses import ActionResult
from moto.ses.responses import EmailResponse
from moto.sesv2.responses import SESV2Response

from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()


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
