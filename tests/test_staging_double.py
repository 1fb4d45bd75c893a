"""A watch too large to send inline, rolled out against the StackSets double: staged in S3, read back, converged."""

from __future__ import annotations

from typing import Any

import pytest

from loginwatch_org.aws.staging import staging_bucket_name
from loginwatch_org.config import Config
from loginwatch_org.render import render_plan
from loginwatch_org.templates import REGISTRY, TEMPLATE_BODY_LIMIT, template_body
from loginwatch_org.workflow import Clients, make_executor, prepare
from tests.doubles.clients import CallerSts
from tests.doubles.s3 import FakeS3
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, config_for, organization


def mail_mode(count: int = 12) -> Config:
    delivery = {
        "sender": "alerts@example.com",
        "mail_account": MANAGEMENT_ACCOUNT,
        "ses_identity_arn": f"arn:aws:ses:us-east-1:{MANAGEMENT_ACCOUNT}:identity/example.com",
    }
    return config_for(count, groups=3, extra={"delivery": delivery})


def _rollout(config: Config, clients: Clients) -> Any:
    executor = make_executor(config, clients, sleep=lambda _seconds: None)
    prepared = prepare(config, clients, executor=executor)
    return prepared, executor.apply(prepared.plan)


def test_a_body_over_the_limit_goes_by_url_and_a_rerun_changes_nothing() -> None:
    config = mail_mode()
    body = template_body(REGISTRY["watch"].build(config))
    assert len(body.encode("utf-8")) > TEMPLATE_BODY_LIMIT
    s3 = FakeS3(MANAGEMENT_ACCOUNT)
    double = StackSetsDouble(organization(12), MANAGEMENT_ACCOUNT, s3=s3)
    clients = Clients(double.client(), sts=CallerSts(MANAGEMENT_ACCOUNT), s3_for=s3.client)

    prepared, result = _rollout(config, clients)
    # The plan says so before anything is written.
    assert f"the template is {len(body.encode('utf-8')):,} bytes, over the 51,200 sent inline: rollout stages it" in (
        render_plan(prepared.plan)
    )
    assert result.failed_accounts == [] and {op.status for op in result.operations} == {"SUCCEEDED"}
    [create] = [kwargs for method, kwargs in double.calls if method == "create_stack_set"]
    assert "TemplateBody" not in create and create["TemplateURL"].startswith(
        f"https://{staging_bucket_name(MANAGEMENT_ACCOUNT, 'us-east-1')}.s3.us-east-1.amazonaws.com/templates/"
    )
    assert s3.puts == 1

    rerun = prepare(config, clients, executor=make_executor(config, clients, sleep=lambda _seconds: None))
    assert not rerun.plan.has_changes  # the template CloudFormation read is the one the plan wants
    assert "rollout stages it" not in render_plan(rerun.plan)  # nothing is written, so nothing is staged


def test_without_a_way_to_stage_it_the_rollout_stops_before_writing_anything() -> None:
    config = mail_mode()
    double = StackSetsDouble(organization(12), MANAGEMENT_ACCOUNT)
    clients = Clients(double.client())
    with pytest.raises(Exception, match="no S3 client"):
        _rollout(config, clients)
    assert [method for method, _ in double.calls if method.startswith(("create", "update"))] == []


def test_the_double_refuses_an_inline_body_over_the_limit_as_aws_does() -> None:
    double = StackSetsDouble(organization(2), MANAGEMENT_ACCOUNT)
    body = template_body(REGISTRY["watch"].build(mail_mode()))
    with pytest.raises(Exception, match="less than or equal to 51200"):
        double.client().create_stack_set(
            StackSetName="lw", TemplateBody=body, PermissionModel="SELF_MANAGED", Capabilities=["CAPABILITY_IAM"]
        )
