"""Clustered FL (flcli.algorithms.clustered): IFCA and CFL recover a planted grouping of clients
whose labels are permuted in a different way per group."""

import itertools
from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_resume_is_exact

from flcli.algorithms.base import Context
from flcli.algorithms.clustered import bipartition
from flcli.algorithms.registry import algorithm_spec
from flcli.api import simulate
from flcli.configfile import train_config
from flcli.data.store import partition_from_arrays
from flcli.engine.evaluate import client_scores
from flcli.errors import FLError
from flcli.models.mlp import MLP

PERMUTATIONS = (np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0]), np.array([1, 0, 3, 2]))


def planted(groups: int, per_group: int = 4, rows: int = 60, seed: int = 0, new_per_group=0):
    """A partition of groups * per_group clients over 4 Gaussian classes in 6 dimensions; the
    clients of group g see label perm_g(y). Returns (partition, each client's group). With
    new_per_group, that many new clients of each group, in order (fl partition --new-clients)."""
    gen = np.random.default_rng(seed)
    centers = 3.0 * gen.standard_normal((4, 6))

    def draw(n, perm):
        y = gen.integers(0, 4, n)
        return centers[y] + gen.standard_normal((n, 6)), perm[y]

    truth = np.repeat(np.arange(groups), per_group)
    train = [draw(rows, PERMUTATIONS[g]) for g in truth]
    local = [draw(rows // 4, PERMUTATIONS[g]) for g in truth]
    x_test, y_test = draw(200, PERMUTATIONS[0])
    sizes = np.full(len(truth), rows)
    partition = partition_from_arrays(
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        sizes,
        x_test,
        y_test,
        dataset="planted",
        num_classes=4,
    )
    test_offsets = np.arange(len(truth) + 1, dtype=np.int64) * (rows // 4)
    partition = replace(
        partition,
        x_client_test=np.concatenate([x for x, _ in local]),
        y_client_test=np.concatenate([y for _, y in local]),
        client_test_offsets=test_offsets,
    )
    if new_per_group:
        new = [draw(rows, PERMUTATIONS[g]) for g in np.repeat(np.arange(groups), new_per_group)]
        new_test = [
            draw(rows // 4, PERMUTATIONS[g]) for g in np.repeat(np.arange(groups), new_per_group)
        ]
        partition = replace(
            partition,
            x_new=np.concatenate([x for x, _ in new]),
            y_new=np.concatenate([y for _, y in new]),
            new_offsets=np.arange(len(new) + 1, dtype=np.int64) * rows,
            x_new_test=np.concatenate([x for x, _ in new_test]),
            y_new_test=np.concatenate([y for _, y in new_test]),
            new_test_offsets=np.arange(len(new) + 1, dtype=np.int64) * (rows // 4),
        )
    return partition, truth


def same_grouping(found: np.ndarray, truth: np.ndarray) -> bool:
    """found equals truth up to relabelling the groups (a bijection between their labels)."""
    pairs = set(zip(found.tolist(), truth.tolist(), strict=True))
    return len(pairs) == len(set(truth.tolist())) == len(set(found.tolist()))


def run(partition, **settings):
    base = dict(model="mlp", hidden=(8,), rounds=8, lr=0.1, batch_size=10, seed=0, fraction=1.0)
    return list(simulate(partition, train_config(**{**base, **settings})))


@pytest.mark.parametrize("groups", [2, 3])
def test_ifca_recovers_the_planted_clusters(groups):
    partition, truth = planted(groups)
    results = run(partition, algo="ifca", clusters=groups)
    last = results[-1]
    assert same_grouping(last.state.extra["cluster"], truth)
    assert last.record["clusters"] == groups
    assert np.array_equal(last.clients["cluster"], last.state.extra["cluster"])
    # each client's own cluster model fits its permuted labels: the clustered accuracy is high
    assert last.record["personal_accuracy"] > 0.9


def test_ifca_refuses_a_model_whose_inits_are_all_alike():
    partition, _ = planted(2)
    with pytest.raises(FLError, match="distinct initial models"):
        run(partition, algo="ifca", clusters=2, model="softmax", hidden=None, rounds=1)


def test_ifca_with_one_cluster_is_fedavg():
    partition, _ = planted(2)
    ifca = run(partition, algo="ifca", clusters=1, rounds=3)[-1].state.params
    fedavg = run(partition, algo="fedavg", rounds=3)[-1].state.params
    np.testing.assert_allclose(ifca, fedavg, rtol=1e-10, atol=1e-12)


def test_ifca_clients_train_the_model_of_lowest_loss_from_distinct_inits():
    partition, _ = planted(2)
    first = run(partition, algo="ifca", clusters=3, rounds=1)
    models = first[0].state.extra["models"]
    assert len({m.tobytes() for m in models}) == 3
    assert np.array_equal(models[0], first[0].state.params)  # cluster 0: the usual init
    assert (first[0].state.extra["cluster"] == 0).all()


def test_cfl_splits_the_planted_two_groups():
    partition, truth = planted(2)
    results = run(partition, algo="cfl", rounds=10, eps1=0.4, eps2=0.6)
    cluster = results[-1].state.extra["cluster"]
    assert same_grouping(cluster, truth)
    assert results[-1].record["personal_accuracy"] > 0.9


def test_cfl_does_not_split_clients_that_agree():
    partition, truth = planted(1, per_group=8)
    results = run(partition, algo="cfl", rounds=10, eps1=0.4, eps2=0.6)
    assert (results[-1].state.extra["cluster"] == 0).all()


def test_bipartition_minimises_the_largest_cross_similarity():
    gen = np.random.default_rng(3)
    for n in range(2, 8):
        a = gen.standard_normal((n, n))
        similarity = (a + a.T) / 2

        def cross(part, similarity=similarity):
            return similarity[np.ix_(part, ~part)].max()

        part = bipartition(similarity)
        assert 0 < part.sum() < n
        best = min(
            cross(np.array(bits, dtype=bool))
            for bits in itertools.product([False, True], repeat=n)
            if 0 < sum(bits) < n
        )
        assert cross(part) == best


def test_clustered_algorithms_refuse_what_reads_only_the_aggregate():
    partition, _ = planted(2)
    for algo in ("ifca", "cfl"):
        with pytest.raises(FLError, match="does not apply"):
            run(partition, algo=algo, rounds=1, compress_down="qsgd:bits=4")
        with pytest.raises(FLError, match="does not apply"):
            run(partition, algo=algo, rounds=1, aggregator="median")


@pytest.mark.parametrize("algo", ["ifca", "cfl"])
def test_assignments_are_in_the_checkpoint_and_resume_is_exact(personal_dir, tmp_path, algo):
    import pandas as pd

    config = train_config(
        algo=algo, model="mlp", hidden=(8,), rounds=4, fraction=0.5, seed=2, log_clients=True
    )
    assert_resume_is_exact(personal_dir, config, tmp_path, ("rounds.csv", "clients.csv"))
    assert "cluster" in pd.read_csv(tmp_path / "whole" / "clients.csv").columns


def test_ifca_new_clients_pick_the_cluster_of_their_planted_group():
    """A new client trains nothing: it takes the cluster model of lowest loss on its rows, which
    is its group's (the one the training clients of that group chose)."""
    partition, truth = planted(2, new_per_group=2)
    new_truth = np.repeat(np.arange(2), 2)
    last = run(partition, algo="ifca", clusters=2)[-1]
    spec = algorithm_spec("ifca")
    context = Context(MLP(6, (8,), 4), partition.num_clients, 0.1)
    algorithm = spec.factory(context, clusters=2)
    model, starts, sizes = context.model, partition.new_offsets[:-1], np.diff(partition.new_offsets)

    def losses(models):
        return np.stack(
            [
                client_scores(model, w, partition.x_new, partition.y_new, starts, sizes)[0]
                for w in models
            ],
            axis=1,
        )

    ids = np.arange(len(new_truth))
    picked = algorithm.personalize_new(last.state, ids, None, losses)
    models, cluster = last.state.extra["models"], last.state.extra["cluster"]
    for client, group in enumerate(new_truth):
        mine = cluster[np.flatnonzero(truth == group)[0]]
        np.testing.assert_array_equal(picked[client], models[mine])
    # scored on their own test rows, the picked cluster models fit their permuted labels
    assert last.record["new_client_accuracy"] > 0.9
