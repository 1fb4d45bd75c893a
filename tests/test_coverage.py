"""Coverage of the whole organisation, on the StackSets and Organizations doubles: accounts the config does not
list, accounts that join an OU after the first rollout, suspended and reinstated accounts, operations somebody else
ran on some instances, and status --verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from loginwatch_org import cli
from loginwatch_org.aws import session
from loginwatch_org.aws.organization import OrganizationReader, OrganizationScope
from loginwatch_org.aws.reader import StackSetReader
from loginwatch_org.config import Config, ConfigError, load_config
from loginwatch_org.plan import CreateInstances, Plan, UpdateInstances, account_overrides
from loginwatch_org.state import operation_id
from loginwatch_org.workflow import (
    UNWATCHED,
    AccountStatus,
    Clients,
    Pacing,
    Prepared,
    account_statuses,
    apply_units,
    make_executor,
    organization_scope,
    prepare,
    prepare_units,
    read_snapshot,
    unconverged,
    watched_accounts,
)
from tests.doubles.clients import double_clients, staging_clients
from tests.doubles.organizations import OrganizationsDouble
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, ROOT_ID, account_ids, config_for, organization

COUNT = 8
LISTED = 6  # the config lists the first six; the organisation has eight
OU = "ou-ab12-00000000"
DEFAULTS = {"Recipients": "security@example.com", "AlertOn": "all"}


class World:
    """One organisation seen through both doubles: StackSets deploys to it, Organizations reports its accounts."""

    def __init__(self, count: int = COUNT, **double: Any) -> None:
        layout = organization(count)
        self.stacksets = StackSetsDouble(layout, MANAGEMENT_ACCOUNT, polls_per_state=1, **double)
        names = {a: f"team-{i}" for i, a in enumerate(account_ids(count))}
        self.organizations = OrganizationsDouble(layout=layout, management_account=MANAGEMENT_ACCOUNT, names=names)

    @property
    def clients(self) -> Clients:
        """One command's clients: each reads the organisation afresh, once."""
        return staging_clients(self.stacksets, organizations=self.organizations)

    def plan(self, config: Config) -> Prepared:
        return prepare(config, self.clients)

    def rollout(self, config: Config, **kwargs: Any) -> Prepared:
        clients = self.clients
        executor = make_executor(config, clients, sleep=lambda _s: None)
        prepared = prepare(config, clients, executor=executor, **kwargs)
        executor.apply(prepared.plan)
        return prepared

    def rows(self, config: Config, *, verify: bool = False) -> dict[str, AccountStatus]:
        snapshot = read_snapshot(config, self.clients, verify=verify)
        return {row.account_id: row for row in account_statuses(config, snapshot)}

    def status_fails(self, config: Config) -> bool:
        """What `status` decides its exit code from."""
        snapshot = read_snapshot(config, self.clients)
        watched = watched_accounts(config, snapshot)
        return any(r.account_id in watched and r.needs_attention for r in account_statuses(config, snapshot))

    def add_account(self, account: str, ou: str = OU) -> list[str]:
        self.organizations.add_account(account, ou, name="vended")
        return self.stacksets.add_account(account, ou)

    def instances(self) -> dict[str, dict[str, Any]]:
        return self.stacksets.instances("loginwatch")


def listed_config(new_accounts: str = "defaults", permission_model: str = "service-managed") -> Config:
    config = config_for(COUNT, groups=3, permission_model=permission_model)
    settings = config.stack_set.model_copy(update={"new_accounts": new_accounts})
    return config.model_copy(update={"stack_set": settings, "accounts": config.accounts[:LISTED]})


def planned_accounts(plan: Plan) -> set[str]:
    return {a for step in plan.steps if isinstance(step, CreateInstances | UpdateInstances) for a in step.accounts}


UNLISTED = account_ids(COUNT)[LISTED:]


# -- accounts the config does not list ----------------------------------------------------------------------


def test_report_names_each_unlisted_account_with_a_line_that_pastes_into_the_config() -> None:
    world = World()
    config = listed_config("report")
    prepared = world.plan(config)
    assert planned_accounts(prepared.plan) == set(account_ids(COUNT)[:LISTED])  # never the management account
    lines = [w.split("add under accounts: ", 1)[1] for w in prepared.plan.warnings if "add under accounts" in w]
    assert [yaml.safe_load(line) for line in lines] == [[{"id": a, "name": "team-" + str(i)}] for i, a in
                                                        zip((6, 7), UNLISTED, strict=True)]  # fmt: skip
    assert all("NOT watched" in w for w in prepared.plan.warnings if "add under accounts" in w)

    world.rollout(config)
    assert set(world.instances()) == set(account_ids(COUNT)[:LISTED])
    rows = world.rows(config)
    assert {rows[a].status for a in UNLISTED} == {UNWATCHED}
    assert "nothing watches it" in rows[UNLISTED[0]].reason
    assert MANAGEMENT_ACCOUNT not in rows
    assert world.status_fails(config)

    # Pasting the lines in makes the organisation covered: the next rollout watches them and status passes.
    data = config.model_dump(mode="json", exclude_none=True)
    data["accounts"] += [item for line in lines for item in yaml.safe_load(line)]
    completed = Config.model_validate(data)
    world.rollout(completed)
    assert not world.status_fails(completed)


def test_defaults_watches_unlisted_accounts_with_the_default_recipients_then_converges() -> None:
    world = World()
    config = listed_config("defaults")
    prepared = world.plan(config)
    assert planned_accounts(prepared.plan) == set(account_ids(COUNT))
    assert any("watched with the default recipients" in w and UNLISTED[0] in w for w in prepared.plan.warnings)

    world.rollout(config)
    instances = world.instances()
    assert {a: instances[a]["overrides"] for a in UNLISTED} == {a: DEFAULTS for a in UNLISTED}
    assert not world.plan(config).plan.has_changes
    rows = world.rows(config)
    assert all(rows[a].in_sync and rows[a].name == f"team-{i}" for i, a in zip((6, 7), UNLISTED, strict=True))
    assert not world.status_fails(config)
    # --prune does not take a default-watched account's watch away: only enabled: false does.
    assert not world.plan(config).plan.steps
    assert not prepare(config, world.clients, prune=True).plan.steps


def test_a_config_account_the_organisation_lacks_is_skipped_not_failed() -> None:
    world = World()
    ghost = "555555555555"
    config = listed_config("report")
    data = config.model_dump(mode="json", exclude_none=True)
    data["accounts"].append({"id": ghost, "name": "ghost"})
    config = Config.model_validate(data)
    prepared = world.plan(config)
    assert prepared.plan.skipped_accounts == (ghost,)
    # The whole organisation was listed, so nobody described the ghost account one call at a time.
    assert world.organizations.count("describe_account") == 0


# -- an account that joins an OU after the first rollout ------------------------------------------------------


def test_an_account_vended_after_the_rollout_is_deployed_by_auto_deployment_and_counts_as_converged() -> None:
    world = World()
    config = listed_config("defaults")
    world.rollout(config)
    assert world.stacksets.operations("loginwatch")  # created with AutoDeployment on (new_accounts: defaults)
    vended = "100000000099"
    [auto] = world.add_account(vended)
    assert not auto.startswith("lw-")  # StackSets' own operation, not ours

    while_deploying = world.plan(config)
    assert vended in while_deploying.plan.waiting_accounts
    assert not planned_accounts(while_deploying.plan)

    world.stacksets.finish_all()
    world.stacksets.reset_calls()
    after = world.plan(config)
    assert not after.plan.has_changes, after.plan.steps
    # Its LastOperationId says nothing about overrides: it was described once, and found with the defaults.
    assert world.stacksets.count("describe_stack_instance") == 1
    assert world.rows(config)[vended].in_sync
    assert not world.status_fails(config)


def test_an_account_vended_under_report_is_unwatched_until_listed() -> None:
    world = World()
    config = listed_config("report")
    world.rollout(config)
    vended = "100000000099"
    assert world.add_account(vended) == []  # automatic deployment is off under report
    prepared = world.plan(config)
    assert any(vended in w and "NOT watched" in w for w in prepared.plan.warnings)
    assert world.rows(config)[vended].status == UNWATCHED
    assert world.status_fails(config)


def test_self_managed_plans_the_vended_account_with_the_defaults() -> None:
    world = World()
    config = listed_config("defaults", permission_model="self-managed")
    world.rollout(config)
    vended = "100000000099"
    world.add_account(vended)
    prepared = world.plan(config)
    [step] = prepared.plan.steps
    assert isinstance(step, CreateInstances) and step.accounts == (vended,) and step.overrides == DEFAULTS


def test_an_existing_stack_set_without_auto_deployment_is_named_with_the_console_path() -> None:
    world = World()
    world.rollout(listed_config("report"))
    prepared = world.plan(listed_config("defaults"))
    assert any("automatic deployment is off" in w and "Edit automatic deployment" in w for w in prepared.plan.warnings)


# -- suspended and reinstated ---------------------------------------------------------------------------------


def test_account_suspended_during_an_operation_is_left_out_then_retried_once_reinstated() -> None:
    world = World()
    config = listed_config("defaults")
    victim = account_ids(COUNT)[2]
    executor = make_executor(config, world.clients, sleep=lambda _s: None)
    prepared = prepare(config, world.clients, executor=executor)
    assert victim in planned_accounts(prepared.plan)
    # Suspended after the plan, while the operation runs: StackSets skips the account.
    world.organizations.set_state(victim, "SUSPENDED")
    world.stacksets.suspended_accounts.add(victim)
    executor.apply(prepared.plan)
    assert world.instances()[victim]["detailed_status"] == "SKIPPED_SUSPENDED_ACCOUNT"

    snapshot = read_snapshot(config, world.clients)
    assert victim not in unconverged(config, prepared.plan, snapshot)  # skipped, not failed
    row = world.rows(config)[victim]
    assert "SUSPENDED" in row.reason and not row.needs_attention
    assert not world.status_fails(config)
    suspended_plan = world.plan(config).plan
    assert victim not in planned_accounts(suspended_plan)
    assert any(victim in w and "SUSPENDED" in w for w in suspended_plan.warnings)

    # Reinstated: SKIPPED_SUSPENDED_ACCOUNT only records the past; Organizations' State decides.
    world.organizations.set_state(victim, "ACTIVE")
    world.stacksets.suspended_accounts.discard(victim)
    assert world.status_fails(config)
    retry = world.plan(config).plan
    assert planned_accounts(retry) == {victim}
    [change] = [c for step in retry.steps for c in step.changes]  # type: ignore[union-attr]
    assert "suspended" in change.reason
    world.rollout(config)
    assert world.instances()[victim]["status"] == "CURRENT"
    assert not world.plan(config).plan.has_changes
    assert not world.status_fails(config)


# -- operations somebody else ran -----------------------------------------------------------------------------


def test_console_operations_that_match_the_config_are_converged_and_others_are_redone() -> None:
    world = World()
    config = listed_config("report")
    world.rollout(config)
    watches = {t.account_id: t for t in config.targets()}
    same, other = account_ids(COUNT)[0], account_ids(COUNT)[1]
    client = world.stacksets.client()
    for account, overrides in ((same, account_overrides(watches[same])), (other, {"Recipients": "x@example.com"})):
        client.update_stack_instances(
            StackSetName="loginwatch",
            DeploymentTargets={"OrganizationalUnitIds": [ROOT_ID], "Accounts": [account],
                               "AccountFilterType": "INTERSECTION"},
            Regions=["us-east-1"],
            ParameterOverrides=[{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()],
        )  # fmt: skip
    world.stacksets.finish_all()
    prepared = world.plan(config)
    assert planned_accounts(prepared.plan) == {other}
    world.rollout(config)
    assert world.instances()[other]["overrides"] == account_overrides(watches[other])


def test_status_verify_trusts_the_instance_not_the_digest_an_operation_id_claims() -> None:
    world = World()
    config = listed_config("report")
    world.rollout(config)
    victim = account_ids(COUNT)[3]
    wanted = account_overrides(next(t for t in config.targets() if t.account_id == victim))
    # Anybody can choose an OperationId: this one claims the config's overrides and sets others.
    forged = operation_id("u", wanted, ["forged"])
    world.stacksets.client().update_stack_instances(
        StackSetName="loginwatch",
        OperationId=forged,
        DeploymentTargets={
            "OrganizationalUnitIds": [ROOT_ID],
            "Accounts": [victim],
            "AccountFilterType": "INTERSECTION",
        },
        Regions=["us-east-1"],
        ParameterOverrides=[{"ParameterKey": "Recipients", "ParameterValue": "attacker@example.net"}],
    )
    world.stacksets.finish_all()
    assert world.rows(config)[victim].in_sync  # the digest is believed

    world.stacksets.reset_calls()
    verified = world.rows(config, verify=True)
    assert world.stacksets.count("describe_stack_instance") == LISTED
    row = verified[victim]
    assert not row.in_sync and row.recipients_deployed == "attacker@example.net"
    assert "claims other overrides" in row.reason
    assert all(verified[a].in_sync for a in account_ids(COUNT)[:LISTED] if a != victim)


# -- reading the organisation -----------------------------------------------------------------------------------


def test_nested_ous_are_walked_and_sibling_ous_left_out() -> None:
    top, child, grandchild, sibling = "ou-ab12-10000000", "ou-ab12-20000000", "ou-ab12-30000000", "ou-ab12-40000000"
    deep = [f"2000000000{i:02d}" for i in range(45)]  # more than two pages of 20
    org = OrganizationsDouble(
        layout={ROOT_ID: [MANAGEMENT_ACCOUNT], top: ["200000000100"], child: [], grandchild: deep,
                sibling: ["200000000200"]},
        parents={child: top, grandchild: child},
        management_account=MANAGEMENT_ACCOUNT,
        empty_pages=True,
    )  # fmt: skip
    cfn = StackSetsDouble({ROOT_ID: [MANAGEMENT_ACCOUNT]}, MANAGEMENT_ACCOUNT).client()
    reader = StackSetReader(cfn, organization=OrganizationReader(org))
    snapshot = reader.read("loginwatch", scope=OrganizationScope((top,)))
    assert snapshot.organization is not None
    assert set(snapshot.organization.accounts) == {"200000000100", *deep}
    assert org.count("list_accounts") == 0
    # Each page holds at most 20 and an empty first page does not end a listing: per OU, that empty page and
    # the pages of its own accounts (top: 1, child: an empty one, grandchild: 45 accounts in 3).
    assert org.count("list_accounts_for_parent") == (1 + 1) + (1 + 1) + (1 + 3)


def test_a_rollout_reads_the_organisation_once_for_every_unit_and_its_final_status() -> None:
    world = World(count=45)  # three pages of 20
    config = listed_config("defaults")
    assert config.forward_regions()  # the forwarders are a second stack set over the same accounts
    OrganizationReader(world.organizations).accounts(organization_scope(config))
    one_listing = world.organizations.count()
    world.organizations.calls.clear()

    clients = world.clients
    pacing = Pacing(sleep=lambda _s: None)
    state = prepare_units(config, clients, only=["watch", "forwarders"], wait=True, pacing=pacing)
    outcomes = apply_units(config, clients, state, pacing)
    assert {outcome.key for outcome in outcomes} == {"watch", "forwarders"}
    assert all(outcome.snapshot is not None for outcome in outcomes)  # each unit's final status was read
    assert world.organizations.count() == one_listing

    # The next command reads it afresh: an account vended since is seen.
    world.add_account("200000009999")
    assert world.plan(config).snapshot.organization.accounts["200000009999"].state == "ACTIVE"  # type: ignore[union-attr]


def test_an_account_suspended_while_the_rollout_runs_is_read_again_and_reported_as_suspended() -> None:
    world = World()
    config = listed_config("defaults")
    victim = account_ids(COUNT)[2]
    clients = world.clients
    pacing = Pacing(sleep=lambda _s: None)
    state = prepare_units(config, clients, only=["watch"], wait=True, pacing=pacing)
    listing = world.organizations.count()
    world.organizations.set_state(victim, "SUSPENDED")
    world.stacksets.suspended_accounts.add(victim)
    [outcome] = apply_units(config, clients, state, pacing)
    assert world.instances()[victim]["detailed_status"] == "SKIPPED_SUSPENDED_ACCOUNT"
    assert outcome.problems == {}  # skipped, not failed
    assert outcome.snapshot is not None and outcome.snapshot.organization is not None
    assert outcome.snapshot.organization.state_of(victim) == "SUSPENDED"
    assert world.organizations.count() == 2 * listing  # read again, once


def test_an_organisation_that_refuses_to_be_read_leaves_coverage_unknown_not_the_plan_broken() -> None:
    world = World()

    def refuse(**_kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListAccounts")

    world.organizations.list_accounts = refuse  # type: ignore[method-assign]
    prepared = world.plan(listed_config("defaults"))
    assert planned_accounts(prepared.plan) == set(account_ids(COUNT)[:LISTED])
    assert any("could not read the organisation" in w for w in prepared.plan.warnings)


# -- the option --------------------------------------------------------------------------------------------------


def test_new_accounts_must_be_defaults_or_report(tmp_path: Path) -> None:
    data = config_for(2).model_dump(mode="json", exclude_none=True)
    data["stack_set"]["new_accounts"] = "ignore"
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "new_accounts" in text)
    assert error.value.problems == [
        f"{path}:{line}: stack_set.new_accounts: 'ignore' is not allowed; use one of 'defaults' or 'report'"
    ]


# -- through the CLI ----------------------------------------------------------------------------------------------


def test_status_exits_1_on_an_unwatched_account_and_verify_describes_every_instance(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    world = World()
    # STS answers for a member account: the management account's own stacks are out of this test's reach.
    monkeypatch.setattr(
        session, "client", double_clients(world.stacksets, caller="123456789012", organizations=world.organizations)
    )
    monkeypatch.setattr("time.sleep", lambda _seconds: None)
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(listed_config("report").model_dump(mode="json", exclude_none=True)))
    runner = CliRunner()
    assert runner.invoke(cli.app, ["rollout", "-c", str(path), "--yes"]).exit_code == 0
    result = runner.invoke(cli.app, ["status", "-c", str(path), "--wide"])
    assert result.exit_code == 1
    assert UNWATCHED in result.output and f'- {{id: "{UNLISTED[0]}", name: "team-6"}}' in result.output
    world.stacksets.reset_calls()
    world.organizations.calls.clear()
    verified = runner.invoke(cli.app, ["status", "-c", str(path), "--verify", "--json"])
    assert verified.exit_code == 1
    assert world.stacksets.count("describe_stack_instance") == LISTED
    # The watch read twice (planned, then verified) and the forwarders once: the organisation's one listing
    # (DescribeOrganization and a page of ListAccounts) serves all three.
    assert sorted(world.organizations.calls) == ["describe_organization", "list_accounts"]
