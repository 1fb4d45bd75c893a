"""The ``loginwatch-org`` executable.

``validate`` with nothing but its own options (``-c/--config FILE``, ``--json``) runs here without loading typer:
typer builds a pydantic adapter for each parameter it coerces, and with typer itself that costs more start-up
time than the whole validation (``bench/startup_bench.py``). ``validate`` is the command that runs on every edit
of the config, in editors' and CI's hooks. Anything else, ``validate --help`` and every mistake on the command
line included, goes to the typer application, which owns help and usage errors; a failure is reported by the
same ``failure_exit_code`` as every other command.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from loginwatch_org import CONFIG_FLAGS, DEFAULT_CONFIG_PATH, JSON_FLAG, VALIDATE_COMMAND
from loginwatch_org.errors import EXIT_INTERRUPTED


def plain_validate(args: Sequence[str]) -> tuple[Path, bool] | None:
    """(config file, --json) when ``args`` are ``validate`` and its own options, spelt as click reads them;
    None for anything else."""
    if not args or args[0] != VALIDATE_COMMAND:
        return None
    config, as_json = DEFAULT_CONFIG_PATH, False
    rest = list(args[1:])
    while rest:
        arg = rest.pop(0)
        name, equals, value = arg.partition("=")
        if arg == JSON_FLAG:
            as_json = True
        elif arg in CONFIG_FLAGS and rest and not rest[0].startswith("-"):
            config = Path(rest.pop(0))
        elif equals and name == CONFIG_FLAGS[0] and value and not value.startswith("-"):
            config = Path(value)
        else:
            return None
    return config, as_json


def validate(config: Path, as_json: bool) -> int:
    """``loginwatch-org validate``: the summary, or every problem of the file with exit status 2."""
    try:
        from loginwatch_org.config import load_config
        from loginwatch_org.validation import Validation

        validation = Validation(config, load_config(config))
        text = json.dumps(validation.document(), indent=2) if as_json else "\n".join(validation.lines())
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BaseException as error:
        from loginwatch_org.cli_boundary import failure_exit_code

        return failure_exit_code(error, as_json=as_json)
    return 0


def main(args: Sequence[str] | None = None) -> None:
    # Pydantic plugins are found through entry points (https://docs.pydantic.dev/api/plugin/), which reads the
    # metadata of every installed package; none has any business with this tool's config models, whichever
    # command loads them. An explicit PYDANTIC_DISABLE_PLUGINS is respected.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    plain = plain_validate(sys.argv[1:] if args is None else args)
    if plain is not None:
        sys.exit(validate(*plain))
    from loginwatch_org.cli import app

    try:
        app(args=None if args is None else list(args))
    except SystemExit as exit_:
        if exit_.code == EXIT_INTERRUPTED:
            _leave_now(EXIT_INTERRUPTED)
        raise


def _leave_now(code: int) -> None:
    """End the process now, its report already printed. After Ctrl-C, AWS calls may still be in flight in
    worker threads (each ends only at its read timeout), and the interpreter's normal exit joins every one of
    them: the user who pressed Ctrl-C would wait for calls whose answers nobody reads. What AWS already accepted
    runs on without us and was named in the report; nothing of ours is left half-written (nothing buffers
    writes to files), so skipping the joins loses nothing."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
