"""The error boundary: no exception reaches a user as a traceback, each failure has its exit code, --json
failures print a JSON error object, and Ctrl-C gives the terminal back."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from loginwatch_org import workflow
from loginwatch_org.aws import session
from loginwatch_org.cli import app
from loginwatch_org.cli_boundary import Progress
from loginwatch_org.errors import RolloutInterrupted
from tests.conftest import EXAMPLE_CONFIG, ROOT
from tests.doubles.clients import double_clients
from tests.doubles.stacksets import StackSetsDouble
from tests.orgs import MANAGEMENT_ACCOUNT, config_for, organization

runner = CliRunner()
COUNT = 4


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> StackSetsDouble:
    fake = StackSetsDouble(organization(COUNT), MANAGEMENT_ACCOUNT, polls_per_state=1)

    monkeypatch.setattr(session, "client", double_clients(fake))
    monkeypatch.setattr("time.sleep", lambda _seconds: None)
    return fake


def write(path: Path, **stack_set: Any) -> Path:
    data = config_for(COUNT, groups=2).model_dump(mode="json", exclude_none=True)
    data["stack_set"].update(stack_set)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write(tmp_path / "accounts.yaml")


def no_traceback(output: str) -> bool:
    return "Traceback" not in output and 'File "' not in output


@pytest.mark.parametrize("url", ["notaurl", "http://[::1", "ftp://127.0.0.1:9", "http://127.0.0.1:port"])
@pytest.mark.parametrize("command", ["plan", "rollout", "status", "remove"])
def test_a_malformed_endpoint_is_bad_input(double: StackSetsDouble, config_file: Path, url: str, command: str) -> None:
    result = runner.invoke(app, [command, "-c", str(config_file), "--endpoint-url", url])
    assert result.exit_code == 2, result.output
    assert f"Error: --endpoint-url '{url}' is not" in result.output
    assert no_traceback(result.output)
    assert double.calls == []


def test_a_malformed_endpoint_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://[::1")
    result = runner.invoke(app, ["status", "-c", str(config_file)])
    assert result.exit_code == 2 and "AWS_ENDPOINT_URL 'http://[::1' is not a URL" in result.output


def test_a_permission_model_change_is_an_error_not_a_traceback(double: StackSetsDouble, tmp_path: Path) -> None:
    service = write(tmp_path / "service.yaml")
    assert runner.invoke(app, ["rollout", "-c", str(service), "--yes"]).exit_code == 0
    self_managed = write(
        tmp_path / "self.yaml",
        permission_model="self-managed",
        organizational_units=[],
        administration_role_arn="arn:aws:iam::999900000000:role/AWSCloudFormationStackSetAdministrationRole",
    )
    result = runner.invoke(app, ["plan", "-c", str(self_managed)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: stack set 'loginwatch' is SERVICE_MANAGED but the config says self-managed")
    assert no_traceback(result.output)
    as_json = runner.invoke(app, ["plan", "-c", str(self_managed), "--json"])
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "PlanError" and error["exit_code"] == 1 and "permission model" in error["message"]


def test_a_bug_is_one_line_without_a_traceback(
    double: StackSetsDouble, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(workflow, "prepare", broken)
    result = runner.invoke(app, ["plan", "-c", str(config_file)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: unexpected TypeError: 'NoneType' object is not subscriptable (this is a bug in loginwatch-org; "
        "please report it with the command you ran)"
    ]
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", ["validate", "plan", "rollout", "remove", "status"])
def test_json_failures_print_a_json_error_object(double: StackSetsDouble, tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stack_set:\n  name: 1bad\n")
    result = runner.invoke(app, [command, "-c", str(bad), "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ConfigError" and error["exit_code"] == 2
    assert any("stack_set" in problem and "name '1bad'" in problem for problem in error["problems"])


def test_detailed_exitcode_keeps_2_for_changes_pending(double: StackSetsDouble, config_file: Path) -> None:
    result = runner.invoke(app, ["plan", "-c", str(config_file), "--detailed-exitcode", "--endpoint-url", "nope"])
    assert result.exit_code == 1 and "Error: --endpoint-url 'nope'" in result.output


class _Spinner:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_ctrl_c_stops_the_spinner_and_exits_130(
    double: StackSetsDouble, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spinner = _Spinner()

    def interrupted(*_args: Any, progress: Any = None, **_kwargs: Any) -> Any:
        # What a spinner on a terminal looks like to the boundary: started (once, whichever unit is read
        # first), then Ctrl-C.
        if progress._spinner is None:
            progress._spinner = spinner
            Progress._active.append(progress)
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "prepare", interrupted)
    result = runner.invoke(app, ["plan", "-c", str(config_file)])
    assert result.exit_code == 130
    assert result.output.strip() == "Interrupted"
    assert spinner.stopped and Progress._active == []


class _InterruptedExecutor:
    def apply(self, plan: Any) -> Any:
        raise RolloutInterrupted(submitted=("lw-c-aaaa-1111", "lw-c-bbbb-2222"))


def test_an_interrupted_rollout_says_what_was_submitted_and_how_to_resume(
    double: StackSetsDouble, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflow, "make_executor", lambda *_args, **_kwargs: _InterruptedExecutor())
    result = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes"])
    assert result.exit_code == 130, result.output
    last = result.output.strip().splitlines()[-1]
    assert "2 operation(s) already submitted" in last
    assert "lw-c-aaaa-1111, lw-c-bbbb-2222" in last and "Rerun the same command" in last
    as_json = runner.invoke(app, ["rollout", "-c", str(config_file), "--yes", "--json"])
    error = json.loads(as_json.stdout)["error"]
    assert error["exit_code"] == 130 and error["submitted"] == ["lw-c-aaaa-1111", "lw-c-bbbb-2222"]


def test_an_unreachable_endpoint_fails_fast_with_progress(config_file: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    result = runner.invoke(app, ["plan", "-c", str(config_file), "--endpoint-url", endpoint])
    assert result.exit_code == 1
    assert f"using cloudformation at {endpoint}" in result.output
    assert f"cannot connect to {endpoint}; trying again (attempt 2 of 2)" in result.output
    assert f'Error: Cannot reach AWS: Could not connect to the endpoint URL: "{endpoint}/"' in result.output


def test_a_reader_that_closes_the_pipe_is_not_reported_as_a_bug() -> None:
    # `loginwatch-org export | head -1`: the reader is gone before the template is written.
    process = subprocess.Popen(
        [sys.executable, "-m", "loginwatch_org.cli", "export", "--config", str(EXAMPLE_CONFIG)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read().decode()
    assert process.wait() == 141
    assert "Error" not in errors and "Traceback" not in errors


def test_an_endpoint_that_never_answers_fails_with_one_line(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    from dataclasses import replace

    from tests.silent_server import silent_server

    real_client = session.client

    def impatient(target: session.AwsTarget, service: str, progress: Any = None, **kwargs: Any) -> Any:
        return real_client(replace(target, read_timeout=1), service, progress, **kwargs)

    monkeypatch.setattr(session, "client", impatient)
    with silent_server() as server:
        result = runner.invoke(app, ["plan", "-c", str(config_file), "--endpoint-url", server.url])
    assert result.exit_code == 1
    assert f"no answer from {server.url} within 1 s; trying again (attempt 2 of 2)" in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: AWS did not answer") and server.url in errors[0]
    assert no_traceback(result.output)


def test_ctrl_c_while_aws_does_not_answer_exits_at_once(tmp_path: Path) -> None:
    # Reads run on worker threads; Ctrl-C must not wait for the ones still blocked on a silent endpoint.
    import os
    import signal
    import time

    from tests.silent_server import silent_server

    config_file = write(tmp_path / "accounts.yaml")
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    with silent_server() as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "loginwatch_org.cli", "plan", "-c", str(config_file), "--endpoint-url", server.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=environment,
        )
        try:
            assert server.wait_for_connections(1, within=30)
            time.sleep(0.3)
            process.send_signal(signal.SIGINT)
            started = time.monotonic()
            code = process.wait(timeout=10)
            waited = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
        _, errors = process.communicate()
    assert code == 130
    assert waited < 5
    assert "Interrupted" in errors.decode() and no_traceback(errors.decode())


@pytest.mark.parametrize("command", ["plan", "rollout", "status", "remove", "doctor"])
def test_a_region_that_does_not_exist_is_bad_input(double: StackSetsDouble, config_file: Path, command: str) -> None:
    result = runner.invoke(app, [command, "-c", str(config_file), "--region", "us-east-9"])
    assert result.exit_code == 2, result.output
    assert "--region us-east-9 is not an AWS Region" in result.output
    assert double.calls == []


def test_with_the_sandbox_region_still_picks_the_administrator_region(
    monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    from collections.abc import Iterator
    from contextlib import contextmanager

    from loginwatch_org.cli_options import AwsOptions, aws_target, load
    from loginwatch_org.sandbox import control

    @contextmanager
    def sandbox_target(_config: Any, progress: Any = None) -> Iterator[session.AwsTarget]:
        yield session.AwsTarget(region="us-east-1", endpoint_url="http://127.0.0.1:9")

    monkeypatch.setattr(control, "sandbox_target", sandbox_target)
    config = load(config_file)
    with aws_target(config, AwsOptions(region="eu-west-1", sandbox=True)) as target:
        assert target.region == "eu-west-1"
    with aws_target(config, AwsOptions(sandbox=True)) as target:
        assert target.region == config.stack_set.admin_region
