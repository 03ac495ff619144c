"""Errors the command line maps to exit codes.

FLError (a ValueError) is bad usage or input: exit code 2, one line naming the value and the fix.
RunFailed is a run that went wrong while running (diverged, interrupted): exit code 1.
"""


class FLError(ValueError):
    """A wrong value from the user; the message names it and says how to fix it."""


class RunFailed(RuntimeError):
    """A run that failed at run time; its run dir is marked and can be resumed or inspected."""


def first_line(failure: BaseException) -> str:
    """The first line of an exception's text, or its type's name when it has none (SQLAlchemy,
    huggingface_hub and others add pages below the line that says what happened)."""
    text = str(failure).strip() or type(failure).__name__
    return text.splitlines()[0]
