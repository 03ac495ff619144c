"""The images generator (images:samples=...,noise=...): class-conditional C x H x W images for
CNNs, deterministic, balanced, separable where a pattern is found but not by a linear model."""

import json

import numpy as np
import pytest
from conftest import assert_one_line_error

from flcli.data.generators import IMAGE_DEFAULTS, generate
from flcli.data.store import load_partition
from flcli.rng import Purpose, rng


def images(spec: str, seed: int = 0):
    return generate(spec, rng(seed, Purpose.GENERATE))


def test_the_defaults_are_cifar_sized_float32_images_in_the_unit_interval():
    data = images("images:samples=300")
    c, s = IMAGE_DEFAULTS["channels"], IMAGE_DEFAULTS["size"]
    assert data.input_shape == (c, s, s) and data.X.shape == (300, c * s * s)
    assert data.X.dtype == np.float32 and data.num_classes == IMAGE_DEFAULTS["classes"]
    assert data.X.min() >= 0 and data.X.max() <= 1


def test_the_parameters_shape_the_images_and_the_classes_are_balanced():
    data = images("images:samples=301,channels=1,size=12,classes=7,templates=2,noise=0.1")
    assert data.input_shape == (1, 12, 12) and data.X.shape == (301, 144)
    counts = np.bincount(data.y, minlength=7)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 301


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    first, again, other = images("images:samples=200"), images("images:samples=200"), None
    other = images("images:samples=200", seed=1)
    assert np.array_equal(first.X, again.X) and np.array_equal(first.y, again.y)
    assert not np.array_equal(first.X, other.X)


def fourier_magnitudes(data) -> np.ndarray:
    """Each image's per-channel 2-D Fourier magnitudes, normalized: a pattern moved within the
    canvas keeps them, so they see a class wherever its pattern lies."""
    centred = data.X.reshape(len(data.X), *data.input_shape) - data.X.mean()
    magnitudes = np.abs(np.fft.rfft2(centred)).reshape(len(data.X), -1)
    return magnitudes / np.linalg.norm(magnitudes, axis=1, keepdims=True)


def held_out_accuracy(features, labels, model) -> float:
    train = np.arange(len(labels)) % 2 == 0
    return model.fit(features[train], labels[train]).score(features[~train], labels[~train])


def test_classes_are_found_by_a_shift_invariant_match_and_not_by_a_linear_model():
    from sklearn.linear_model import RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier

    data = images("images:samples=800")
    chance = 1 / data.num_classes
    invariant = held_out_accuracy(fourier_magnitudes(data), data.y, KNeighborsClassifier(1))
    linear = held_out_accuracy(data.X, data.y, RidgeClassifier())
    assert invariant > 1 - chance  # the patterns are told apart wherever they lie
    assert linear < (1 + invariant) / 2 and linear < invariant - chance  # not linearly trivial
    assert linear > 1.5 * chance  # nor hidden from a linear model altogether


def test_more_noise_hides_the_classes():
    from sklearn.neighbors import KNeighborsClassifier

    accuracy = {
        noise: held_out_accuracy(
            fourier_magnitudes(data := images(f"images:samples=400,noise={noise}")),
            data.y,
            KNeighborsClassifier(1),
        )
        for noise in (0.0, 1.0)
    }
    assert accuracy[0.0] > accuracy[1.0] + 2 / IMAGE_DEFAULTS["classes"]


def test_images_through_fl_partition_and_fl_train(cli, tmp_path):
    out = tmp_path / "p"
    result = cli("partition", "images:samples=240,size=8", "--clients", "3", "--out", out)
    assert result.code == 0, result.err
    assert "3 x 8 x 8" in result.out
    assert json.loads((out / "partition.json").read_text())["input_shape"] == [3, 8, 8]
    part = load_partition(out)
    assert part.input_shape == (3, 8, 8) and part.x_train.dtype == np.float32
    batch = part.x_train.reshape(-1, *part.input_shape)  # NCHW, no copy
    assert np.shares_memory(batch, part.x_train)
    run = cli("train", out, "--rounds", "1", "--out", tmp_path / "r")
    assert run.code == 0, run.err


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ("images:size=3", ["images:size=3", ">= 4"]),
        ("images:samples=2.5", ["images:samples=2.5", "whole number"]),
        ("images:noise=-1", ["images:noise=-1", ">= 0"]),
        ("images:colours=3", ["no parameter 'colours'", "samples, channels, size"]),
    ],
)
def test_a_wrong_parameter_is_one_line(cli, tmp_path, spec, fragments):
    assert_one_line_error(cli("partition", spec, "--out", tmp_path / "p"), *fragments)
