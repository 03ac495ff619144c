"""Reading a P3-sized partition: FedProx's Synthetic(0, 0) on 1,000 devices, data.npz ~210 MiB.

Times load_partition's first read of data.npz (every array hashed in full as it streams, as when
flcli's cache holds no record of the file, or with fl inspect --verify) against a later read (the
record of that very file trusted, nothing hashed), in the stored float64 and straight in float32;
then the peak RSS of a whole `fl train --rounds 1` in float64 and in float32. Each figure comes
from a child process (its peak RSS its own), with flcli's cache in a temporary dir. data.npz is
in the page cache throughout (written just before): a cold disk adds its read time to every read.

    python benchmarks/loading.py [--clients 1000] [--repeats 3]
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from common import FL, spread, timed

LOAD = """
import json, sys, time
from flcli.data.store import load_partition
path, dtype, verify, repeats = sys.argv[1], sys.argv[2], sys.argv[3] == "verify", int(sys.argv[4])
seconds = []
for _ in range(repeats):
    start = time.perf_counter()
    load_partition(path, None if dtype == "stored" else dtype, verify=verify)
    seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


def write_p3(out: Path, clients: int) -> None:
    command = [*FL, "partition", f"synthetic:alpha=0,beta=0,clients={clients}"]
    seconds, peak, _ = timed(
        [*command, "--clients", str(clients), "--seed", "0", "--out", str(out)]
    )
    size = (out / "data.npz").stat().st_size / 2**20
    print(f"fl partition: {seconds:.1f} s, {peak:.0f} MiB peak RSS; data.npz {size:.0f} MiB")


def load_seconds(partition: Path, dtype: str, verify: bool, repeats: int) -> list[float]:
    how = "verify" if verify else "trust"
    _, _, out = timed([sys.executable, "-c", LOAD, str(partition), dtype, how, str(repeats)])
    return json.loads(out.strip().splitlines()[-1])


def train_peak(partition: Path, dtype: str, out: Path) -> tuple[float, float]:
    command = [*FL, "train", str(partition), "--rounds", "1", "--dtype", dtype, "--out", str(out)]
    seconds, peak, _ = timed(command)
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flcli-bench-") as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # the children's records
        partition = Path(tmp) / "p3"
        write_p3(partition, args.clients)
        for dtype in ("stored", "float32"):
            first = load_seconds(partition, dtype, True, args.repeats)
            later = load_seconds(partition, dtype, False, args.repeats)
            print(f"load_partition in {dtype}: first read {spread(first)}, later {spread(later)}")
        for dtype in ("float64", "float32"):
            runs = [
                train_peak(partition, dtype, Path(tmp) / f"{dtype}-{i}")
                for i in range(args.repeats)
            ]
            peaks = [peak for _, peak in runs]
            walls = [seconds for seconds, _ in runs]
            print(
                f"fl train --rounds 1 --dtype {dtype}: {spread(peaks, 'MiB', 0)} peak RSS, "
                f"{spread(walls)} wall"
            )


if __name__ == "__main__":
    main()
