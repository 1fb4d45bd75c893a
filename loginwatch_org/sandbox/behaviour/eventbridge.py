"""EventBridge: SNS topics as rule targets, and disabled rules that match nothing."""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, cast

from moto.events.models import Rule
from moto.events.utils import EventTemplateParser
from moto.sns.models import sns_backends
from moto.utilities.arns import parse_arn

from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()


class _RuleWithTargets:
    """A rule seen with only some of its targets, for moto's own delivery to the others."""

    def __init__(self, rule: Rule, targets: list[dict[str, Any]]) -> None:
        self._rule = rule
        self.targets = targets

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rule, name)


def _event_as_delivered(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event JSON a target receives: ISO 8601 time, no moto bookkeeping."""
    delivered = {k: copy.deepcopy(v) for k, v in event.items() if k != "ingestion-time"}
    when = delivered.get("time")
    if isinstance(when, int | float):
        delivered["time"] = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(when, datetime):
        delivered["time"] = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return delivered


def _json_path(path: str, document: Mapping[str, Any]) -> Any:
    from jsonpath_ng.ext import parse  # type: ignore[attr-defined]

    matches = parse(path).find(document)
    return matches[0].value if matches else None


def _target_input(target: Mapping[str, Any], event: Mapping[str, Any]) -> str:
    """What EventBridge sends a target: Input, InputPath, InputTransformer, or the whole event.

    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html
    """
    delivered = _event_as_delivered(event)
    if "Input" in target:
        return str(target["Input"])
    if "InputPath" in target:
        return json.dumps(_json_path(target["InputPath"], delivered))
    if "InputTransformer" in target:
        transformer = target["InputTransformer"]
        paths = transformer.get("InputPathsMap") or {}
        try:
            parsed = EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"),
                input_paths_map=paths,
                event=cast(Any, {**delivered, "ingestion-time": event.get("ingestion-time")}),
            )
            return json.dumps(parsed)
        except ValueError:
            # Not a JSON template: EventBridge sends the text with the placeholders filled in.
            text = str(transformer.get("InputTemplate", ""))
            for name, path in paths.items():
                value = _json_path(path, delivered)
                text = text.replace(f"<{name}>", value if isinstance(value, str) else json.dumps(value))
            return text
    return json.dumps(delivered)


@PATCHES.wrap(Rule, "send_to_targets")
def _make_send_to_targets(original: Any) -> Any:
    """A matching event reaches the rule's SNS topic targets; a disabled rule matches nothing.

    moto raises NotImplementedError for an SNS target (so PutEvents fails) and delivers to the
    targets of disabled rules.  EventBridge publishes the event JSON (or the target's input) to
    the topic; delivery problems never fail PutEvents.
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sns-permissions
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html (State)
    """

    @functools.wraps(original)
    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        if str(self.state).upper() == "DISABLED":
            return
        sns_targets = [t for t in self.targets if parse_arn(t["Arn"]).service == "sns"]
        others = [t for t in self.targets if t not in sns_targets]
        if others:
            original(_RuleWithTargets(self, others), original_event, transform_input)
        if not sns_targets or not self.event_pattern.matches_event(original_event):
            return
        for target in sns_targets:
            topic = parse_arn(target["Arn"])
            try:
                if transform_input:
                    message = _target_input(target, original_event)
                else:
                    message = json.dumps(_event_as_delivered(original_event))
                sns_backends[topic.account][topic.region].publish(message=message, arn=target["Arn"])
            except Exception:
                logger.exception("Delivering an event from rule %s to %s failed", self.name, target["Arn"])

    return send_to_targets
