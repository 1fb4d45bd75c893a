"""Lambda: GetFunctionConfiguration names the function's log group and its dead-letter queue.

AWS returns ``LoggingConfig`` (its ``LogGroup`` and ``LogFormat``) with every function's configuration
(https://docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html); moto leaves it out, though the
sandbox sends the function's logs to that group (``cfn_updates``).

moto also drops a CloudFormation function's ``DeadLetterConfig``: it is kept here, returned by
GetFunctionConfiguration (https://docs.aws.amazon.com/lambda/latest/api/API_DeadLetterConfig.html), and used by
``lambda_async`` when an asynchronous invocation fails for good. Not modelled: ``DeadLetterConfig`` given to
CreateFunction or UpdateFunctionConfiguration outside CloudFormation.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from moto.awslambda.models import LambdaFunction

from loginwatch_org.sandbox.behaviour._core import Patches

PATCHES: Final = Patches()


@PATCHES.wrap(LambdaFunction, "get_configuration")
def _make_get_configuration(original: Any) -> Any:
    @functools.wraps(original)
    def get_configuration(self: LambdaFunction, *args: Any, **kwargs: Any) -> dict[str, Any]:
        configuration: dict[str, Any] = original(self, *args, **kwargs)
        configuration.setdefault("LoggingConfig", {"LogFormat": "Text", "LogGroup": self.logs_group_name})
        dead_letters = dead_letter_target(self)
        if dead_letters:
            configuration["DeadLetterConfig"] = {"TargetArn": dead_letters}
        return configuration

    return get_configuration


_DEAD_LETTER_ATTRIBUTE: Final = "sandbox_dead_letter_target"


def dead_letter_target(function: LambdaFunction) -> str | None:
    """The ARN of the queue or topic the function's failed asynchronous invocations go to, if any."""
    value = getattr(function, _DEAD_LETTER_ATTRIBUTE, None)
    return str(value) if value else None


def _keep_dead_letter_config(function: LambdaFunction, properties: Any) -> None:
    if isinstance(properties, dict) and "DeadLetterConfig" in properties:
        target = (properties.get("DeadLetterConfig") or {}).get("TargetArn")
        setattr(function, _DEAD_LETTER_ATTRIBUTE, target or None)


@PATCHES.wrap(LambdaFunction, "create_from_cloudformation_json")
def _make_cfn_create(original: Any) -> Any:
    create = original.__func__

    def create_from_cloudformation_json(cls: type[LambdaFunction], /, *args: Any, **kwargs: Any) -> LambdaFunction:
        function: LambdaFunction = create(cls, *args, **kwargs)
        cloudformation_json = kwargs.get("cloudformation_json", args[1] if len(args) > 1 else {})
        _keep_dead_letter_config(function, cloudformation_json.get("Properties"))
        return function

    return classmethod(create_from_cloudformation_json)


@PATCHES.wrap(LambdaFunction, "update_configuration")
def _make_update_configuration(original: Any) -> Any:
    @functools.wraps(original)
    def update_configuration(self: LambdaFunction, config: dict[str, Any]) -> Any:
        result = original(self, config)
        _keep_dead_letter_config(self, config)
        return result

    return update_configuration
