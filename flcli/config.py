"""The training configuration: frozen, validated at construction, serializable to run.json."""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from flcli.errors import FLError

BACKENDS = ("vectorized", "serial", "process", "ray")
NOT_IN_DIGEST = ("backend", "jobs", "ray_address", "checkpoint_every")
FLUSH_SECONDS = 1.0  # without --checkpoint-every, rounds.csv and the checkpoint lag at most this


@dataclass(frozen=True)
class TrainConfig:
    algo: str = "fedavg"
    model: str = "softmax"
    rounds: int = 20
    local_epochs: int = 2
    batch_size: int = 16
    lr: float = 0.5
    clients_per_round: int | None = None
    fraction: float | None = None
    seed: int = 0
    backend: str = "vectorized"
    jobs: int | None = None  # worker processes (process) or CPUs of a local Ray (ray)
    ray_address: str | None = None  # join this Ray cluster instead of starting a local one
    checkpoint_every: int | None = None
    algo_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = {
            "--rounds": self.rounds,
            "--local-epochs": self.local_epochs,
            "--batch-size": self.batch_size,
        }
        for flag, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise FLError(f"{flag} {value} must be a positive integer")
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

    def cohort_size(self, num_clients: int) -> int:
        """Clients sampled per round: --clients-per-round, or --fraction of all (default all)."""
        if self.clients_per_round is not None:
            if self.clients_per_round > num_clients:
                raise FLError(
                    f"--clients-per-round {self.clients_per_round} exceeds the partition's "
                    f"{num_clients} clients; use at most {num_clients}"
                )
            return self.clients_per_round
        return max(1, round((self.fraction or 1.0) * num_clients))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FLError(f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return cls(**values)

    def digest(self) -> str:
        """Hash of what determines the results (how they are computed and saved does not)."""
        values = {k: v for k, v in self.to_dict().items() if k not in NOT_IN_DIGEST}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
