"""From a config and a partition to the parts of a run, once.

resolve(config, partition) fills every default that depends on something else (the model's
learning rate, the algorithm's hyperparameters, whether it drops stragglers, DP's clip) and checks
every combination that cannot run; assemble() then builds the model, the algorithm, the uplink and
the trainer a single time. The round loop (flcli.engine.rounds) takes the parts, not the config.
"""

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from flcli.algorithms.base import Algorithm, AlgorithmSpec, Context, EnsembleAlgorithm
from flcli.algorithms.registry import algorithm_spec, build, hyperparameters_for
from flcli.config import TrainConfig, parse_hidden
from flcli.data.holdout import hold_out_proxy
from flcli.data.proxy import HOLDOUT, load_proxy
from flcli.data.store import Partition
from flcli.engine.backends import check_backend, trainer_for
from flcli.engine.compiled import start_loading, takes_compiled_steps
from flcli.engine.uplink import Uplink, build_uplink, check_uplink_options
from flcli.errors import FLError
from flcli.memory import refuse_beyond_memory
from flcli.models.base import capabilities_of
from flcli.models.registry import DEFAULT_HIDDEN, default_lr, make_model, takes_model_args
from flcli.plugins import find, model_reference
from flcli.privacy.options import parse_clip, refuse_for_algorithm, refuse_for_model
from flcli.system import System, build_system

PROXY_FRACTION = "proxy_fraction"  # the hyperparameter of an algorithm that holds_out_proxy


@dataclass(frozen=True)
class Parts:
    """Everything a run is made of, built once."""

    config: TrainConfig  # resolved: no default left to fill
    spec: AlgorithmSpec
    model: Any
    partition: Partition  # what the clients train on: in the run's dtype, the proxy set held out
    algorithm: Algorithm | EnsembleAlgorithm
    uplink: Uplink
    trainer: Any  # (model, x, y, cohort, w, spec, seed, round, work) -> CohortResult
    system: System  # the clients' devices (flcli.system)
    x_proxy: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)  # what the user should know before it runs

    @property
    def sources(self) -> dict[str, dict]:
        """The user's code this run used, by option: the reference or entry point, and the
        sha256 of its file."""
        _, model, kind = model_reference(self.config.model)
        chosen = {"algo": (self.config.algo, "algorithm"), "model": (model, kind)}
        found = {key: find(name, kind) for key, (name, kind) in chosen.items()}
        return {key: hit[1] for key, hit in found.items() if hit is not None}


def check_alone(config: TrainConfig) -> tuple[TrainConfig, AlgorithmSpec]:
    """Everything that can be decided without the partition: (the config with the defaults that
    need no data filled, the algorithm's spec). FLError on any combination that cannot run; fl
    sweep calls it on every run of its grid before building anything."""
    spec = algorithm_spec(config.algo)
    if config.hidden is not None and config.model != "mlp":
        raise FLError(f"--hidden applies to --model mlp only, not {config.model}; drop it")
    if config.model_args and not takes_model_args(config.model):
        raise FLError(
            f"--model-arg applies to sklearn:NAME models and your own, not {config.model}; drop it"
        )
    check_uplink_options(config)
    if config.compress_down is not None:
        from flcli import compression

        compression.parse(config.compress_down, "--compress-down")
        if spec.refuses_compress_down is not None:
            raise FLError(
                f"--compress-down does not apply to --algo {spec.name}: "
                f"{spec.refuses_compress_down}; drop it"
            )
    refuse_for_algorithm(config, spec)
    refuse_weighting(config, spec)
    refuse_uncovered(config)
    values = {
        "lr": default_lr(config.model) if config.lr is None else config.lr,
        "algo_args": hyperparameters_for(spec, config.algo_args, fallback=config.__dict__),
        "drop_stragglers": (
            spec.drop_stragglers if config.drop_stragglers is None else config.drop_stragglers
        ),
        "dp_clip": parse_clip(config.dp_clip),
    }
    if config.model == "mlp":
        values["hidden"] = parse_hidden(config.hidden or DEFAULT_HIDDEN)
    return replace(config, **values), spec


def refuse_uncovered(config: TrainConfig) -> None:
    """With DP, what epsilon does not cover is written only when asked for."""
    if config.dp_publish_uncovered and config.dp_clip is None:
        raise FLError("--dp-publish-uncovered applies to DP runs (--dp-clip) only; drop it")
    if config.dp_clip is not None and config.log_clients and not config.dp_publish_uncovered:
        raise FLError(
            "--log-clients writes each client's loss and accuracy every round, which --dp-clip's "
            "epsilon does not cover; drop --log-clients, or add --dp-publish-uncovered to "
            "publish them anyway"
        )


def refuse_weighting(config: TrainConfig, spec: AlgorithmSpec) -> None:
    """--server-weighting uniform where it would change nothing is refused, not ignored."""
    if config.server_weighting != "uniform":
        return
    if spec.own_weighting:
        raise FLError(
            f"--server-weighting uniform does not apply to --algo {spec.name}: "
            f"{spec.own_weighting}; drop it"
        )
    if config.dp_clip is not None:
        raise FLError(
            "--server-weighting uniform with DP: DP's noised mean weighs every client equally "
            "already; drop it"
        )


def resolve(config: TrainConfig, partition: Partition) -> tuple[TrainConfig, AlgorithmSpec, Any]:
    """(the config with every default filled, the algorithm's spec, the model)."""
    resolved, spec = check_alone(config)
    return resolved, spec, model_for(config, partition)


def model_for(config: TrainConfig, partition: Partition):
    """The configured model, shaped for the partition's features, classes and task."""
    hidden = parse_hidden(config.hidden) if config.hidden is not None else None
    return make_model(
        config.model,
        partition.num_features,
        partition.num_classes,
        task=partition.task,
        hidden=hidden,
        dtype=config.dtype,
        model_args=config.model_args,
        shape=sample_shape(partition),
    )


def sample_shape(partition: Partition) -> tuple:
    """(one sample's shape, the vocabulary's size or None), what a PyTorch module is built for."""
    vocabulary = partition.vocabulary
    return partition.input_shape, (len(vocabulary) if vocabulary is not None else None)


def refuse_for_run(config: TrainConfig, spec: AlgorithmSpec, model, partition: Partition) -> None:
    """The combinations of algorithm, model and data that cannot run, each one line."""
    if spec.personalizes and model.task == "regression":
        raise FLError(
            f"--algo {spec.name} scores personal models by their accuracy, so it needs a "
            "classification partition; this one is regression: choose another --algo"
        )
    if spec.personalizes and not partition.has_client_test:
        raise FLError(
            f"--algo {spec.name} scores personal models on clients' local test splits, which "
            "this partition lacks; re-create it with fl partition ... --client-test-fraction 0.2"
        )
    refuse_for_model(config, model)
    trains_itself = capabilities_of(model).trains == "client_by_client"
    if spec.refuses_estimators and trains_itself:
        raise FLError(
            f"--algo {spec.name} {spec.refuses_estimators}; use a NumPy model (e.g. --model "
            "softmax) or another --algo (e.g. fedavg)"
        )
    if not capabilities_of(model).parametric and config.stragglers:
        raise FLError(
            f"--stragglers applies to models trained in local steps; --model {model.name} is "
            "fitted once per round, so drop --stragglers"
        )


ASYNC_REFUSES = {
    "attack": "--attack",
    "dropout": "--dropout",
    "stragglers": "--stragglers",
    "round_deadline": "--round-deadline",
    "over_select": "--over-select",
    "compress_down": "--compress-down",
}


def asynchronous(config: TrainConfig, algorithm, num_clients: int) -> TrainConfig:
    """The config of an asynchronous algorithm's run, --concurrency filled (the cohort size);
    FLError for the options of synchronous rounds. Others' configs unchanged, concurrency unset."""
    if getattr(algorithm, "buffer_size", None) is None:
        if config.concurrency is not None:
            raise FLError(
                f"--concurrency applies to asynchronous algorithms (fedasync, fedbuff), not "
                f"--algo {config.algo}; drop it or give --clients-per-round"
            )
        return config
    for name, flag in ASYNC_REFUSES.items():
        if getattr(config, name):
            raise FLError(
                f"{flag} applies to synchronous rounds; --algo {config.algo} is asynchronous "
                "(slow devices come from --system): drop it"
            )
    if config.server_weighting != "samples":
        raise FLError(f"--server-weighting does not apply to --algo {config.algo}; drop it")
    concurrency = config.concurrency or config.cohort_size(num_clients)
    if concurrency > num_clients:
        raise FLError(
            f"--concurrency {concurrency} exceeds the partition's {num_clients} clients; use at "
            f"most {num_clients}"
        )
    return replace(config, concurrency=concurrency)


def refuse_vertical(partition: Partition) -> None:
    vertical = partition.meta.get("vertical")
    if vertical:
        raise FLError(
            f"the partition is vertical (its {vertical['num_clients']} clients hold feature "
            "columns, not rows); fl train needs a vertical algorithm (split learning, vertical "
            "FedAvg with a server-side label holder), which flcli does not have yet: partition "
            "by rows instead, e.g. --scheme iid"
        )


# A noise multiplier above this drowns the clipped updates of any cohort flcli simulates
NOISE_TOO_LARGE = 10.0


def dp_notes(config: TrainConfig, uplink) -> list[str]:
    """What --dp-epsilon chose: the noise multiplier, and a warning when it leaves nothing to
    learn. None with --dp-noise (the user chose z) or without DP."""
    dp = uplink.dp
    if dp is None or config.dp_noise is not None:
        return []
    z, q = dp.noise_multiplier, dp.sampling_rate
    notes = [
        f"--dp-epsilon {config.dp_epsilon:g} over {config.rounds} rounds at q={q:.3g}, "
        f"delta={uplink.dp_delta:g}: noise multiplier z = {z:.3g}"
    ]
    if z > NOISE_TOO_LARGE:
        notes.append(
            f"warning: noise multiplier z = {z:.3g} is above {NOISE_TOO_LARGE:g}: the noise "
            f"will drown the clipped updates and the model learn next to nothing; give a larger "
            f"--dp-epsilon than {config.dp_epsilon:g} or fewer --rounds than {config.rounds}"
        )
    return notes


def proxy_set(
    resolved: TrainConfig, spec: AlgorithmSpec, data: Partition
) -> tuple[Partition, np.ndarray | None]:
    """(the clients' data, FedDF's proxy features): --proxy holdout takes a --proxy-fraction of
    every shard out of training; a dir or file (flcli.data.proxy) leaves the shards whole."""
    if not spec.holds_out_proxy:
        if resolved.proxy != HOLDOUT:
            raise FLError(f"--proxy applies to --algo feddist, not to --algo {resolved.algo}")
        return data, None
    if resolved.proxy == HOLDOUT:
        return hold_out_proxy(data, resolved.algo_args[PROXY_FRACTION], resolved.seed)
    return data, load_proxy(resolved.proxy, data.num_features, data.x_train.dtype)


def assemble(config: TrainConfig, partition: Partition) -> Parts:
    """Resolve the config against the partition and build every part of the run, once."""
    refuse_vertical(partition)
    resolved, spec, model = resolve(config, partition)
    refuse_for_run(resolved, spec, model, partition)
    cohort = resolved.cohort_size(partition.num_clients)
    kept = spec.client_state + (resolved.error_feedback is not None)
    refuse_beyond_memory(
        run_memory(model, partition, cohort, resolved.dtype, kept),
        f"this run (--model {resolved.model}, {cohort} clients per round"
        + (f", {kept:g} model-sized vector(s) kept per client" if kept else "")
        + ")",
        "choose a smaller model, fewer clients per round or --dtype float32"
        + (", or an algorithm that keeps no state per client" if kept else ""),
    )
    data = partition.astype(resolved.dtype)
    data, x_proxy = proxy_set(resolved, spec, data)
    context = Context(
        model, data.num_clients, resolved.lr, x_proxy, resolved.seed, resolved.local_epochs
    )
    capabilities = capabilities_of(model)
    algorithm = build(spec, resolved.algo_args, context, capabilities.parametric)
    resolved = asynchronous(resolved, algorithm, data.num_clients)
    check_backend(resolved.backend)
    cohort_size = resolved.cohort_size(data.num_clients)
    num_params = getattr(model, "num_params", 0) if capabilities.parametric else 0
    uplink = build_uplink(resolved, data.num_clients, cohort_size, num_params)
    compiled = takes_compiled_steps(model, data.client_sizes, cohort_size, resolved)
    trainer = trainer_for(model, resolved.backend, resolved.jobs, resolved.ray_address, compiled)
    if compiled and resolved.backend == "vectorized" and capabilities.fused_steps:
        start_loading(model, data.x_train, data.y_train)  # while round 0 is evaluated
    notes = []
    if spec.approximate_with_estimators and capabilities.trains == "client_by_client":
        notes.append(
            f"--algo {spec.name} with --model {config.model}: {spec.approximate_with_estimators}"
        )
    notes.extend(dp_notes(resolved, uplink))
    if resolved.dtype == "float64" and model_reference(resolved.model)[0]:
        notes.append(
            f"--model {resolved.model} trains in float64, flcli's default; --dtype float32 is "
            "PyTorch's usual precision and about twice as fast"
        )
    system = build_system(resolved.system, resolved.availability, data.num_clients, resolved.seed)
    return Parts(resolved, spec, model, data, algorithm, uplink, trainer, system, x_proxy, notes)


def run_memory(
    model, partition: Partition, cohort_size: int, dtype: str, kept_per_client: float = 0
) -> float:
    """A run's peak memory, roughly: the data, per sampled client a few model-sized vectors (its
    parameters, gradient, update and the algorithm's correction), and the model-sized vectors the
    server keeps for every client (SCAFFOLD's control variates, Ditto's personal models, an error
    feedback table)."""
    params = getattr(model, "num_params", 0) or 0
    itemsize = np.dtype(dtype).itemsize
    data = sum(a.size * itemsize for a in (partition.x_train, partition.x_test))
    clients = 4 * cohort_size + 8 + kept_per_client * partition.num_clients
    return data + params * itemsize * clients
