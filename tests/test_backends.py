"""The process and ray backends give the same rounds.csv as the vectorized one."""

import sys
import tempfile

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from flcli.algorithms.work import LocalSpec
from flcli.data.store import load_partition
from flcli.engine.chunks import chunk_indices
from flcli.engine.cohort import train_cohort
from flcli.engine.local import Cohort
from flcli.engine.process import ProcessTrainer
from flcli.models.linear import SoftmaxRegression
from flcli.models.mlp import MLP

ARGS = ["--rounds", 3, "--fraction", 0.5, "--seed", 5, "--local-epochs", 1]


def rounds_of(run_dir):
    return pd.read_csv(run_dir / "rounds.csv").drop(columns=["elapsed_s"])


@pytest.fixture(scope="module")
def vectorized_run(dirichlet_dir, tmp_path_factory):
    from flcli.cli import main

    out = tmp_path_factory.mktemp("vectorized") / "run"
    with pytest.raises(SystemExit) as done:
        main(["train", str(dirichlet_dir), *map(str, ARGS), "--out", str(out)])
    assert done.value.code == 0
    return rounds_of(out)


def test_chunks_cover_the_cohort_in_order():
    parts = chunk_indices(7, 3)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert np.array_equal(np.concatenate(parts), np.arange(7))
    assert len(chunk_indices(2, 5)) == 2  # never an empty chunk


@pytest.mark.parametrize("model_name", ["softmax", "mlp"])
def test_process_trainer_equals_train_cohort_bit_for_bit(dirichlet_dir, model_name):
    """The MLP trains with its compiled step, on the workers' memory-mapped parameters too."""
    data = load_partition(dirichlet_dir)
    if model_name == "mlp":
        model = MLP(data.num_features, (16,), data.num_classes)
    else:
        model = SoftmaxRegression(data.num_features, data.num_classes)
    cohort = Cohort.of(np.arange(data.num_clients), data.offsets)
    w = np.linspace(-0.1, 0.1, model.num_params)
    spec = LocalSpec(epochs=2, batch_size=8, lr=0.3)
    expected = train_cohort(model, data.x_train, data.y_train, cohort, w, spec, 1, 4)
    trainer = ProcessTrainer(jobs=3)
    got = trainer(model, data.x_train, data.y_train, cohort, w, spec, 1, 4)
    again = trainer(model, data.x_train, data.y_train, cohort, w, spec, 1, 4)  # shared files reused
    trainer.close()
    for result in (got, again):
        assert np.array_equal(result.params, expected.params)
        assert np.array_equal(result.num_steps, expected.num_steps)


def test_process_trainer_results_outlive_the_next_round_and_close_removes_its_files(
    dirichlet_dir, tmp_path, monkeypatch
):
    """Workers write the round's local models into a shared file that the next round rewrites:
    the result handed back must not change with it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = load_partition(dirichlet_dir)
    model = SoftmaxRegression(data.num_features, data.num_classes)
    cohort = Cohort.of(np.arange(data.num_clients), data.offsets)
    spec = LocalSpec(1, 8, 0.1)
    trainer = ProcessTrainer(jobs=2)
    first = trainer(
        model, data.x_train, data.y_train, cohort, np.zeros(model.num_params), spec, 0, 1
    )
    kept = first.params.copy()
    trainer(model, data.x_train, data.y_train, cohort, np.ones(model.num_params), spec, 0, 2)
    np.testing.assert_array_equal(first.params, kept)
    assert list(tmp_path.iterdir())  # the shared files live in the temporary folder
    trainer.close()
    assert list(tmp_path.iterdir()) == []


def test_process_backend_same_rounds_csv(cli, dirichlet_dir, tmp_path, vectorized_run):
    out = tmp_path / "run"
    result = cli("train", dirichlet_dir, *ARGS, "--backend", "process", "--jobs", 2, "--out", out)
    assert result.code == 0, result.err
    pd.testing.assert_frame_equal(vectorized_run, rounds_of(out), check_exact=True)


@pytest.mark.parametrize(
    "extra",
    [
        ["--algo", "scaffold"],  # per-client correction inputs and state, cut into chunks
        ["--algo", "fedprox", "--mu", 0.1, "--stragglers", 0.5],  # per-client step budgets
    ],
)
def test_process_backend_chunks_the_algorithms_client_work(cli, dirichlet_dir, tmp_path, extra):
    runs = {}
    for backend in ("vectorized", "process"):
        out = tmp_path / backend
        result = cli("train", dirichlet_dir, *ARGS, *extra, "--backend", backend, "--out", out)
        assert result.code == 0, result.err
        runs[backend] = rounds_of(out)
    pd.testing.assert_frame_equal(runs["vectorized"], runs["process"], check_exact=True)


def test_ray_backend_same_rounds_csv(cli, dirichlet_dir, tmp_path, vectorized_run):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'flcli[ray]'")
    out = tmp_path / "run"
    try:
        result = cli("train", dirichlet_dir, *ARGS, "--backend", "ray", "--jobs", 2, "--out", out)
    finally:
        ray.shutdown()
    assert result.code == 0, result.err
    pd.testing.assert_frame_equal(vectorized_run, rounds_of(out), check_exact=True)


def test_ray_backend_without_ray_is_one_line(cli, iid_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    result = cli("train", iid_dir, "--backend", "ray", "--out", tmp_path / "r")
    assert_one_line_error(result, "pip install 'flcli[ray]'")
    assert not (tmp_path / "r").exists()
