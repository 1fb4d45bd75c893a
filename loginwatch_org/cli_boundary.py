"""The command line's one error boundary, and the progress spinner it must put away.

Every command runs inside ``boundary``: a ``LoginwatchError`` becomes ``Error: ...`` on stderr (or a JSON error
object on stdout with ``--json``) and its exit code; Ctrl-C stops the spinner, so the terminal gets its
cursor back, and exits 130; anything else is a bug, still shown as one line without a traceback.

Kept free of heavy imports, typer included: ``--help`` loads this module, and so does ``validate``'s path that
bypasses typer (``loginwatch_org.entry``), which reports its failures through ``failure_exit_code`` like every
other command.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from loginwatch_org.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Interrupted, LoginwatchError

P = ParamSpec("P")
R = TypeVar("R")


class Progress:
    """Progress on stderr: a spinner showing the latest step on a terminal, plain lines otherwise."""

    _active: list[Progress] = []  # noqa: RUF012 - the spinners the boundary stops, whatever happens
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._spinner: Any = None

    def __call__(self, message: str) -> None:
        if not sys.stderr.isatty():
            note(message)
            return
        # Units read at once may report at once: one spinner, whichever thread starts it.
        with Progress._lock:
            if self._spinner is None:
                from rich.console import Console

                self._spinner = Console(stderr=True).status(message)
                self._spinner.start()
                Progress._active.append(self)
            self._spinner.update(message)

    def pause(self) -> None:
        """Clear the spinner before printing results, so the two never interleave."""
        with Progress._lock:
            if self._spinner is not None:
                self._spinner.stop()
                self._spinner = None
                if self in Progress._active:
                    Progress._active.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for progress in list(cls._active):
            progress.pause()


def note(message: str) -> None:
    """One line of progress on stderr, for steps too short for a spinner (wrapped to the terminal's width)."""
    from loginwatch_org.cli_options import terminal_width
    from loginwatch_org.text import fit

    _line(fit(f"  ... {message}", terminal_width()), err=True)


def _line(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def error_document(error: BaseException, exit_code: int) -> dict[str, Any]:
    """The JSON object a failing command prints on stdout with ``--json``."""
    body: dict[str, Any] = {"type": type(error).__name__, "message": _message(error), "exit_code": exit_code}
    problems = getattr(error, "problems", None)
    if problems:
        body["problems"] = list(problems)
    submitted = getattr(error, "submitted", None)
    if submitted is not None:
        body["submitted"] = list(submitted)
    return {"error": body}


def _message(error: BaseException) -> str:
    if getattr(error, "problems", None):
        return f"invalid configuration ({len(error.problems)} problem(s))"  # type: ignore[attr-defined]
    return str(error)


def _report(error: BaseException, exit_code: int, as_json: bool) -> int:
    Progress.stop_all()
    if as_json:
        _line(json.dumps(error_document(error, exit_code), indent=2))
    else:
        problems = getattr(error, "problems", None)
        if problems:
            _line(f"Invalid configuration ({len(problems)} problem(s)):", err=True)
            for problem in problems:
                _line(f"  {problem}", err=True)
        elif exit_code == EXIT_INTERRUPTED:
            text = str(error) or "interrupted"
            _line(text[:1].upper() + text[1:], err=True)
        else:
            _line(f"Error: {error}", err=True)
    return exit_code


class UnexpectedError(Exception):
    """A failure no code path expected: a bug, reported in one line without a traceback."""


# 128 + SIGPIPE, what a shell reports for a writer whose reader closed the pipe.
EXIT_BROKEN_PIPE = 141


def failure_exit_code(error: BaseException, *, as_json: bool = False, detailed_exitcode: bool = False) -> int:
    """Report ``error`` as the user should see it (one line, or a JSON object on stdout with ``as_json``) and
    return the exit status. ``detailed_exitcode``: 2 means "changes pending", so a usage error must be 1. Anything
    that is not an error (SystemExit) is raised again."""
    if isinstance(error, KeyboardInterrupt):
        return _report(Interrupted(), EXIT_INTERRUPTED, as_json)
    if isinstance(error, BrokenPipeError):
        # The reader went away (``| head``): not an error of ours. Later writes (the interpreter's own flush at
        # exit) go nowhere instead of raising again; the status is the shell's for a closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    if isinstance(error, LoginwatchError):
        code = error.exit_code
        if detailed_exitcode and code == EXIT_USAGE:
            code = EXIT_ERROR
        return _report(error, code, as_json)
    if not isinstance(error, Exception):
        raise error
    from loginwatch_org.aws.errors import explain, is_aws_error

    if is_aws_error(error):
        return _report(explain(error), EXIT_ERROR, as_json)
    unexpected = UnexpectedError(
        f"unexpected {type(error).__name__}: {error} (this is a bug in loginwatch-org; please report it with the "
        "command you ran)"
    )
    return _report(unexpected, EXIT_ERROR, as_json)


def boundary(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command`` so that no exception reaches the user as a traceback.

    Reads two of the command's own options: ``as_json`` (errors as a JSON object on stdout) and
    ``detailed_exitcode`` (where 2 means "changes pending", so a usage error must be 1).
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        import typer  # loaded already: typer is what calls a command

        from loginwatch_org.suggest import invocation

        try:
            with invocation(kwargs):
                return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except BaseException as error:
            code = failure_exit_code(
                error, as_json=bool(kwargs.get("as_json")), detailed_exitcode=bool(kwargs.get("detailed_exitcode"))
            )
            raise typer.Exit(code) from None
        finally:
            Progress.stop_all()

    return run
