"""A template too large to send inline, rolled out for real: staged in S3, read back by CloudFormation, converged."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from loginwatch_org.aws.staging import staging_bucket_name
from loginwatch_org.config import load_config
from loginwatch_org.templates import REGISTRY, TEMPLATE_BODY_LIMIT, template_body, template_digest
from tests.test_sandbox_cli import Example, rolled_out_example, sandbox_client


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    with rolled_out_example(tmp_path_factory.mktemp("staging")) as shared:
        assert shared.rollout.returncode == 0, shared.rollout.stdout + shared.rollout.stderr
        yield shared


def test_the_watch_is_staged_once_and_the_rollout_converges(example: Example) -> None:
    body = template_body(REGISTRY["watch"].build(load_config(example.config)))
    assert len(body.encode("utf-8")) > TEMPLATE_BODY_LIMIT  # the example's watch (mail mode) needs staging
    state = json.loads(example.workspace.state_file.read_text(encoding="utf-8"))
    s3 = sandbox_client(state, "s3")
    bucket = staging_bucket_name(state["management_account"], "us-east-1")
    staged = s3.get_object(Bucket=bucket, Key=f"templates/{template_digest(body)}.json")["Body"].read().decode()
    assert staged == body
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    assert "staging the" in example.rollout.stderr and "creating S3 bucket" in example.rollout.stderr

    # What CloudFormation read from S3 is what the plan compares with: nothing left to change.
    plan = example.workspace.run("plan", "--sandbox", "--detailed-exitcode", "-c", str(example.config))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    again = example.workspace.run("rollout", "--sandbox", "--yes", "-c", str(example.config))
    assert again.returncode == 0 and "creating S3 bucket" not in again.stderr
