"""A double of the two AWS Organizations calls the reader makes: DescribeAccount and ListAccounts.

ListAccounts returns at most 20 accounts a page (the API's MaxResults limit), which is what makes
checking a large organisation's membership cost calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

PAGE_SIZE = 20


class OrganizationsDouble:
    def __init__(self, members: Iterable[str]) -> None:
        self.members = set(members)
        self.calls: list[str] = []

    def describe_account(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("describe_account")
        account = kwargs["AccountId"]
        if account not in self.members:
            error = {"Error": {"Code": "AccountNotFoundException", "Message": f"{account} is not in the organization"}}
            raise ClientError(error, "DescribeAccount")  # type: ignore[arg-type]
        return {"Account": {"Id": account, "Status": "ACTIVE"}}

    def list_accounts(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("list_accounts")
        ordered = sorted(self.members)
        start = int(kwargs.get("NextToken") or 0)
        page = ordered[start : start + PAGE_SIZE]
        response: dict[str, Any] = {"Accounts": [{"Id": account, "Status": "ACTIVE"} for account in page]}
        if start + PAGE_SIZE < len(ordered):
            response["NextToken"] = str(start + PAGE_SIZE)
        return response
