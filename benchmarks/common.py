"""Helpers shared by the benchmark scripts: timing child processes, summaries, machine facts."""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

FL = [sys.executable, "-m", "flcli"]


def timed(command: list[str]) -> tuple[float, float, str]:
    """Run a child process; (wall seconds, its own peak RSS in MiB, its stdout). Fails loudly."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's rusage, not all children's
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def spread(values: list[float], unit: str = "s", digits: int = 2) -> str:
    """median (min-max)"""
    return (
        f"{statistics.median(values):.{digits}f} {unit} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def machine() -> str:
    import numpy as np

    blas = "unknown BLAS"
    try:
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            blas = f"{infos[0].get('internal_api')} {infos[0].get('version')}"
    except ImportError:
        pass
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__} ({blas})"
    )
