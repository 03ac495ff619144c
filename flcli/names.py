"""Names that become paths (a sweep's name, its run and partition ids) stay inside their parent:
letters, digits and . _ = , + - only, never `.` or `..`, so a name is neither a path traversal nor
a command when a shell or a Makefile expands it."""

import re

from flcli.errors import FLError

SAFE = re.compile(r"[A-Za-z0-9_=,+.\-]+")


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and bool(SAFE.fullmatch(name)) and name.strip(".") != ""


def check_name(name: object, what: str, example: str) -> str:
    if not is_safe_name(name):
        raise FLError(
            f"{what} {name!r} must be letters, digits and . _ = , + - only (not . or ..), "
            f"e.g. {example}"
        )
    return name
