"""SNS: a publish from another account needs the topic policy's grant.

moto lets any account publish to any topic. In AWS, a principal of another account may publish only when the
topic's policy allows it (https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html), and is
refused with ``AuthorizationError`` otherwise
(https://docs.aws.amazon.com/sns/latest/api/API_Publish.html#API_Publish_Errors). Statements with a
condition never grant here: the sandbox evaluates no condition keys, so it refuses rather than guess (it may
be stricter than AWS, never kinder).
"""

from __future__ import annotations

import functools
from typing import Any, Final

from moto.sns.exceptions import SNSException
from moto.sns.models import SNSBackend, sns_backends
from moto.utilities.arns import parse_arn

from loginwatch_org.sandbox.behaviour._core import Patches

PATCHES: Final = Patches()


class AuthorizationError(SNSException):
    code = "AuthorizationError"


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _names_account(principal: Any, account: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    return any(p in ("*", account) or p == f"arn:aws:iam::{account}:root" for p in _listed(principal.get("AWS")))


def _matches(statement: dict[str, Any], account: str, topic: str) -> bool:
    actions = [str(a).lower() for a in _listed(statement.get("Action"))]
    return (
        _names_account(statement.get("Principal"), account)
        and any(a in ("sns:publish", "sns:*", "*") for a in actions)
        and any(r in (topic, "*") for r in _listed(statement.get("Resource")))
    )


def publish_allowed(policy: dict[str, Any], account: str, topic: str) -> bool:
    """Whether ``policy`` lets ``account`` (another account than the topic's) publish to ``topic``."""
    statements = [s for s in _listed(policy.get("Statement")) if isinstance(s, dict)]
    if any(s.get("Effect") == "Deny" and _matches(s, account, topic) for s in statements):
        return False
    return any(
        s.get("Effect") == "Allow" and not s.get("Condition") and _matches(s, account, topic) for s in statements
    )


@PATCHES.wrap(SNSBackend, "publish")
def _make_publish(original: Any) -> Any:
    @functools.wraps(original)
    def publish(self: SNSBackend, message: str, arn: str | None, *args: Any, **kwargs: Any) -> str:
        if arn and arn.startswith("arn:") and ":sns:" in arn:
            owner = parse_arn(arn)
            if owner.account != self.account_id:
                topic = sns_backends[owner.account][owner.region].topics.get(arn)
                if topic is not None and not publish_allowed(topic._policy_json, self.account_id, arn):
                    raise AuthorizationError(
                        f"User: arn:aws:iam::{self.account_id}:root is not authorized to perform: SNS:Publish "
                        f"on resource: {arn} because no resource-based policy allows the SNS:Publish action"
                    )
        result: str = original(self, message, arn, *args, **kwargs)
        return result

    return publish
