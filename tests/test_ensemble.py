"""Classifiers without parameters to average (random forests, boosted trees, k-NN) under feddist
(an ensemble distilled into a student) and fedbag (the ensemble's soft vote)."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from flcli import api
from flcli.algorithms.base import Context
from flcli.algorithms.fedbag import fedbag
from flcli.algorithms.feddf import feddist_fitted, soften
from flcli.api import simulate
from flcli.config import TrainConfig
from flcli.configfile import train_config
from flcli.data.store import load_partition
from flcli.errors import FLError
from flcli.models.registry import default_lr, make_model

FOREST = "sklearn:RandomForestClassifier"
SMALL_FOREST = {"n_estimators": 20}


def records(partition, **settings) -> list[dict]:
    config = train_config(**settings)
    return [r.record for r in simulate(partition, config)]


def rounds_of(run_dir):
    return pd.read_csv(run_dir / "rounds.csv").drop(columns=["elapsed_s"])


def test_random_forest_under_feddist_reaches_090_on_iid_digits(iid_dir):
    partition = load_partition(iid_dir)
    run = records(partition, algo="feddist", model=FOREST, rounds=6, model_args=SMALL_FOREST)
    assert run[-1]["test_accuracy"] >= 0.90
    assert run[-1]["train_loss"] < run[0]["train_loss"]
    assert {"test_loss", "client_accuracy_mean", "bytes_up"} <= set(run[-1])


@pytest.mark.parametrize(
    "model, args",
    [(FOREST, {"n_estimators": 10}), ("sklearn:HistGradientBoostingClassifier", {"max_iter": 30})],
)
def test_fedbag_of_forests_and_boosted_trees_on_iid_digits(iid_dir, model, args):
    partition = load_partition(iid_dir)
    run = records(partition, algo="fedbag", model=model, rounds=1, model_args=args)
    assert run[-1]["test_accuracy"] >= 0.90
    assert run[-1]["clients"] == partition.num_clients and run[-1]["bytes_up"] > 0


def test_the_vote_is_the_mean_of_the_members_predict_proba_over_all_classes(iid_dir):
    partition = load_partition(iid_dir)
    model = make_model(FOREST, partition.num_features, partition.num_classes)
    x, y = partition.x_train, partition.y_train
    low, high = y < 6, y > 3  # the members know classes 0-5 and 4-9
    first = model.fit(x[low], y[low], random_state=1)
    second = model.fit(x[high], y[high], random_state=2)
    vote = model.predict_proba([first, second], partition.x_test)
    by_hand = np.zeros_like(vote)
    by_hand[:, :6] += first.predict_proba(partition.x_test) / 2
    by_hand[:, 4:] += second.predict_proba(partition.x_test) / 2
    np.testing.assert_allclose(vote, by_hand, atol=1e-12)
    np.testing.assert_allclose(vote.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict_proba([], x[:3]), np.full((3, 10), 0.1))


def test_a_shard_of_one_class_gives_the_constant_member_and_knn_fits_small_shards(iid_dir):
    partition = load_partition(iid_dir)
    x = partition.x_train[:3]
    knn = make_model("sklearn:KNeighborsClassifier", partition.num_features, 10)
    constant = knn.fit(x, np.array([7, 7, 7]), random_state=0)
    np.testing.assert_array_equal(knn.predict_proba([constant], x).argmax(axis=1), [7, 7, 7])
    assert knn.predict_proba([constant], x)[:, 7].min() == 1.0
    small = knn.fit(x, np.array([1, 2, 2]), random_state=0)  # 3 rows, n_neighbors=5 by default
    assert knn.predict([small], x).shape == (3,)


def test_feddist_teacher_is_the_softened_mean_and_the_student_learns_it(iid_dir):
    proba = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]])
    np.testing.assert_allclose(soften(proba, 1.0), proba)
    hot = soften(proba, 2.0)
    np.testing.assert_allclose(hot[0], np.sqrt(proba[0]) / np.sqrt(proba[0]).sum())
    assert hot[0, 0] < proba[0, 0]  # a higher temperature flattens

    partition = load_partition(iid_dir)
    model = make_model(FOREST, partition.num_features, 10, model_args=SMALL_FOREST)
    proxy = partition.x_test
    algorithm = feddist_fitted(Context(model, 2, 0.5, proxy), 1.0, 200, 0.1)
    state = algorithm.server_init(np.random.default_rng(0), 2)
    members = [model.fit(partition.x_train[i::2], partition.y_train[i::2], i) for i in (0, 1)]
    state = algorithm.server_update(state, 1, np.array([0, 1]), members)
    agreement = algorithm.student.predict(state.params, proxy) == model.predict(members, proxy)
    assert agreement.mean() > 0.95
    assert algorithm.voters(state) is None


def test_fedbag_keeps_the_latest_member_of_every_client_seen():
    algorithm = fedbag(Context(model=None, num_clients=5, lr=0.1))
    state = algorithm.server_init(np.random.default_rng(0), 5)
    assert algorithm.voters(state).shape == (0, 2)
    state = algorithm.server_update(state, 1, np.array([0, 3]), [])
    state = algorithm.server_update(state, 2, np.array([3, 4]), [])
    np.testing.assert_array_equal(algorithm.voters(state), [[0, 1], [3, 2], [4, 2]])


def test_a_regressor_without_parameters_is_refused(regression_dir):
    partition = load_partition(regression_dir)
    with pytest.raises(FLError, match="RandomForestRegressor"):
        make_model("sklearn:RandomForestRegressor", partition.num_features, None, task="regression")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--model", FOREST], ["--algo fedavg", "feddist", "fedbag"]),
        (["--model", FOREST, "--algo", "scaffold"], ["--algo scaffold", "feddist"]),
        (["--algo", "fedbag"], ["--algo fedbag", "RandomForestClassifier"]),
        (["--model", FOREST, "--algo", "fedbag", "--stragglers", 0.5], ["--stragglers"]),
        (["--model", FOREST, "--algo", "fedbag", "--mu", 0.1], ["--mu", "fedprox"]),
    ],
)
def test_wrong_pairings_are_one_line_errors(cli, iid_dir, tmp_path, args, fragments):
    result = cli("train", iid_dir, *args, "--out", tmp_path / "run")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()


def test_same_seed_same_rounds_csv_and_resume_refits_the_ensemble(cli, dirichlet_dir, tmp_path):
    args = [dirichlet_dir, "--model", FOREST, "--model-arg", "n_estimators=5", "--rounds", 4]
    args += ["--clients-per-round", 3, "--log-clients", "--seed", 5]
    for algo in ("fedbag", "feddist"):
        first, second = tmp_path / f"{algo}-a", tmp_path / f"{algo}-b"
        assert cli("train", *args, "--algo", algo, "--out", first).code == 0
        assert cli("train", *args, "--algo", algo, "--out", second).code == 0
        pd.testing.assert_frame_equal(rounds_of(first), rounds_of(second), check_exact=True)

        config = json.loads((first / "run.json").read_text())["config"]
        cut = tmp_path / f"{algo}-cut"
        rounds = api.prepare_training(dirichlet_dir, TrainConfig.from_dict(config), cut).rounds()
        for record in rounds:
            if record["round"] == 2:
                break
        rounds.close()  # as if interrupted after round 2
        resumed = cli("train", *args, "--algo", algo, "--out", cut, "--resume")
        assert resumed.code == 0, resumed.err
        pd.testing.assert_frame_equal(rounds_of(first), rounds_of(cut), check_exact=True)
    other = tmp_path / "other-seed"
    cli("train", *args[:-2], "--seed", 6, "--algo", "fedbag", "--out", other)
    assert not rounds_of(other).equals(rounds_of(tmp_path / "fedbag-a"))


def test_list_says_which_algorithms_take_which_models(cli):
    models = cli("list", "models").out
    assert "sklearn:RandomForestClassifier" in models and "feddist, fedbag" in models
    assert "all but fedbag" in models
    assert "fedbag" in cli("list", "algorithms").out
    assert default_lr(FOREST) == 0.5  # --lr is the step of feddist's softmax student


def test_feddist_fitted_adam_student_learns_the_ensemble_and_is_reproducible(iid_dir):
    """student=adam in the fitted-member form: minibatch Adam with early stopping, addressed by
    (seed, PROXY, round): the same round gives the same student."""
    partition = load_partition(iid_dir)
    model = make_model(FOREST, partition.num_features, 10, model_args=SMALL_FOREST)
    proxy = partition.x_test
    context = Context(model, 2, 0.5, proxy, seed=5)
    members = [model.fit(partition.x_train[i::2], partition.y_train[i::2], i) for i in (0, 1)]
    students = []
    for _ in range(2):
        algorithm = feddist_fitted(
            context, distill_steps=3000, student="adam", student_lr=0.01, student_batch=32
        )
        state = algorithm.server_init(np.random.default_rng(0), 2)
        students.append(algorithm.server_update(state, 1, np.array([0, 1]), members).params)
    np.testing.assert_array_equal(students[0], students[1])
    agreement = algorithm.student.predict(students[0], proxy) == model.predict(members, proxy)
    assert agreement.mean() > 0.9
