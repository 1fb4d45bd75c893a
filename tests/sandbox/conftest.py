"""Every test here gets a fresh sandbox process (the ``sandbox`` fixture)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.emulator import ORGANISATION, Sandbox, free_port


@pytest.fixture
def organisation() -> dict[str, Any]:
    """The organisation the sandbox holds; a test module overrides this fixture to hold another."""
    return ORGANISATION


@pytest.fixture
def sandbox(tmp_path: Path, organisation: dict[str, Any]) -> Iterator[Sandbox]:
    state_file = tmp_path / "sandbox.json"
    log_file = tmp_path / "sandbox.log"
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "loginwatch_org.sandbox.server",
        "--state-file",
        str(state_file),
        "--organization-json",
        json.dumps(organisation),
        "--port",
        str(port),
    ]
    with log_file.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not state_file.exists():
            if process.poll() is not None:
                pytest.fail(f"the sandbox exited with {process.returncode}:\n{log_file.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the sandbox was not ready within 60s:\n{log_file.read_text()}")
            time.sleep(0.05)
        state = json.loads(state_file.read_text())
        assert state["port"] == port
        assert state["endpoint_url"] == f"http://127.0.0.1:{port}"
        yield Sandbox(endpoint_url=state["endpoint_url"], state=state, state_file=state_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert not state_file.exists(), "the sandbox removes its state file when it stops"
