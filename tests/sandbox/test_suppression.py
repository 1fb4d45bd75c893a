"""SES in the sandbox (``behaviour/ses.py``): the suppression list, and the configuration set a send names."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.sandbox.emulator import DEV, SENDER, Sandbox


def test_a_suppressed_address_is_accepted_and_never_delivered(sandbox: Sandbox) -> None:
    session = sandbox.member(DEV)
    sesv2 = sandbox.client(session, "sesv2")
    ses = sandbox.client(session, "ses")
    ses.verify_email_identity(EmailAddress=SENDER)
    with pytest.raises(ClientError) as missing:
        sesv2.get_suppressed_destination(EmailAddress="gone@example.com")
    assert missing.value.response["Error"]["Code"] == "NotFoundException"

    sesv2.put_suppressed_destination(EmailAddress="gone@example.com", Reason="BOUNCE")
    listed = sesv2.get_suppressed_destination(EmailAddress="gone@example.com")["SuppressedDestination"]
    assert listed["EmailAddress"] == "gone@example.com" and listed["Reason"] == "BOUNCE"

    def send(to: str) -> str:
        message = {"Subject": {"Data": "hello"}, "Body": {"Text": {"Data": "hi"}}}
        return str(ses.send_email(Source=SENDER, Destination={"ToAddresses": [to]}, Message=message)["MessageId"])

    assert send("gone@example.com")  # accepted, as SES accepts it
    delivered = send("here@example.com")
    assert [email["to"] for email in sandbox.mailbox(DEV)] == [["here@example.com"]]
    assert sandbox.mailbox(DEV)[0]["message_id"] == delivered

    sesv2.delete_suppressed_destination(EmailAddress="gone@example.com")
    send("gone@example.com")
    assert sorted(email["to"][0] for email in sandbox.mailbox(DEV)) == ["gone@example.com", "here@example.com"]


def test_a_send_naming_a_configuration_set_the_account_lacks_is_refused(sandbox: Sandbox) -> None:
    ses = sandbox.client(sandbox.member(DEV), "ses")
    ses.verify_email_identity(EmailAddress=SENDER)
    message = {"Subject": {"Data": "hello"}, "Body": {"Text": {"Data": "hi"}}}
    with pytest.raises(ClientError) as refused:
        ses.send_email(
            Source=SENDER, Destination={"ToAddresses": ["a@example.com"]}, Message=message, ConfigurationSetName="gone"
        )
    assert refused.value.response["Error"]["Code"] == "ConfigurationSetDoesNotExist"
    ses.create_configuration_set(ConfigurationSet={"Name": "present"})
    sent = ses.send_email(
        Source=SENDER, Destination={"ToAddresses": ["a@example.com"]}, Message=message, ConfigurationSetName="present"
    )
    assert sent["MessageId"]
