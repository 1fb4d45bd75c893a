"""Synthetic organisations and configs for rollout tests and the benchmark."""

from __future__ import annotations

from typing import Any

from loginwatch_org.config import Config

MANAGEMENT_ACCOUNT = "999900000000"
ROOT_ID = "r-ab12"


def account_ids(count: int) -> list[str]:
    return [f"{100000000000 + index:012d}" for index in range(count)]


def organization(count: int, ous: int = 2) -> dict[str, list[str]]:
    """``count`` member accounts spread over ``ous`` OUs (plus the management account in the root)."""
    layout: dict[str, list[str]] = {ROOT_ID: [MANAGEMENT_ACCOUNT]}
    for index, account in enumerate(account_ids(count)):
        layout.setdefault(f"ou-ab12-{index % ous:08d}", []).append(account)
    return layout


def config_for(
    count: int,
    groups: int = 10,
    *,
    permission_model: str = "service-managed",
    call_as: str = "self",
    extra: dict[str, Any] | None = None,
    stack_set_extra: dict[str, Any] | None = None,
) -> Config:
    """A config watching ``count`` accounts, spread round-robin over ``groups`` distinct recipient lists."""
    stack_set: dict[str, Any] = {
        "name": "loginwatch",
        "permission_model": permission_model,
        "call_as": call_as,
    }
    if permission_model == "service-managed":
        stack_set["organizational_units"] = [ROOT_ID]
    stack_set.update(stack_set_extra or {})
    accounts = [
        {"id": account, "name": f"account-{index}", "recipients": [f"team-{index % groups}@example.com"]}
        for index, account in enumerate(account_ids(count))
    ]
    data: dict[str, Any] = {
        "stack_set": stack_set,
        "delivery": {"sender": "alerts@example.com"},
        "defaults": {"recipients": ["security@example.com"]},
        "management_account": {"id": MANAGEMENT_ACCOUNT, "name": "management"},
        "accounts": accounts,
        **(extra or {}),
    }
    return Config.model_validate(data)


def with_recipients(config: Config, changes: dict[str, list[str]]) -> Config:
    accounts = [
        account.model_copy(update={"recipients": changes[account.id]}) if account.id in changes else account
        for account in config.accounts
    ]
    return config.model_copy(update={"accounts": accounts})


def without_accounts(config: Config, removed: set[str]) -> Config:
    return config.model_copy(update={"accounts": [a for a in config.accounts if a.id not in removed]})
