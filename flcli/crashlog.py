"""The last line of defence of `fl`: an exception nobody expected becomes one line on stderr and
a log file holding its traceback, for a bug report. Set FL_RAISE_INTERNAL_ERRORS=1 to let it
through instead (the test suite does, so that a bug fails a test rather than hiding in a log)."""

import os
import tempfile
import time
import traceback
from pathlib import Path

from flcli.fileio import user_cache_dir

RAISE_ENV = "FL_RAISE_INTERNAL_ERRORS"


def raise_internal_errors() -> bool:
    return os.environ.get(RAISE_ENV, "") not in ("", "0")


def log_dir() -> Path | None:
    cache = user_cache_dir()
    return None if cache is None else cache / "errors"


def write_log(error: BaseException, argv: list[str]) -> Path | None:
    """The traceback and the arguments in a new file; None when no folder can take it."""
    text = f"fl {' '.join(argv)}\n\n" + "".join(traceback.format_exception(error))
    name = f"internal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        if folder is None:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        except OSError:
            continue
        return folder / name
    return None


def internal_error_line(error: BaseException, argv: list[str]) -> str:
    """internal error: <what>; details in <log>, please report it."""
    log = write_log(error, argv)
    what = " ".join(f"{type(error).__name__}: {error}".split())[:300]
    where = f"details in {log}" if log else "no log could be written"
    return f"internal error: {what}; {where}, please report it at the flcli issue tracker"
