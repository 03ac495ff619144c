"""Helpers shared by the benchmark scripts: timing child processes, summaries, machine facts."""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

FL = [sys.executable, "-m", "flcli"]


def timed(command: list[str]) -> tuple[float, float, str]:
    """Run a child process; (wall seconds, its peak RSS in MiB, its stdout). Fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, done.stdout


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
