"""``stack_set.forward_from`` and the management account's own watch, as a user writes them in the config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from loginwatch_org.config import DEFAULT_ENABLED_REGIONS, AccountWatch, ConfigError, load_config

BASE = """
stack_set:
  name: loginwatch
  organizational_units: [r-ab12]
delivery:
  sender: alerts@example.com
defaults:
  recipients: [security@example.com]
  alert_on: failures-only
management_account:
  id: "999988887777"
  name: org-management
accounts:
  - id: "111122223333"
    name: payments-prod
"""

# The 16 regions enabled by default in every account, other than us-east-1 where the watch is.
DEFAULT_FORWARD_REGIONS = (
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-southeast-1", "ap-southeast-2",
    "ca-central-1", "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3", "sa-east-1",
    "us-east-2", "us-west-1", "us-west-2",
)  # fmt: skip


def with_stack_set_line(line: str) -> str:
    return BASE.replace("  organizational_units: [r-ab12]\n", f"  organizational_units: [r-ab12]\n  {line}\n")


def with_forward_from(value: str) -> str:
    return with_stack_set_line(f"forward_from: {value}")


def problems(write_config: Callable[[str], Path], text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(text))
    return caught.value.problems


def test_default_forwards_from_every_region_enabled_by_default(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(BASE))
    assert config.forward_regions() == DEFAULT_FORWARD_REGIONS
    assert config.stack_set.regions == ["us-east-1"]


def test_all_written_out_means_the_default(write_config: Callable[[str], Path]) -> None:
    for spelling in ("all", "[all]"):
        assert load_config(write_config(with_forward_from(spelling))).forward_regions() == DEFAULT_FORWARD_REGIONS


def test_opt_in_regions_listed_beside_all_are_added(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(with_forward_from("[all, me-central-1, af-south-1]")))
    assert config.forward_regions() == tuple(sorted((*DEFAULT_FORWARD_REGIONS, "me-central-1", "af-south-1")))


def test_an_explicit_list_is_exactly_where_forwarders_go(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(with_forward_from("[eu-west-1, ap-southeast-3, us-east-2]")))
    assert config.forward_regions() == ("ap-southeast-3", "eu-west-1", "us-east-2")


def test_a_second_watch_region_gets_no_forwarder(write_config: Callable[[str], Path]) -> None:
    text = with_stack_set_line("regions: [us-east-1, eu-west-1]")
    regions = load_config(write_config(text)).forward_regions()
    assert "eu-west-1" not in regions and "us-east-1" not in regions
    assert len(regions) == len(DEFAULT_FORWARD_REGIONS) - 1


def test_the_default_list_holds_only_regions_the_tool_knows() -> None:
    from loginwatch_org.config import AWS_REGIONS

    assert DEFAULT_ENABLED_REGIONS < AWS_REGIONS
    # Launched after 20 March 2019, so opt-in: never forwarded from unless listed.
    assert not {"af-south-1", "ap-east-1", "eu-south-1", "me-south-1", "me-central-1"} & DEFAULT_ENABLED_REGIONS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[all, eu-west-9]", ":4: stack_set.forward_from[1]: 'eu-west-9' is not an AWS Region"),
        ("everywhere", ":4: stack_set.forward_from[0]: 'everywhere' is not an AWS Region"),
        ("[eu-west-1, me-central-1, eu-west-1]", ":4: stack_set.forward_from[2]: 'eu-west-1' is listed twice"),
        ("[all, all]", ":4: stack_set.forward_from[1]: 'all' is listed twice"),
        ("[all, eu-west-1]", ":4: stack_set.forward_from[1]: eu-west-1 is enabled by default in every account"),
        ("[eu-west-1, us-east-1]", ":4: stack_set.forward_from[1]: us-east-1 holds the watch itself"),
        ("[]", ":4: stack_set.forward_from: must not be empty"),
    ],
)
def test_bad_forward_from_names_file_line_and_field(
    write_config: Callable[[str], Path], value: str, expected: str
) -> None:
    found = problems(write_config, with_forward_from(value))
    assert any(expected in problem for problem in found), found
    assert all("accounts.yaml:" in problem for problem in found)


def test_management_account_takes_the_defaults_when_it_says_nothing(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(BASE))
    assert config.management_watch() == AccountWatch(
        "999988887777", "org-management", ("security@example.com",), "failures-only"
    )


def test_management_account_has_recipients_and_policy_of_its_own(write_config: Callable[[str], Path]) -> None:
    text = BASE.replace(
        "  name: org-management\n",
        "  name: org-management\n  recipients: [root-owners@example.com]\n  alert_on: all\n",
    )
    watch = load_config(write_config(text)).management_watch()
    assert watch == AccountWatch("999988887777", "org-management", ("root-owners@example.com",), "all")


def test_a_disabled_or_absent_management_account_has_no_watch(write_config: Callable[[str], Path]) -> None:
    disabled = BASE.replace("  name: org-management\n", "  name: org-management\n  enabled: false\n")
    assert load_config(write_config(disabled)).management_watch() is None
    absent = BASE.replace('management_account:\n  id: "999988887777"\n  name: org-management\n', "")
    assert load_config(write_config(absent)).management_watch() is None


def test_member_watches_are_unchanged_by_the_management_account(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(BASE))
    assert [watch.account_id for watch in config.targets()] == ["111122223333"]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("  recipients: [root@example]\n", ":12: management_account.recipients[0]: 'root@example' is not a valid"),
        ("  recipients: []\n", ":12: management_account.recipients: must not be empty"),
        ("  alert_on: loudly\n", ":12: management_account.alert_on: 'loudly' is not allowed"),
        ("  enabled: sometimes\n", ":12: management_account.enabled"),
        ("  colour: red\n", ":12: management_account.colour: unknown key"),
    ],
)
def test_bad_management_account_fields_name_file_line_and_field(
    write_config: Callable[[str], Path], field: str, expected: str
) -> None:
    found = problems(write_config, BASE.replace("  name: org-management\n", "  name: org-management\n" + field))
    assert any(expected in problem for problem in found), found


def test_a_stack_set_name_too_long_for_the_management_stacks_is_refused(write_config: Callable[[str], Path]) -> None:
    found = problems(write_config, BASE.replace("  name: loginwatch\n", f"  name: {'a' * 119}\n"))
    assert any(":2: stack_set.name: the management account's stacks are named after" in p for p in found), found
    assert any("at most 118" in p for p in found)
    assert load_config(write_config(BASE.replace("  name: loginwatch\n", f"  name: {'a' * 118}\n")))
    # Without a management account there are no plain stacks to name.
    absent = BASE.replace('management_account:\n  id: "999988887777"\n  name: org-management\n', "")
    assert load_config(write_config(absent.replace("  name: loginwatch\n", f"  name: {'a' * 119}\n")))
