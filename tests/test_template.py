"""Every template the tool deploys: current on disk, lint-clean, small enough for StackSets; and the watch's parts."""

from __future__ import annotations

import ast
import io
import tokenize
from typing import Any

import pytest
from cfnlint.api import lint

from loginwatch_org.config import ALERT_POLICIES, load_config
from loginwatch_org.templates import (
    REGISTRY,
    TEMPLATE_BODY_LIMIT,
    TEMPLATE_URL_LIMIT,
    TemplateSpec,
    build_template,
    event_pattern,
    render,
    template_body,
)
from tests.conftest import EXAMPLE_CONFIG, ROOT, own_ses_example

SPECS = [pytest.param(spec, id=name) for name, spec in REGISTRY.items()]
# The watch runs in us-east-1; forwarders in the regions where sign-ins are recorded besides it.
LINT_REGIONS = {
    "watch": ["us-east-1"],
    "forwarder": ["us-east-2", "eu-north-1", "ap-southeast-2"],
    # The mail account sends from the region of its SES identity; the example config uses us-east-1.
    "mail": ["us-east-1"],
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    # Each account sending with its own SES: the notifier's own ses:SendEmail grant is what is reviewed here
    # (mail mode's sending role is reviewed in test_template_mail.py).
    return build_template(own_ses_example()).to_dict()


@pytest.mark.parametrize("spec", SPECS)
def test_committed_template_is_current(spec: TemplateSpec) -> None:
    committed = (ROOT / spec.path()).read_text(encoding="utf-8")
    assert committed == render(spec.build(load_config(EXAMPLE_CONFIG))), (
        f"{spec.path()} is stale: run loginwatch-org export -o {spec.path()}"
    )


def test_every_committed_template_is_registered() -> None:
    assert {path.stem for path in (ROOT / "templates").glob("*.yaml")} == set(REGISTRY)


@pytest.mark.parametrize("spec", SPECS)
def test_cfn_lint_finds_nothing(spec: TemplateSpec) -> None:
    built = spec.build(load_config(EXAMPLE_CONFIG))
    # The reviewed YAML and the compact JSON that StackSets receives: errors and warnings alike.
    for text in (render(built), template_body(built)):
        matches = lint(text, regions=LINT_REGIONS[spec.name])
        assert matches == [], "\n".join(str(match) for match in matches)


@pytest.mark.parametrize("spec", SPECS)
def test_body_fits_what_cloudformation_takes(spec: TemplateSpec) -> None:
    size = len(template_body(spec.build(load_config(EXAMPLE_CONFIG))).encode("utf-8"))
    if spec.name == "watch":
        # Deployed from the caller's own account (stack set, management stack): staged in S3 when too large.
        assert size <= TEMPLATE_URL_LIMIT
    else:
        # Forwarders go to every Region and the mail stack to another account: they must fit inline.
        assert size <= TEMPLATE_BODY_LIMIT


@pytest.mark.parametrize("spec", SPECS)
def test_rendering_is_deterministic(spec: TemplateSpec) -> None:
    assert render(spec.build(load_config(EXAMPLE_CONFIG))) == render(spec.build(load_config(EXAMPLE_CONFIG)))


def _without_docstrings(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                node.body = body[1:] or [ast.Expr(ast.Constant(...))]  # type: ignore[attr-defined]
    return ast.dump(tree)


def test_lambda_source_is_the_notifier_module(template: dict[str, Any]) -> None:
    code = template["Resources"]["NotifierFunction"]["Properties"]["Code"]["ZipFile"]
    module = (ROOT / "loginwatch_org" / "notifier.py").read_text(encoding="utf-8")
    # The same program, statement for statement: only comments, docstrings and indentation width differ.
    assert _without_docstrings(code) == _without_docstrings(module)
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    assert not [token for token in tokens if token.type == tokenize.COMMENT]  # no comment survives
    assert len(code) < 0.85 * len(module)
    function = template["Resources"]["NotifierFunction"]["Properties"]
    assert function["Handler"] == "index.handler"
    assert function["Architectures"] == ["arm64"]
    assert function["Runtime"].startswith("python3.")
    assert function["MemorySize"] <= 256


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for policy in properties.get("Policies", []):
            found.extend(policy["PolicyDocument"]["Statement"])
    return found


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    statements = _statements(template)
    assert statements
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), statement
        if statement["Resource"] == "*":
            # IAM has no resource type for ListAccountAliases; nothing narrower exists.
            assert actions == ["iam:ListAccountAliases"]
    ses = next(s for s in statements if s["Action"] == "ses:SendEmail")
    assert ses["Condition"] == {"StringEquals": {"ses:FromAddress": {"Ref": "Sender"}}}
    assert "Fn::If" in ses["Resource"]


def test_only_the_rule_publishes_to_the_topic(template: dict[str, Any]) -> None:
    # Besides the administrator's test alerts (tests/test_test_alert.py).
    statement = template["Resources"]["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][:1]
    assert statement[0]["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement[0]["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["SignInRule", "Arn"]}}}


def test_every_failure_path_ends_in_the_encrypted_dead_letter_queue(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    dlq = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert resources["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    assert resources["SignInRule"]["Properties"]["Targets"][0]["DeadLetterConfig"] == {"Arn": dlq}
    assert resources["BufferSubscription"]["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": dlq}
    # A sign-in the notifier could not email in 1,000 receives (two weeks of retries) is a dead letter too.
    assert resources["BufferQueue"]["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": dlq,
        "maxReceiveCount": 1000,
    }
    assert resources["NotifierFunction"]["Properties"]["DeadLetterConfig"] == {"TargetArn": dlq}
    assert resources["NotifierRetries"]["Properties"]["MaximumRetryAttempts"] == 2
    [visible, *_] = resources["DeadLetterAlarm"]["Properties"]["Metrics"]
    assert visible["MetricStat"]["Metric"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    assert resources["NotifierLogGroup"]["Properties"]["RetentionInDays"] > 0


def test_the_topic_delivers_into_a_buffer_the_notifier_reads_in_batches(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    buffer = {"Fn::GetAtt": ["BufferQueue", "Arn"]}
    assert resources["BufferSubscription"]["Properties"]["Protocol"] == "sqs"
    assert resources["BufferSubscription"]["Properties"]["Endpoint"] == buffer
    assert "TopicInvokesNotifier" not in resources  # the topic no longer invokes the function
    mapping = resources["NotifierReadsBuffer"]["Properties"]
    assert mapping["EventSourceArn"] == buffer
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # The first alert of a quiet account leaves within a minute of the sign-in.
    assert 0 < mapping["MaximumBatchingWindowInSeconds"] <= 30
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 2}
    # AWS: the queue's visibility timeout at least six times the function's timeout.
    timeout = resources["NotifierFunction"]["Properties"]["Timeout"]
    assert resources["BufferQueue"]["Properties"]["VisibilityTimeout"] >= 6 * timeout
    [grant] = resources["BufferQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][:1]
    assert grant["Principal"] == {"Service": "sns.amazonaws.com"} and grant["Action"] == "sqs:SendMessage"
    assert grant["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "AlertTopic"}}}
    environment = resources["NotifierFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["BUFFER_QUEUE_URL"] == {"Ref": "BufferQueue"}
    assert environment["DEAD_LETTER_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}


def test_rule_receives_read_only_management_events(template: dict[str, Any]) -> None:
    # A rule in state ENABLED would never see a read-only CheckMfa.
    state = template["Resources"]["SignInRule"]["Properties"]["State"]
    assert state == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"


def test_rule_matches_on_source_and_detail() -> None:
    for policy in ALERT_POLICIES:
        pattern = event_pattern(policy)
        assert pattern["source"] == ["aws.signin"]
        assert pattern["detail"]["eventSource"] == ["signin.amazonaws.com"]
