"""CloudFormation: a template body longer than 51,200 bytes is refused, as AWS refuses it.

``TemplateBody`` of CreateStack, UpdateStack, CreateStackSet and UpdateStackSet has a maximum length of 51,200
bytes; a larger template must come from S3 through ``TemplateURL``
(https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStackSet.html,
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html). botocore checks only
the minimum length, and moto accepts any length, so a template that would fail in AWS deployed in the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.responses import CloudFormationResponse

from loginwatch_org.sandbox.behaviour._core import Patches

PATCHES: Final = Patches()

TEMPLATE_BODY_LIMIT: Final = 51_200


def _refusing_long_bodies(original: Callable[[CloudFormationResponse], Any]) -> Callable[[CloudFormationResponse], Any]:
    def call(self: CloudFormationResponse) -> Any:
        body = self._get_param("TemplateBody")
        if isinstance(body, str) and len(body.encode("utf-8")) > TEMPLATE_BODY_LIMIT:
            raise ValidationError(
                message="1 validation error detected: Value at 'templateBody' failed to satisfy constraint: "
                f"Member must have length less than or equal to {TEMPLATE_BODY_LIMIT}"
            )
        return original(self)

    return call


for _action in ("create_stack", "update_stack", "create_stack_set", "update_stack_set"):
    PATCHES.wrap(CloudFormationResponse, _action)(_refusing_long_bodies)
