"""The organisation's accounts, read at most once per command.

A command reads several deployment units (the member watches, the forwarders) and a rollout reads them again
after applying; each needs the same accounts of the same organisation. At 5,000 accounts that listing is 250
pages of 20, so one ``OrganizationReader`` per command remembers every answer (the accounts in a scope, the
membership of a config account, the organisation itself) and every unit shares it. A refusal is remembered too:
it would be refused again. Any other failure is not.

Accounts in scope are listed with ListAccounts for the whole organisation (self-managed, or a root target), else
ListOrganizationalUnitsForParent and ListAccountsForParent down every targeted OU, concurrently. Every
Organizations list returns at most 20 items a page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from loginwatch_org.aws import paging
from loginwatch_org.aws.errors import error_code
from loginwatch_org.aws.workers import worker_pool
from loginwatch_org.state import OrganizationAccount, OrganizationView

# ListAccounts returns at most 20 accounts a page (MaxResults 1-20), while DescribeAccount costs one call per
# account: https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListAccounts.html
ORGANIZATION_PAGE = 20
# OUs read at once. Organizations throttles per account (TooManyRequestsException, retried by botocore's adaptive
# mode), so a few concurrent readers suffice: a tree is wide, not deep.
ORGANIZATION_WORKERS = 4
# Refusals that leave coverage unknown rather than failing the command: the caller is not the management account
# or a delegated administrator, or the account is in no organisation.
ORGANIZATION_REFUSALS = ("AccessDeniedException", "AWSOrganizationsNotInUseException", "AccessDenied")

T = TypeVar("T")


@dataclass(frozen=True)
class OrganizationScope:
    """Which accounts the stack set reaches: ``organizational_units`` (root or OU ids; a root means the whole
    organisation), or None for every account of the organisation (self-managed)."""

    organizational_units: tuple[str, ...] | None = None
    # Instances of accounts the config does not list are compared with these (new_accounts: defaults).
    default_overrides: Mapping[str, str] | None = None
    listed: frozenset[str] = frozenset()

    @property
    def whole_organization(self) -> bool:
        units = self.organizational_units
        return units is None or any(unit.startswith("r-") for unit in units)

    @property
    def accounts_key(self) -> tuple[str, ...] | None:
        """What decides which accounts are in scope (None: all of them); units with the same key share a listing."""
        return None if self.whole_organization else tuple(sorted(set(self.organizational_units or ())))


WHOLE_ORGANIZATION = OrganizationScope()


class OrganizationReader:
    """Reads the organisation through ``organizations`` (a boto3 client) and remembers every answer. Safe to share
    between threads: a second caller of a read in flight waits for the first one's answer."""

    def __init__(self, organizations: Any) -> None:
        self._org = organizations
        self._lock = threading.Lock()
        self._answers: dict[Hashable, Future[Any]] = {}

    def accounts(self, scope: OrganizationScope = WHOLE_ORGANIZATION) -> OrganizationView:
        """Every account in ``scope`` with its State. A root target, or no targets (self-managed), is the whole
        organisation: one ListAccounts listing. OUs are walked down with ListOrganizationalUnitsForParent (nested
        OUs) and ListAccountsForParent (which lists only the accounts directly in the parent), concurrently.
        https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListAccountsForParent.html
        https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListOrganizationalUnitsForParent.html"""
        key = scope.accounts_key
        return self._once(("accounts", key), lambda: self._read_accounts(key))

    def describe(self) -> Mapping[str, Any]:
        """DescribeOrganization's Organization: its Id, and MasterAccountId, the management account. Any account
        of the organisation may call it.
        https://docs.aws.amazon.com/organizations/latest/APIReference/API_DescribeOrganization.html"""
        return self._once(("organization",), lambda: dict(self._org.describe_organization()["Organization"]))

    def outside(self, accounts: Iterable[str], *, known: OrganizationView | None = None) -> frozenset[str]:
        """Which of ``accounts`` the organisation lacks. ``known``: accounts already read, none of them outside.
        The rest are described one by one, or the whole organisation is listed, whichever costs fewer calls;
        DescribeAccount of an account the organisation lacks is AccountNotFoundException.
        https://docs.aws.amazon.com/organizations/latest/APIReference/API_DescribeAccount.html"""
        in_scope = known.accounts if known is not None else {}
        wanted = sorted({account for account in accounts if account not in in_scope})
        if not wanted:
            return frozenset()
        if len(wanted) > ORGANIZATION_PAGE:
            return frozenset(set(wanted) - set(self.accounts(WHOLE_ORGANIZATION).accounts))
        return frozenset(account for account in wanted if not self._is_member(account))

    def forget(self) -> None:
        """Read afresh from now on: the organisation changed while the command ran."""
        with self._lock:
            self._answers.clear()

    def _is_member(self, account: str) -> bool:
        def describe() -> bool:
            try:
                self._org.describe_account(AccountId=account)
            except Exception as error:
                if error_code(error) != "AccountNotFoundException":
                    raise
                return False
            return True

        # An account the whole organisation was listed for needs no call of its own.
        with self._lock:
            listed = self._answers.get(("accounts", None))
        if listed is not None and listed.done() and listed.exception() is None:
            return account in cast(OrganizationView, listed.result()).accounts
        return self._once(("member", account), describe)

    def _once(self, key: Hashable, read: Callable[[], T]) -> T:
        """``read()``'s answer, read by the first caller and shared by the others (those asking meanwhile wait for
        it). A refusal is kept, as it would be refused again; any other failure is passed to whoever waited and
        then forgotten, so that a later call tries again."""
        with self._lock:
            answer = self._answers.get(key)
            mine = answer is None
            if answer is None:
                answer = self._answers[key] = Future()
        if mine:
            try:
                answer.set_result(read())
            except BaseException as error:
                answer.set_exception(error)
                if not refused(error):
                    with self._lock:
                        if self._answers.get(key) is answer:
                            del self._answers[key]
        return cast(T, answer.result())

    def _read_accounts(self, units: tuple[str, ...] | None) -> OrganizationView:
        with worker_pool(ORGANIZATION_WORKERS) as pool:
            organization = pool.submit(self.describe)
            if units is None:
                accounts = list(self._pages("list_accounts", "Accounts"))
            else:
                accounts = []
                level = list(units)
                seen = set(level)
                while level:
                    listed = [pool.submit(self._children, parent) for parent in level]
                    level = []
                    for future in listed:
                        found, children = future.result()
                        accounts.extend(found)
                        level.extend(child for child in children if child not in seen)
                        seen.update(children)
            master = organization.result().get("MasterAccountId")
        return OrganizationView(
            {account["Id"]: _organization_account(account) for account in accounts},
            management_account_id=str(master) if master else None,
        )

    def _children(self, parent: str) -> tuple[list[dict[str, Any]], list[str]]:
        accounts = list(self._pages("list_accounts_for_parent", "Accounts", ParentId=parent))
        units = [unit["Id"] for unit in self._pages("list_organizational_units_for_parent",
                                                     "OrganizationalUnits", ParentId=parent)]  # fmt: skip
        return accounts, units

    def _pages(self, method: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return paging.items(getattr(self._org, method), key, MaxResults=ORGANIZATION_PAGE, **kwargs)


def refused(error: BaseException) -> bool:
    """The organisation may not be read by this caller: coverage is unknown, the command goes on."""
    return error_code(error) in ORGANIZATION_REFUSALS


def _organization_account(account: Mapping[str, Any]) -> OrganizationAccount:
    # State replaces Status, which Organizations retires on 9 September 2026; an older endpoint may send only Status.
    # https://docs.aws.amazon.com/organizations/latest/APIReference/API_Account.html
    state = account.get("State") or account.get("Status") or ""
    return OrganizationAccount(account["Id"], account.get("Name", ""), str(state))
