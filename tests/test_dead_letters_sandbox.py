"""An alert the notifier cannot send, end to end in the sandbox: the notifier parks it in the watch's dead-letter
queue with SES's reason, the queue raises its alarm, ``dead-letters`` lists it, and ``--replay`` sends it once the
cause is fixed and only then removes it. An alert SES only defers waits in the buffer instead."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from loginwatch_org import DEFAULT_MEMBER_ROLE
from loginwatch_org.sandbox.behaviour.prerequisites import MAX_24H_SEND_ENV
from tests.test_sandbox_cli import Example, moved_sender, rolled_out_example

ACCOUNT = "111122223333"  # payments-prod


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    with rolled_out_example(tmp_path_factory.mktemp("dead-letters")) as shared:
        assert shared.rollout.returncode == 0, shared.rollout.stdout + shared.rollout.stderr
        yield shared


def _member(example: Example, service: str) -> Any:
    state = json.loads(example.workspace.state_file.read_text(encoding="utf-8"))
    options = {"region_name": "us-east-1", "endpoint_url": state["endpoint_url"]}
    sts = boto3.client(
        "sts",
        aws_access_key_id=state["credentials"]["aws_access_key_id"],
        aws_secret_access_key=state["credentials"]["aws_secret_access_key"],
        **options,
    )
    role = f"arn:aws:iam::{ACCOUNT}:role/{DEFAULT_MEMBER_ROLE}"
    credentials = sts.assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
    return boto3.client(
        service,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        **options,
    )


def test_a_rejected_alert_waits_in_the_queue_raises_the_alarm_and_is_replayed_after_the_fix(example: Example) -> None:
    run = example.workspace.run
    # The sandbox verifies the config's sender only: the deployed watch still sends as the old one, and SES
    # rejects every attempt.
    changed = example.workspace.config("new-sender.yaml", moved_sender(example.config.read_text()))
    empty = run("dead-letters", ACCOUNT, "--sandbox", "-c", str(changed))
    assert empty.returncode == 0, empty.stdout + empty.stderr
    assert "No alert waits in the dead-letter queues of 1 account(s) in 17 Region(s)." in empty.stdout

    rejected = example.simulate(ACCOUNT, "root", changed)
    assert "No email was sent: the notifier failed:" in rejected.stdout
    assert f"loginwatch-org dead-letters {ACCOUNT}" in rejected.stdout

    listed = run("dead-letters", ACCOUNT, "--json", "--sandbox", "-c", str(changed))
    assert listed.returncode == 1, listed.stdout + listed.stderr
    document = json.loads(listed.stdout)
    assert document["waiting"] == 1
    [queue] = document["queues"]
    assert (queue["account_id"], queue["region"], queue["kind"], queue["waiting"]) == (ACCOUNT, "us-east-1", "watch", 1)
    [letter] = queue["letters"]
    # SES rejected the sender for every recipient: the notifier parked it at once, naming whom it did not reach.
    assert letter["writer"] == "notifier"
    assert "MessageRejected" in letter["reason"]
    assert sorted(letter["recipients"]) == ["payments-oncall@example.com", "security@example.com"]
    assert "[ROOT]" in letter["summary"] and ACCOUNT in letter["summary"]
    # A rejection is not retried: one attempt, then the dead-letter queue and its alarm.
    logs = _member(example, "logs")
    started = [
        event["message"]
        for group in logs.describe_log_groups()["logGroups"]
        for event in logs.filter_log_events(logGroupName=group["logGroupName"])["events"]
        if event["message"].startswith("START RequestId")
    ]
    assert len(started) == 1
    # The alarm went into ALARM; with nothing more arriving it may already be back in OK.
    [alarm] = _member(example, "cloudwatch").describe_alarms()["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM" or "ALARM -> OK" in alarm["StateReason"], alarm["StateReason"]

    text = run("dead-letters", ACCOUNT, "--sandbox", "-c", str(changed))
    assert f"{ACCOUNT} (payments-prod) us-east-1 watch: 1 waiting" in text.stdout
    assert f"loginwatch-org dead-letters {ACCOUNT} --replay" in text.stderr

    # Replayed before the fix: sent through the notifier again, rejected again, kept in the queue.
    early = run("dead-letters", ACCOUNT, "--replay", "--sandbox", "-c", str(changed))
    assert early.returncode == 1, early.stdout + early.stderr
    assert "still waiting: the notifier failed again" in early.stdout
    assert "Replayed 0 alert(s)" in early.stdout and "1 still waiting." in early.stdout

    fixed = run("rollout", "--sandbox", "--yes", "-c", str(changed))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    replayed = run("dead-letters", ACCOUNT, "--replay", "--json", "--sandbox", "-c", str(changed))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    [queue] = json.loads(replayed.stdout)["queues"]
    [letter] = queue["letters"]
    assert letter["replayed"] is True and letter["replay_error"] is None
    assert json.loads(replayed.stdout)["waiting"] == 0

    after = run("dead-letters", ACCOUNT, "--sandbox", "-c", str(changed))
    assert after.returncode == 0 and "No alert waits" in after.stdout
    # Nothing more arrived: the alarm is back in OK, ready to speak for the next loss.
    deadline = time.monotonic() + 20
    while _member(example, "cloudwatch").describe_alarms()["MetricAlarms"][0]["StateValue"] != "OK":
        assert time.monotonic() < deadline, "the dead-letter alarm stayed in ALARM"
        time.sleep(0.2)
    restored = run("rollout", "--sandbox", "--yes", "-c", str(example.config))
    assert restored.returncode == 0, restored.stdout + restored.stderr


def test_naming_an_account_the_config_does_not_watch_is_a_usage_error(example: Example) -> None:
    result = example.workspace.run("dead-letters", "123456789012", "--sandbox", "-c", str(example.config))
    assert result.returncode == 2
    assert "account '123456789012' is not watched by" in result.stderr
    both = example.workspace.run("dead-letters", "--sandbox", "-c", str(example.config))
    assert both.returncode == 2 and "or pass --all" in both.stderr


def test_a_burst_beyond_the_daily_quota_waits_in_the_buffer_instead_of_being_dead_lettered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox's own process reads the knob: one recipient a day, and the account's alerts go to two.
    monkeypatch.setenv(MAX_24H_SEND_ENV, "1")
    with rolled_out_example(tmp_path / "storm") as storm:
        assert storm.rollout.returncode == 0, storm.rollout.stdout + storm.rollout.stderr
        run = storm.workspace.run
        burst = run(
            "simulate-login", ACCOUNT, "--identity", "failed", "--count", "8", "--wait", "5", "--json",
            "--sandbox", "-c", str(storm.config),
        )  # fmt: skip
        assert burst.returncode == 0, burst.stdout + burst.stderr
        document = json.loads(burst.stdout)
        assert document["signins_sent"] == 8
        # Eight failed sign-ins are one email; SES takes it for the first recipient and refuses the second
        # for the day, so every sign-in waits in the buffer for that recipient alone, and nothing is lost.
        [email] = document["emails"]
        assert email["signins_covered"] == 8 and "[x8]" in email["subject"]
        assert len(email["to"]) == 1
        assert document["still_buffered"] == 8
        assert document["dead_lettered"] == 0

        listed = run("dead-letters", ACCOUNT, "--json", "--sandbox", "-c", str(storm.config))
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert all(queue["waiting"] == 0 for queue in json.loads(listed.stdout)["queues"])
