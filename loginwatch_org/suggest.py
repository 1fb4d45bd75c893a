"""The commands a message tells the user to run next, written for the invocation that printed it.

A fix line that says ``run: loginwatch-org rollout`` after ``status --sandbox`` would send the user to real AWS;
one printed after ``-c staging.yaml --profile audit`` would plan the wrong file with the wrong credentials. The
CLI boundary records the invocation's target options (``invocation``) and every suggestion goes through
``command``, so what is suggested runs against what was just read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from loginwatch_org import DEFAULT_CONFIG_PATH

_TARGET_OPTIONS: ContextVar[tuple[str, ...]] = ContextVar("loginwatch_org_target_options", default=())


def command(rest: str) -> str:
    """``loginwatch-org <rest>`` with the options that chose the config and the account of this invocation."""
    return " ".join(("loginwatch-org", rest, *_TARGET_OPTIONS.get()))


def target_options(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The command-line options, of a command's parsed ``options``, that say what it ran against."""
    chosen: list[str] = []
    config = options.get("config")
    if config is not None and Path(config) != DEFAULT_CONFIG_PATH:
        chosen += ["-c", str(config)]
    for name in ("profile", "region", "endpoint_url"):
        value = options.get(name)
        if value:
            chosen += [f"--{name.replace('_', '-')}", str(value)]
    if options.get("sandbox"):
        chosen.append("--sandbox")
    return tuple(chosen)


@contextmanager
def invocation(options: Mapping[str, Any]) -> Iterator[None]:
    token = _TARGET_OPTIONS.set(target_options(options))
    try:
        yield
    finally:
        _TARGET_OPTIONS.reset(token)
