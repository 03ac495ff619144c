"""Runs a command and writes its wall seconds and peak RSS (KiB) to a file: `python launch.py
RESULT_FILE COMMAND...`, exit code the command's.

A process started from a large one reports the large one's peak as its own (Linux carries a
process's peak RSS over into the program it executes, and subprocess starts programs with vfork):
the benchmark harness holds generated data, so it starts every measured command through this small
process instead.
"""

import json
import os
import subprocess
import sys
import time


def main() -> None:
    result, command = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    with open(result, "w") as f:
        json.dump({"wall": wall, "maxrss_kib": usage.ru_maxrss}, f)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
