"""The management account's plan: what a rollout would do to its plain stacks, compared as whole values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from unittest.mock import ANY

from troposphere import Output, Parameter, Ref, Template, sqs

from loginwatch_org.config import Config
from loginwatch_org.stack_plan import (
    BlockedStack,
    CreateStack,
    DeleteStack,
    DesiredStack,
    ParameterChange,
    ReplaceFailedStack,
    StackPlan,
    UpdateStack,
    make_management_plan,
    make_management_removal_plan,
    management_stack_keys,
    management_stacks,
    not_management_caller,
)
from loginwatch_org.stack_state import DeployedStack
from loginwatch_org.templates import ALARM_ACTION_PARAMETER, REGISTRY, TemplateSpec, template_digest
from tests.orgs import MANAGEMENT_ACCOUNT, config_for

OWNER = {"managed-by": "loginwatch-org"}
DELEGATED_ADMIN = "123456789012"


def stand_in_forwarder(config: Config) -> Template:
    """A forwarder-shaped template (only the shared alarm-action parameter) for as long as the registry has none."""
    template = Template(Description="stand-in forwarder")
    alarm = template.add_parameter(Parameter(ALARM_ACTION_PARAMETER, Type="String", Default=""))
    queue = template.add_resource(sqs.Queue("Forwarded"))
    template.add_output(Output("AlarmAction", Value=Ref(alarm)))
    template.add_output(Output("QueueUrl", Value=Ref(queue)))
    return template


# The real forwarder once it is registered; until then a stand-in of the same shape.
TEMPLATES: dict[str, TemplateSpec] = {
    **REGISTRY,
    "forwarder": REGISTRY.get("forwarder") or TemplateSpec("forwarder", "stand-in", stand_in_forwarder),
}


def base_config(**stack_set: Any) -> Config:
    config = config_for(3, stack_set_extra={"forward_from": ["eu-west-1", "me-central-1"], **stack_set})
    management = config.management_account
    assert management is not None
    return config.model_copy(
        update={"management_account": management.model_copy(update={"recipients": ["root-owners@example.com"]})}
    )


def with_management(config: Config, **changes: Any) -> Config:
    management = config.management_account
    assert management is not None
    return config.model_copy(update={"management_account": management.model_copy(update=changes)})


def desired(config: Config) -> dict[tuple[str, str], DesiredStack]:
    return {stack.key: stack for stack in management_stacks(config, TEMPLATES)}


def deployed_from(config: Config, **changes: Any) -> list[DeployedStack]:
    """The stacks exactly as ``config`` wants them, as the reader would return them."""
    return [
        DeployedStack(
            name=stack.name,
            region=stack.region,
            status="CREATE_COMPLETE",
            template_digest=stack.template_digest,
            parameters=dict(stack.parameters),
            tags=dict(stack.tags),
            stack_id=f"arn:aws:cloudformation:{stack.region}:{MANAGEMENT_ACCOUNT}:stack/{stack.name}/1",
            last_changed="2026-12-01T10:00:00Z",
        )
        for stack in management_stacks(config, TEMPLATES)
    ]


def changed(stacks: list[DeployedStack], region: str, **changes: Any) -> list[DeployedStack]:
    return [replace(stack, **changes) if stack.region == region else stack for stack in stacks]


def plan(config: Config, deployed: list[DeployedStack], **kwargs: Any) -> StackPlan:
    return make_management_plan(config, deployed, registry=TEMPLATES, **kwargs)


def shared(config: Config) -> Mapping[str, str]:
    from loginwatch_org.templates import shared_parameters

    return shared_parameters(config)


def test_the_management_account_gets_a_watch_and_a_forwarder_per_forward_region() -> None:
    config = base_config()
    stacks = management_stacks(config, TEMPLATES)
    assert [(stack.name, stack.region, stack.template) for stack in stacks] == [
        ("loginwatch-watch", "us-east-1", "watch"),
        ("loginwatch-forwarder", "eu-west-1", "forwarder"),
        ("loginwatch-forwarder", "me-central-1", "forwarder"),
    ]
    watch = stacks[0]
    assert watch.parameters == {**shared(config), "Recipients": "root-owners@example.com", "AlertOn": "all"}
    assert all(stack.tags == OWNER for stack in stacks)
    # The forwarder takes only the parameters its template declares: never the watch's alarm topic.
    assert stacks[1].parameters == {}


def test_by_default_forwarders_go_to_every_region_enabled_by_default() -> None:
    config = config_for(3)
    regions = [stack.region for stack in management_stacks(config, TEMPLATES)]
    assert regions[0] == "us-east-1" and len(regions) == 17
    assert regions[1:] == list(config.forward_regions())


def test_a_first_rollout_creates_the_watch_before_its_forwarders() -> None:
    config = base_config()
    wanted = desired(config)
    result = plan(config, [])
    assert result.steps == tuple(
        CreateStack(stack.name, stack.region, stack.template, stack.template_digest, stack.parameters, OWNER, token=ANY)
        for stack in wanted.values()
    )
    assert result.has_changes and result.operation_count == 3
    assert result.template_bodies["watch"] == wanted[("us-east-1", "loginwatch-watch")].template_body


def test_a_converged_account_yields_no_step() -> None:
    config = base_config()
    result = plan(config, deployed_from(config))
    assert result == StackPlan(
        "management account",
        (),
        unchanged=(
            "loginwatch-watch (us-east-1)",
            "loginwatch-forwarder (eu-west-1)",
            "loginwatch-forwarder (me-central-1)",
        ),
    )
    assert not result.has_changes and result.operation_count == 0


def test_new_recipients_update_only_the_watch_and_say_why() -> None:
    config = base_config()
    deployed = deployed_from(config)
    new = with_management(config, recipients=["cfo@example.com"])
    watch = desired(new)[("us-east-1", "loginwatch-watch")]
    assert plan(new, deployed).steps == (
        UpdateStack(
            "loginwatch-watch",
            "us-east-1",
            deployed[0].stack_id,
            "watch",
            watch.template_digest,
            watch.parameters,
            OWNER,
            token=ANY,
            parameter_changes=(ParameterChange("Recipients", "root-owners@example.com", "cfo@example.com"),),
        ),
    )
    assert plan(new, deployed).steps[0].reasons == (  # type: ignore[union-attr]
        "parameter Recipients: 'root-owners@example.com' -> 'cfo@example.com'",
    )


def test_a_new_template_updates_the_stack_from_the_old_digest_to_the_new() -> None:
    config = base_config()
    deployed = changed(deployed_from(config), "eu-west-1", template_digest="0" * 64)
    forwarder = desired(config)[("eu-west-1", "loginwatch-forwarder")]
    step = plan(config, deployed).steps
    assert step == (
        UpdateStack(
            "loginwatch-forwarder",
            "eu-west-1",
            deployed[1].stack_id,
            "forwarder",
            forwarder.template_digest,
            forwarder.parameters,
            OWNER,
            token=ANY,
            template_change=("0" * 64, forwarder.template_digest),
        ),
    )
    assert isinstance(step[0], UpdateStack)
    assert step[0].reasons == (f"template 000000000000 -> {forwarder.template_digest[:12]}",)


def test_an_update_keeps_tags_someone_else_added() -> None:
    config = base_config()
    deployed = changed(deployed_from(config), "eu-west-1", tags={**OWNER, "cost-centre": "security"})
    assert plan(config, deployed).steps == ()
    deployed = changed(deployed, "eu-west-1", template_digest="0" * 64)
    (step,) = plan(config, deployed).steps
    assert isinstance(step, UpdateStack) and step.tags == {**OWNER, "cost-centre": "security"}


def test_a_failed_creation_is_replaced_because_cloudformation_only_deletes_it() -> None:
    config = base_config()
    deployed = changed(
        deployed_from(config), "us-east-1", status="ROLLBACK_COMPLETE", status_reason="The following resource(s) failed"
    )
    watch = desired(config)[("us-east-1", "loginwatch-watch")]
    assert plan(config, deployed).steps == (
        ReplaceFailedStack(
            "loginwatch-watch",
            "us-east-1",
            deployed[0].stack_id,
            "ROLLBACK_COMPLETE",
            "The following resource(s) failed",
            "watch",
            watch.template_digest,
            watch.parameters,
            OWNER,
            delete_token=ANY,
            create_token=ANY,
        ),
    )
    assert plan(config, deployed).operation_count == 2


def test_a_rolled_back_update_is_updated_again_or_left_when_current() -> None:
    config = base_config()
    deployed = changed(deployed_from(config), "eu-west-1", status="UPDATE_ROLLBACK_COMPLETE")
    assert plan(config, deployed).steps == ()
    # A forwarder takes no shared parameter; the watch does.
    [watch] = [stack for stack in deployed if stack.region == "us-east-1"]
    old = {**watch.parameters, ALARM_ACTION_PARAMETER: "arn:old"}
    deployed = changed(deployed, "us-east-1", status="UPDATE_ROLLBACK_COMPLETE", parameters=old)
    (step,) = plan(config, deployed).steps
    assert isinstance(step, UpdateStack) and step.parameter_changes == (
        ParameterChange(ALARM_ACTION_PARAMETER, "arn:old", ""),
    )


def test_a_stack_in_progress_is_waited_for_not_changed() -> None:
    config = with_management(base_config(), recipients=["cfo@example.com"])
    deployed = changed(deployed_from(base_config()), "us-east-1", status="UPDATE_IN_PROGRESS")
    result = plan(config, deployed)
    assert result.steps == ()
    assert result.waiting == ("loginwatch-watch (us-east-1) is UPDATE_IN_PROGRESS",)
    assert result.has_changes


def test_stacks_the_tool_does_not_own_or_cannot_update_are_blocked_with_the_fix() -> None:
    config = base_config()
    deployed = changed(deployed_from(config), "us-east-1", tags={}, template_digest="0" * 64)
    deployed = changed(deployed, "eu-west-1", status="UPDATE_ROLLBACK_FAILED")
    result = plan(config, deployed)
    assert result.steps == ()
    assert result.blocked == (
        BlockedStack("loginwatch-watch", "us-east-1", ANY),
        BlockedStack("loginwatch-forwarder", "eu-west-1", ANY),
    )
    assert "not managed by loginwatch-org" in result.blocked[0].problem
    assert "continue-update-rollback --stack-name loginwatch-forwarder --region eu-west-1" in result.blocked[1].problem


def test_a_forward_region_dropped_from_the_config_is_kept_unless_pruned() -> None:
    config = base_config()
    deployed = deployed_from(config)
    fewer = config.model_copy(update={"stack_set": config.stack_set.model_copy(update={"forward_from": ["eu-west-1"]})})
    kept = plan(fewer, deployed)
    assert kept.steps == () and kept.kept == ("loginwatch-forwarder (me-central-1)",)
    assert plan(fewer, deployed, prune=True).steps == (
        DeleteStack(
            "loginwatch-forwarder", "me-central-1", deployed[2].stack_id, "no longer in the config (--prune)", ANY
        ),
    )


def test_removing_the_management_account_from_the_config_needs_prune() -> None:
    config = base_config()
    deployed = deployed_from(config)
    gone = config.model_copy(update={"management_account": None})
    kept = plan(gone, deployed)
    assert kept.steps == () and len(kept.kept) == 3
    pruned = plan(gone, deployed, prune=True)
    assert [(type(step), step.region) for step in pruned.steps] == [
        (DeleteStack, "us-east-1"),
        (DeleteStack, "eu-west-1"),
        (DeleteStack, "me-central-1"),
    ]


def test_disabling_the_management_account_deletes_its_stacks_without_prune() -> None:
    config = base_config()
    deployed = deployed_from(config)
    result = plan(with_management(config, enabled=False), deployed)
    assert result.steps == tuple(
        DeleteStack(stack.name, stack.region, stack.stack_id, "the management account is disabled in the config", ANY)
        for stack in deployed
    )


def test_credentials_of_another_account_cover_nothing_and_say_how_to_rerun() -> None:
    config = base_config()
    result = plan(config, [], caller_account=DELEGATED_ADMIN)
    assert result.steps == () and not result.has_changes
    assert result.not_covered == not_management_caller(config, DELEGATED_ADMIN)
    assert result.not_covered is not None
    assert MANAGEMENT_ACCOUNT in result.not_covered and DELEGATED_ADMIN in result.not_covered
    assert "--profile" in result.not_covered
    assert plan(config, [], caller_account=MANAGEMENT_ACCOUNT).operation_count == 3


def test_removal_deletes_every_stack_the_tool_owns_and_nothing_else() -> None:
    config = base_config()
    deployed = changed(deployed_from(config), "me-central-1", tags={"owner": "someone-else"})
    result = make_management_removal_plan(deployed)
    assert result.steps == (
        DeleteStack("loginwatch-watch", "us-east-1", deployed[0].stack_id, "removal requested", ANY),
        DeleteStack("loginwatch-forwarder", "eu-west-1", deployed[1].stack_id, "removal requested", ANY),
    )
    assert result.blocked == (BlockedStack("loginwatch-forwarder", "me-central-1", ANY),)


def test_request_tokens_repeat_for_the_same_step_and_change_with_the_state() -> None:
    config = with_management(base_config(), alert_on="root-only")
    deployed = deployed_from(base_config())
    first = plan(config, deployed).steps
    assert first == plan(config, deployed).steps
    tokens = [step.token for step in first]  # type: ignore[union-attr]
    assert all(len(token) <= 128 and token[0].isalnum() for token in tokens)
    later = changed(deployed, "us-east-1", last_changed="2026-12-01T11:00:00Z")
    assert [step.token for step in plan(config, later).steps] != tokens  # type: ignore[union-attr]
    # Creating, updating, deleting and replacing the same stack never share a token.
    created = plan(config, []).steps[0]
    replaced = plan(config, changed(deployed, "us-east-1", status="ROLLBACK_COMPLETE")).steps[0]
    assert isinstance(created, CreateStack) and isinstance(replaced, ReplaceFailedStack)
    assert len({created.token, first[0].token, replaced.delete_token, replaced.create_token}) == 4  # type: ignore[union-attr]


def test_the_plan_prints_as_json() -> None:
    config = with_management(base_config(), recipients=["cfo@example.com"])
    data = json.loads(json.dumps(plan(config, deployed_from(base_config())).to_dict()))
    assert data["unit"] == "management account"
    assert [step["action"] for step in data["steps"]] == ["update-stack"]
    assert data["steps"][0]["reasons"] == ["parameter Recipients: 'root-owners@example.com' -> 'cfo@example.com'"]


def test_the_reader_looks_wherever_a_stack_could_have_been_deployed() -> None:
    keys = management_stack_keys(base_config())
    assert keys[0] == ("us-east-1", "loginwatch-watch")
    forwarder_regions = {region for region, name in keys[1:] if name == "loginwatch-forwarder"}
    assert len(keys) == 1 + len(forwarder_regions)
    # The opt-in region the config lists, and every default region, even those the config does not list: a
    # forwarder left there must still be found.
    assert "me-central-1" in forwarder_regions and {"eu-west-2", "ap-northeast-3"} <= forwarder_regions
    assert "us-east-1" not in forwarder_regions and "af-south-1" not in forwarder_regions


def test_desired_digests_are_those_of_the_bodies_sent() -> None:
    for stack in management_stacks(base_config(), TEMPLATES):
        assert stack.template_digest == template_digest(stack.template_body)
