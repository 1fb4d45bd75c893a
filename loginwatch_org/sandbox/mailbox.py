"""The sandbox's mailbox: every email SES accepted, and every email SNS sent to an email subscriber, per account.

SES has no API to read back what was sent, so the sandbox serves the messages moto's SES keeps (one list
per account and Region), and those the sandbox's SNS sent (``behaviour.sns``), at
``GET <endpoint>/moto-api/sandbox/mailbox[?account=ID]``. ``install_route()`` adds that page to the sandbox
(before it starts serving); ``read_mailbox()`` fetches it from any process.
"""

from __future__ import annotations

import email
import email.policy
import json
import urllib.parse
import urllib.request
from email.message import EmailMessage
from typing import Any, Final, TypedDict

__all__ = ["MAILBOX_PATH", "SentEmail", "collect", "install_route", "read_mailbox"]

MAILBOX_PATH: Final = "/moto-api/sandbox/mailbox"


class SentEmail(TypedDict):
    """One email SES accepted."""

    account: str
    source: str
    to: list[str]
    subject: str | None
    text: str | None
    html: str | None
    message_id: str


def read_mailbox(endpoint_url: str, account: str | None = None, *, timeout: float = 10.0) -> list[SentEmail]:
    """The emails SES accepted in the sandbox at ``endpoint_url`` (one account, or all), oldest first
    within each account."""
    url = endpoint_url.rstrip("/") + MAILBOX_PATH
    if account is not None:
        url += "?" + urllib.parse.urlencode({"account": account})
    with urllib.request.urlopen(url, timeout=timeout) as response:
        document = json.loads(response.read().decode("utf-8"))
    messages: list[SentEmail] = document["messages"]
    return messages


def one_per_email(sent: list[SentEmail]) -> list[SentEmail]:
    """SES messages as the emails they are: the notifier sends each email once per recipient, so messages of
    the same sender, subject and text become one email to all their recipients (the first message's id)."""
    emails: dict[tuple[str, str, str | None, str | None], SentEmail] = {}
    for message in sent:
        key = (message["account"], message["source"], message["subject"], message["text"])
        if key in emails:
            emails[key]["to"] = [*emails[key]["to"], *message["to"]]
        else:
            emails[key] = {**message, "to": list(message["to"])}
    return list(emails.values())


def collect(account: str | None = None) -> list[SentEmail]:
    """The emails SES accepted and SNS sent to email subscribers in this process's emulator (one account, or
    all)."""
    from moto.ses.models import ses_backends

    from loginwatch_org.sandbox.behaviour import sns

    found: list[SentEmail] = sns.emails(account)
    for account_id, regions in list(ses_backends.items()):
        if account is not None and account_id != account:
            continue
        for region in list(regions.keys()):
            for message in list(regions[region].sent_messages):
                described = _describe(account_id, message)
                if described is not None:
                    found.append(described)
    return found


def install_route() -> None:
    """Serve the mailbox from the sandbox (call before the server handles its first request)."""
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + MAILBOX_PATH + "$"] = _serve


def _serve(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    query = urllib.parse.parse_qs(urllib.parse.urlparse(full_url).query)
    accounts = query.get("account")
    account = accounts[0] if accounts else None
    body = json.dumps({"messages": collect(account)})
    return 200, {"Content-Type": "application/json"}, body


def _describe(account: str, message: Any) -> SentEmail | None:
    message_id = str(getattr(message, "id", ""))
    if hasattr(message, "raw_data"):
        return _describe_raw(account, message_id, message.source, message.raw_data)
    if not hasattr(message, "subject"):
        # Templated messages: moto keeps the template name, not the rendered email.
        return None
    destinations = message.destinations or {}
    body = message.body
    # The sandbox records both parts of a message; without that, moto keeps the HTML part if
    # there was one, else the text.
    text = getattr(message, "text_part", None)
    html = getattr(message, "html_part", None)
    if not hasattr(message, "text_part"):
        looks_html = isinstance(body, str) and body.lstrip().startswith("<")
        text, html = (None, body) if looks_html else (body, None)
    return SentEmail(
        account=account,
        source=str(message.source),
        to=list(destinations.get("ToAddresses") or []),
        subject=message.subject,
        text=text,
        html=html,
        message_id=message_id,
    )


def _describe_raw(account: str, message_id: str, source: str | None, raw: str) -> SentEmail:
    parsed = email.message_from_string(raw, policy=email.policy.default)
    text = html = None
    if isinstance(parsed, EmailMessage):
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
        text = text_part.get_content() if text_part is not None else None
        html = html_part.get_content() if html_part is not None else None
    to = [address.strip() for address in str(parsed.get("To", "")).split(",") if address.strip()]
    return SentEmail(
        account=account,
        source=str(source or parsed.get("From", "")),
        to=to,
        subject=parsed.get("Subject"),
        text=text,
        html=html,
        message_id=message_id,
    )
