"""Every account sending for itself: SES's notice about an alert it accepted but could not deliver (here a
recipient on the account's suppression list) lands in the watch's dead-letter queue, raises its alarm, and
``dead-letters`` names the address; a replay leaves it, since there is nothing to send again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import own_ses_example_text
from tests.test_sandbox_cli import Workspace, _workspace, member_client

ACCOUNT = "111122223333"  # payments-prod: payments-oncall@example.com and security@example.com


@pytest.fixture(scope="module")
def own_ses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, Path]]:
    with _workspace(tmp_path_factory.mktemp("notices") / "ws") as workspace:
        config = workspace.config(text=own_ses_example_text())
        workspace.up(config)
        rollout = workspace.run("rollout", "--sandbox", "--yes", "-c", str(config))
        assert rollout.returncode == 0, rollout.stdout + rollout.stderr
        yield workspace, config


def test_a_suppressed_recipients_bounce_notice_is_a_dead_letter_naming_the_address(
    own_ses: tuple[Workspace, Path],
) -> None:
    workspace, config = own_ses
    state = json.loads(workspace.state_file.read_text(encoding="utf-8"))
    member_client(state, ACCOUNT, "sesv2").put_suppressed_destination(
        EmailAddress="payments-oncall@example.com", Reason="BOUNCE"
    )
    sent = workspace.run("simulate-login", ACCOUNT, "--identity", "root", "--sandbox", "--json", "-c", str(config))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    # SES accepted both sends; only security@example.com's reaches a mailbox.
    assert [email["to"] for email in json.loads(sent.stdout)["emails"]] == [["security@example.com"]]

    deadline = time.monotonic() + 20
    while True:
        listed = workspace.run("dead-letters", ACCOUNT, "--json", "--sandbox", "-c", str(config))
        document = json.loads(listed.stdout)
        if document["waiting"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert listed.returncode == 1, listed.stdout + listed.stderr
    [queue] = document["queues"]
    [letter] = queue["letters"]
    assert letter["writer"] == "ses"
    assert letter["recipients"] == ["payments-oncall@example.com"]
    assert "SES Bounce (Permanent, OnAccountSuppressionList)" in letter["reason"]
    assert "bounce of alert" in letter["summary"] and "[ROOT]" in letter["summary"]

    [alarm] = member_client(state, ACCOUNT, "cloudwatch").describe_alarms()["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM" or "ALARM -> OK" in alarm["StateReason"], alarm["StateReason"]

    replayed = workspace.run("dead-letters", ACCOUNT, "--replay", "--sandbox", "-c", str(config))
    assert replayed.returncode == 1
    assert "nothing to send again: fix or replace the address" in " ".join(replayed.stdout.split())
    assert (
        json.loads(workspace.run("dead-letters", ACCOUNT, "--json", "--sandbox", "-c", str(config)).stdout)["waiting"]
        == 1
    )
    member_client(state, ACCOUNT, "sesv2").delete_suppressed_destination(EmailAddress="payments-oncall@example.com")


def test_status_verify_reads_each_accounts_suppression_list(own_ses: tuple[Workspace, Path]) -> None:
    workspace, config = own_ses
    state = json.loads(workspace.state_file.read_text(encoding="utf-8"))
    ses = member_client(state, "333344445555", "sesv2")
    address = "data-team@example.com"  # data-platform's own recipient
    ses.put_suppressed_destination(EmailAddress=address, Reason="COMPLAINT")
    try:
        # Without --verify, status reads no member's SES (a role and calls per account): it cannot know.
        quick = workspace.run("status", "--sandbox", "--json", "-c", str(config))
        assert all(not row.get("suppressed_recipients") for row in json.loads(quick.stdout))
        verified = workspace.run("status", "--verify", "--sandbox", "--json", "-c", str(config))
        assert verified.returncode == 1, verified.stdout + verified.stderr
        rows = {row["account_id"]: row for row in json.loads(verified.stdout) if row["unit"] == "watch"}
        assert rows["333344445555"]["suppressed_recipients"] == {address: "COMPLAINT"}
        # The same address elsewhere is another account's list: not suppressed there.
        assert {a for a, row in rows.items() if row["suppressed_recipients"]} == {"333344445555"}
    finally:
        ses.delete_suppressed_destination(EmailAddress=address)
