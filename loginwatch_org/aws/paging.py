"""Every item of a paged AWS listing, for clients that may not offer boto3's paginators (the test doubles).

A page can be empty while more follow ("always check the NextToken response parameter"): only a missing
NextToken ends a listing.
https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListAccounts.html
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def items(
    call: Callable[..., Any], key: str, max_pages: int | None = None, /, **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """The ``key`` items of every page ``call(**kwargs)`` returns, at most ``max_pages`` pages."""
    token: str | None = None
    pages = 0
    while max_pages is None or pages < max_pages:
        response = call(**kwargs, **({"NextToken": token} if token else {}))
        pages += 1
        yield from response.get(key, [])
        token = response.get("NextToken")
        if not token:
            return
