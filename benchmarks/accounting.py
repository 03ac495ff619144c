"""Time DP's accounting (issue #23, point 5): the epsilon column of a 30-round run.

1. Accounting alone, q = 0.1, z = 1.0, delta = 1e-5, rounds 1..30, for rdp and pld:
   before: dp.epsilon(q, z, t, delta) every round, a fresh accountant composing t rounds (what
   the round loop called until RunAccountant); after: dp.RunAccountant, which works out one
   round once. Both lists of epsilons must be equal to the last bit.
2. Whole `fl train` runs: digits, 100 IID clients, 10 per round (q = 0.1), 30 rounds,
   --dp-clip 1.0 with --dp-noise 1.0 or --dp-epsilon 8, for each accountant. With
   --baseline DIR (a checkout of the code before, e.g. `git archive main | tar -x -C DIR`), the
   same runs with DIR's flcli too, and their epsilon columns compared as written.

Run: .venv/bin/python benchmarks/accounting.py [--baseline DIR] [--repeats 1]
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flcli.privacy import dp

ROUNDS = 30
Q, Z, DELTA = 0.1, 1.0, 1e-5
PRIVACY = {"noise": ["--dp-noise", "1.0"], "epsilon": ["--dp-epsilon", "8"]}


def accounting(accountant: str) -> dict:
    """Seconds of the epsilon column's accounting, before and after, and whether they agree."""
    start = time.perf_counter()
    before = [dp.epsilon(Q, Z, t, DELTA, accountant) for t in range(1, ROUNDS + 1)]
    middle = time.perf_counter()
    run = dp.RunAccountant(Q, Z, DELTA, accountant)
    after = [run.epsilon_after(t) for t in range(1, ROUNDS + 1)]
    end = time.perf_counter()
    return {"before": middle - start, "after": end - middle, "identical": before == after}


def fl(source: str | None, *args: str) -> float:
    """Wall seconds of one `fl` process, with source's flcli first on the path if given."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = source
    start = time.perf_counter()
    # not from the repository: `python -m` puts the working directory ahead of PYTHONPATH
    outside = tempfile.gettempdir()
    command = [sys.executable, "-m", "flcli", *args]
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=outside)
    return time.perf_counter() - start


def epsilons(run: Path) -> list[str]:
    with open(run / "rounds.csv") as file:
        return [row["epsilon"] for row in csv.DictReader(file)]


def whole_runs(work: Path, part: Path, sources: dict, repeats: int) -> list[str]:
    lines = []
    for accountant in dp.ACCOUNTANTS:
        for privacy, flags in PRIVACY.items():
            columns = {}
            for label, source in sources.items():
                walls = []
                for repeat in range(repeats):
                    run = work / f"{label}-{accountant}-{privacy}-{repeat}"
                    train = [
                        "train", str(part), "--rounds", str(ROUNDS), "--clients-per-round", "10",
                        "--dp-clip", "1.0", *flags, "--dp-accountant", accountant,
                        "--seed", "0", "--out", str(run),
                    ]  # fmt: skip
                    walls.append(fl(source, *train))
                columns[label] = epsilons(run)
                lines.append(
                    f"| {accountant} | --dp-{privacy} | {label} | {statistics.median(walls):.1f} "
                    f"({min(walls):.1f}-{max(walls):.1f}) |"
                )
            if len(columns) == 2:
                same = columns["before"] == columns["after"]
                lines.append(f"| {accountant} | --dp-{privacy} | identical epsilons | {same} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a checkout of flcli before the change")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with open("/proc/loadavg") as file:
        print(f"load average before: {file.read().strip()}")
    print(f"| accountant | accounting of {ROUNDS} rounds before (s) | after (s) | identical |")
    print("|---|---|---|---|")
    for accountant in dp.ACCOUNTANTS:
        timed = accounting(accountant)
        print(
            f"| {accountant} | {timed['before']:.2f} | {timed['after']:.2f} | "
            f"{timed['identical']} |"
        )
    work = Path(tempfile.mkdtemp(prefix="flcli-bench-accounting-"))
    try:
        part = work / "part"
        fl(None, "partition", "digits", "--clients", "100", "--seed", "0", "--out", str(part))
        sources = {"after": None}
        if args.baseline is not None:
            sources = {"before": str(Path(args.baseline).resolve()), "after": None}
        print(f"\n| accountant | privacy | code | whole {ROUNDS}-round run, wall s |")
        print("|---|---|---|---|")
        for line in whole_runs(work, part, sources, args.repeats):
            print(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open("/proc/loadavg") as file:
        print(f"load average after: {file.read().strip()}")


if __name__ == "__main__":
    main()
