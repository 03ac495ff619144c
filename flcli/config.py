"""The training configuration: what the user gave, each option declared once (flcli.options).

A TrainConfig only stores and checks its values one by one: construction never fills a default
that depends on something else (the model's learning rate, the algorithm's hyperparameters), so
`dataclasses.replace(config, algo="fedavg")` is the config with another algorithm, nothing more.
flcli.assemble.resolve fills those defaults against the partition, into a TrainConfig whose every
field is set; run.json stores both (`given` and `config`).
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from flcli.algorithms.robust_rules import aggregators, spelled_out
from flcli.errors import FLError
from flcli.models.registry import lr_defaults
from flcli.numbers import round_half_up
from flcli.options import (
    Check,
    above,
    at_least,
    check_fields,
    from_mapping,
    one_of,
    option,
    parse_key_values,
    positive_int,
    within,
)

BACKENDS = ("vectorized", "serial", "process", "ray")
DTYPES = ("float64", "float32")
TRACKERS = ("mlflow", "tensorboard")
# how a run is computed, saved and tracked: never what it computes
NOT_IN_DIGEST = ("backend", "jobs", "ray_address", "checkpoint_every", "track", "track_uri")
FLUSH_SECONDS = 1.0  # without --checkpoint-every, rounds.csv and the checkpoint lag at most this
MAX_HIDDEN = 100_000
PRIVACY, ROBUSTNESS, ALGORITHM, TIME = "Privacy", "Robustness", "Algorithm", "Simulated time"
COMMUNICATION, TRACKING, EVALUATION = "Communication", "Tracking", "Evaluation"
# Options added after runs were recorded, with the value that gives the behaviour from before
# them: left out of the digest at that value, so that a run of an older flcli keeps its digest
# (and resumes, and a sweep finds it done).
DIGEST_IF_SET = {
    "server_weighting": "samples",
    "compress": None,
    "compress_down": None,
    "error_feedback": None,
    "system": "identical",
    "availability": None,
    "concurrency": None,
    "round_deadline": None,
    "over_select": None,
    "dp_publish_uncovered": False,
    "eval_every": 1,
    "eval_clients": 1.0,
}


def parse_hidden(value) -> tuple[int, ...]:
    """--hidden "128,64" (or a list from a config file) -> (128, 64)."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        sizes = tuple(int(str(part).strip()) for part in parts)
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1 or max(sizes) > MAX_HIDDEN:
        raise FLError(
            f"--hidden {value!r} must be layer sizes in [1, {MAX_HIDDEN:,}] separated by commas, "
            "e.g. 128,64"
        )
    return sizes


def parse_model_args(items: list[str]) -> dict[str, Any]:
    return parse_key_values(items, "--model-arg")


def parse_algo_args(items: list[str]) -> dict[str, Any]:
    return parse_key_values(items, "--algo-arg")


@dataclass(frozen=True)
class TrainConfig:
    algo: str = option(
        "fedavg", "Aggregation algorithm (see: fl list algorithms), or your own: FILE.py:FACTORY."
    )
    model: str = option(
        "softmax",
        "Model (see: fl list models), or your own: FILE.py:CLASS.",
    )
    rounds: int = option(20, "Communication rounds.", check=positive_int(20, 10**6))
    local_epochs: int = option(2, "Local epochs per round.", check=positive_int(2, 10**5))
    batch_size: int = option(16, "Local minibatch size.", check=positive_int(16))
    lr: float | None = option(
        None,
        "Local SGD learning rate; the default depends on --model (for sklearn:NAME it scales an "
        "algorithm's correction step, and scaffold, feddyn and qfedavg take it for the client's "
        "step size: give the estimator's own, e.g. --model-arg eta0=0.01 --model-arg "
        "learning_rate='constant' --lr 0.01; for forests, boosted trees and k-NN it is the step of "
        "feddist's softmax student).",
        show_default=lr_defaults(),
        check=above(0, 0.1),
    )
    clients_per_round: int | None = option(
        None, "Clients sampled per round.", show_default="all", check=positive_int(10)
    )
    fraction: float | None = option(
        None,
        "Fraction of clients sampled per round (rounded half up, at least 1).",
        show_default="all",
        check=within(0, 1, 0.1, "(]"),
    )
    seed: int = option(
        0,
        "Seed of every random stream.",
        check=Check(
            lambda v: isinstance(v, int) and 0 <= v < 2**63,
            "must be an integer >= 0 and below 2^63, e.g. 0",
        ),
    )
    backend: str = option(
        "vectorized",
        "vectorized (fast), serial (reference), process (worker processes) or ray "
        "(pip install 'flcli\\[ray]').",
        check=one_of(*BACKENDS),
    )
    jobs: int | None = option(
        None,
        "Worker processes (process) or CPUs of the local Ray (ray).",
        show_default="all cores (process), 2 (ray)",
        check=positive_int(2, 4096),
    )
    ray_address: str | None = option(
        None, "Join this Ray cluster (e.g. auto) instead of starting a local one."
    )
    checkpoint_every: int | None = option(
        None,
        "Save rounds.csv and checkpoint.npz every N rounds.",
        show_default="each second",
        check=positive_int(5),
    )
    hidden: tuple[int, ...] | None = option(
        None,
        "Hidden layer sizes of --model mlp, e.g. 256,128.",
        show_default="128,64",
        cli_type=str,
        parse=parse_hidden,
    )
    proxy: str = option(
        "holdout",
        "FedDF's (--algo feddist) unlabeled proxy set: holdout (a --proxy-fraction of every "
        "shard, held out of training), a partition dir (its test features) or a .npz, .csv or "
        ".parquet file of features; from outside the shards, no client loses a row.",
        metavar="holdout|DIR|FILE",
    )
    dtype: str = option(
        "float64", "float64, or float32 (half the memory, faster).", check=one_of(*DTYPES)
    )
    model_args: dict[str, Any] = option(
        {},
        "Constructor argument of a sklearn:NAME or your own model, key=value (a Python literal "
        "or a string); repeatable.",
        flag="--model-arg",
        show_default=False,
        cli_type=list[str],
        parse=parse_model_args,
    )
    algo_args: dict[str, Any] = option(
        {},
        "Hyperparameter of the algorithm, key=value (a Python literal or a string); repeatable. "
        "Its defaults: fl list algorithms.",
        flag="--algo-arg",
        show_default=False,
        cli_type=list[str],
        parse=parse_algo_args,
        panel=ALGORITHM,
    )
    server_weighting: str = option(
        "samples",
        "How the server's mean weighs the clients' updates: samples (by their sample counts) or "
        "uniform (each arriving client once, as the SCAFFOLD and FedOpt papers average; DP "
        "weighs equally anyway; fednova, qfedavg and feddyn weigh by their own rule).",
        panel=ALGORITHM,
        check=one_of("samples", "uniform"),
    )
    stragglers: float = option(
        0.0,
        "Fraction of each round's clients doing fewer local steps.",
        check=within(0, 1, 0.5, "[]"),
    )
    drop_stragglers: bool | None = option(
        None,
        "Leave stragglers out of the aggregate, or use their partial work.",
        flag="--drop-stragglers/--keep-stragglers",
        show_default="drop for fedavg, keep for the others",
    )
    log_clients: bool = option(
        False, "Write clients.csv (each client, each round).", flag="--log-clients"
    )
    dp_clip: float | str | None = option(
        None,
        "DP-FedAvg: clip each client's update to this L2 norm, or 'adaptive' (Andrew et al. "
        "2021). Needs --dp-noise or --dp-epsilon.",
        panel=PRIVACY,
        show_default="no DP",
        cli_type=str,
    )
    dp_noise: float | None = option(
        None,
        "DP noise multiplier z: Gaussian noise of std z*C on the sum of updates.",
        panel=PRIVACY,
        check=at_least(0, 1.0),
    )
    dp_epsilon: float | None = option(
        None,
        "Instead of --dp-noise: the epsilon the whole run may spend.",
        panel=PRIVACY,
        check=above(0, 2),
    )
    dp_delta: float | None = option(
        None,
        "DP delta: keep it well below 1/clients.",
        panel=PRIVACY,
        show_default="min(1e-5, clients^-1.1)",
        check=within(0, 1, 1e-5, "()"),
    )
    dp_accountant: str = option(
        "rdp",
        "rdp or pld (dp-accounting's accountants).",
        panel=PRIVACY,
        check=one_of("rdp", "pld"),
    )
    dp_publish_uncovered: bool = option(
        False,
        "With DP: also write what epsilon does not cover (the per-client accuracy columns, the "
        "exact clients per round, and --log-clients' clients.csv).",
        flag="--dp-publish-uncovered",
        panel=PRIVACY,
        show_default=False,
    )
    secure_agg: bool = option(
        False,
        "Secure aggregation (Bonawitz et al. 2017): the server sees only the sum.",
        flag="--secure-agg",
        panel=PRIVACY,
        show_default=False,
    )
    secagg_threshold: int | None = option(
        None,
        "Survivors needed to unmask the sum.",
        panel=PRIVACY,
        show_default="a majority of the cohort",
        check=Check(lambda v: v >= 2, "must be at least 2"),
    )
    aggregator: str = option(
        "mean",
        f"{spelled_out(aggregators())}.",
        panel=ROBUSTNESS,
    )
    byzantine: float | None = option(
        None,
        "Fraction of each cohort the robust aggregator tolerates.",
        panel=ROBUSTNESS,
        show_default="--malicious, else 0.1",
        check=within(0, 0.5, 0.2),
    )
    attack: str | None = option(
        None,
        "signflip, gaussian, scale or labelflip (needs --malicious).",
        panel=ROBUSTNESS,
        show_default="none",
    )
    malicious: float | None = option(
        None,
        "Fraction of all clients that attack, fixed for the run by the seed.",
        panel=ROBUSTNESS,
        check=within(0, 1, 0.2, "()"),
    )
    attack_strength: float | None = option(
        None,
        "signflip/scale factor or gaussian std.",
        panel=ROBUSTNESS,
        show_default="4, 10, 1",
        check=above(0, 4),
    )
    dropout: float = option(
        0.0,
        "Probability that a sampled client fails mid-round.",
        panel=ROBUSTNESS,
        check=within(0, 1, 0.1),
    )
    compress: str | None = option(
        None,
        "Compress each client's update: qsgd:bits=B, uniform:bits=B, terngrad, sign, "
        "topk:fraction=F, randk:fraction=F, bf16, fp16, or hadamard+ before a quantizer (e.g. "
        "hadamard+qsgd:bits=4). bytes_up counts the exact bits.",
        panel=COMMUNICATION,
        show_default="dense",
    )
    compress_down: str | None = option(
        None,
        "Compress the model the server broadcasts (Caldas et al. 2018): the same SPECs as "
        "--compress; clients train from the decoded model, bytes_down counts the exact bits.",
        panel=COMMUNICATION,
        show_default="dense",
    )
    error_feedback: str | None = option(
        None,
        "ef (Seide et al. 2014) or ef21 (Richtarik et al. 2021): each client's compression error "
        "is kept and fed back (needs --compress).",
        panel=COMMUNICATION,
        show_default="none",
    )

    system: str = option(
        "identical",
        "Clients' devices for the simulated clock (sim_time_s): identical, lognormal[:sigma=S] "
        "(heavy-tailed speeds and bandwidths), a CSV client,compute_sps,down_bps,up_bps or "
        "FedScale's device-capacity JSON (see flcli/system.py).",
        panel=TIME,
        check=Check(lambda v: bool(v.strip()), "must name a system model, e.g. lognormal:sigma=1"),
    )
    availability: str | None = option(
        None,
        "When clients can be sampled: a CSV client,start_s,end_s of windows or FedScale's "
        "client-behaviour JSON.",
        panel=TIME,
        show_default="always",
    )
    concurrency: int | None = option(
        None,
        "Asynchronous algorithms (fedasync, fedbuff): clients training at once.",
        panel=TIME,
        show_default="the cohort size",
        check=positive_int(100),
    )
    round_deadline: float | None = option(
        None,
        "Synchronous rounds end after S simulated seconds: later clients are dropped, or send "
        "their partial work when the algorithm keeps stragglers.",
        panel=TIME,
        show_default="none",
        check=Check(lambda v: v > 0, "must be > 0 seconds, e.g. 2.0"),
    )
    over_select: float | None = option(
        None,
        "Sample F times the cohort and keep the first cohort-size clients to finish (Bonawitz "
        "et al. 2019).",
        panel=TIME,
        show_default="1",
        check=Check(lambda v: v >= 1, "must be >= 1, e.g. 1.3"),
    )
    eval_every: int = option(
        1,
        "Evaluate the global model every K rounds (round 0 and the last round always): the "
        "metric columns of the other rounds stay empty in rounds.csv, whose column evaluated "
        "says which rounds were (1) and were not (0); fl plot, fl report and fl tune read the "
        "evaluated rounds only.",
        panel=EVALUATION,
        check=positive_int(5),
        metavar="K",
    )
    eval_clients: float = option(
        1.0,
        "Fraction F of the clients whose training rows give train_loss: a sample of ceil(F x "
        "clients) drawn by the seed, anew each evaluated round, which makes train_loss an "
        "estimate when F < 1. The test metrics always use the whole test set.",
        panel=EVALUATION,
        check=within(0, 1, 0.1, "(]"),
        metavar="F",
    )
    track: str | None = option(
        None,
        "Log the run's config and each round's metrics as it trains: mlflow (pip install "
        "'flcli\\[mlflow]') or tensorboard (pip install 'flcli\\[tensorboard]'). Changes no "
        "result; fl export logs finished runs.",
        panel=TRACKING,
        show_default="none",
        check=one_of(*TRACKERS),
        metavar="mlflow|tensorboard",
    )
    track_uri: str | None = option(
        None,
        "Where --track logs. mlflow: a tracking URI, sqlite:///FILE.db or a server "
        "http://HOST:PORT (experiment: the name of the folder holding --out; run: --out's name). "
        "tensorboard: a folder, events in FOLDER/EXPERIMENT/RUN.",
        panel=TRACKING,
        show_default="sqlite:///mlflow.db (mlflow, MLflow's own default), OUT/tb (tensorboard)",
        metavar="URI",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.clients_per_round is not None and self.fraction is not None:
            raise FLError("give --clients-per-round or --fraction, not both")
        if self.jobs is not None and self.backend not in ("process", "ray"):
            raise FLError(
                f"--jobs {self.jobs} applies to --backend process or ray (the vectorized "
                "backend uses every core itself); drop it or choose one of them"
            )
        if self.ray_address is not None and self.backend != "ray":
            raise FLError(f"--ray-address {self.ray_address} needs --backend ray")
        if self.track_uri is not None and self.track is None:
            raise FLError(
                f"--track-uri {self.track_uri} needs --track mlflow or --track tensorboard"
            )

    def cohort_size(self, num_clients: int) -> int:
        """Clients sampled per round: --clients-per-round, or --fraction of all (default all)."""
        if self.clients_per_round is not None:
            if self.clients_per_round > num_clients:
                raise FLError(
                    f"--clients-per-round {self.clients_per_round} exceeds the partition's "
                    f"{num_clients} clients; use at most {num_clients}"
                )
            return self.clients_per_round
        return max(1, round_half_up((self.fraction or 1.0) * num_clients))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # as JSON holds it: lists

    def given(self) -> dict[str, Any]:
        """The values that differ from the declared defaults: what the user chose."""
        defaults = TrainConfig().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != defaults[k]}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> "TrainConfig":
        return from_mapping(cls, values, where)

    def digest(self) -> str:
        """Hash of what determines the results (how they are computed and saved does not)."""
        values = {
            k: v
            for k, v in self.to_dict().items()
            if k not in NOT_IN_DIGEST and (k not in DIGEST_IF_SET or DIGEST_IF_SET[k] != v)
        }
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
