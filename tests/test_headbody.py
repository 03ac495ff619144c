"""Head/body methods (flcli.algorithms.headbody): which part each one shares, checked on the
state the round loop produces (the MLP's last layer is the head)."""

import numpy as np
import pytest
from conftest import assert_resume_is_exact

from flcli import api
from flcli.algorithms.base import Context
from flcli.algorithms.registry import algorithm_spec
from flcli.algorithms.work import LocalSpec
from flcli.api import simulate
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort
from flcli.errors import FLError
from flcli.models.mlp import MLP


def head_of(partition, hidden=(8,)):
    model = MLP(partition.num_features, hidden, partition.num_classes)
    mask = np.zeros(model.num_params, dtype=bool)
    mask[model.head_slice()] = True
    return mask


def run(partition, **settings):
    base = dict(model="mlp", hidden=(8,), rounds=3, lr=0.2, batch_size=7, seed=1, fraction=0.6)
    return list(simulate(partition, train_config(**{**base, **settings})))


def test_fedper_head_never_leaves_the_client(personal_dir):
    """The global head stays at its initial value (no client's head reaches the server), the
    body moves, and each client's personal model is the new global body with its own head."""
    partition = load_partition(personal_dir)
    head = head_of(partition)
    results = run(partition, algo="fedper")
    first, last = results[0].state, results[-1].state
    assert np.array_equal(last.params[head], first.params[head])
    assert not np.allclose(last.params[~head], first.params[~head])
    heads = last.extra["heads"]
    assert heads.shape == (partition.num_clients, head.sum())
    assert len({h.tobytes() for h in heads}) > 1  # heads differ between clients


def test_lg_fedavg_keeps_the_bodies_and_shares_the_head(personal_dir):
    partition = load_partition(personal_dir)
    head = head_of(partition)
    results = run(partition, algo="lg-fedavg")
    first, last = results[0].state, results[-1].state
    assert np.array_equal(last.params[~head], first.params[~head])
    assert not np.allclose(last.params[head], first.params[head])
    assert last.extra["bodies"].shape == (partition.num_clients, (~head).sum())


def test_fedrep_trains_the_head_before_and_apart_from_the_body(personal_dir):
    """FedRep's heads come from the head-only phase alone: more body epochs leave them exactly
    as they were after one round (FedPer, which trains both jointly, moves them)."""
    partition = load_partition(personal_dir)
    head = head_of(partition)
    short = run(partition, algo="fedrep", rounds=1, local_epochs=1)[-1].state
    long = run(partition, algo="fedrep", rounds=1, local_epochs=3)[-1].state
    assert np.array_equal(short.extra["heads"], long.extra["heads"])
    assert not np.allclose(short.params[~head], long.params[~head])
    joint = [run(partition, algo="fedper", rounds=1, local_epochs=e)[-1].state for e in (1, 3)]
    assert not np.allclose(joint[0].extra["heads"], joint[1].extra["heads"])
    more_head = run(partition, algo="fedrep", rounds=1, head_epochs=3)[-1].state
    assert not np.allclose(more_head.extra["heads"], short.extra["heads"])


def test_fedbabu_head_stays_at_its_initialisation(personal_dir):
    partition = load_partition(personal_dir)
    head = head_of(partition)
    results = run(partition, algo="fedbabu", finetune_epochs=2)
    first, last = results[0].state, results[-1].state
    assert np.array_equal(last.params[head], first.params[head])
    assert not np.allclose(last.params[~head], first.params[~head])
    assert 0 <= results[-1].record["personal_accuracy"] <= 1


def test_fedbabu_refuses_a_model_that_is_all_head(personal_dir):
    partition = load_partition(personal_dir)
    with pytest.raises(FLError, match="all head"):
        list(simulate(partition, train_config(algo="fedbabu", rounds=1)))


@pytest.mark.parametrize("algo", ["fedper", "fedrep", "lg-fedavg"])
def test_personal_parts_are_in_the_checkpoint_and_resume_is_exact(personal_dir, tmp_path, algo):
    config = train_config(algo=algo, model="mlp", hidden=(8,), rounds=4, fraction=0.5, seed=2)
    assert_resume_is_exact(personal_dir, config, tmp_path)


def test_fedper_new_clients_train_a_head_on_the_global_body(tmp_path):
    """A new client keeps the global body exactly and trains only its head on its own rows."""
    out = tmp_path / "held"
    settings = dict(dataset="digits", clients=10, scheme="pathological", seed=0)
    api.partition(out, **settings, new_clients=0.2, client_test_fraction=0.2)
    partition = load_partition(out)
    last = run(partition, algo="fedper")[-1]
    assert 0 <= last.record["new_client_accuracy"] <= 1
    model = MLP(partition.num_features, (8,), partition.num_classes)
    algorithm = algorithm_spec("fedper").factory(Context(model, partition.num_clients, 0.2))
    offsets = partition.new_offsets
    cohort = Cohort(
        ids=np.arange(len(offsets) - 1) + 10, starts=offsets[:-1], sizes=np.diff(offsets)
    )

    def train(anchor, work, epochs):
        spec = LocalSpec(epochs, 7, 0.2)
        return train_cohort(
            model, partition.x_new, partition.y_new, cohort, anchor, spec, 1, 3, work
        )

    personal = algorithm.personalize_new(last.state, cohort.ids, train, None)
    head = head_of(partition)
    body = last.state.params[~head]
    np.testing.assert_array_equal(
        personal[:, ~head], np.broadcast_to(body, personal[:, ~head].shape)
    )
    assert not np.allclose(personal[:, head], last.state.params[head])
