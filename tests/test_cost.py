"""The cost model: every resource the templates deploy is priced, the bench counts the exported templates, and
``plan`` prints what the config costs a month and what the plan changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from loginwatch_org import cost
from loginwatch_org.cli import app
from loginwatch_org.config import load_config
from loginwatch_org.plan import CreateInstances, DeleteInstances, Plan
from loginwatch_org.plan_cost import stack_set_cost, stacks_cost
from loginwatch_org.stack_plan import CreateStack, DeleteStack, StackPlan
from loginwatch_org.stack_state import DeployedStack
from loginwatch_org.state import DeployedInstance, DeployedStackSet, Snapshot
from loginwatch_org.templates import REGISTRY
from tests.orgs import account_ids, config_for
from tests.test_cli_rollout import COUNT, double  # noqa: F401 -- the StackSets double, as a fixture

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "cost_model.py"
runner = CliRunner()


def alarms_in(path: Path) -> int:
    """Alarms in an exported template, counted from its text rather than through the model under test."""
    return path.read_text(encoding="utf-8").count("Type: AWS::CloudWatch::Alarm")


def fixed_in(path: Path) -> float:
    """What one copy of an exported template costs a month: its alarms and its queue pollers."""
    pollers = path.read_text(encoding="utf-8").count("Type: AWS::Lambda::EventSourceMapping")
    return alarms_in(path) * cost.ALARM.usd + pollers * cost.QUEUE_POLLING.usd


def mail_mode_config() -> Any:
    config = load_config(ROOT / "config" / "accounts.yaml")
    delivery = config.delivery.model_copy(
        update={
            "mail_account": "555566667777",
            "ses_identity_arn": "arn:aws:ses:us-east-1:555566667777:identity/example.com",
            "alarm_recipients": ["oncall@example.com"],
        }
    )
    return config.model_copy(update={"delivery": delivery})


@pytest.mark.parametrize("mode", ["own SES", "mail account"])
def test_every_resource_type_the_templates_deploy_is_priced(mode: str) -> None:
    config = load_config(ROOT / "config" / "accounts.yaml") if mode == "own SES" else mail_mode_config()
    for spec in REGISTRY.values():
        types = cost.resource_types(spec.build(config).to_dict()["Resources"])
        assert types, spec.name
        assert cost.unpriced_types(types) == [], f"{spec.name}: price these in loginwatch_org/cost.py"


def test_a_resource_type_nobody_priced_is_named_and_fails_the_bench(tmp_path: Path) -> None:
    body = {"Resources": {"Table": {"Type": "AWS::DynamoDB::Table"}, "Q": {"Type": "AWS::SQS::Queue"}}}
    assert cost.unpriced_types(cost.body_resource_types(json.dumps(body))) == ["AWS::DynamoDB::Table"]

    for name in ("watch", "forwarder"):
        (tmp_path / f"{name}.yaml").write_text((ROOT / "templates" / f"{name}.yaml").read_text())
    (tmp_path / "mail.yaml").write_text(yaml.safe_dump(body))
    run = subprocess.run(
        [sys.executable, str(BENCH), "--templates", str(tmp_path), "--sizes", "100", "--rates", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "AWS::DynamoDB::Table" in run.stderr


def test_exported_yaml_with_short_tags_and_json_bodies_count_the_same() -> None:
    yaml_body = (ROOT / "templates" / "watch.yaml").read_text()
    built = REGISTRY["watch"].build(load_config(ROOT / "config" / "accounts.yaml"))
    json_body = json.dumps(built.to_dict())
    assert cost.body_resource_types(yaml_body) == cost.body_resource_types(json_body)
    assert cost.body_resource_types("not a template") == {}


def test_the_bench_prices_every_alarm_and_poller_of_the_exported_templates_in_every_account_and_region() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--json", "--sizes", "1000", "--rates", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    document = json.loads(run.stdout)
    regions = document["forward_regions"]
    watch, forwarder = fixed_in(ROOT / "templates" / "watch.yaml"), fixed_in(ROOT / "templates" / "forwarder.yaml")
    mail = fixed_in(ROOT / "templates" / "mail.yaml")
    # 1,000 member accounts and the management account, each a watch and a forwarder per Region; one mail stack.
    [row] = document["rows"]
    assert row["fixed_usd"] == pytest.approx(1001 * (watch + regions * forwarder) + mail)
    # Every sign-in emails each recipient: SES is priced per recipient.
    assert row["ses_usd"] == pytest.approx(1001 * 20 * cost.DAYS_PER_MONTH * 2 * cost.SES_EMAIL.usd)
    assert all(price["source"].startswith("https://aws.amazon.com/") for price in document["prices"])


def _instance(account: str, region: str = "us-east-1") -> DeployedInstance:
    return DeployedInstance(account, region, "CURRENT")


def test_a_stack_set_costs_its_instances_before_and_after_the_plan() -> None:
    two_alarms = {"AWS::CloudWatch::Alarm": 2, "AWS::SQS::Queue": 2}
    deployed = DeployedStackSet("s", "id", "digest", {}, {}, "SERVICE_MANAGED", True, resource_types=two_alarms)
    snapshot = Snapshot(deployed, (_instance("111111111111"), _instance("222222222222"), _instance("333333333333")))
    one_alarm = json.dumps({"Resources": {"A": {"Type": "AWS::CloudWatch::Alarm"}}})
    plan = Plan(
        "s",
        (
            CreateInstances("op1", ("444444444444", "555555555555"), ("us-east-1",), {}, ()),
            DeleteInstances("op2", ("111111111111",), ("us-east-1",), ()),
        ),
        template_body=one_alarm,
    )
    now, after = stack_set_cost("watch", plan, snapshot)
    assert (now.copies, now.fixed_monthly) == (3, pytest.approx(3 * 2 * cost.ALARM.usd))
    assert (after.copies, after.fixed_monthly) == (4, pytest.approx(4 * cost.ALARM.usd))


def test_plain_stacks_cost_what_the_plan_leaves_of_them() -> None:
    alarm = {"AWS::CloudWatch::Alarm": 1}
    kept = DeployedStack("w", "us-east-1", "CREATE_COMPLETE", "d", {}, {}, "id-w", resource_types=alarm)
    dropped = DeployedStack("f", "eu-west-1", "CREATE_COMPLETE", "d", {}, {}, "id-f", resource_types=alarm)
    body = json.dumps({"Resources": {"A": {"Type": "AWS::CloudWatch::Alarm"}, "B": {"Type": "AWS::KMS::Key"}}})
    plan = StackPlan(
        "management account",
        (
            DeleteStack("f", "eu-west-1", "id-f", "no longer listed", "t1"),
            CreateStack("f", "eu-north-1", "forwarder", "d", {}, {}, "t2"),
        ),
        template_bodies={"forwarder": body},
    )
    now, after = stacks_cost("management", plan, (kept, dropped))
    assert now.fixed_monthly == pytest.approx(2 * cost.ALARM.usd)
    assert after.fixed_monthly == pytest.approx(2 * cost.ALARM.usd + cost.KMS_KEY.usd)
    uncovered = StackPlan("management account", (), not_covered="other credentials")
    assert stacks_cost("management", uncovered, (kept,))[1].fixed_monthly == pytest.approx(cost.ALARM.usd)


def _write(path: Path, count: int) -> None:
    config = config_for(count, groups=3)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False))


@pytest.mark.usefixtures("double")
def test_plan_prints_the_monthly_cost_and_what_removing_accounts_saves(tmp_path: Path) -> None:
    config_file = tmp_path / "accounts.yaml"
    _write(config_file, COUNT)
    config = load_config(config_file)
    regions = len(config.forward_regions())
    per_account = fixed_in(ROOT / "templates" / "watch.yaml") + regions * fixed_in(
        ROOT / "templates" / "forwarder.yaml"
    )

    first = runner.invoke(app, ["plan", "-c", str(config_file), "--json"])
    assert first.exit_code == 0, first.output
    priced = json.loads(first.output)["cost"]
    assert priced["fixed_monthly_usd_now"] == 0
    assert priced["fixed_monthly_usd_after"] == pytest.approx(COUNT * per_account, abs=0.01)

    assert runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"]).exit_code == 0
    data = yaml.safe_load(config_file.read_text())
    data["accounts"] = [entry for entry in data["accounts"] if entry["id"] not in account_ids(COUNT)[:2]]
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    pruning = runner.invoke(app, ["plan", "-c", str(config_file), "--prune"])
    assert pruning.exit_code == 0, pruning.output
    line = next(text for text in pruning.output.splitlines() if text.startswith("Fixed cost:"))
    assert cost.usd(COUNT * per_account) in line  # now
    assert cost.usd((COUNT - 2) * per_account) in line  # after
    assert cost.signed_usd(-2 * per_account) in line
