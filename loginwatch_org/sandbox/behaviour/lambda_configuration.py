"""Lambda: GetFunctionConfiguration names the function's log group.

AWS returns ``LoggingConfig`` (its ``LogGroup`` and ``LogFormat``) with every function's configuration
(https://docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html); moto leaves it out, though the
sandbox sends the function's logs to that group (``cfn_updates``).
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
        return configuration

    return get_configuration
