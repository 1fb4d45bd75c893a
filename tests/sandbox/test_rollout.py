"""The product's own rollout engine against the sandbox, where StackSets behaviours decide what a rerun sees."""

from __future__ import annotations

from typing import Any

import pytest

from loginwatch_org.config import Config
from loginwatch_org.errors import RolloutInterrupted
from loginwatch_org.sandbox import control
from loginwatch_org.sandbox.simulate import simulate_login
from loginwatch_org.workflow import Clients, make_executor, prepare
from tests.sandbox.emulator import DEV, LAB, LAB2, MANAGEMENT, PROD, ROOT, SENDER, SHARED, Sandbox

NEW_SENDER = "new-alerts@example.com"
MEMBERS = [DEV, PROD, LAB, LAB2, SHARED]


def config(sender: str) -> Config:
    """Three recipient groups, so a stack set update is followed by two more operations."""
    groups = {DEV: "a", PROD: "a", LAB: "b", LAB2: "b", SHARED: "c"}
    return Config.model_validate(
        {
            "stack_set": {"name": "loginwatch", "permission_model": "service-managed", "organizational_units": [ROOT]},
            "delivery": {"sender": sender},
            "defaults": {"recipients": ["security@example.com"]},
            "management_account": {"id": MANAGEMENT, "name": "management"},
            "accounts": [
                {"id": account, "name": f"acct-{account}", "recipients": [f"team-{group}@example.com"]}
                for account, group in groups.items()
            ],
        }
    )


def clients(sandbox: Sandbox) -> Clients:
    management = sandbox.management()
    return Clients(
        sandbox.client(management, "cloudformation"),
        sandbox.client(management, "organizations"),
        sandbox.client(management, "sts"),
        s3_for=lambda _region: sandbox.client(management, "s3"),
    )


def rollout(sandbox: Sandbox, wanted: Config, progress: Any = None) -> list[str]:
    """Plan and apply as ``loginwatch-org rollout --yes`` does; the operations submitted."""
    executor = make_executor(wanted, clients(sandbox), progress=progress)
    prepared = prepare(wanted, clients(sandbox), executor=executor)
    result = executor.apply(prepared.plan)
    assert result.failed_accounts == []
    return [operation.operation_id for operation in result.operations]


def control_sandbox(sandbox: Sandbox) -> control.Sandbox:
    state = sandbox.state
    return control.Sandbox(
        endpoint_url=sandbox.endpoint_url,
        pid=state["pid"],
        management_account=state["management_account"],
        access_key_id=state["credentials"]["aws_access_key_id"],
        secret_access_key=state["credentials"]["aws_secret_access_key"],
        member_role_name=state["member_role_name"],
        accounts=tuple(state["accounts"]),
        state_file=sandbox.state_file,
    )


class Interrupt:
    """A progress callback that presses Ctrl-C once the first operation has been submitted."""

    def __init__(self) -> None:
        self.submissions = 0

    def __call__(self, message: str) -> None:
        if "account(s), operation " in message:
            self.submissions += 1
            if self.submissions == 2:
                raise KeyboardInterrupt


def test_rollout_interrupted_between_operations_converges_on_rerun(sandbox: Sandbox) -> None:
    rollout(sandbox, config(SENDER))
    for account in MEMBERS:
        # The new sender is verified (as the admin would before changing it), so only the rollout decides.
        sandbox.client(sandbox.member(account), "ses").verify_email_identity(EmailAddress=NEW_SENDER)

    changed = config(NEW_SENDER)
    interrupt = Interrupt()
    with pytest.raises(RolloutInterrupted) as interrupted:
        rollout(sandbox, changed, progress=interrupt)
    assert interrupt.submissions == 2  # one operation went out: the stack set update of one group
    assert len(interrupted.value.submitted) == 1  # and the interruption names it, to be resumed

    # AWS marks every instance OUTDATED before the update reaches its targets: the others stay behind.
    cloudformation = clients(sandbox).cloudformation
    summaries = cloudformation.list_stack_instances(StackSetName="loginwatch")["Summaries"]
    statuses = {summary["Account"]: summary["Status"] for summary in summaries}
    assert sorted(statuses.values()).count("OUTDATED") >= 2, statuses

    assert rollout(sandbox, changed), "the rerun updates the instances the interrupted run left behind"
    assert prepare(changed, clients(sandbox)).plan.steps == ()
    summaries = cloudformation.list_stack_instances(StackSetName="loginwatch")["Summaries"]
    assert {summary["Account"]: summary["Status"] for summary in summaries} == dict.fromkeys(MEMBERS, "CURRENT")
    for account in MEMBERS:
        [email] = simulate_login(control_sandbox(sandbox), account, "root").emails
        assert email["source"] == NEW_SENDER, account
