"""The one family of errors a user can see. Every error the tool raises for a person to act on derives from
``LoginwatchError`` and carries its exit code, so the command line has a single boundary that prints
``Error: ...`` and exits with that code; anything else reaching it is a bug, still shown without a traceback."""

from __future__ import annotations

EXIT_ERROR = 1
EXIT_USAGE = 2
# 128 + SIGINT, what shells report for a command stopped with Ctrl-C.
EXIT_INTERRUPTED = 130


class LoginwatchError(Exception):
    """An error whose message tells the user what happened and what to do; ``exit_code`` is the status."""

    exit_code: int = EXIT_ERROR


class UsageError(LoginwatchError):
    """Bad input on the command line or in a file: nothing was sent to AWS."""

    exit_code = EXIT_USAGE


class Interrupted(LoginwatchError):
    """Ctrl-C: the command stopped where it was."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)


class RolloutInterrupted(Interrupted):
    """Ctrl-C during a rollout or removal. ``submitted`` are the OperationIds already accepted by AWS: they run
    on without us, and rerunning the same command waits for them and then plans again."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, submitted: tuple[str, ...] = ()) -> None:
        self.submitted = submitted
        if submitted:
            message = (
                f"interrupted; {len(submitted)} operation(s) already submitted keep running in AWS: "
                + ", ".join(submitted)
                + ". Rerun the same command to wait for them and finish the rollout."
            )
        else:
            message = "interrupted before any operation was submitted; nothing changed"
        super().__init__(message)
