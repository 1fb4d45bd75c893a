from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from loginwatch_org.config import ConfigError, load_config
from tests.conftest import EXAMPLE_CONFIG

VALID = """
stack_set:
  name: loginwatch
  organizational_units: [r-ab12]
delivery:
  sender: alerts@example.com
defaults:
  recipients: [security@example.com]
accounts:
  - id: "111122223333"
    name: payments-prod
    recipients: [payments-oncall@example.com, security@example.com]
    alert_on: root-and-failures
  - id: "444455556666"
    name: old-sandbox
    enabled: false
  - id: "555566667777"
    name: shared
"""


def problems(write_config: Callable[[str], Path], text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(text))
    return caught.value.problems


def test_shipped_example_is_realistic() -> None:
    config = load_config(EXAMPLE_CONFIG)
    targets = config.targets()
    assert config.management_account is not None
    assert len(targets) >= 5
    assert config.disabled_account_ids()
    recipient_lists = [t.recipients for t in targets]
    assert any(recipient_lists.count(r) > 1 for r in recipient_lists if r != config.defaults.recipients)
    assert any(t.recipients == tuple(config.defaults.recipients) for t in targets)
    # Some accounts share their whole watch, so the rollout groups them into one operation.
    watches = [(t.recipients, t.alert_on) for t in targets]
    assert len(set(watches)) < len(watches)


def test_defaults_fill_missing_recipients_and_policy(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(VALID))
    by_id = {t.account_id: t for t in config.targets()}
    assert "444455556666" not in by_id  # disabled
    assert by_id["555566667777"].recipients == ("security@example.com",)
    assert by_id["555566667777"].alert_on == "all"
    assert by_id["111122223333"].alert_on == "root-and-failures"
    assert config.stack_set.regions == ["us-east-1"]


def test_unquoted_octal_account_id_is_explained(write_config: Callable[[str], Path]) -> None:
    found = problems(write_config, VALID.replace('"555566667777"', "012345670123"))
    assert len(found) == 1
    assert "accounts.yaml:16: accounts[2].id" in found[0]
    assert 'write "012345670123"' in found[0]


def test_unquoted_number_losing_leading_zero(write_config: Callable[[str], Path]) -> None:
    found = problems(write_config, VALID.replace('"555566667777"', "055566667777"))
    assert "accounts[2].id" in found[0] and "quoted" in found[0]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('"111122223333"', '"1111222233"', ":9: accounts[0].id: an AWS account id is exactly 12 digits"),
        (
            "alert_on: root-and-failures",
            "alert_on: sometimes",
            ":12: accounts[0].alert_on: 'sometimes' is not allowed",
        ),
        (
            "name: shared\n",
            "name: shared\n    colour: red\n",
            ":18: accounts[2].colour: unknown key 'colour'",
        ),
        (
            "security@example.com]\n    alert_on",
            "security@example]\n    alert_on",
            "accounts[0].recipients[1]: 'security@example' is not a valid",
        ),
        (
            "[payments-oncall@example.com, security@example.com]",
            "[a@example.com, A@example.com]",
            ":11: accounts[0].recipients: 'A@example.com' is listed twice",
        ),
        (
            "[payments-oncall@example.com, security@example.com]",
            "[]",
            ":11: accounts[0].recipients: must not be empty",
        ),
        (
            "organizational_units: [r-ab12]",
            "organizational_units: [r-ab12]\n  regions: [us-east-9]",
            ":4: stack_set.regions[0]: 'us-east-9' is not an AWS Region",
        ),
        (
            "organizational_units: [r-ab12]",
            "organizational_units: [r-ab12]\n  regions: [eu-west-1]",
            ":4: stack_set.regions: eu-west-1 leaves out us-east-1: root sign-ins and sign-ins through the global",
        ),
        ('"444455556666"', '"111122223333"', ":13: accounts[1].id: account 111122223333 is listed twice"),
        (
            "sender: alerts@example.com",
            "sender: alerts",
            ":5: delivery.sender: 'alerts' is not a valid email",
        ),
        (
            "  name: loginwatch\n",
            "  name: loginwatch\n  permision_model: self-managed\n",
            ":3: stack_set.permision_model: unknown key",
        ),
    ],
)
def test_bad_input_names_file_line_and_field(
    write_config: Callable[[str], Path], replace: str, by: str, expected: str
) -> None:
    assert replace in VALID
    found = problems(write_config, VALID.replace(replace, by, 1))
    assert any(expected in problem for problem in found), found
    assert all("accounts.yaml:" in problem for problem in found)


def test_invalid_yaml_reports_line(write_config: Callable[[str], Path]) -> None:
    found = problems(write_config, "stack_set:\n  name: [unclosed\ndelivery: {}\n")
    assert len(found) == 1 and "invalid YAML" in found[0] and "accounts.yaml:" in found[0]


def test_duplicate_yaml_key_is_an_error(write_config: Callable[[str], Path]) -> None:
    found = problems(write_config, VALID.replace("  name: shared\n", "  name: shared\n    name: other\n"))
    assert "key 'name' appears twice" in found[0] and ":18:" in found[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert "file not found" in caught.value.problems[0]


def test_service_managed_needs_targets(write_config: Callable[[str], Path]) -> None:
    found = problems(write_config, VALID.replace("  organizational_units: [r-ab12]\n", ""))
    assert "stack_set" in found[0] and "organizational_units" in found[0]


def test_management_account_cannot_be_a_service_managed_member(write_config: Callable[[str], Path]) -> None:
    text = VALID + 'management_account:\n  id: "555566667777"\n'
    found = problems(write_config, text)
    assert "accounts[2].id" in found[0] and "management account" in found[0]


def test_more_recipients_than_ses_sends_to_is_refused(write_config: Callable[[str], Path]) -> None:
    many = ", ".join(f"person{i}@example.com" for i in range(51))
    found = problems(write_config, VALID.replace("[security@example.com]", f"[{many}]", 1))
    assert any("defaults.recipients" in p and "at most 50" in p for p in found), found


def test_ses_identity_must_be_able_to_send_as_the_sender(write_config: Callable[[str], Path]) -> None:
    other = "  sender: alerts@example.com\n  ses_identity_arn: arn:aws:ses:us-east-1:999988887777:identity/other.org\n"
    found = problems(write_config, VALID.replace("  sender: alerts@example.com\n", other))
    assert any("delivery" in p and "cannot send as alerts@example.com" in p for p in found), found
    same_domain = other.replace("other.org", "example.com")
    assert load_config(write_config(VALID.replace("  sender: alerts@example.com\n", same_domain)))


def test_alarm_topic_flows_into_the_template(write_config: Callable[[str], Path]) -> None:
    from loginwatch_org.templates import build_template, shared_parameters

    arn = "arn:aws:sns:us-east-1:999988887777:security-paging"
    config = load_config(
        write_config(
            VALID.replace("  sender: alerts@example.com\n", f"  sender: alerts@example.com\n  alarm_topic_arn: {arn}\n")
        )
    )
    assert shared_parameters(config)["DeadLetterAlarmAction"] == arn
    assert build_template(config).to_dict()["Parameters"]["DeadLetterAlarmAction"]["Default"] == arn
    bad = VALID.replace("  sender: alerts@example.com\n", "  sender: alerts@example.com\n  alarm_topic_arn: nope\n")
    assert any("alarm_topic_arn" in p for p in problems(write_config, bad))


@pytest.mark.parametrize("misspelled", ["stackset", "stack_sets"])
def test_a_misspelled_section_is_named_first_with_a_suggestion(
    write_config: Callable[[str], Path], misspelled: str
) -> None:
    found = problems(write_config, VALID.replace("stack_set:", f"{misspelled}:", 1))
    assert found[0].endswith(f":1: {misspelled}: unknown key '{misspelled}'; did you mean stack_set?"), found
    # The missing section is still reported, after the key that explains it.
    assert any("stack_set: the section is missing" in problem for problem in found[1:]), found


def test_every_unknown_key_at_every_level_is_reported_with_its_line(write_config: Callable[[str], Path]) -> None:
    text = (
        VALID.replace("  name: loginwatch\n", "  name: loginwatch\n  operation_preferences:\n    max_concurent: 5\n")
        .replace("  sender: alerts@example.com\n", "  sender: alerts@example.com\n  colour: red\n")
        .replace("    name: shared\n", "    name: shared\n    recipents: [a@example.com]\n")
        + "extra_section: 1\n"
    )
    found = problems(write_config, text)
    assert [problem.split(": ", 1)[1] for problem in found] == [
        "stack_set.operation_preferences.max_concurent: unknown key 'max_concurent'; "
        "did you mean max_concurrent_percentage?",
        "delivery.colour: unknown key 'colour'; valid keys here: sender, ses_identity_arn, alarm_topic_arn, "
        "mail_account, configuration_set, alarm_recipients",
        "accounts[2].recipents: unknown key 'recipents'; did you mean recipients?",
        "extra_section: unknown key 'extra_section'; valid keys here: stack_set, delivery, defaults, "
        "management_account, accounts",
    ]
    assert [problem.split(": ", 1)[0].rsplit(":", 1)[1] for problem in found] == ["4", "8", "21", "22"]
