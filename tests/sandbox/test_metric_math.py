"""The sandbox's metric math, and what the dead-letter alarm's own expressions make of a queue's minutes."""

from __future__ import annotations

import pytest

from loginwatch_org.sandbox.behaviour._metric_math import Series, UnsupportedExpression, evaluate
from loginwatch_org.templates.blocks import MORE_WAITING_EXPRESSION, WAITING_EXPRESSION


def _alarm_value(visible: Series) -> Series:
    """The dead-letter alarm's returned series for one datapoint per minute of the queue's visible count."""
    waiting = evaluate(WAITING_EXPRESSION, {"visible": visible}, len(visible))
    return evaluate(MORE_WAITING_EXPRESSION, {"visible": visible, "waiting": waiting}, len(visible))


def test_the_alarm_value_is_how_many_wait_in_each_minute_more_arrived_and_zero_otherwise() -> None:
    assert _alarm_value([0.0, 1.0, 1.0, 1.0, 3.0, 3.0, 2.0, 0.0]) == [None, 1.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]


def test_the_first_message_of_a_queue_without_datapoints_is_a_rise() -> None:
    # An empty queue left alone for six hours is inactive and SQS publishes nothing for it.
    assert _alarm_value([None, None, None, 1.0]) == [None, 0.0, 0.0, 1.0]


def test_a_late_or_missing_minute_is_no_rise_from_zero() -> None:
    assert _alarm_value([2.0, None, 2.0, None]) == [None, 0.0, 0.0, 0.0]
    assert _alarm_value([2.0, None, 3.0]) == [None, 0.0, 3.0]


def test_fill_diff_and_if_follow_the_documented_semantics() -> None:
    series = {"m1": [30.0, 20.0, 0.0, 0.0], "m2": [20.0, None, 20.0, None]}
    assert evaluate("FILL(m2, 5)", series, 4) == [20.0, 5.0, 20.0, 5.0]
    assert evaluate("FILL(m2, REPEAT)", series, 4) == [20.0, 20.0, 20.0, 20.0]
    assert evaluate("DIFF(m1)", series, 4) == [None, -10.0, -20.0, 0.0]
    assert evaluate("m1 - m2", series, 4) == [10.0, 20.0, -20.0, 0.0]  # missing counts as 0 in arithmetic
    assert evaluate("IF(m1 >= 20, m2, 7)", series, 4) == [20.0, 0.0, 7.0, 7.0]
    assert evaluate("IF(m2 > 0, 1, 0)", series, 4) == [1.0, None, 1.0, None]


@pytest.mark.parametrize("expression", ["SUM(METRICS())", "ANOMALY_DETECTION_BAND(m1)", "m3", "AVG(m1)", "m1 +", "5"])
def test_what_is_not_modelled_is_refused_rather_than_guessed(expression: str) -> None:
    with pytest.raises(UnsupportedExpression):
        evaluate(expression, {"m1": [1.0]}, 1)
