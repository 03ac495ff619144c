"""Partition a generated 1,000,000-row x 20-column CSV into 1,000 Dirichlet clients.

Runs `fl partition big.csv --target label --clients 1000 --scheme dirichlet` in a child process
and reports its wall time and peak resident memory (the target: under 30 s and 2 GB). The CSV is
read with pandas' C engine (pyarrow's reader was measured no faster here and uses more memory).

    python benchmarks/partition.py [--rows 1000000] [--clients 1000] [--alpha 0.5]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import timed

FEATURES = 20
CLASSES = 10


def write_csv(path: Path, rows: int) -> None:
    generator = np.random.default_rng(0)
    labels = generator.integers(0, CLASSES, rows)
    centres = generator.normal(size=(CLASSES, FEATURES))
    X = centres[labels] + generator.normal(size=(rows, FEATURES))
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"f{j}" for j in range(FEATURES)])
    frame["label"] = labels
    try:
        import pyarrow
        import pyarrow.csv
    except ImportError:
        frame.to_csv(path, index=False, float_format="%.5g")
        return
    pyarrow.csv.write_csv(pyarrow.Table.from_pandas(frame, preserve_index=False), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flcli-bench-") as tmp:
        csv = Path(tmp) / "big.csv"
        start = time.perf_counter()
        write_csv(csv, args.rows)
        size_mb = csv.stat().st_size / 1e6
        print(
            f"wrote {csv.name}: {args.rows:,} rows x {FEATURES} features + label, "
            f"{size_mb:.0f} MB in {time.perf_counter() - start:.1f} s"
        )
        command = [
            sys.executable,
            "-m",
            "flcli",
            "partition",
            str(csv),
            "--target",
            "label",
            "--clients",
            str(args.clients),
            "--scheme",
            "dirichlet",
            "--alpha",
            str(args.alpha),
            "--seed",
            "0",
            "--out",
            str(Path(tmp) / "part"),
        ]
        seconds, peak_mib, stdout = timed(command)  # the child's own peak, not this process's
        peak_gb = peak_mib / 1024
        print(stdout.strip().splitlines()[-1])
        print(
            f"fl partition, {args.clients} Dirichlet({args.alpha}) clients, "
            f"{seconds:.1f} s wall, {peak_gb:.2f} GB peak RSS "
            f"(targets: < 30 s, < 2 GB)"
        )


if __name__ == "__main__":
    main()
