"""EventBridge: SNS topics and SQS queues as rule targets, event buses in other Regions, disabled rules.

A rule whose target is another event bus (a regional forwarder sending to the watch's Region) hands that bus
the event itself, as EventBridge does: ``id``, ``time``, ``region`` (where the event originated), ``account``,
``source``, ``detail-type``, ``resources`` and ``detail`` are the original's
(https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html: ``region`` is the Region the
event originated in, ``id`` traces it as it moves through rules to targets). moto instead puts a new event on
the bus, stamped with the receiving Region, a new id and the time of forwarding, so the watch would name
us-east-1 for a sign-in recorded in us-east-2.

What AWS requires of that target is modelled
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-region.html,
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-bus-perms.html):

* the target's ``RoleArn`` names a role of the rule's account that exists, that EventBridge may assume (its
  trust policy admits ``events.amazonaws.com``, with ``aws:SourceAccount``/``aws:SourceArn`` the rule's), and
  whose permission policies allow ``events:PutEvents`` on the target bus (``_policies`` evaluates them);
* a bus of another account also needs that bus's resource policy to admit the rule's account;
* an event that reached a bus from another bus is not sent on to a third: EventBridge routes one hop
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-account.html).

An event EventBridge may not deliver goes to the target's dead-letter queue, with the error attributes AWS adds
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-event-delivery.html#eb-rule-dlq); permission
errors are not retried. Not modelled: service control policies, permissions boundaries, session policies.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, cast

from moto.events.models import Rule, events_backends
from moto.events.utils import EventTemplateParser
from moto.sns.models import sns_backends
from moto.utilities.arns import parse_arn
from moto.utilities.utils import get_partition

from loginwatch_org.sandbox.behaviour import _policies
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


# Set while a bus delivers an event it received from another bus: that event goes no further bus.
_hop = threading.local()
_EVENTS_SERVICE: Final = "events.amazonaws.com"


def _is_bus(target: Mapping[str, Any]) -> bool:
    arn = parse_arn(target["Arn"])
    return bool(arn.service == "events" and arn.resource_type == "event-bus")


@PATCHES.wrap(Rule, "send_to_targets")
def _make_send_to_targets(original: Any) -> Any:
    """A matching event reaches the rule's SNS topic and event bus targets; a disabled rule matches nothing.

    moto raises NotImplementedError for an SNS target (so PutEvents fails), re-stamps an event sent to
    another bus (see the module's docstring), and delivers to the targets of disabled rules. EventBridge
    publishes the event JSON (or the target's input) to the topic; delivery problems never fail PutEvents.
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sns-permissions
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html (State)
    """

    @functools.wraps(original)
    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        if str(self.state).upper() == "DISABLED":
            return
        queue_targets = [t for t in self.targets if parse_arn(t["Arn"]).service in ("sns", "sqs")]
        bus_targets = [t for t in self.targets if _is_bus(t)]
        others = [t for t in self.targets if t not in queue_targets and t not in bus_targets]
        if others:
            original(_RuleWithTargets(self, others), original_event, transform_input)
        if not (queue_targets or bus_targets) or not self.event_pattern.matches_event(original_event):
            return
        for target in queue_targets:
            try:
                if transform_input:
                    message = _target_input(target, original_event)
                else:
                    message = json.dumps(_event_as_delivered(original_event))
                _publish(target, message)
            except Exception:
                logger.exception("Delivering an event from rule %s to %s failed", self.name, target["Arn"])
        if getattr(_hop, "forwarded", False):
            return
        for target in bus_targets:
            _send_to_bus(self, target, original_event)

    return send_to_targets


def _publish(target: Mapping[str, Any], message: str) -> None:
    """Publish to a topic, or send to a queue: the whole event, ``account`` included, unless the target says
    otherwise (moto's queue targets get an event without ``account``)."""
    from moto.sqs.models import sqs_backends

    arn = parse_arn(target["Arn"])
    if arn.service == "sns":
        sns_backends[arn.account][arn.region].publish(message=message, arn=target["Arn"])
        return
    group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
    sqs_backends[arn.account][arn.region].send_message(
        queue_name=arn.resource_id, message_body=message, group_id=group_id
    )


def _send_to_bus(rule: Rule, target: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    """Put the event itself on the target bus, or dead-letter it when EventBridge could not."""
    refusal = _refusal(rule, target)
    if refusal is not None:
        _dead_letter(rule, target, event, *refusal)
        return
    bus = parse_arn(target["Arn"])
    deliver(bus.account, bus.region, bus.resource_id, event, forwarded=True)


def deliver(account: str, region: str, bus_name: str, event: Mapping[str, Any], *, forwarded: bool = False) -> None:
    """Hand ``event`` (shaped as moto's rules take it: ``time`` and ``ingestion-time`` in epoch seconds) to every
    rule of the bus, as EventBridge does with an event it accepted; a ``forwarded`` one goes to no further bus."""
    receiving = events_backends[account][region].event_buses[bus_name]
    previous = getattr(_hop, "forwarded", False)
    _hop.forwarded = forwarded
    try:
        for receiving_rule in list(receiving.rules.values()):
            receiving_rule.send_to_targets(cast(Any, copy.deepcopy(dict(event))))
    finally:
        _hop.forwarded = previous


def _refusal(rule: Rule, target: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why EventBridge could not put the event on the target bus (error code and message), or None."""
    from moto.iam.models import iam_backends

    from loginwatch_org.sandbox.behaviour.mail_account import organization_of

    bus = parse_arn(target["Arn"])
    if bus.resource_id not in events_backends[bus.account][bus.region].event_buses:
        return "RESOURCE_NOT_FOUND", f"Event bus {target['Arn']} does not exist."
    role_arn = str(target.get("RoleArn") or "")
    same_region = bus.region == rule.region_name
    if not role_arn:
        # Only a bus of another account in the same Region may be a target without a role (its resource
        # policy alone admits the sender); every cross-Region and same-account bus target needs one.
        if same_region and bus.account != rule.account_id:
            return _bus_policy_refusal(rule, target, organization_of(rule.account_id, get_partition(rule.region_name)))
        return "NO_PERMISSIONS", f"Rule {rule.arn} sends to {target['Arn']} without a role."
    denied = "NO_PERMISSIONS", f"EventBridge could not use role {role_arn} to put events on {target['Arn']}."
    try:
        role = iam_backends[rule.account_id][get_partition(rule.region_name)].get_role_by_arn(role_arn)
    except Exception:  # moto raises its own not-found error
        return denied
    trust = _policies.document(role.assume_role_policy_document)
    context = {"aws:SourceAccount": rule.account_id, "aws:SourceArn": rule.arn}
    if not _policies.allowed([trust], "sts:AssumeRole", None, context, _is_events_service):
        return denied
    if not _policies.allowed(_policies.role_documents(role), "events:PutEvents", target["Arn"], {}):
        return denied
    if bus.account != rule.account_id:
        return _bus_policy_refusal(rule, target, organization_of(rule.account_id, get_partition(rule.region_name)))
    return None


def _is_events_service(principal: Any) -> bool:
    return isinstance(principal, Mapping) and _EVENTS_SERVICE in _policies.values(principal.get("Service"))


def _bus_policy_refusal(rule: Rule, target: Mapping[str, Any], organization_id: str | None) -> tuple[str, str] | None:
    """A bus of another account takes events only when its resource policy admits the sending account."""
    bus = parse_arn(target["Arn"])
    receiving = events_backends[bus.account][bus.region].event_buses[bus.resource_id]
    raw = receiving.policy
    if not raw:
        return "NO_PERMISSIONS", f"Event bus {target['Arn']} has no policy admitting account {rule.account_id}."
    context = {
        "aws:PrincipalAccount": rule.account_id,
        "aws:PrincipalOrgID": organization_id,
        "aws:SourceArn": rule.arn,
        "aws:SourceAccount": rule.account_id,
    }

    def admits(principal: Any) -> bool:
        if principal == "*":
            return True
        found = _policies.values(principal.get("AWS")) if isinstance(principal, Mapping) else []
        return any(
            value in ("*", rule.account_id, f"arn:{get_partition(rule.region_name)}:iam::{rule.account_id}:root")
            for value in found
        )

    if _policies.allowed([_policies.document(raw)], "events:PutEvents", target["Arn"], context, admits):
        return None
    return "NO_PERMISSIONS", f"Event bus {target['Arn']} does not admit events from account {rule.account_id}."


def _dead_letter(rule: Rule, target: Mapping[str, Any], event: Mapping[str, Any], code: str, message: str) -> None:
    """The event goes to the target's dead-letter queue, with the attributes EventBridge adds."""
    from moto.sqs.models import sqs_backends

    queue_arn = str((target.get("DeadLetterConfig") or {}).get("Arn") or "")
    logger.warning("Rule %s could not deliver an event to %s: %s", rule.arn, target["Arn"], message)
    if not queue_arn:
        return  # no dead-letter queue: EventBridge drops the event
    queue = parse_arn(queue_arn)
    attributes = {
        "RULE_ARN": rule.arn,
        "TARGET_ARN": str(target["Arn"]),
        "ERROR_CODE": code,
        "ERROR_MESSAGE": message,
    }
    try:
        sqs_backends[queue.account][queue.region].send_message(
            queue_name=queue.resource_id,
            message_body=json.dumps(_event_as_delivered(event)),
            message_attributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )
    except Exception:
        logger.exception("Dead-lettering an event of rule %s to %s failed", rule.arn, queue_arn)
