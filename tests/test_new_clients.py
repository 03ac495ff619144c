"""fl partition --new-clients: clients held out of training, and new_client_accuracy."""

import json

import numpy as np
import pytest

from flcli import api
from flcli.api import simulate
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.errors import FLError


def build(out, **options):
    settings = dict(dataset="digits", clients=10, scheme="pathological", seed=0)
    api.partition(out, **{**settings, **options})
    return load_partition(out)


def test_new_clients_rows_stay_out_of_training(tmp_path):
    whole = build(tmp_path / "whole")
    held = build(tmp_path / "held", new_clients=0.2)
    new = json.loads((tmp_path / "held" / "partition.json").read_text())["new_clients"]["ids"]
    assert len(new) == 2 and held.num_clients == 8
    kept = [c for c in range(10) if c not in new]
    assert held.client_sizes.tolist() == whole.client_sizes[kept].tolist()
    assert held.offsets[-1] == len(held.y_train) == whole.client_sizes[kept].sum()
    for j, client in enumerate(new):
        rows = slice(whole.offsets[client], whole.offsets[client + 1])
        mine = slice(held.new_offsets[j], held.new_offsets[j + 1])
        np.testing.assert_array_equal(held.x_new[mine], whole.x_train[rows])
        np.testing.assert_array_equal(held.y_new[mine], whole.y_train[rows])
    # not one training row is a new client's row
    train_rows = {r.tobytes() for r in held.x_train}
    assert not any(r.tobytes() in train_rows for r in held.x_new if r.tobytes())


def test_without_the_option_the_partition_is_unchanged(tmp_path):
    plain = build(tmp_path / "a", client_test_fraction=0.2)
    zero = build(tmp_path / "b", client_test_fraction=0.2, new_clients=0.0)
    assert plain.hash == zero.hash and not plain.has_new_clients


def test_new_clients_get_their_own_test_split(tmp_path):
    whole = build(tmp_path / "whole", client_test_fraction=0.2)
    held = build(tmp_path / "held", new_clients=0.2, client_test_fraction=0.2)
    new = held.meta["new_clients"]["ids"]
    for j, client in enumerate(new):
        rows = slice(whole.client_test_offsets[client], whole.client_test_offsets[client + 1])
        mine = slice(held.new_test_offsets[j], held.new_test_offsets[j + 1])
        np.testing.assert_array_equal(held.y_new_test[mine], whole.y_client_test[rows])


def test_new_client_accuracy_is_a_real_accuracy_that_improves(tmp_path):
    # three classes a client: the new clients' classes are among the training clients' too
    options = dict(new_clients=0.2, client_test_fraction=0.2, classes_per_client=3)
    held = build(tmp_path / "held", **options)
    config = train_config(algo="fedavglu", model="softmax", rounds=6, lr=0.02, seed=0)
    records = [result.record for result in simulate(held, config)]
    accuracy = [r["new_client_accuracy"] for r in records]
    assert all(0 <= a <= 1 for a in accuracy)
    assert accuracy[-1] > accuracy[0]


def test_plain_runs_do_not_report_it(tmp_path):
    held = build(tmp_path / "held", new_clients=0.2, client_test_fraction=0.2)
    records = [r.record for r in simulate(held, train_config(algo="fedavg", rounds=1))]
    assert "new_client_accuracy" not in records[-1]


def test_new_clients_out_of_range_is_one_line(tmp_path):
    with pytest.raises(FLError, match="must be in"):
        build(tmp_path / "bad", new_clients=1.5)
