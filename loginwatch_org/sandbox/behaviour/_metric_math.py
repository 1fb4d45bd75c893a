"""CloudWatch metric math, the part an alarm in this product uses, over time series held as lists.

A series is one value per period, oldest first, ``None`` where the period has no datapoint. Semantics follow
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html:

* arithmetic treats a missing value as 0; a comparison of a series with a scalar gives 1 or 0 where the series
  has a value;
* ``FILL(ts, S | REPEAT)``: a number, or the last value before the gap (a leading gap stays empty);
* ``DIFF(ts)``: each value minus the one before it (the first has none);
* ``IF(condition, a, b)``: ``a`` where the condition is non-zero (0 where ``a`` has no value there), ``b`` where it
  is zero (dropped where ``b`` has none), nothing where the condition has no value.

Any other function is refused, so an alarm this module cannot evaluate is never given a state it would not have.
Pure: no moto, no clock.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeAlias

Series: TypeAlias = list[float | None]
Value: TypeAlias = float | Series

_TOKEN: Final = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(>=|<=|==|!=|[<>()+\-*/,]))")
_COMPARISONS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_ARITHMETIC: Final[dict[str, Callable[[float, float], float]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}


class UnsupportedExpression(ValueError):
    """The expression uses something this model does not evaluate."""


def evaluate(expression: str, series: Mapping[str, Series], length: int) -> Series:
    """The series ``expression`` gives over ``series`` (each ``length`` long), named by query id."""
    tokens = _tokenize(expression)
    parser = _Parser(tokens, series, length)
    value = parser.comparison()
    if parser.position != len(tokens):
        raise UnsupportedExpression(f"unexpected {tokens[parser.position]!r} in {expression!r}")
    if isinstance(value, float):
        raise UnsupportedExpression(f"{expression!r} gives a number, not a time series")
    return value


def _tokenize(expression: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if match is None:
            raise UnsupportedExpression(f"cannot read {expression[position:]!r}")
        tokens.append(next(group for group in match.groups() if group is not None))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: Sequence[str], series: Mapping[str, Series], length: int) -> None:
        self.tokens = tokens
        self.series = series
        self.length = length
        self.position = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token != expected):
            raise UnsupportedExpression(f"expected {expected or 'more'}, found {token!r}")
        self.position += 1
        return token

    def comparison(self) -> Value:
        left = self._sum()
        token = self._peek()
        if token in _COMPARISONS:
            self._take()
            compare = _COMPARISONS[token]
            return _combine(left, self._sum(), lambda a, b: 1.0 if compare(a, b) else 0.0, self.length, False)
        return left

    def _sum(self) -> Value:
        value = self._product()
        while self._peek() in ("+", "-"):
            apply = _ARITHMETIC[self._take()]
            value = _combine(value, self._product(), apply, self.length, True)
        return value

    def _product(self) -> Value:
        value = self._factor()
        while self._peek() in ("*", "/"):
            apply = _ARITHMETIC[self._take()]
            value = _combine(value, self._factor(), apply, self.length, True)
        return value

    def _factor(self) -> Value:
        token = self._take()
        if token == "-":
            return _combine(0.0, self._factor(), operator.sub, self.length, True)
        if token == "(":
            value = self.comparison()
            self._take(")")
            return value
        if token[0].isdigit():
            return float(token)
        if self._peek() == "(":
            return self._call(token)
        if token not in self.series:
            raise UnsupportedExpression(f"no query has the id {token!r}")
        return list(self.series[token])

    def _call(self, name: str) -> Value:
        self._take("(")
        arguments: list[Value | str] = []
        while self._peek() != ")":
            if self._peek() == "REPEAT":
                arguments.append(self._take())
            else:
                arguments.append(self.comparison())
            if self._peek() == ",":
                self._take()
        self._take(")")
        if name == "FILL" and len(arguments) == 2:
            return _fill(_as_series(arguments[0]), arguments[1])
        if name == "DIFF" and len(arguments) == 1:
            return _diff(_as_series(arguments[0]))
        if name == "IF" and len(arguments) in (2, 3):
            otherwise = arguments[2] if len(arguments) == 3 else None
            return _if(arguments[0], arguments[1], otherwise, self.length)
        raise UnsupportedExpression(f"{name} with {len(arguments)} argument(s) is not modelled")


def _as_series(value: Value | str) -> Series:
    if not isinstance(value, list):
        raise UnsupportedExpression(f"{value!r} is not a time series")
    return value


def _at(value: Value | str | None, index: int) -> float | None:
    if isinstance(value, list):
        return value[index]
    if isinstance(value, float):
        return value
    return None


def _combine(
    left: Value, right: Value, apply: Callable[[float, float], float], length: int, missing_is_zero: bool
) -> Value:
    if isinstance(left, float) and isinstance(right, float):
        return apply(left, right)
    out: Series = []
    for index in range(length):
        a, b = _at(left, index), _at(right, index)
        if a is None and b is None:
            out.append(None)
        elif (a is None or b is None) and not missing_is_zero and (isinstance(left, float) or isinstance(right, float)):
            out.append(None)  # a series compared with a number has a result only where the series has a value
        else:
            out.append(apply(a or 0.0, b or 0.0))
    return out


def _fill(series: Series, filler: Value | str) -> Series:
    if filler == "REPEAT":
        out: Series = []
        last: float | None = None
        for value in series:
            last = value if value is not None else last
            out.append(last)
        return out
    return [value if value is not None else _at(filler, index) for index, value in enumerate(series)]


def _diff(series: Series) -> Series:
    return [
        None if index == 0 or value is None or series[index - 1] is None else value - (series[index - 1] or 0.0)
        for index, value in enumerate(series)
    ]


def _if(condition: Value | str, then: Value | str, otherwise: Value | str | None, length: int) -> Series:
    out: Series = []
    for index in range(length):
        test = _at(condition, index)
        if test is None:
            out.append(None)
        elif test != 0:
            chosen = _at(then, index)
            out.append(0.0 if chosen is None else chosen)
        else:
            out.append(_at(otherwise, index))
    return out
