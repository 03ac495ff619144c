"""APFL (flcli.algorithms.apfl): alpha = 0 is FedAvg; the personal models follow the paper's
joint step, checked by hand, and are the same on every backend."""

import numpy as np
import pandas as pd
import pytest

from flcli import api
from flcli.api import simulate
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.errors import FLError
from flcli.models.mlp import MLP
from flcli.rng import Purpose, rng

BASE = dict(model="mlp", hidden=(8,), rounds=3, seed=3, fraction=0.6, lr=0.1, batch_size=16)


def run(partition, **settings):
    return list(simulate(partition, train_config(**{**BASE, **settings})))


def test_apfl_with_alpha_0_is_fedavg(personal_dir, tmp_path):
    """rounds.csv equal to fedavg's (to float rounding), and the personal accuracy is the
    global model's on the local test splits."""
    frames = {}
    for algo, extra in (("fedavg", {}), ("apfl", {"apfl_alpha": 0.0})):
        config = train_config(**{**BASE, "algo": algo, **extra})
        api.prepare_training(personal_dir, config, tmp_path / algo).frame()
        frames[algo] = pd.read_csv(tmp_path / algo / "rounds.csv")
    shared = [c for c in frames["fedavg"].columns if c != "elapsed_s"]
    pd.testing.assert_frame_equal(
        frames["apfl"][shared], frames["fedavg"][shared], check_exact=False, rtol=1e-9
    )
    fine_tuned = run(load_partition(personal_dir), algo="apfl", apfl_alpha=0.0)
    assert (fine_tuned[-1].state.extra["personal"] == fine_tuned[0].state.extra["personal"]).all()


def test_apfl_personal_models_follow_the_joint_step_by_hand(personal_dir):
    """One round, every client, two full-shard steps (two epochs) from w0 = v0:
    v <- v - eta alpha grad F(alpha v + (1 - alpha) w) and w <- w - eta grad F(w), both from the
    step's start values."""
    partition = load_partition(personal_dir)
    batch = int(partition.client_sizes.max())
    alpha, eta = 0.3, 0.1
    settings = dict(rounds=1, local_epochs=2, fraction=1.0, batch_size=batch, apfl_alpha=alpha)
    result = run(partition, algo="apfl", **settings)[-1]
    model = MLP(partition.num_features, (8,), partition.num_classes)
    w0 = model.init(rng(BASE["seed"], Purpose.INIT))
    offsets = partition.offsets
    for k, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        x, y = partition.x_train[start:stop][None], partition.y_train[start:stop][None]

        def grad(at, x=x, y=y):
            return model.loss_grad(at[None], x, y, np.ones(y.shape))[1][0]

        w, v = w0, w0
        for _ in range(2):
            w, v = w - eta * grad(w), v - eta * alpha * grad(alpha * v + (1 - alpha) * w)
        np.testing.assert_allclose(result.state.extra["personal"][k], v, rtol=0, atol=1e-10)


def test_apfl_personal_models_persist_and_agree_across_backends(personal_dir):
    partition = load_partition(personal_dir)
    runs = [run(partition, algo="apfl", backend=b) for b in ("vectorized", "serial", "process")]
    personal = [r[-1].state.extra["personal"] for r in runs]
    for other in personal[1:]:
        np.testing.assert_allclose(other, personal[0], rtol=0, atol=1e-9)
    first = runs[0][0].state.extra["personal"]
    moved = ~np.all(personal[0] == first, axis=1)
    assert 0 < moved.sum() < partition.num_clients  # the sampled clients' only (fraction 0.6)


def test_apfl_refuses_scikit_learn_estimators(personal_dir):
    partition = load_partition(personal_dir)
    with pytest.raises(FLError, match="personal model"):
        list(simulate(partition, train_config(algo="apfl", model="sklearn:SGDClassifier")))
