"""flcli's side of the peers benchmark: what a peer needs to replay an `fl train` run exactly.

write_setup writes, for a partition and a TrainConfig, the run's initial model (round 0 of
flcli.api.simulate), the cohort of every round (flcli's sampler, flcli.engine.stages.
sample_clients, the very draw FixedSample makes) and every round's batch orders
(flcli.engine.local.epoch_orders), which torch_fedavg.py reads in another interpreter.
"""

import json
from pathlib import Path

import numpy as np

from flcli.api import simulate
from flcli.assemble import assemble
from flcli.config import TrainConfig
from flcli.data.store import load_partition
from flcli.engine.local import epoch_orders
from flcli.engine.stages import sample_clients


def cohort_of(config: TrainConfig, round: int, num_clients: int) -> np.ndarray:
    return sample_clients(config.seed, round, num_clients, config.cohort_size(num_clients))


def write_setup(partition_dir: Path, config: TrainConfig, out: Path) -> dict:
    """setup.json, w0.npy and orders.npz in out, for config's rounds; returns setup.json's dict."""
    data = load_partition(partition_dir)
    config = assemble(config, data).config  # the defaults resolved: lr, hidden
    first = next(iter(simulate(data, config)))  # round 0: the initial model, nothing trained
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "w0.npy", first.state.params)
    sizes = np.diff(data.offsets)
    cohorts, orders = [], {}
    for r in range(1, config.rounds + 1):
        ids = cohort_of(config, r, data.num_clients)
        cohorts.append([int(i) for i in ids])
        orders[f"round_{r}"] = epoch_orders(config.seed, r, ids, sizes[ids], config.local_epochs)
    np.savez(out / "orders.npz", **orders)
    setup = {
        "lr": float(config.lr),
        "batch_size": int(config.batch_size),
        "epochs": int(config.local_epochs),
        "hidden": [int(h) for h in (config.hidden or ())] if config.model == "mlp" else [],
        "cohorts": cohorts,
        "seed": int(config.seed),
    }
    (out / "setup.json").write_text(json.dumps(setup))
    return setup
