"""The `fl` console script: the command line, with a Ctrl-C or SIGTERM that arrives while Python
is still importing it (before flcli.cli's own handling exists) ending in one line, not a
traceback."""

import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def stopped(signum, frame) -> None:
    raise KeyboardInterrupt


def run() -> None:
    default_term = signal.signal(signal.SIGTERM, stopped)
    try:
        from flcli.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted while starting; nothing was written: run it again\n")
        sys.exit(INTERRUPTED)
    finally:
        signal.signal(signal.SIGTERM, default_term)
    main()
