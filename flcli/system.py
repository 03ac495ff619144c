"""The clients' devices: compute speed, bandwidths and availability, for the simulated clock.

A client k has a compute speed s_k (samples per second), a download and an upload bandwidth d_k,
u_k (bytes per second) and availability windows. Following FedScale's simulator (Lai et al. 2022,
"FedScale: Benchmarking Model and System Performance of Federated Learning at Scale"), a client
that receives D bytes, takes S local steps of batch B and sends U bytes is busy for

    t_k = D / d_k + S * B / s_k + U / u_k   seconds.

--system chooses the devices:

- identical (default): s = 100 samples/s, d = 1.25e6 B/s (10 Mbit/s), u = 6.25e5 B/s for all;
- lognormal[:sigma=S]: each of the three is the identical value times exp(S z), z ~ N(0, 1) drawn
  per client and quantity from rng(seed, SYSTEM, 0, client), so medians stay the identical ones
  and the tail is heavy, as FedScale's device traces are (default S = 1);
- FILE.csv with columns client,compute_sps,down_bps,up_bps: one row for each client 0..N-1;
- FILE.json in FedScale's device-capacity format, {"<id>": {"computation": ms per sample,
  "communication": kbit/s}}: the entries in the file's order are given to clients 0, 1, ... in
  turn (cycling when the trace has fewer), both directions at the communication rate. FedScale
  ships it as a pickle; flcli never unpickles a file, so convert yours once, in Python:
  json.dump(pickle.load(open(IN, "rb")), open(OUT, "w")).

--availability chooses when clients can be sampled (default: always):

- FILE.csv with columns client,start_s,end_s: a client listed is available only inside its
  windows (any number of rows each); a client not listed always is;
- FILE.json in FedScale's client-behaviour format, {"<id>": {"active": [s, ...], "inactive":
  [s, ...], "finish_time": s}}: available from each active time to the next inactive one, the
  pattern repeating every finish_time seconds; entries given to clients in turn as above.
"""

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flcli.errors import FLError
from flcli.rng import Purpose, rng

COMPUTE_SPS, DOWN_BPS, UP_BPS = 100.0, 1.25e6, 6.25e5
DEVICE_COLUMNS = ("client", "compute_sps", "down_bps", "up_bps")
WINDOW_COLUMNS = ("client", "start_s", "end_s")
EXAMPLE = "e.g. identical, lognormal:sigma=1 or devices.csv"


@dataclass(frozen=True)
class Windows:
    """Availability windows: client[W], start[W], end[W] (seconds), repeating every period[W]
    seconds (inf: never); clients without a window are always available."""

    client: np.ndarray
    start: np.ndarray
    end: np.ndarray
    period: np.ndarray

    def available(self, num_clients: int, now: float) -> np.ndarray:
        """[N] whether each client is available at time now."""
        listed = np.zeros(num_clients, dtype=bool)
        listed[self.client] = True
        phase = np.where(np.isinf(self.period), now, np.fmod(now, self.period))
        inside = (self.start <= phase) & (phase < self.end)
        open_now = np.zeros(num_clients, dtype=bool)
        open_now[self.client[inside]] = True
        return ~listed | open_now

    def next_opening(self, now: float) -> float:
        """The first time after now at which a window opens (inf if none does)."""
        phase = np.where(np.isinf(self.period), now, np.fmod(now, self.period))
        base = now - phase
        later = np.where(self.start > phase, base + self.start, base + self.period + self.start)
        return float(later.min()) if later.size else math.inf


@dataclass(frozen=True)
class System:
    compute_sps: np.ndarray  # [N]
    down_bps: np.ndarray  # [N]
    up_bps: np.ndarray  # [N]
    windows: Windows | None = None

    def seconds(self, ids, samples, bytes_down, bytes_up) -> np.ndarray:
        """[K] how long each client of ids is busy: download, local samples, upload."""
        ids = np.asarray(ids, dtype=np.int64)
        return (
            np.asarray(bytes_down, dtype=np.float64) / self.down_bps[ids]
            + np.asarray(samples, dtype=np.float64) / self.compute_sps[ids]
            + np.asarray(bytes_up, dtype=np.float64) / self.up_bps[ids]
        )

    def available(self, now: float) -> np.ndarray:
        """[N] whether each client can be sampled at time now."""
        if self.windows is None:
            return np.ones(self.compute_sps.size, dtype=bool)
        return self.windows.available(self.compute_sps.size, now)

    def next_opening(self, now: float) -> float:
        return math.inf if self.windows is None else self.windows.next_opening(now)


def identical(num_clients: int) -> System:
    full = np.full(num_clients, 1.0)
    return System(COMPUTE_SPS * full, DOWN_BPS * full, UP_BPS * full)


def lognormal(num_clients: int, seed: int, sigma: float) -> System:
    z = np.array([rng(seed, Purpose.SYSTEM, 0, k).standard_normal(3) for k in range(num_clients)])
    spread = np.exp(sigma * z.reshape(num_clients, 3))
    return System(COMPUTE_SPS * spread[:, 0], DOWN_BPS * spread[:, 1], UP_BPS * spread[:, 2])


def parse_sigma(value: str) -> float:
    _, _, rest = value.partition(":")
    if not rest:
        return 1.0
    key, _, number = rest.partition("=")
    try:
        sigma = float(number)
    except ValueError:
        sigma = math.nan
    if key != "sigma" or not (math.isfinite(sigma) and sigma >= 0):
        raise FLError(f"--system {value!r} must be lognormal:sigma=S with S >= 0, e.g. 1")
    return sigma


def check_system(value: str) -> None:
    """FLError unless value names a system model (a file must exist)."""
    if value == "identical" or value.startswith("lognormal"):
        if value.startswith("lognormal") and value != "lognormal":
            if not value.startswith("lognormal:"):
                raise FLError(f"--system {value!r} is not a system model; {EXAMPLE}")
            parse_sigma(value)
        return
    if Path(value).suffix.lower() not in (".csv", ".json"):
        raise FLError(f"--system {value!r} is not a system model; {EXAMPLE}")
    if not Path(value).is_file():
        raise FLError(f"--system {value}: no such file; give a device CSV or FedScale JSON")


def build_system(value: str, availability: str | None, num_clients: int, seed: int) -> System:
    """The run's devices from --system and --availability."""
    check_system(value)
    if value == "identical":
        system = identical(num_clients)
    elif value.startswith("lognormal"):
        system = lognormal(num_clients, seed, parse_sigma(value))
    elif value.lower().endswith(".csv"):
        system = read_devices_csv(Path(value), num_clients)
    else:
        system = read_fedscale_devices(Path(value), num_clients)
    if availability is None:
        return system
    path = Path(availability)
    if not path.is_file():
        raise FLError(f"--availability {availability}: no such file; give a CSV or FedScale JSON")
    if path.suffix.lower() == ".csv":
        windows = read_windows_csv(path, num_clients)
    elif path.suffix.lower() == ".json":
        windows = read_fedscale_behaviour(path, num_clients)
    else:
        raise FLError(f"--availability {availability} must be a .csv or FedScale .json file")
    return System(system.compute_sps, system.down_bps, system.up_bps, windows)


def csv_rows(path: Path, columns: tuple[str, ...], flag: str) -> list[dict]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [name.strip() for name in reader.fieldnames or []]
            if header != list(columns):
                raise FLError(
                    f"{flag} {path} has columns {','.join(header) or 'none'}; it needs the header "
                    f"{','.join(columns)}"
                )
            return [{key.strip(): value for key, value in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise FLError(f"{flag} {path} cannot be read as CSV ({e}); give a UTF-8 CSV file") from None


def number_in(row: dict, column: str, line: int, path: Path, flag: str, positive: bool) -> float:
    text = row.get(column)
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a positive number" if positive else "a number >= 0"
        raise FLError(f"{flag} {path} line {line}: {column} {text!r} must be {need}")
    return value


def client_in(row: dict, line: int, path: Path, flag: str, num_clients: int) -> int:
    text = row.get("client")
    try:
        client = int(str(text).strip())
    except ValueError:
        client = -1
    if not 0 <= client < num_clients:
        raise FLError(
            f"{flag} {path} line {line}: client {text!r} must be an id from 0 to {num_clients - 1}"
        )
    return client


def read_devices_csv(path: Path, num_clients: int) -> System:
    flag = "--system"
    values = np.full((num_clients, 3), math.nan)
    for line, row in enumerate(csv_rows(path, DEVICE_COLUMNS, flag), start=2):
        client = client_in(row, line, path, flag, num_clients)
        values[client] = [number_in(row, c, line, path, flag, True) for c in DEVICE_COLUMNS[1:]]
    missing = np.flatnonzero(np.isnan(values[:, 0]))
    if missing.size:
        raise FLError(
            f"--system {path} has no row for client {missing[0]} ({missing.size} missing); give "
            f"one row for each client 0..{num_clients - 1}"
        )
    return System(values[:, 0], values[:, 1], values[:, 2])


def read_windows_csv(path: Path, num_clients: int) -> Windows:
    flag = "--availability"
    rows = csv_rows(path, WINDOW_COLUMNS, flag)
    found = []
    for line, row in enumerate(rows, start=2):
        client = client_in(row, line, path, flag, num_clients)
        start = number_in(row, "start_s", line, path, flag, False)
        end = number_in(row, "end_s", line, path, flag, False)
        if end <= start:
            raise FLError(f"{flag} {path} line {line}: end_s {end:g} must exceed start_s {start:g}")
        found.append((client, start, end))
    table = np.array(found, dtype=np.float64).reshape(-1, 3)
    period = np.full(len(found), math.inf)
    return Windows(table[:, 0].astype(np.int64), table[:, 1], table[:, 2], period)


def json_entries(path: Path, flag: str) -> list:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FLError(f"{flag} {path} is not JSON ({e}); give FedScale's format as JSON") from None
    if not isinstance(loaded, dict) or not loaded:
        raise FLError(f"{flag} {path} must be a JSON object of client id -> entry, not empty")
    return list(loaded.items())


def read_fedscale_devices(path: Path, num_clients: int) -> System:
    entries = json_entries(path, "--system")
    values = []
    for key, entry in entries:
        try:
            ms, kbps = float(entry["computation"]), float(entry["communication"])
        except (TypeError, KeyError, ValueError):
            ms = kbps = math.nan
        if not (math.isfinite(ms) and math.isfinite(kbps) and ms > 0 and kbps > 0):
            raise FLError(
                f"--system {path}: client {key} needs positive 'computation' (ms per sample) and "
                "'communication' (kbit/s)"
            )
        values.append((1000.0 / ms, kbps * 125.0))
    table = np.array([values[k % len(values)] for k in range(num_clients)])
    return System(table[:, 0], table[:, 1], table[:, 1].copy())


def read_fedscale_behaviour(path: Path, num_clients: int) -> Windows:
    entries = json_entries(path, "--availability")
    found = []
    for k in range(num_clients):
        key, entry = entries[k % len(entries)]
        try:
            active = [float(t) for t in entry["active"]]
            inactive = [float(t) for t in entry["inactive"]]
            period = float(entry["finish_time"])
        except (TypeError, KeyError, ValueError):
            active, inactive, period = [], [], math.nan
        if not active or len(inactive) < len(active) or not period > 0:
            raise FLError(
                f"--availability {path}: client {key} needs 'active' and 'inactive' lists of "
                "seconds (one inactive time after each active one) and a positive 'finish_time'"
            )
        pairs = zip(active, inactive[: len(active)], strict=True)
        found.extend((k, on, off, period) for on, off in pairs if off > on)
    table = np.array(found, dtype=np.float64).reshape(-1, 4)
    return Windows(table[:, 0].astype(np.int64), table[:, 1], table[:, 2], table[:, 3])
