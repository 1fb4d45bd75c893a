"""CloudWatch: an alarm on a queue's visible messages is evaluated period by period, and says what it finds.

moto never evaluates an alarm: its state only changes through SetAlarmState. The dead-letter alarms watch
``AWS/SQS`` ``ApproximateNumberOfMessagesVisible`` of a dead-letter queue (``QueueName`` dimension), alone or
through a metric math expression, and must change state when alerts land there so that whoever they notify
hears of it. Here each queue's visible count is observed whenever its messages change (a message sent or
deleted, the queue purged) and on a clock, and kept as one datapoint per period, the period's maximum, as SQS
publishes it once a minute: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
sqs-available-cloudwatch-metrics.html. Each alarm is evaluated as CloudWatch does, over its last
``EvaluationPeriods`` datapoints with ``DatapointsToAlarm`` breaching to alarm, missing data as its
``TreatMissingData`` says (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html),
its expression through ``_metric_math``. Actions run only when the state changes
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-actions.html):

* an "CloudWatch Alarm State Change" event on the account's default bus in the alarm's Region (source
  ``aws.cloudwatch``, the alarm's ARN in ``resources``, ``state`` and ``previousState`` in ``detail``):
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html
* the alarm's actions for the new state (``AlarmActions``/``OKActions``) that are SNS topics get the alarm's
  notification message.

A period lasts ``LOGINWATCH_SANDBOX_ALARM_PERIOD_SECONDS`` (default 5 s) instead of the alarm's own, so a demo
sees an alarm return to OK in seconds rather than minutes: that changes when an alarm is evaluated, never what
it decides. The newest period counts from the moment a message arrives, where CloudWatch sees it a minute or
two later. Not modelled: other metrics, statistics other than the maximum, INSUFFICIENT_DATA.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import operator
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from moto.sqs.models import SQSBackend

from loginwatch_org.sandbox.behaviour import _metric_math
from loginwatch_org.sandbox.behaviour._core import Patches

logger = logging.getLogger(__name__)

PATCHES: Final = Patches()

ALARM_PERIOD_ENVIRONMENT: Final = "LOGINWATCH_SANDBOX_ALARM_PERIOD_SECONDS"
DEFAULT_ALARM_PERIOD_SECONDS: Final = 5.0
# CloudWatch fetches more datapoints than the alarm evaluates, so DIFF and FILL have a past to work from.
_EXTRA_PERIODS: Final = 5
_KEPT_PERIODS: Final = 50

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


def alarm_period_seconds() -> float:
    raw = os.environ.get(ALARM_PERIOD_ENVIRONMENT, "")
    try:
        return max(0.05, float(raw)) if raw else DEFAULT_ALARM_PERIOD_SECONDS
    except ValueError:
        return DEFAULT_ALARM_PERIOD_SECONDS


@dataclass
class _QueueMetric:
    """One queue's visible count, the maximum seen in each period, by period number."""

    datapoints: dict[int, float] = field(default_factory=dict)

    def observe(self, period: int, visible: float) -> None:
        self.datapoints[period] = max(visible, self.datapoints.get(period, visible))
        for old in [p for p in self.datapoints if p <= period - _KEPT_PERIODS]:
            del self.datapoints[old]

    def series(self, last: int, length: int) -> _metric_math.Series:
        return [self.datapoints.get(period) for period in range(last - length + 1, last + 1)]


_metrics: dict[tuple[str, str, str], _QueueMetric] = {}
_lock = threading.RLock()
_stop = threading.Event()
_clock: list[threading.Thread] = []


@PATCHES.on_revert
def _stop_clock() -> None:
    _stop.set()
    for thread in _clock:
        thread.join(timeout=5)
    _clock.clear()
    _stop.clear()
    with _lock:
        _metrics.clear()


def _evaluating(original: Any) -> Any:
    """After moto changes a queue's messages, the alarms on that queue are evaluated."""

    @functools.wraps(original)
    def changed(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        result = original(self, queue_name, *args, **kwargs)
        try:
            _start_clock()
            evaluate_queue_alarms(self.account_id, self.region_name, queue_name)
        except Exception:  # an alarm problem never fails the queue operation
            logger.exception("Evaluating the alarms of queue %s failed", queue_name)
        return result

    return changed


for _name in ("send_message", "delete_message", "purge_queue"):
    PATCHES.wrap(SQSBackend, _name)(_evaluating)


def _start_clock() -> None:
    """Periods pass whether or not a queue changes: one thread observes every watched queue each period."""
    with _lock:
        if _clock and _clock[0].is_alive():
            return
        thread = threading.Thread(target=_tick, name="sandbox-alarm-clock", daemon=True)
        _clock[:] = [thread]
        thread.start()


def _tick() -> None:
    while not _stop.wait(alarm_period_seconds() / 4):
        with _lock:
            watched = list(_metrics)
        for account, region, queue_name in watched:
            try:
                evaluate_queue_alarms(account, region, queue_name)
            except Exception:
                logger.exception("Evaluating the alarms of queue %s failed", queue_name)


@dataclass(frozen=True)
class _Watched:
    """What an alarm evaluates: the id of its queue metric, its queries in order, and the one it returns."""

    metric_id: str
    expressions: tuple[tuple[str, str], ...]
    returned: str


def _watched(alarm: Any, queue_name: str) -> _Watched | None:
    """How ``alarm`` reads ``queue_name``'s visible messages, if it does."""

    def on_queue(namespace: str, metric_name: str, dimensions: Any) -> bool:
        if (namespace, metric_name) != _QUEUE_METRIC:
            return False
        return any(d.name == "QueueName" and d.value == queue_name for d in dimensions or [])

    queries = list(alarm.metric_data_queries or [])
    if not queries:
        return _Watched("m1", (), "m1") if on_queue(alarm.namespace, alarm.metric_name, alarm.dimensions) else None
    stats = [q for q in queries if q.metric_stat is not None]
    if len(stats) != 1:
        return None
    metric = stats[0].metric_stat.metric
    if not on_queue(metric.namespace, metric.metric_name, metric.dimensions):
        return None
    returned = [q.id for q in queries if str(q.return_data).lower() in ("true", "none")]
    expressions = tuple((q.id, str(q.expression)) for q in queries if q.expression)
    return _Watched(stats[0].id, expressions, returned[-1] if returned else queries[-1].id)


def evaluate_queue_alarms(account: str, region: str, queue_name: str) -> None:
    """Record ``queue_name``'s visible count for this period and evaluate every alarm on it."""
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[account][region].queues.get(queue_name)
    if queue is None:
        with _lock:
            _metrics.pop((account, region, queue_name), None)
        return
    now = math.floor(time.time() / alarm_period_seconds())
    with _lock:
        metric = _metrics.setdefault((account, region, queue_name), _QueueMetric())
        metric.observe(now, float(queue.approximate_number_of_messages))
        for alarm in list(cloudwatch_backends[account][region].alarms.values()):
            watched = _watched(alarm, queue_name)
            if watched is not None:
                _evaluate(account, region, alarm, watched, metric, now)


def _evaluate(account: str, region: str, alarm: Any, watched: _Watched, metric: _QueueMetric, now: int) -> None:
    compare = _COMPARISONS.get(str(alarm.comparison_operator))
    if compare is None or alarm.threshold is None:
        return
    periods = int(alarm.evaluation_periods or 1)
    length = periods + _EXTRA_PERIODS
    series = {watched.metric_id: metric.series(now, length)}
    try:
        for query_id, expression in watched.expressions:
            series[query_id] = _metric_math.evaluate(expression, series, length)
    except _metric_math.UnsupportedExpression:
        logger.warning("Alarm %s is not evaluated: its expression is not modelled", alarm.name, exc_info=True)
        return
    evaluated = series[watched.returned][-periods:]
    missing_breaches = str(alarm.treat_missing_data or "missing") == "breaching"
    threshold = float(alarm.threshold)
    breaching = [v for v in evaluated if v is not None and compare(v, threshold)]
    count = len(breaching) + (missing_breaches * sum(v is None for v in evaluated))
    needed = int(alarm.datapoints_to_alarm or periods)
    state = "ALARM" if count >= needed else "OK"
    if state == alarm.state_value:
        return
    previous = {
        "value": alarm.state_value,
        "reason": alarm.state_reason,
        "timestamp": _iso(alarm.state_updated_timestamp),
    }
    words = _WORDS[str(alarm.comparison_operator)]
    stamp = _iso(datetime.now(UTC))
    if state == "ALARM":
        shown = ", ".join(f"{v} ({stamp})" for v in breaching) or "missing"
        reason = (
            f"Threshold Crossed: {count} out of the last {periods} datapoints [{shown}] was {words} the threshold "
            f"({threshold}) (minimum {needed} datapoint for OK -> ALARM transition)."
        )
    else:
        shown = ", ".join(str(v) for v in evaluated if v is not None) or "missing"
        reason = (
            f"Threshold Crossed: no more than {count} of the last {periods} datapoints [{shown}] were {words} the "
            f"threshold ({threshold}) (minimum {periods - needed + 1} datapoints for ALARM -> OK transition)."
        )
    alarm.update_state(reason, json.dumps({"version": "1.0", "queryDate": stamp}), state)
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
                "metrics": _event_metrics(alarm),
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
            "Trigger": _trigger(alarm),
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


def _event_metrics(alarm: Any) -> list[dict[str, Any]]:
    """The alarm's queries as an alarm state change event describes them."""
    queries = list(alarm.metric_data_queries or [])
    if not queries:
        stat = {
            "metric": {
                "namespace": alarm.namespace,
                "name": alarm.metric_name,
                "dimensions": {d.name: d.value for d in alarm.dimensions or []},
            },
            "period": alarm.period,
            "stat": alarm.statistic,
        }
        return [{"id": "m1", "metricStat": stat, "returnData": True}]
    described: list[dict[str, Any]] = []
    for query in queries:
        entry: dict[str, Any] = {"id": query.id, "returnData": str(query.return_data).lower() == "true"}
        if query.expression:
            entry["expression"] = query.expression
        if query.label:
            entry["label"] = query.label
        if query.metric_stat is not None:
            metric = query.metric_stat.metric
            entry["metricStat"] = {
                "metric": {
                    "namespace": metric.namespace,
                    "name": metric.metric_name,
                    "dimensions": {d.name: d.value for d in metric.dimensions or []},
                },
                "period": int(query.metric_stat.period or 60),
                "stat": query.metric_stat.stat,
            }
        described.append(entry)
    return described


def _trigger(alarm: Any) -> dict[str, Any]:
    """The notification's ``Trigger``: the metric of a single-metric alarm, or the queries of a metric math one."""
    common = {
        "EvaluationPeriods": alarm.evaluation_periods,
        "ComparisonOperator": alarm.comparison_operator,
        "Threshold": alarm.threshold,
    }
    if not alarm.metric_data_queries:
        return {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "Statistic": str(alarm.statistic or "").upper(),
            "Dimensions": [{"name": d.name, "value": d.value} for d in alarm.dimensions or []],
            "Period": alarm.period,
            **common,
        }
    metrics = [{key[0].upper() + key[1:]: value for key, value in entry.items()} for entry in _event_metrics(alarm)]
    return {"Metrics": metrics, **common}
