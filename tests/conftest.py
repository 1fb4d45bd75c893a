from __future__ import annotations

import os
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from loginwatch_org.config import Config, load_config

# A sandbox alarm period of half a second (the sandbox's default is 5 s): an alarm returns to OK within about two
# seconds of the last arrival, so a test can watch it speak again. Every sandbox a test starts inherits it.
os.environ.setdefault("LOGINWATCH_SANDBOX_ALARM_PERIOD_SECONDS", "0.5")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config" / "accounts.yaml"
# The example's delivery keys that make one mail account send for all.
MAIL_MODE_KEYS = ("mail_account", "ses_identity_arn", "alarm_recipients")


def own_ses_example_text() -> str:
    """The example config with every account sending through its own SES: its mail-account lines left out."""
    lines = EXAMPLE_CONFIG.read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.strip().startswith(tuple(f"{key}:" for key in MAIL_MODE_KEYS)))


def own_ses_example() -> Config:
    """``own_ses_example_text`` loaded, from a file of its own (the loader reads files, and names them)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "accounts.yaml"
        path.write_text(own_ses_example_text(), encoding="utf-8")
        return load_config(path)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a config file from an indented YAML string and return its path."""

    def write(text: str, name: str = "accounts.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may reach a real AWS endpoint or pick up a developer's credentials.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # The instance metadata service is another address; credentials must never be looked up there.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def _no_terminal_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tables fit COLUMNS when it is set; pytest-xdist's workers (and some shells) export it, so a test that
    # wants a width says so itself.
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
