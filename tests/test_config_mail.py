from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from loginwatch_org.config import ConfigError, load_config

BASE = """
stack_set:
  name: loginwatch
  organizational_units: [r-ab12]
delivery:
  sender: alerts@example.com
{delivery}defaults:
  recipients: [security@example.com]
accounts:
  - id: "111122223333"
    name: payments-prod
"""


def config_text(*lines: str) -> str:
    return BASE.format(delivery="".join(f"  {line}\n" for line in lines))


def problems(write_config: Callable[[str], Path], text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(text))
    return caught.value.problems


def line_of(text: str, key: str) -> int:
    return next(n for n, line in enumerate(text.lstrip("\n").splitlines(), start=1) if line.strip().startswith(key))


def test_mail_account_with_its_identity(write_config: Callable[[str], Path]) -> None:
    text = config_text(
        'mail_account: "999988887777"',
        "ses_identity_arn: arn:aws:ses:eu-west-1:999988887777:identity/example.com",
        "configuration_set: alerts-tracking",
        "alarm_recipients: [oncall@example.com]",
    )
    delivery = load_config(write_config(text)).delivery
    assert delivery.mail_account == "999988887777"
    assert delivery.identity_region == "eu-west-1"
    assert delivery.configuration_set == "alerts-tracking"
    assert delivery.alarm_recipients == ["oncall@example.com"]


def test_without_mail_account_sending_stays_per_account(write_config: Callable[[str], Path]) -> None:
    delivery = load_config(write_config(config_text())).delivery
    assert delivery.mail_account is None and delivery.alarm_recipients is None and delivery.configuration_set is None


def test_mail_account_needs_an_identity_and_says_which(write_config: Callable[[str], Path]) -> None:
    text = config_text('mail_account: "999988887777"')
    [problem] = problems(write_config, text)
    assert f"accounts.yaml:{line_of(text, 'mail_account')}: delivery.mail_account: " in problem, problem
    assert "arn:aws:ses:us-east-1:999988887777:identity/example.com" in problem


def test_identity_must_be_in_the_mail_account(write_config: Callable[[str], Path]) -> None:
    text = config_text(
        'mail_account: "999988887777"', "ses_identity_arn: arn:aws:ses:eu-west-1:111122223333:identity/example.com"
    )
    [problem] = problems(write_config, text)
    where = f"accounts.yaml:{line_of(text, 'ses_identity_arn')}: delivery.ses_identity_arn: "
    assert where in problem, problem
    assert "identity of account 111122223333" in problem
    assert "arn:aws:ses:eu-west-1:999988887777:identity/example.com" in problem


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ('mail_account: "12345"', "delivery.mail_account", "12 digits"),
        ("mail_account: 999988887777", "delivery.mail_account", "quoted"),
        ("configuration_set: has space", "delivery.configuration_set", "configuration set name"),
        ("alarm_recipients: [oncall@example.com]", "delivery.alarm_recipients", "set mail_account"),
        ("alarm_recipients: []", "delivery.alarm_recipients", "must not be empty"),
        ("alarm_recipients: [not-an-address]", "delivery.alarm_recipients[0]", "not a valid email"),
    ],
)
def test_bad_mail_settings_name_file_line_and_field(
    write_config: Callable[[str], Path], line: str, field: str, words: str
) -> None:
    text = config_text(line)
    found = problems(write_config, text)
    expected = f"accounts.yaml:{line_of(text, line.split(':')[0])}: {field}: "
    assert any(expected in p and words in p for p in found), found
