"""Every deployment unit behind one plan: the member watch and forwarders stack sets on the StackSets double, the
management account's plain stacks on moto in-process, planned and applied by the same loop the commands use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from loginwatch_org.config import Config
from loginwatch_org.plan import (
    CreateInstances,
    CreateStackSet,
    DeleteInstances,
    Plan,
    forwarders_unit,
    make_plan,
    watch_unit,
)
from loginwatch_org.stack_plan import CreateStack, DeleteStack, StackPlan
from loginwatch_org.state import Snapshot
from loginwatch_org.units import DeploymentPlan, UnitPlan, selected_units
from loginwatch_org.workflow import (
    Clients,
    DeploymentState,
    Pacing,
    UnitOutcome,
    apply_units,
    prepare_removal,
    prepare_units,
    unit_template,
)
from tests.doubles.clients import moto_with_bucket_policies
from tests.doubles.s3 import BotoS3Reader
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, account_ids, config_for, organization
from tests.test_stack_plan import TEMPLATES

# moto deploys only the resource types it knows and warns about the rest; the engine is what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

MOTO_ACCOUNT = "123456789012"  # what moto's STS says the credentials belong to
FORWARD_FROM = ["eu-west-1", "us-east-2", "ap-southeast-2"]
FORWARDERS = "loginwatch-forwarders"
READ_PREFIXES = ("Describe", "List", "Get")
SESSION = boto3.Session()


def org_config(count: int, groups: int, *, management: str | None = MOTO_ACCOUNT) -> Config:
    config = config_for(count, groups=groups, stack_set_extra={"forward_from": FORWARD_FROM})
    if management is None:
        return config.model_copy(update={"management_account": None})
    assert config.management_account is not None
    return config.model_copy(
        update={"management_account": config.management_account.model_copy(update={"id": management})}
    )


@dataclass
class Org:
    """A delegated administrator or management account: StackSets on the double, its own plain stacks on moto."""

    double: StackSetsDouble
    stack_calls: list[tuple[str, str]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    _clients: dict[str, Any] = field(default_factory=dict)

    def cloudformation_for(self, region: str) -> Any:
        if region not in self._clients:
            client = SESSION.client("cloudformation", region_name=region)
            client.meta.events.register(
                "provide-client-params.cloudformation",
                lambda model, **_: self.stack_calls.append((region, model.name)),
            )
            self._clients[region] = client
        return self._clients[region]

    @property
    def clients(self) -> Clients:
        # The watch's body is staged in (moto's) S3, where the double reads it back as CloudFormation would.
        s3 = SESSION.client("s3", region_name="us-east-1")
        self.double.s3 = BotoS3Reader(s3)
        return Clients(
            self.double.client(),
            None,
            SESSION.client("sts", region_name="us-east-1"),
            self.cloudformation_for,
            lambda region: SESSION.client("s3", region_name=region),
        )

    @property
    def pacing(self) -> Pacing:
        return Pacing(sleep=self.sleeps.append)

    def plan(self, config: Config, **kwargs: Any) -> DeploymentState:
        return prepare_units(config, self.clients, registry=TEMPLATES, pacing=self.pacing, **kwargs)

    def rollout(self, config: Config, **kwargs: Any) -> list[UnitOutcome]:
        state = prepare_units(config, self.clients, registry=TEMPLATES, pacing=self.pacing, wait=True, **kwargs)
        outcomes = apply_units(config, self.clients, state, self.pacing)
        assert all(outcome.problems == {} for outcome in outcomes), [o.problems for o in outcomes]
        return outcomes

    def stack_writes(self) -> list[tuple[str, str]]:
        return [(region, name) for region, name in self.stack_calls if not name.startswith(READ_PREFIXES)]


@pytest.fixture
def org() -> Iterator[Org]:
    with moto_with_bucket_policies():
        yield Org(StackSetsDouble(organization(24), MANAGEMENT_ACCOUNT, polls_per_state=1))


def operations(outcomes: list[UnitOutcome], key: str) -> int:
    return sum(len(o.result.operations) for o in outcomes if o.key == key and o.result is not None)


# -- the forwarders: one operation for the whole organisation ----------------------------------------------------


@pytest.mark.parametrize(("count", "groups"), [(24, 1), (24, 5), (24, 24)])
def test_forwarders_cost_one_operation_whatever_the_recipient_groups(org: Org, count: int, groups: int) -> None:
    config = org_config(count, groups)
    outcomes = org.rollout(config, only=["watch", "forwarders"])
    assert operations(outcomes, "watch") == groups  # the watch: one operation per recipient group
    assert operations(outcomes, "forwarders") == 1
    regions = config.forward_regions()
    assert regions == ("ap-southeast-2", "eu-west-1", "us-east-2")
    for region in regions:
        instances = org.double.instances(FORWARDERS, region)
        assert set(instances) == set(account_ids(count))
        assert all(i["status"] == "CURRENT" and i["overrides"] == {} for i in instances.values())


def test_the_forwarders_first_plan_as_a_whole_value() -> None:
    config = org_config(3, 2)
    unit = forwarders_unit(config)
    body, parameters = unit_template(config, unit, TEMPLATES)
    plan = make_plan(config, body, parameters, Snapshot(None), unit=unit)
    accounts = tuple(account_ids(3))
    assert plan.steps == (
        # The forwarder declares no shared parameter: its alarm topic is regional (RegionalAlarmAction).
        CreateStackSet(FORWARDERS, {}),
        CreateInstances(
            plan.steps[1].operation_id,  # type: ignore[union-attr]
            accounts,
            ("ap-southeast-2", "eu-west-1", "us-east-2"),
            {},
            plan.steps[1].changes,  # type: ignore[union-attr]
        ),
    )
    assert [change.reason for change in plan.steps[1].changes] == ["new stack instance"] * 3
    assert plan.unit == "forwarders" and plan.stack_set == FORWARDERS


def test_the_forwarders_unit_copies_the_stack_set_settings_with_its_own_name_and_regions() -> None:
    config = org_config(3, 2)
    watch, forwarders = watch_unit(config), forwarders_unit(config)
    assert (watch.name, watch.regions, watch.template) == ("loginwatch", ("us-east-1",), "watch")
    assert (forwarders.name, forwarders.regions, forwarders.template) == (
        FORWARDERS,
        ("ap-southeast-2", "eu-west-1", "us-east-2"),
        "forwarder",
    )
    assert forwarders.settings.organizational_units == watch.settings.organizational_units
    assert forwarders.desired_overrides(config) == {account: {} for account in account_ids(3)}


# -- a converged rerun writes nothing, in every unit ------------------------------------------------------------


def test_a_first_rollout_covers_every_unit_and_a_rerun_writes_nothing(org: Org) -> None:
    config = org_config(24, 4)
    first = org.rollout(config)
    assert [o.key for o in first] == ["watch", "forwarders", "management"]
    management = next(o for o in first if o.key == "management")
    assert [(r.name, r.region, r.action, r.ok) for r in management.stacks] == [
        ("loginwatch-watch", "us-east-1", "create-stack", True),
        ("loginwatch-forwarder", "ap-southeast-2", "create-stack", True),
        ("loginwatch-forwarder", "eu-west-1", "create-stack", True),
        ("loginwatch-forwarder", "us-east-2", "create-stack", True),
    ]

    org.double.reset_calls()
    org.stack_calls.clear()
    again = org.plan(config)
    assert not again.plan.has_changes and again.plan.operation_count == 0
    assert [(u.key, u.has_changes) for u in again.plan.units] == [
        ("watch", False),
        ("forwarders", False),
        ("management", False),
    ]
    assert apply_units(config, org.clients, again, org.pacing) == []
    assert org.double.count(kind="write") == 0
    assert org.stack_writes() == []


# -- the management account -------------------------------------------------------------------------------------


def test_only_management_touches_no_stack_set(org: Org) -> None:
    config = org_config(24, 4)
    outcomes = org.rollout(config, only=["management"])
    assert [o.key for o in outcomes] == ["management"]
    assert org.double.calls == []  # not even a read
    assert ("us-east-1", "CreateStack") in org.stack_writes()
    assert not org.plan(config, only=["management"]).plan.has_changes


def test_a_delegated_administrator_plans_the_management_account_as_not_covered(org: Org) -> None:
    config = org_config(24, 4, management="999900000000")  # not the account these credentials belong to
    state = org.plan(config)
    management = state.plan.unit("management")
    assert management is not None and isinstance(management.plan, StackPlan)
    assert management.plan.steps == () and not management.has_changes
    assert management.not_covered is not None
    assert "account 123456789012" in management.not_covered and "--profile" in management.not_covered
    assert org.stack_calls == []  # nothing read in an account that is not the management account
    assert state.plan.unit("watch") is not None and state.plan.has_changes  # the member units go ahead


def test_removing_the_management_account_from_the_config_needs_prune(org: Org) -> None:
    org.rollout(org_config(24, 4), only=["management"])
    without = org_config(24, 4, management=None)
    kept = org.plan(without, only=["management"]).plan.unit("management")
    assert kept is not None and isinstance(kept.plan, StackPlan)
    assert kept.plan.steps == () and len(kept.plan.kept) == 4
    org.stack_calls.clear()
    assert apply_units(without, org.clients, org.plan(without, only=["management"]), org.pacing) == []
    assert org.stack_writes() == []

    pruned = org.plan(without, only=["management"], prune=True).plan.unit("management")
    assert pruned is not None and isinstance(pruned.plan, StackPlan)
    assert [(type(s), s.region) for s in pruned.plan.steps] == [
        (DeleteStack, "us-east-1"),
        (DeleteStack, "ap-southeast-2"),
        (DeleteStack, "eu-west-1"),
        (DeleteStack, "us-east-2"),
    ]
    org.rollout(without, only=["management"], prune=True)
    assert not org.plan(without, only=["management"], prune=True).plan.has_changes


def test_remove_deletes_every_unit_forwarders_before_the_watch(org: Org) -> None:
    config = org_config(6, 2)
    org.rollout(config)
    state = prepare_removal(config, org.clients, registry=TEMPLATES)
    assert [key for key in (u.key for u in state.plan.units)] == ["management", "forwarders", "watch"]
    outcomes = apply_units(config, org.clients, state, org.pacing, removing=True)
    assert all(o.problems == {} for o in outcomes)
    assert not prepare_removal(config, org.clients, registry=TEMPLATES).plan.has_changes


# -- the plan over units ----------------------------------------------------------------------------------------


def test_a_deployment_plan_counts_and_serialises_every_unit() -> None:
    watch = Plan("loginwatch", (CreateStackSet("loginwatch", {}),))
    forwarders = Plan(
        FORWARDERS,
        (DeleteInstances("lw-d-none-0000000000000000", ("111111111111",), ("eu-west-1",), ()),),
        unit="forwarders",
    )
    management = StackPlan("management account", (), not_covered="not these credentials")
    plan = DeploymentPlan(
        (UnitPlan("watch", watch), UnitPlan("forwarders", forwarders), UnitPlan("management", management))
    )
    assert plan.has_changes and plan.operation_count == 1
    document = plan.to_dict()
    assert [(u["unit"], u["kind"], u["has_changes"]) for u in document["units"]] == [
        ("watch", "stack-set", True),
        ("forwarders", "stack-set", True),
        ("management", "stacks", False),
    ]
    assert document["units"][2]["not_covered"] == "not these credentials"
    assert not DeploymentPlan((UnitPlan("management", management),)).has_changes


def test_only_selects_units_in_the_order_they_are_applied() -> None:
    assert selected_units(None) == ("mail", "watch", "forwarders", "management")
    assert selected_units(["management", "watch"]) == ("watch", "management")


def test_a_mail_account_the_caller_is_not_in_is_reported_plainly(org: Org) -> None:
    config = org_config(6, 2).model_copy(
        update={
            "delivery": org_config(6, 2).delivery.model_copy(
                update={
                    "mail_account": "444455556666",
                    "ses_identity_arn": "arn:aws:ses:eu-west-1:444455556666:identity/example.com",
                }
            )
        }
    )
    state = org.plan(config, only=["mail"])
    (mail,) = state.plan.units
    assert mail.key == "mail" and not mail.has_changes
    assert mail.not_covered is not None and "--only mail" in mail.not_covered
    assert org.stack_calls == []


def test_create_stack_steps_for_the_management_account_name_their_templates(org: Org) -> None:
    state = org.plan(org_config(3, 1), only=["management"])
    (management,) = state.plan.units
    assert isinstance(management.plan, StackPlan)
    assert [(s.name, s.region, s.template) for s in management.plan.steps if isinstance(s, CreateStack)] == [
        ("loginwatch-watch", "us-east-1", "watch"),
        ("loginwatch-forwarder", "ap-southeast-2", "forwarder"),
        ("loginwatch-forwarder", "eu-west-1", "forwarder"),
        ("loginwatch-forwarder", "us-east-2", "forwarder"),
    ]


def test_ctrl_c_while_units_run_side_by_side_names_what_each_submitted(org: Org) -> None:
    import os
    import signal
    import sys
    import threading

    from loginwatch_org.errors import RolloutInterrupted

    config = org_config(24, groups=2)
    waiting = threading.Barrier(2, timeout=10)
    pressed = threading.Event()
    reported = threading.Event()

    def sleep(_seconds: float) -> None:
        # Both units have submitted their operations and wait for them: now the user presses Ctrl-C, once. Their
        # operations stay in progress until the command has reported (AWS takes minutes; the double would not).
        # Any other wait (a submission retried while the stack set settles) passes at once: only a unit that
        # waits for its operations has submitted all of them.
        if sys._getframe(1).f_code.co_name != "_wait_all":
            return
        if not pressed.is_set() and waiting.wait() == 0:
            pressed.set()
            os.kill(os.getpid(), signal.SIGINT)
        reported.wait(timeout=10)

    pacing = Pacing(sleep=sleep)
    state = prepare_units(config, org.clients, only=["watch", "forwarders"], registry=TEMPLATES, pacing=pacing)
    try:
        with pytest.raises(RolloutInterrupted) as stopped:
            apply_units(config, org.clients, state, pacing)
    finally:
        reported.set()
    watch_ops = [op["operation_id"] for op in org.double.operations("loginwatch")]
    forwarder_ops = [op["operation_id"] for op in org.double.operations(FORWARDERS)]
    assert len(watch_ops) == 2 and len(forwarder_ops) == 1
    assert set(stopped.value.submitted) == set(watch_ops + forwarder_ops)
