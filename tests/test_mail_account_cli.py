"""One mail account for the whole organisation, through the real command line against the sandbox: the rollout
deploys the mail stack, every member watch assumes its sending role, and a member's sign-in is mailed by it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loginwatch_org.config import load_config
from tests.conftest import own_ses_example_text
from tests.test_sandbox_cli import Workspace, _emails, _workspace

# The sandbox's caller is the management account, so it is also the mail account here: plain stacks are
# deployed only with the credentials of the account that holds them.
MAIL_DELIVERY = """delivery:
  sender: alerts@example.com
  mail_account: "999988887777"
  ses_identity_arn: arn:aws:ses:us-east-1:999988887777:identity/example.com
  alarm_recipients: [oncall@example.com]
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with _workspace(tmp_path / "ws") as created:
        yield created


def test_a_member_sign_in_is_mailed_through_the_mail_account(workspace: Workspace) -> None:
    example = own_ses_example_text()
    sender_line = next(line for line in example.splitlines(keepends=True) if line.startswith("  sender:"))
    config = workspace.config(text=example.replace("delivery:\n" + sender_line, MAIL_DELIVERY))
    mail = load_config(config).delivery.mail_account
    assert mail == "999988887777"
    workspace.up(config)

    plan = workspace.run("plan", "--sandbox", "--only", "mail", "-c", str(config))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "loginwatch-mail" in plan.stdout

    rollout = workspace.run("rollout", "--sandbox", "--yes", "-c", str(config))
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr

    # The sender is verified in the mail account only: a member's watch that sent with its own SES would be
    # refused, so the email proves the member assumed the mail account's role.
    signed_in = workspace.run("simulate-login", "111122223333", "--identity", "root", "--sandbox", "-c", str(config))
    assert signed_in.returncode == 0, signed_in.stderr
    [email] = _emails(signed_in.stdout)
    assert email.sender == "alerts@example.com"
    assert email.to == ["payments-oncall@example.com", "security@example.com"]
    assert email.subject.startswith("[ROOT]")

    # A converged organisation, mail stack included, plans nothing.
    again = workspace.run("plan", "--sandbox", "--detailed-exitcode", "-c", str(config))
    assert again.returncode == 0, again.stdout + again.stderr
