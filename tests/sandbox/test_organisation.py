"""The organisation the sandbox holds, and its mailbox."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.sandbox.emulator import (
    DEV,
    LAB,
    MANAGEMENT,
    ORGANISATION,
    OU_SANDBOXES,
    OU_WORKLOADS,
    PROD,
    ROOT,
    SENDER,
    SHARED,
    Sandbox,
)


def test_sandbox_holds_the_configured_organisation(sandbox: Sandbox) -> None:
    assert sandbox.state["management_account"] == MANAGEMENT
    management = sandbox.management()
    assert sandbox.client(management, "sts").get_caller_identity()["Account"] == MANAGEMENT
    organizations = sandbox.client(management, "organizations")
    assert [r["Id"] for r in organizations.list_roots()["Roots"]] == [ROOT]
    ous = organizations.list_organizational_units_for_parent(ParentId=ROOT)["OrganizationalUnits"]
    assert sorted(ou["Id"] for ou in ous) == [OU_WORKLOADS, OU_SANDBOXES]
    workloads = organizations.list_accounts_for_parent(ParentId=OU_WORKLOADS)["Accounts"]
    assert sorted(a["Id"] for a in workloads) == [DEV, PROD]
    in_root = organizations.list_accounts_for_parent(ParentId=ROOT)["Accounts"]
    assert sorted(a["Id"] for a in in_root) == sorted([MANAGEMENT, SHARED])
    names = {a["Id"]: a["Name"] for a in organizations.list_accounts()["Accounts"]}
    assert names == ORGANISATION["account_names"]
    cloudformation = sandbox.client(management, "cloudformation")
    assert cloudformation.describe_organizations_access()["Status"] == "ENABLED"

    member = sandbox.member(LAB)
    assert sandbox.client(member, "sts").get_caller_identity()["Account"] == LAB
    assert SENDER in sandbox.client(member, "ses").list_identities()["Identities"]
    assert sandbox.mailbox() == []


def test_mailbox_reads_every_way_of_sending(sandbox: Sandbox) -> None:
    member = sandbox.member(DEV)
    ses = sandbox.client(member, "ses")
    ses.send_email(
        Source=SENDER,
        Destination={"ToAddresses": ["a@example.com"]},
        Message={"Subject": {"Data": "text only"}, "Body": {"Text": {"Data": "plain"}}},
    )
    sandbox.client(member, "sesv2").send_email(
        FromEmailAddress=SENDER,
        Destination={"ToAddresses": ["b@example.com", "c@example.com"]},
        Content={
            "Simple": {
                "Subject": {"Data": "both parts"},
                "Body": {"Text": {"Data": "plain"}, "Html": {"Data": "<b>rich</b>"}},
            }
        },
    )
    raw = (
        f"From: {SENDER}\r\nTo: d@example.com\r\nSubject: raw\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        "--b\r\nContent-Type: text/html\r\n\r\n<i>rich</i>\r\n--b--\r\n"
    )
    ses.send_raw_email(RawMessage={"Data": raw.encode()})
    with pytest.raises(ClientError, match="not verified"):
        ses.send_email(
            Source="someone@else.example",
            Destination={"ToAddresses": ["a@example.com"]},
            Message={"Subject": {"Data": "rejected"}, "Body": {"Text": {"Data": "x"}}},
        )

    mail = sandbox.mailbox(DEV)
    assert [(m["subject"], m["to"], m["text"], m["html"]) for m in mail] == [
        ("text only", ["a@example.com"], "plain", None),
        ("both parts", ["b@example.com", "c@example.com"], "plain", "<b>rich</b>"),
        ("raw", ["d@example.com"], "plain", "<i>rich</i>"),
    ]
    assert {m["account"] for m in mail} == {DEV}
    assert {m["source"] for m in mail} == {SENDER}
    assert len({m["message_id"] for m in mail}) == 3
    assert sandbox.mailbox(PROD) == []
