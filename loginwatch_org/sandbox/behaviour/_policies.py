"""IAM policy evaluation, as much of it as the sandbox needs to refuse what AWS refuses.

moto never evaluates a role's policies. The sandbox does in two places: a role's trust policy when it is
assumed (``mail_account``), and a rule target's role when EventBridge puts an event on another bus with it
(``eventbridge``). Both use this module.

Modelled: Allow and Deny statements (an explicit Deny wins, nothing is allowed without an Allow), ``Action``
and ``Resource`` with ``*``/``?`` wildcards, ``AWS`` and ``Service`` principals, and the string, ARN and
``Bool`` condition operators with their ``IfExists`` forms. Anything else (``NotAction``, ``NotResource``,
``NotPrincipal``, other operators, multi-valued ``ForAllValues``/``ForAnyValue`` keys) makes a statement not
match, so the sandbox refuses rather than admits what it cannot judge.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

__all__ = [
    "Context",
    "allowed",
    "applies",
    "arn_like",
    "conditions_hold",
    "document",
    "role_documents",
    "statements",
    "values",
    "wildcard_match",
]

#: The request context: condition keys (any case) and their value, None when the request has none.
Context = Mapping[str, str | None]


def document(raw: Any) -> dict[str, Any]:
    """A policy document as IAM stores it: a dict, JSON, or JSON URL-encoded (as IAM hands documents out)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    text = str(raw)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = json.loads(urllib.parse.unquote(text))
    return dict(parsed) if isinstance(parsed, Mapping) else {}


def statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = policy.get("Statement", [])
    if isinstance(found, Mapping):
        found = [found]
    return [statement for statement in found if isinstance(statement, Mapping)]


def role_documents(role: Any) -> list[dict[str, Any]]:
    """A moto role's permission policies: its inline policies and the default version of each attached one."""
    found = [document(raw) for raw in getattr(role, "policies", {}).values()]
    for managed in getattr(role, "managed_policies", {}).values():
        for version in getattr(managed, "versions", []):
            if getattr(version, "is_default", False):
                found.append(document(version.document))
    return found


def allowed(
    policies: Iterable[Mapping[str, Any]],
    action: str,
    resource: str | None,
    context: Context,
    principal: Callable[[Any], bool] | None = None,
) -> bool:
    """Whether ``policies`` allow ``action`` on ``resource``: an Allow statement matches and no Deny does.

    ``resource`` None skips the Resource element (a trust policy has none: the role itself is the resource).
    ``principal`` judges a statement's ``Principal`` (resource and trust policies); None for identity policies,
    which have no Principal element.
    """
    verdict = False
    for policy in policies:
        for statement in statements(policy):
            if not applies(statement, action, resource, context, principal):
                continue
            if statement.get("Effect") == "Deny":
                return False
            verdict = verdict or statement.get("Effect") == "Allow"
    return verdict


def applies(
    statement: Mapping[str, Any],
    action: str,
    resource: str | None,
    context: Context,
    principal: Callable[[Any], bool] | None,
) -> bool:
    if any(key in statement for key in ("NotAction", "NotResource", "NotPrincipal")):
        return False  # not modelled
    if not any(wildcard_match(action.lower(), pattern.lower()) for pattern in values(statement.get("Action"))):
        return False
    if resource is not None and not any(
        wildcard_match(resource, pattern) for pattern in values(statement.get("Resource"))
    ):
        return False
    if principal is not None and not principal(statement.get("Principal")):
        return False
    return conditions_hold(statement.get("Condition") or {}, context)


def conditions_hold(conditions: Mapping[str, Any], context: Context) -> bool:
    """Every condition of a statement holds in ``context`` (keys compared without regard to case)."""
    lowered = {key.lower(): value for key, value in context.items()}
    for operator, tests in conditions.items():
        if not isinstance(tests, Mapping):
            return False
        for key, expected in tests.items():
            if not _condition_holds(operator, lowered.get(key.lower()), values(expected)):
                return False
    return True


def _condition_holds(operator: str, actual: str | None, expected: Sequence[str]) -> bool:
    if_exists = operator.endswith("IfExists")
    name = operator.removesuffix("IfExists")
    negated = "Not" in name
    compare = _COMPARISONS.get(name.replace("Not", ""))
    if compare is None:
        return False  # an operator the sandbox does not know never holds
    if actual is None:
        # A missing key fails every positive test and passes every negated one; IfExists passes too.
        return if_exists or negated
    hit = any(compare(actual, value) for value in expected)
    return not hit if negated else hit


def values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return [str(value)]


def wildcard_match(actual: str, pattern: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, actual, flags=re.DOTALL) is not None


def arn_like(actual: str, pattern: str) -> bool:
    """ArnLike: each of the six colon-separated parts is matched on its own; wildcards never cross a colon."""
    actual_parts, pattern_parts = actual.split(":", 5), pattern.split(":", 5)
    if len(actual_parts) != 6 or len(pattern_parts) != 6:
        return False
    return all(wildcard_match(a, p) for a, p in zip(actual_parts, pattern_parts, strict=True))


_COMPARISONS: Final[dict[str, Callable[[str, str], bool]]] = {
    "StringEquals": lambda actual, value: actual == value,
    "StringEqualsIgnoreCase": lambda actual, value: actual.lower() == value.lower(),
    "StringLike": lambda actual, value: wildcard_match(actual, value),
    "ArnEquals": lambda actual, value: actual == value,
    "ArnLike": arn_like,
    "Bool": lambda actual, value: actual.lower() == value.lower(),
}
