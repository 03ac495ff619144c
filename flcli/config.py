"""The training configuration: frozen, validated at construction, serializable to run.json."""

import ast
import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from flcli.errors import FLError
from flcli.numbers import round_half_up

# Algorithm hyperparameters: TrainConfig field -> (flag, check, what a good value is). A field left
# None takes the chosen algorithm's default; one the algorithm does not accept is an error.
HYPERPARAMETERS = {
    "server_lr": ("--server-lr", lambda v: v > 0, "must be > 0, e.g. 1.0"),
    "server_momentum": ("--server-momentum", lambda v: 0 <= v < 1, "must be in [0, 1), e.g. 0.9"),
    "mu": ("--mu", lambda v: v >= 0, "must be >= 0, e.g. 0.01"),
    "beta1": ("--beta1", lambda v: 0 <= v < 1, "must be in [0, 1), e.g. 0.9"),
    "beta2": ("--beta2", lambda v: 0 <= v < 1, "must be in [0, 1), e.g. 0.99"),
    "tau": ("--tau", lambda v: v > 0, "must be > 0, e.g. 0.001"),
    "alpha_dyn": ("--alpha-dyn", lambda v: v > 0, "must be > 0, e.g. 0.01"),
    "q": ("--q", lambda v: v >= 0, "must be >= 0, e.g. 1"),
    "lam": ("--lambda", lambda v: v >= 0, "must be >= 0, e.g. 0.1"),
    "temperature": ("--temperature", lambda v: v > 0, "must be > 0, e.g. 1"),
    "distill_steps": (
        "--distill-steps",
        lambda v: isinstance(v, int) and v >= 0,
        "must be an integer >= 0, e.g. 50",
    ),
    "proxy_fraction": ("--proxy-fraction", lambda v: 0 < v < 1, "must be in (0, 1), e.g. 0.1"),
    "personal_epochs": (
        "--personal-epochs",
        lambda v: isinstance(v, int) and v >= 1,
        "must be a positive integer, e.g. 1",
    ),
}

BACKENDS = ("vectorized", "serial", "process", "ray")
DTYPES = ("float64", "float32")
NOT_IN_DIGEST = ("backend", "jobs", "ray_address", "checkpoint_every")
FLUSH_SECONDS = 1.0  # without --checkpoint-every, rounds.csv and the checkpoint lag at most this


@dataclass(frozen=True)
class TrainConfig:
    algo: str = "fedavg"
    model: str = "softmax"
    rounds: int = 20
    local_epochs: int = 2
    batch_size: int = 16
    lr: float | None = None  # None: the model's default (see models.registry.default_lr)
    clients_per_round: int | None = None
    fraction: float | None = None
    seed: int = 0
    backend: str = "vectorized"
    jobs: int | None = None  # worker processes (process) or CPUs of a local Ray (ray)
    ray_address: str | None = None  # join this Ray cluster instead of starting a local one
    checkpoint_every: int | None = None
    hidden: tuple[int, ...] | None = None  # --model mlp only; None: (128, 64)
    dtype: str = "float64"
    model_args: dict[str, Any] = field(default_factory=dict)  # --model sklearn:NAME only
    # systems heterogeneity and per-client logging, shared by every algorithm
    stragglers: float = 0.0
    drop_stragglers: bool | None = None  # None: the algorithm's default (fedavg drops them)
    log_clients: bool = False
    # algorithm hyperparameters (see HYPERPARAMETERS); None until resolved for the algorithm
    server_lr: float | None = None
    server_momentum: float | None = None
    mu: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    tau: float | None = None
    alpha_dyn: float | None = None
    q: float | None = None
    lam: float | None = None
    temperature: float | None = None
    distill_steps: int | None = None
    proxy_fraction: float | None = None
    personal_epochs: int | None = None
    # privacy and robustness (flcli.engine.uplink)
    dp_clip: float | str | None = None  # a norm, or "adaptive"
    dp_noise: float | None = None
    dp_epsilon: float | None = None
    dp_delta: float | None = None  # default min(1e-5, clients^-1.1)
    dp_accountant: str = "rdp"
    secure_agg: bool = False
    secagg_threshold: int | None = None  # default: a majority of each round's cohort
    aggregator: str = "mean"
    byzantine: float | None = None  # fraction the aggregator tolerates; default --malicious or 0.1
    attack: str | None = None
    malicious: float | None = None
    attack_strength: float | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self._resolve_model_options()
        positive = {
            "--rounds": self.rounds,
            "--local-epochs": self.local_epochs,
            "--batch-size": self.batch_size,
        }
        for flag, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise FLError(f"{flag} {value} must be a positive integer")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise FLError(f"--seed {self.seed} must be an integer >= 0, e.g. 0")
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                flag = HYPERPARAMETERS.get(item.name, ("--" + item.name.replace("_", "-"),))[0]
                raise FLError(f"{flag} {value} must be a finite number")
        if not self.lr > 0:
            raise FLError(f"--lr {self.lr} must be > 0, e.g. 0.1")
        if self.clients_per_round is not None and self.fraction is not None:
            raise FLError("give --clients-per-round or --fraction, not both")
        if self.clients_per_round is not None and self.clients_per_round < 1:
            raise FLError(f"--clients-per-round {self.clients_per_round} must be at least 1")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise FLError(f"--fraction {self.fraction} must be in (0, 1], e.g. 0.1")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise FLError(f"--checkpoint-every {self.checkpoint_every} must be at least 1")
        if self.jobs is not None and (not isinstance(self.jobs, int) or self.jobs < 1):
            raise FLError(f"--jobs {self.jobs} must be a positive integer, e.g. 2")
        if self.backend not in BACKENDS:
            raise FLError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        if self.jobs is not None and self.backend not in ("process", "ray"):
            raise FLError(
                f"--jobs {self.jobs} applies to --backend process or ray (the vectorized "
                "backend uses every core itself); drop it or choose one of them"
            )
        if self.ray_address is not None and self.backend != "ray":
            raise FLError(f"--ray-address {self.ray_address} needs --backend ray")
        if not 0 <= self.stragglers <= 1:
            raise FLError(f"--stragglers {self.stragglers} must be a fraction in [0, 1], e.g. 0.5")
        self._resolve_hyperparameters()
        from flcli.engine.uplink import check_uplink_options
        from flcli.privacy.options import parse_clip, refuse_for_algorithm

        check_uplink_options(self)
        refuse_for_algorithm(self)
        object.__setattr__(self, "dp_clip", parse_clip(self.dp_clip))

    def _resolve_hyperparameters(self) -> None:
        """Check the algorithm's hyperparameters and fill in its defaults (so run.json shows the
        values used, and giving a default explicitly is the same run)."""
        from flcli.algorithms.registry import ALGORITHMS, algorithm_info

        info = algorithm_info(self.algo)
        for name, (flag, check, hint) in HYPERPARAMETERS.items():
            value = getattr(self, name)
            if value is None:
                default = info.defaults.get(name)
                object.__setattr__(self, name, default(self) if callable(default) else default)
                continue
            if name not in info.defaults:
                users = [a for a, other in ALGORITHMS.items() if name in other.defaults]
                raise FLError(
                    f"{flag} does not apply to --algo {self.algo}; it is a hyperparameter of "
                    f"{', '.join(users)}"
                )
            if not check(value):
                raise FLError(f"{flag} {value} {hint}")
        if self.drop_stragglers is None:
            object.__setattr__(self, "drop_stragglers", info.drop_stragglers)

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved hyperparameters of the chosen algorithm, as its factory takes them."""
        from flcli.algorithms.registry import algorithm_info

        return {name: getattr(self, name) for name in algorithm_info(self.algo).defaults}

    def _resolve_model_options(self) -> None:
        """Fill the model-dependent defaults (lr, hidden) so run.json records what ran."""
        from flcli.models.registry import DEFAULT_HIDDEN, SKLEARN_PREFIX, default_lr

        if self.lr is None:
            object.__setattr__(self, "lr", default_lr(self.model))
        if self.dtype not in DTYPES:
            raise FLError(f"--dtype {self.dtype!r} is not one of: {', '.join(DTYPES)}")
        if self.hidden is not None and self.model != "mlp":
            raise FLError(f"--hidden applies to --model mlp only, not {self.model}; drop it")
        if self.model == "mlp":
            hidden = DEFAULT_HIDDEN if self.hidden is None else self.hidden
            object.__setattr__(self, "hidden", parse_hidden(hidden))
        if self.model_args and not self.model.startswith(SKLEARN_PREFIX):
            raise FLError(
                f"--model-arg applies to sklearn:NAME models only, not {self.model}; drop it"
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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FLError(f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        for item in dataclasses.fields(cls):
            value = values.get(item.name)
            if item.name in values and not of_type(item.type, value):
                raise FLError(
                    f"config key {item.name} = {value!r} must be {describe(item.type)}; fix its "
                    "value in the config file"
                )
        return cls(**values)

    def digest(self) -> str:
        """Hash of what determines the results (how they are computed and saved does not)."""
        values = {k: v for k, v in self.to_dict().items() if k not in NOT_IN_DIGEST}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


KINDS = {  # what a config value of each annotated type may be, and how to say it
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    tuple: (lambda v: isinstance(v, list | tuple | str), "a list of integers"),
    dict: (lambda v: isinstance(v, dict | list | tuple), "a table of key = value"),
}


def options_of(annotation) -> list:
    """The plain types an annotation allows: float | None -> [float, NoneType]."""
    union = typing.get_origin(annotation) in (types.UnionType, typing.Union)
    return (
        [typing.get_origin(kind) or kind for kind in typing.get_args(annotation)]
        if union
        else [typing.get_origin(annotation) or annotation]
    )


def of_type(annotation, value) -> bool:
    kinds = options_of(annotation)
    if value is None:
        return type(None) in kinds
    return any(KINDS[kind][0](value) for kind in kinds if kind in KINDS)


def describe(annotation) -> str:
    return " or ".join(KINDS[kind][1] for kind in options_of(annotation) if kind in KINDS)


def parse_hidden(value) -> tuple[int, ...]:
    """--hidden "128,64" (or a list from a config file) -> (128, 64)."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        sizes = tuple(int(str(part).strip()) for part in parts)
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise FLError(
            f"--hidden {value!r} must be positive layer sizes separated by commas, e.g. 128,64"
        )
    return sizes


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """["alpha=1e-4", "loss=log_loss"] -> {"alpha": 0.0001, "loss": "log_loss"}: each value is a
    Python literal (ast.literal_eval), or else the plain string."""
    args = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise FLError(f"--model-arg {item!r} must be key=value, e.g. --model-arg alpha=0.001")
        try:
            args[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            args[key.strip()] = text.strip()
    return args
