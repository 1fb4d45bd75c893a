"""S3: a bucket policy's conditions are evaluated, and every request to the sandbox counts as one made over TLS.

moto applies a bucket policy's statements without their conditions, so the usual "deny any request without TLS"
statement (``Bool: aws:SecureTransport false``) denied every request, TLS or not. AWS applies a statement only
when its conditions hold (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html),
and every request to AWS's https:// endpoints has ``aws:SecureTransport`` true
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-securetransport).
The sandbox's plain HTTP on 127.0.0.1 stands in for those endpoints, so its requests count as TLS requests.
Principals are not judged: a statement for ``*`` applies to every caller, one naming principals is treated
as naming this one. A statement the evaluator cannot judge (``NotAction``, unknown operators) does not apply.
"""

from __future__ import annotations

from typing import Any, Final

from moto.iam.access_control import PermissionResult
from moto.s3.models import FakeBucket

from loginwatch_org.sandbox.behaviour import _policies
from loginwatch_org.sandbox.behaviour._core import Patches

PATCHES: Final = Patches()

REQUEST_CONTEXT: Final[_policies.Context] = {"aws:SecureTransport": "true"}


@PATCHES.replace(FakeBucket, "get_permission")
def _get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return PermissionResult.NEUTRAL
    policy = _policies.document(self.policy.decode())
    verdict = PermissionResult.NEUTRAL
    for statement in _policies.statements(policy):
        if not _policies.allowed(
            [{"Statement": [{**statement, "Effect": "Allow"}]}], action, resource, REQUEST_CONTEXT, lambda _p: True
        ):
            continue
        if statement.get("Effect") == "Deny":
            return PermissionResult.DENIED
        if statement.get("Effect") == "Allow":
            verdict = PermissionResult.PERMITTED
    return verdict
