"""A double of the AWS Organizations calls the reader makes, as the API reference describes them.

- ListAccounts, ListAccountsForParent and ListOrganizationalUnitsForParent return at most 20 items a page
  (MaxResults: "Valid Range: Minimum value of 1. Maximum value of 20."), which is what makes reading a large
  organisation cost calls.
  https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListAccounts.html
  https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListAccountsForParent.html
  https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListOrganizationalUnitsForParent.html
- "These operations can occasionally return an empty set of results even when there are more results
  available. The NextToken response parameter value is null only when there are no more results": with
  ``empty_pages=True`` every listing starts with an empty page that carries a NextToken.
- ListAccountsForParent lists the accounts directly in the parent (a root or an OU), not those in its child
  OUs; ListOrganizationalUnitsForParent lists the child OUs. An unknown parent is ParentNotFoundException.
- Accounts carry ``State`` (PENDING_ACTIVATION, ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED) and not the
  ``Status`` field, which "will be retired on September 9, 2026".
  https://docs.aws.amazon.com/organizations/latest/APIReference/API_Account.html
- DescribeAccount of an account the organisation lacks is AccountNotFoundException; DescribeOrganization names
  the management account (MasterAccountId).
  https://docs.aws.amazon.com/organizations/latest/APIReference/API_DescribeOrganization.html

The organisation is a tree: ``layout`` maps each parent (root ``r-...`` or ``ou-...``) to the accounts directly
in it, and ``parents`` maps each OU to its parent (default: the root). Tests change it as Organizations would:
``add_account`` (an account vended into an OU), ``set_state`` (suspended, reinstated), ``move_account``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

PAGE_SIZE = 20
ROOT_PREFIX = "r-"


def _error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)  # type: ignore[arg-type]


class OrganizationsDouble:
    def __init__(
        self,
        members: Iterable[str] = (),
        *,
        layout: Mapping[str, Sequence[str]] | None = None,
        parents: Mapping[str, str] | None = None,
        management_account: str | None = None,
        names: Mapping[str, str] | None = None,
        empty_pages: bool = False,
    ) -> None:
        """``members`` alone: a flat organisation (every account in the root). ``layout``: a tree of OUs."""
        self._layout: dict[str, list[str]] = {key: list(value) for key, value in (layout or {}).items()}
        roots = [key for key in self._layout if key.startswith(ROOT_PREFIX)]
        self.root = roots[0] if roots else "r-ab12"
        self._layout.setdefault(self.root, [])
        self._layout[self.root].extend(a for a in members if not any(a in v for v in self._layout.values()))
        self._parents: dict[str, str] = {ou: self.root for ou in self._layout if ou != self.root}
        self._parents.update(parents or {})
        for ou in self._parents:
            self._layout.setdefault(ou, [])
        self.states: dict[str, str] = {a: "ACTIVE" for accounts in self._layout.values() for a in accounts}
        self.names = dict(names or {})
        self.management_account = management_account
        self.empty_pages = empty_pages
        self.calls: list[str] = []
        self._lock = threading.Lock()

    # -- changes a test makes, as Organizations would --------------------------------------------------------

    @property
    def members(self) -> set[str]:
        return set(self.states)

    def add_account(self, account: str, parent: str | None = None, *, name: str | None = None) -> None:
        """An account created in (or invited and moved to) ``parent``."""
        self._layout[parent or self.root].append(account)
        self.states[account] = "ACTIVE"
        if name is not None:
            self.names[account] = name

    def move_account(self, account: str, parent: str) -> None:
        for accounts in self._layout.values():
            if account in accounts:
                accounts.remove(account)
        self._layout[parent].append(account)

    def set_state(self, account: str, state: str) -> None:
        self.states[account] = state

    def count(self, method: str | None = None) -> int:
        return sum(1 for call in self.calls if method is None or call == method)

    # -- the API -------------------------------------------------------------------------------------------

    def describe_organization(self, **kwargs: Any) -> dict[str, Any]:
        self._record("describe_organization")
        master = self.management_account or "999900000000"
        return {"Organization": {"Id": "o-exampleorgid", "MasterAccountId": master, "FeatureSet": "ALL"}}

    def describe_account(self, **kwargs: Any) -> dict[str, Any]:
        self._record("describe_account")
        account = kwargs["AccountId"]
        if account not in self.states:
            raise _error("AccountNotFoundException", f"{account} is not in the organization", "DescribeAccount")
        return {"Account": self._account(account)}

    def list_accounts(self, **kwargs: Any) -> dict[str, Any]:
        self._record("list_accounts")
        return self._page("Accounts", sorted(self.states), kwargs, "ListAccounts", self._account)

    def list_accounts_for_parent(self, **kwargs: Any) -> dict[str, Any]:
        self._record("list_accounts_for_parent")
        parent = self._parent(kwargs["ParentId"], "ListAccountsForParent")
        return self._page("Accounts", sorted(self._layout[parent]), kwargs, "ListAccountsForParent", self._account)

    def list_organizational_units_for_parent(self, **kwargs: Any) -> dict[str, Any]:
        self._record("list_organizational_units_for_parent")
        parent = self._parent(kwargs["ParentId"], "ListOrganizationalUnitsForParent")
        children = sorted(ou for ou, above in self._parents.items() if above == parent)
        units = [{"Id": ou, "Arn": f"arn:aws:organizations::111111111111:ou/o-exampleorgid/{ou}", "Name": ou}
                 for ou in children]  # fmt: skip
        return self._page("OrganizationalUnits", units, kwargs, "ListOrganizationalUnitsForParent")

    # -- plumbing ------------------------------------------------------------------------------------------

    def _record(self, method: str) -> None:
        with self._lock:
            self.calls.append(method)

    def _parent(self, parent: str, operation: str) -> str:
        if parent not in self._layout:
            raise _error("ParentNotFoundException", f"parent {parent} not found", operation)
        return parent

    def _account(self, account: str) -> dict[str, Any]:
        return {
            "Id": account,
            "Arn": f"arn:aws:organizations::111111111111:account/o-exampleorgid/{account}",
            "Email": f"aws+{account}@example.com",
            "Name": self.names.get(account, f"account {account}"),
            "State": self.states[account],
            "JoinedMethod": "CREATED",
        }

    def _page(
        self,
        key: str,
        items: list[Any],
        kwargs: Mapping[str, Any],
        operation: str,
        shape: Callable[[Any], Any] = lambda item: item,
    ) -> dict[str, Any]:
        size = kwargs.get("MaxResults", PAGE_SIZE)
        if not 1 <= size <= PAGE_SIZE:
            raise _error("InvalidInputException", f"MaxResults must be between 1 and {PAGE_SIZE}", operation)
        token = kwargs.get("NextToken")
        if self.empty_pages and token is None:
            return {key: [], "NextToken": "0"}
        start = int(token or 0)
        response: dict[str, Any] = {key: [shape(item) for item in items[start : start + size]]}
        if start + size < len(items):
            response["NextToken"] = str(start + size)
        return response
