"""CloudWatch: an alarm on a queue's visible messages goes to ALARM when messages wait there, and says so.

moto never evaluates an alarm: its state only changes through SetAlarmState. The watch's dead-letter alarm
(``AWS/SQS`` ``ApproximateNumberOfMessagesVisible`` of the dead-letter queue, ``QueueName`` dimension) must go
to ALARM when an undeliverable alert lands in the queue, so that whoever it notifies hears of it. Here every
change to a queue's messages (a message sent, deleted, or the queue purged) evaluates the alarms on that
queue's metric against their threshold at once, rather than at the end of the alarm's period. A state change
is what AWS then does with it:

* an "CloudWatch Alarm State Change" event on the account's default bus in the alarm's Region (source
  ``aws.cloudwatch``, the alarm's ARN in ``resources``, ``state`` and ``previousState`` in ``detail``):
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html
* the alarm's actions for the new state (``AlarmActions``/``OKActions``) that are SNS topics get the alarm's
  notification message:
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-actions.html

Not modelled: other metrics, statistics other than the current count, M-out-of-N evaluation, missing data.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from moto.sqs.models import SQSBackend

from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()

_QUEUE_METRIC: Final = ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
_COMPARISONS: Final[dict[str, Callable[[float, float], bool]]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_WORDS: Final = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}


def _evaluating(original: Any) -> Any:
    """After moto changes a queue's messages, the alarms on that queue are evaluated."""

    @functools.wraps(original)
    def changed(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        result = original(self, queue_name, *args, **kwargs)
        try:
            evaluate_queue_alarms(self.account_id, self.region_name, queue_name)
        except Exception:  # an alarm problem never fails the queue operation
            logger.exception("Evaluating the alarms of queue %s failed", queue_name)
        return result

    return changed


for _name in ("send_message", "delete_message", "purge_queue"):
    PATCHES.wrap(SQSBackend, _name)(_evaluating)


def evaluate_queue_alarms(account: str, region: str, queue_name: str) -> None:
    """Set every alarm on ``queue_name``'s visible messages to the state the current count puts it in."""
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.sqs.models import sqs_backends

    visible = float(sqs_backends[account][region].get_queue(queue_name).approximate_number_of_messages)
    for alarm in list(cloudwatch_backends[account][region].alarms.values()):
        if (alarm.namespace, alarm.metric_name) != _QUEUE_METRIC:
            continue
        if not any(d.name == "QueueName" and d.value == queue_name for d in alarm.dimensions or []):
            continue
        compare = _COMPARISONS.get(str(alarm.comparison_operator))
        if compare is None or alarm.threshold is None:
            continue
        breaching = compare(visible, float(alarm.threshold))
        state = "ALARM" if breaching else "OK"
        if state == alarm.state_value:
            continue
        previous = {
            "value": alarm.state_value,
            "reason": alarm.state_reason,
            "timestamp": _iso(alarm.state_updated_timestamp),
        }
        reason = (
            f"Threshold Crossed: 1 datapoint [{visible} ({_iso(datetime.now(UTC))})] was "
            f"{'' if breaching else 'not '}{_WORDS[str(alarm.comparison_operator)]} the threshold ({alarm.threshold})."
        )
        alarm.update_state(reason, json.dumps({"version": "1.0", "queryDate": _iso(datetime.now(UTC))}), state)
        _tell_eventbridge(account, region, alarm, previous)
        _notify_actions(account, region, alarm, previous["value"])


def _iso(moment: Any) -> str:
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return str(moment or "")


def _tell_eventbridge(account: str, region: str, alarm: Any, previous: dict[str, Any]) -> None:
    from loginwatch_org.sandbox.behaviour.eventbridge import deliver

    now = time.time()
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": account,
        "time": int(now),
        "region": region,
        "resources": [alarm.alarm_arn],
        "detail": {
            "alarmName": alarm.name,
            "state": {
                "value": alarm.state_value,
                "reason": alarm.state_reason,
                "reasonData": alarm.state_reason_data,
                "timestamp": _iso(alarm.state_updated_timestamp),
            },
            "previousState": previous,
            "configuration": {
                "description": alarm.description,
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {
                                "namespace": alarm.namespace,
                                "name": alarm.metric_name,
                                "dimensions": {d.name: d.value for d in alarm.dimensions or []},
                            },
                            "period": alarm.period,
                            "stat": alarm.statistic,
                        },
                        "returnData": True,
                    }
                ],
            },
        },
        "ingestion-time": now,
    }
    deliver(account, region, "default", event)


def _notify_actions(account: str, region: str, alarm: Any, old_state: str) -> None:
    """The alarm's SNS actions for its new state get the alarm notification (JSON, subject naming the alarm)."""
    from moto.sns.models import sns_backends
    from moto.utilities.arns import parse_arn

    if not alarm.actions_enabled:
        return
    actions = {"ALARM": alarm.alarm_actions, "OK": alarm.ok_actions}.get(alarm.state_value) or []
    message = json.dumps(
        {
            "AlarmName": alarm.name,
            "AlarmDescription": alarm.description,
            "AWSAccountId": account,
            "NewStateValue": alarm.state_value,
            "NewStateReason": alarm.state_reason,
            "StateChangeTime": _iso(alarm.state_updated_timestamp),
            "Region": region,
            "AlarmArn": alarm.alarm_arn,
            "OldStateValue": old_state,
            "Trigger": {
                "MetricName": alarm.metric_name,
                "Namespace": alarm.namespace,
                "Statistic": str(alarm.statistic or "").upper(),
                "Dimensions": [{"name": d.name, "value": d.value} for d in alarm.dimensions or []],
                "Period": alarm.period,
                "EvaluationPeriods": alarm.evaluation_periods,
                "ComparisonOperator": alarm.comparison_operator,
                "Threshold": alarm.threshold,
            },
        }
    )
    subject = f'{alarm.state_value}: "{alarm.name}" in {region}'[:100]
    for action in actions:
        arn = parse_arn(str(action))
        if arn.service != "sns":
            continue
        try:
            sns_backends[arn.account][arn.region].publish(message=message, arn=str(action), subject=subject)
        except Exception:
            logger.exception("Notifying %s of alarm %s failed", action, alarm.name)
