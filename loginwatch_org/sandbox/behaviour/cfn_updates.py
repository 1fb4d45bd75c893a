"""CloudFormation: stack updates that change what AWS changes.

A parameter change reaches every resource that depends on it (through Fn::Sub or a condition too),
an inline Lambda function keeps working code and its log group across updates, and an SNS topic is
updated in place rather than replaced.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from collections.abc import Mapping
from typing import Any, Final

from moto.awslambda.models import LambdaFunction
from moto.cloudformation import parsing as cfn_parsing
from moto.core.utils import camelcase_to_underscores
from moto.sns.models import Topic

from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()


def _parameters_used(node: Any, conditions: Mapping[str, Any], seen: set[str] | None = None) -> set[str]:
    """Every name a template fragment depends on: Ref, ``${...}`` in Fn::Sub, and what its
    conditions (``Condition`` and ``Fn::If``) depend on."""
    seen = set() if seen is None else seen
    if isinstance(node, list):
        return set().union(*(_parameters_used(item, conditions, seen) for item in node))
    if not isinstance(node, dict):
        return set()
    found: set[str] = set()
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            found.add(value)
        elif key == "Fn::Sub":
            text = value[0] if isinstance(value, list) and value else value
            if isinstance(text, str):
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            if isinstance(value, list):
                found |= _parameters_used(value[1:], conditions, seen)
        elif key == "Condition" and isinstance(value, str):
            found |= _condition_uses(value, conditions, seen)
        elif key == "Fn::If" and isinstance(value, list) and value:
            found |= _condition_uses(str(value[0]), conditions, seen)
            found |= _parameters_used(value[1:], conditions, seen)
        else:
            found |= _parameters_used(value, conditions, seen)
    return found


def _condition_uses(name: str, conditions: Mapping[str, Any], seen: set[str]) -> set[str]:
    if name in seen:
        return set()
    seen.add(name)
    return _parameters_used(conditions.get(name), conditions, seen)


@PATCHES.wrap(cfn_parsing.ResourceMap, "build_resource_diff")
def _make_build_resource_diff(original: Any) -> Any:
    """A parameter change updates every resource whose properties depend on that parameter.

    AWS re-evaluates the whole template; moto only notices a direct ``Ref`` to the parameter,
    missing values built with ``Fn::Sub`` and values chosen by a condition.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks.html
    """

    @functools.wraps(original)
    def build_resource_diff(
        self: cfn_parsing.ResourceMap,
        other_template: dict[str, Any],
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        diff: dict[str, Any] = original(self, other_template, parameters)
        if not parameters:
            return diff
        changed = {p for p in parameters if self.input_parameters.get(p) != parameters[p]}
        if not changed:
            return diff
        old = self._resource_json_map
        conditions = other_template.get("Conditions") or {}
        for name, resource in other_template.get("Resources", {}).items():
            unchanged_so_far = name in old and name not in diff["Modify"]
            if unchanged_so_far and _parameters_used(resource, conditions) & changed:
                diff["Modify"].append(name)
        return diff

    return build_resource_diff


@PATCHES.wrap(LambdaFunction, "create_from_cloudformation_json")
def _make_lambda_cfn_create(original: Any) -> Any:
    """A function's ``LoggingConfig.LogGroup`` is where its logs go (moto ignores the property).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-loggingconfig.html
    """
    create = original.__func__

    def create_from_cloudformation_json(
        cls: type[LambdaFunction],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> LambdaFunction:
        created = (resource_name, cloudformation_json, account_id, region_name)
        function: LambdaFunction = create(cls, *created, **kwargs)
        _apply_logging_config(function, cloudformation_json["Properties"])
        return function

    return classmethod(create_from_cloudformation_json)


def _apply_logging_config(function: LambdaFunction, properties: Mapping[str, Any]) -> None:
    group = (properties.get("LoggingConfig") or {}).get("LogGroup")
    function.logs_group_name = group or f"/aws/lambda/{function.function_name}"


@PATCHES.replace(LambdaFunction, "update_from_cloudformation_json", classmethod)
def _lambda_cfn_update(
    cls: type[LambdaFunction],
    /,
    original_resource: LambdaFunction,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> LambdaFunction:
    """Updating a function defined with inline ``Code.ZipFile`` keeps working code.

    On create moto zips the inline source; on update it takes the source text for a base64 zip,
    so any update (even just an environment change) fails or leaves broken code behind.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-code.html
    """
    properties = dict(cloudformation_json["Properties"])
    original_resource.update_configuration(properties)
    code = dict(properties["Code"])
    if "ZipFile" in code:
        zipped = LambdaFunction._create_zipfile_from_plaintext_code(code["ZipFile"])
        code["ZipFile"] = base64.b64encode(zipped).decode()
    original_resource.update_function_code(code)
    _apply_logging_config(original_resource, properties)
    return original_resource


# Topic properties that are not topic attributes (moto's create sets every other one by name).
_TOPIC_NON_ATTRIBUTES: Final = frozenset({"TopicName", "FifoTopic", "Subscription", "Tags"})


@PATCHES.wrap(Topic, "update_from_cloudformation_json")
def _make_topic_cfn_update(original: Any) -> Any:
    """An SNS topic keeps its ARN and subscriptions when an update does not rename it.

    AWS updates topic attributes without interruption; moto deletes the topic (and with it every
    subscription) and creates one under a new generated name the rule targets don't point at.
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sns-topic.html
    """
    replace = original.__func__

    def update_from_cloudformation_json(
        cls: type[Topic],
        /,
        original_resource: Topic,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Topic:
        properties = cloudformation_json["Properties"]
        if properties.get("TopicName") not in (None, original_resource.name) or (
            str(properties.get("FifoTopic", False)).lower() == "true"
        ) != bool(original_resource.fifo_topic):
            replaced: Topic = replace(
                cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
            )
            return replaced
        for key, value in properties.items():
            if key not in _TOPIC_NON_ATTRIBUTES:
                setattr(original_resource, camelcase_to_underscores(key), value)
        return original_resource

    return classmethod(update_from_cloudformation_json)
