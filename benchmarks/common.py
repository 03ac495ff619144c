"""Helpers shared by the benchmark scripts: timing child processes, summaries, machine facts."""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

FL = [sys.executable, "-m", "flcli"]
HERE = os.path.dirname(os.path.abspath(__file__))


def timed(command: list[str]) -> tuple[float, float, str]:
    """Run a child process; (wall seconds, its own peak RSS in MiB, its stdout). Fails loudly.

    The command is started, timed and measured by launch.py, a small process of its own, so that
    its peak RSS is not this (possibly large) process's."""
    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "result.json")
        with (
            open(os.path.join(folder, "out"), "w+") as out,
            open(os.path.join(folder, "err"), "w+") as err,
        ):
            code = subprocess.run(launched(command, result), stdout=out, stderr=err).returncode
            out.seek(0)
            err.seek(0)
            if code != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-2000:]}")
            with open(result) as f:
                measured = json.load(f)
            return measured["wall"], measured["maxrss_kib"] / 1024, out.read()


def launched(command: list[str], result: str) -> list[str]:
    """command run through launch.py, which writes its wall time and own peak RSS to result."""
    return [sys.executable, os.path.join(HERE, "launch.py"), str(result), *command]


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
    from importlib.metadata import version

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__} ({blas}), scikit-learn {version('scikit-learn')}; the MLP step: "
        f"numba {version('numba')}, scipy-openblas64 {version('scipy-openblas64')}"
    )
