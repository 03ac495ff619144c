"""Compressed updates (flcli.compression and the uplink's Compress stage): the unbiased
compressors' means and variance bounds, top-k's k entries, error feedback's residual identity, the
bits counted against a hand count, and the runs through the CLI (bytes_up, refusals, resume)."""

import dataclasses
import io
import math

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error
from test_crash import (
    assert_sigkill_then_resume_is_uninterrupted,
)

from flcli import compression
from flcli.algorithms.aggregate import weighted_mean
from flcli.config import TrainConfig
from flcli.engine.aggregates import NoisedMean, RobustMean, SecureMean
from flcli.engine.stages import Attack, Compress, DPClip, Dropout, Message, SecAggThreshold
from flcli.engine.uplink import build_uplink
from flcli.errors import FLError
from flcli.privacy.secagg import protocol_traffic

P = 40
DRAWS = 20_000


def vector(P=P, seed=0):
    return np.random.default_rng(seed).normal(size=P) * np.linspace(0.1, 3, P)


def draws(spec: str, x: np.ndarray, count=DRAWS) -> np.ndarray:
    """count independent compressions of x: the same vector from count different clients."""
    cohort = np.tile(x, (count, 1))
    out, _ = compression.compress(compression.parse(spec), cohort, 7, 3, np.arange(count))
    return out


UNBIASED = [
    "qsgd:bits=2",
    "qsgd:bits=4",
    "uniform:bits=2",
    "terngrad",
    "randk:fraction=0.25",
    "hadamard+qsgd:bits=3",
    "hadamard+uniform:bits=2",
    "hadamard+terngrad",
]


@pytest.mark.parametrize("spec", UNBIASED)
def test_the_mean_of_many_draws_is_the_input(spec):
    x = vector()
    out = draws(spec, x)
    assert compression.parse(spec).unbiased
    standard_error = out.std(axis=0) / math.sqrt(DRAWS)
    assert np.all(np.abs(out.mean(axis=0) - x) <= 5 * standard_error + 1e-9)
    # deterministic rounding (the biased twin) misses the same test by many standard errors
    levels = 2 ** (2 - 1) - 1
    rounded = np.linalg.norm(x) * np.sign(x) * np.round(np.abs(x) / np.linalg.norm(x) * levels)
    assert np.abs(rounded - x).max() > 5 * standard_error.max()


def test_the_variance_is_within_each_papers_bound():
    x = vector()
    norm2 = float(x @ x)
    for bits in (2, 3, 5):
        s = 2 ** (bits - 1) - 1
        error = ((draws(f"qsgd:bits={bits}", x, 4000) - x) ** 2).sum(axis=1).mean()
        assert error <= min(P / s**2, math.sqrt(P) / s) * norm2  # Alistarh et al., Lemma 3.1
    for bits in (1, 3):
        error = ((draws(f"uniform:bits={bits}", x, 4000) - x) ** 2).sum(axis=1).mean()
        assert error <= P * (x.max() - x.min()) ** 2 / (4 * (2**bits - 1) ** 2)
    # terngrad and rand-k have exact second moments: s ||x||_1 - ||x||^2 and (P/k - 1) ||x||^2
    error = ((draws("terngrad", x) - x) ** 2).sum(axis=1).mean()
    assert error == pytest.approx(np.abs(x).max() * np.abs(x).sum() - norm2, rel=0.03)
    error = ((draws("randk:fraction=0.25", x) - x) ** 2).sum(axis=1).mean()
    assert error == pytest.approx((P / 10 - 1) * norm2, rel=0.03)


def test_the_rotation_is_orthogonal_and_shrinks_the_range():
    d = 64
    H = compression.hadamard(np.eye(d))
    assert np.array_equal(H @ H, d * np.eye(d))
    spiky = np.random.default_rng(5).normal(size=P) * 0.1
    spiky[3] = 10.0  # one large coordinate: the range is wide and the levels coarse
    plain = ((draws("uniform:bits=2", spiky, 2000) - spiky) ** 2).sum(axis=1).mean()
    rotated = ((draws("hadamard+uniform:bits=2", spiky, 2000) - spiky) ** 2).sum(axis=1).mean()
    assert rotated < plain / 2


def test_topk_keeps_exactly_the_k_largest_entries():
    x = np.random.default_rng(1).normal(size=(50, 333))
    out, _ = compression.compress(compression.parse("topk:fraction=0.05"), x, 0, 1, np.arange(50))
    k = math.ceil(0.05 * 333)
    assert ((out != 0).sum(axis=1) == k).all()
    kept = out != 0
    assert np.array_equal(out[kept], x[kept])
    smallest_kept = np.where(kept, np.abs(x), np.inf).min(axis=1)
    largest_dropped = np.where(kept, 0, np.abs(x)).max(axis=1)
    assert (smallest_kept >= largest_dropped).all()


def test_randk_keeps_k_entries_from_a_seed_the_server_can_repeat():
    x = np.random.default_rng(1).normal(size=(5, 100))
    spec = compression.parse("randk:fraction=0.1")
    out, _ = compression.compress(spec, x, 0, 1, np.arange(5))
    assert ((out != 0).sum(axis=1) == 10).all()
    alone, _ = compression.compress(spec, x[3:4], 0, 1, np.array([3]))
    assert np.array_equal(alone[0], out[3])  # a client's positions do not depend on the cohort


@pytest.mark.parametrize(
    "spec, P, float_bits, bits",
    [
        ("topk:fraction=0.01", 650, 64, 7 * 64 + 7 * 10),  # 7 values, 7 indices of 10 bits
        ("topk:fraction=0.5", 100, 32, 50 * 32 + 100),  # the 100-bit bitmap beats 50 x 7 bits
        ("randk:fraction=0.1", 650, 32, 65 * 32 + 64),  # values and the seed, no positions
        ("qsgd:bits=8", 650, 64, 64 + 650 * 8),  # the norm and 8 bits per coordinate
        ("uniform:bits=3", 10, 32, 2 * 32 + 30),  # min, max, 3 bits per coordinate
        ("terngrad", 10, 64, 64 + 20),
        ("sign", 650, 32, 32 + 650),
        ("bf16", 650, 64, 16 * 650),
        ("fp16", 7, 32, 16 * 7),
        ("hadamard+qsgd:bits=4", 650, 64, 64 + 1024 * 4 + 64),  # padded to 1024, and the seed
    ],
)
def test_bits_match_a_hand_count(spec, P, float_bits, bits):
    x = np.random.default_rng(2).normal(size=(3, P))
    _, counted = compression.compress(compression.parse(spec), x, 0, 1, np.arange(3), float_bits)
    assert counted.tolist() == [bits] * 3


def test_bfloat16_rounds_to_nearest_even():
    x = np.array([[1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7 + 2**-9, -2.5]])
    out, _ = compression.compress(compression.parse("bf16"), x, 0, 1, np.arange(1))
    assert out[0].tolist() == [1.0, 1 + 2**-6, 1 + 2**-7, -2.5]


def feedback_stage(kind, clients=6, params=20):
    spec = compression.parse("topk:fraction=0.1")
    return Compress(spec, 0, kind, clients, params)


def test_error_feedback_residual_identity():
    stage = feedback_stage("ef")
    generator = np.random.default_rng(3)
    state = {"residual": generator.normal(size=(6, 20))}
    ids, alive = np.array([1, 2, 4]), np.array([True, True, False])
    x = generator.normal(size=(3, 20))
    old = state["residual"].copy()  # the stage updates its table in place
    out, new = stage.apply(Message(5, ids, x, alive), state)
    arrived = ids[alive]
    np.testing.assert_allclose(
        out.deltas[alive] + new["residual"][arrived], x[alive] + old[arrived], rtol=0, atol=1e-14
    )
    assert ((out.deltas != 0).sum(axis=1) == 2).all()
    untouched = np.setdiff1d(np.arange(6), arrived)  # the dropped client 4 keeps its residual
    assert np.array_equal(new["residual"][untouched], old[untouched])


def test_ef21_moves_the_estimate_by_the_compressed_difference():
    stage = feedback_stage("ef21")
    generator = np.random.default_rng(4)
    old = generator.normal(size=(6, 20))
    ids, alive = np.array([0, 5]), np.array([True, True])
    x = generator.normal(size=(2, 20))
    out, new = stage.apply(Message(2, ids, x, alive), {"estimate": old.copy()})
    sent = out.deltas - old[ids]
    assert ((np.abs(sent) > 1e-15).sum(axis=1) == 2).all()  # only C(x - g) travels
    assert np.array_equal(new["estimate"][ids], out.deltas)


def test_compression_comes_before_dp_clipping_so_the_sent_vector_is_bounded():
    config = TrainConfig(
        attack="scale", malicious=0.3, dropout=0.2, dp_clip=1.0, dp_noise=0.0, compress="sign"
    )
    uplink = build_uplink(config, 20, 10, num_params=5)
    assert [type(s) for s in uplink.stages] == [Attack, Dropout, Compress, DPClip, NoisedMean]


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("qsgd", "bits="),
        ("qsgd:bits=1", "[2, 16]"),
        ("topk:fraction=2", "(0, 1]"),
        ("zip", "unknown compressor"),
        ("hadamard+topk:fraction=0.1", "quantizer"),
        ("sign:bits=2", "takes no argument"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_fix(spec, fragment):
    with pytest.raises(FLError, match="--compress") as raised:
        compression.parse(spec)
    assert fragment in str(raised.value)


def test_bytes_up_are_the_exact_payload(cli, iid_dir, tmp_path):
    dense, sparse = tmp_path / "dense", tmp_path / "sparse"
    args = ["train", iid_dir, "--rounds", 2, "--clients-per-round", 4]
    assert cli(*args, "--out", dense).code == 0
    done = cli(*args, "--out", sparse, "--compress", "topk:fraction=0.01", "--error-feedback", "ef")
    assert done.code == 0, done.err
    P = 650  # softmax on digits: 64 x 10 + 10
    k = 7
    per_message = math.ceil((k * 64 + k * 10) / 8)
    up = pd.read_csv(sparse / "rounds.csv")["bytes_up"]
    assert up.tolist() == [0, 4 * per_message, 8 * per_message]
    assert pd.read_csv(dense / "rounds.csv")["bytes_up"].tolist() == [0, 4 * P * 8, 8 * P * 8]
    table = cli("report", tmp_path, "--format", "csv", "--group-by", "compress")
    rows = pd.read_csv(io.StringIO(table.out))
    ratio = rows.set_index("compress")["compression_mean"]
    assert ratio["topk:fraction=0.01"] == pytest.approx(P * 8 / per_message)
    assert math.isnan(ratio.drop("topk:fraction=0.01").iloc[0])  # the dense run has none


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--error-feedback", "ef"], "--compress"),
        (["--compress", "sign", "--error-feedback", "ef3"], "ef, ef21"),
        (["--compress", "sign", "--secure-agg"], "qsgd, uniform, terngrad"),
        (["--compress", "topk:fraction=0.1", "--secure-agg"], "qsgd, uniform, terngrad"),
        (
            ["--compress", "qsgd:bits=4", "--secure-agg", "--dp-clip", "1", "--dp-noise", "1"],
            "drop --dp-clip",
        ),
        (["--compress", "qsgd:bits=4", "--secure-agg", "--error-feedback", "ef21"], "use"),
        (["--compress", "sign", "--algo", "scaffold"], "does not apply to --algo scaffold"),
        (["--compress", "qsgd:bits=40"], "[2, 16]"),
        (
            ["--compress", "sign", "--error-feedback", "ef21", "--dp-clip", "1", "--dp-noise", "1"],
            "ef21",
        ),
    ],
)
def test_impossible_combinations_are_one_line(cli, iid_dir, tmp_path, flags, fragment):
    result = cli("train", iid_dir, "--rounds", 1, "--out", tmp_path / "run", *flags)
    assert_one_line_error(result, fragment)


def test_sigkill_then_resume_keeps_the_residuals(cli, iid_dir, tmp_path):
    args = ["--rounds", 60, "--fraction", 0.5, "--seed", 4, "--checkpoint-every", 1]
    args += ["--compress", "topk:fraction=0.05", "--error-feedback", "ef"]
    assert_sigkill_then_resume_is_uninterrupted(cli, iid_dir, args, tmp_path)


SECURE_SPECS = [
    "qsgd:bits=4",
    "uniform:bits=3",
    "terngrad",
    "hadamard+qsgd:bits=3",
    "randk:fraction=0.2",
]


def secure_round(spec: str, K=6, P=50, alive=None, feedback=None):
    """One round of SecAggThreshold, Compress (secure) and SecureMean on K random updates."""
    x = np.random.default_rng(3).normal(size=(K, P)) * np.linspace(0.01, 2, K)[:, None]
    alive = np.ones(K, dtype=bool) if alive is None else np.asarray(alive)
    message = Message(5, np.arange(10, 10 + K), x, alive)
    compress = Compress(compression.parse(spec), 11, feedback, 20, P, secure=True)
    state = compress.initial_state()
    for stage in (SecAggThreshold(3), compress, SecureMean(11)):
        message, state = stage.apply(message, state if stage is compress else {})
    return x, message


@pytest.mark.parametrize("spec", SECURE_SPECS)
def test_the_secure_sum_of_codes_is_the_plain_mean_of_the_same_compressed_updates(spec):
    alive = [True, True, False, True, True, True]
    x, message = secure_round(spec, alive=alive)
    weights = np.array([30.0, 7, 12, 1, 19])  # sample counts: integers
    received = message.deltas[message.alive]
    secure = message.aggregate(received, weights)
    # the integer sum the masks carry is exact: the decode of sum_k w_k codes_k, by hand
    codes = message.codes
    exact = sum(
        int(w) * codes.codes[k].astype(object)
        for w, k in zip(weights, np.flatnonzero(alive), strict=True)
    )
    by_hand = codes.decode(np.array(exact, dtype=np.int64), int(weights.sum())) / weights.sum()
    assert np.array_equal(secure, by_hand)
    # and, up to the float rounding of the plain mean's own sum, it is the plain weighted mean
    np.testing.assert_allclose(secure, weighted_mean(received, weights), rtol=1e-12, atol=1e-15)
    # one grid for the cohort: each decoded update is offset + step * integer (rotated back)
    assert codes.codes.dtype == np.int64 and np.abs(codes.codes).max() <= codes.largest
    # two secure sums: the one-hot exponents that find the grid, then the weighted codes
    assert len(message.traffic) == 2


@pytest.mark.parametrize("spec", ["qsgd:bits=3", "uniform:bits=2", "terngrad"])
def test_the_shared_grid_is_unbiased(spec):
    x = vector()
    parsed = compression.parse(spec)
    exponent = int(compression.exponents(parsed.kind, x[None, :])[0]) + 1  # a coarser grid
    codes = compression.grid_codes(parsed, np.tile(x, (DRAWS, 1)), exponent, 7, 3, np.arange(DRAWS))
    out = codes.offset + codes.step * codes.codes
    standard_error = out.std(axis=0) / math.sqrt(DRAWS)
    assert np.all(np.abs(out.mean(axis=0) - x) <= 5 * standard_error + 1e-9)
    # rounding to the nearest level instead is off by many standard errors somewhere
    nearest = codes.offset + codes.step * np.round((x - codes.offset) / codes.step)
    assert np.abs(nearest - x).max() > 5 * standard_error.max()


def test_compressed_secure_aggregation_counts_the_packed_masked_words(cli, iid_dir, tmp_path):
    out = tmp_path / "run"
    args = ["train", iid_dir, "--rounds", 2, "--clients-per-round", 4, "--out", out]
    args += ["--compress", "qsgd:bits=4", "--secure-agg", "--server-weighting", "uniform"]
    done = cli(*args)
    assert done.code == 0, done.err
    P = 650
    # W = 4 (uniform weights): |sum of codes| <= 7 * 4 = 28 needs 5 bits and a sign: 6-bit words,
    # P codes and the weight; the grid's histogram: 81 counts up to 4, 3-bit words
    codes_up, codes_down = protocol_traffic(4, 4, P + 1, False, word_bits=6)
    grid_up, grid_down = protocol_traffic(4, 4, 81, False, word_bits=3)
    assert codes_up - protocol_traffic(4, 4, 0, False)[0] == 4 * math.ceil(651 * 6 / 8)
    rounds = pd.read_csv(out / "rounds.csv")
    per_round = codes_up + grid_up
    assert rounds["bytes_up"].tolist() == [0, per_round, 2 * per_round]  # cumulative
    assert rounds["test_accuracy"].iloc[-1] > 0.5


def test_majority_vote_follows_the_honest_majority_against_flipped_signs():
    g = vector()
    scales = np.array([0.5, 1.0, 2.0, 0.7, 1.3, 0.9, 1.1, 50.0, 60.0, 70.0])
    honest = np.tile(np.where(g >= 0, 1.0, -1.0), (7, 1))
    noise = np.random.default_rng(1).random(honest.shape) < 0.2  # each honest sign wrong w.p. 0.2
    honest[noise] *= -1
    signs = np.vstack([honest, -np.tile(np.where(g >= 0, 1.0, -1.0), (3, 1))])  # 3 flip theirs
    # honest votes per coordinate: at least 4 of 7 agree with g except where noise says otherwise
    agree = (honest == np.where(g >= 0, 1.0, -1.0)).sum(axis=0)
    vectors = scales[:, None] * signs
    stage = RobustMean("majority", 0.3)
    out = stage.combine(vectors, np.ones(10))
    expected = np.where(agree > 5, np.sign(g), np.where(agree == 5, 0.0, -np.sign(g)))
    assert np.array_equal(
        np.sign(out), expected
    )  # sign(honest + 3 flipped) coordinate by coordinate
    assert np.all(np.sign(out)[agree >= 6] == np.sign(g[agree >= 6]))
    assert np.all(np.abs(out[out != 0]) == pytest.approx(scales.mean()))
    # the mean, weighted or not, follows the three large flipped votes instead
    assert np.all(np.sign(vectors.mean(axis=0)) == -np.sign(g))


def test_majority_needs_sign_messages(cli, iid_dir, tmp_path):
    result = cli(
        "train", iid_dir, "--rounds", 1, "--out", tmp_path / "r", "--aggregator", "majority"
    )
    assert_one_line_error(result, "--compress sign")
    done = cli(
        "train",
        iid_dir,
        "--rounds",
        3,
        "--out",
        tmp_path / "s",
        "--compress",
        "sign",
        "--aggregator",
        "majority",
        "--attack",
        "signflip",
        "--malicious",
        "0.2",
    )
    assert done.code == 0, done.err
    assert pd.read_csv(tmp_path / "s" / "rounds.csv")["test_accuracy"].iloc[-1] > 0.5


def test_compress_down_sends_the_decoded_model_and_counts_its_exact_bits(cli, iid_dir, tmp_path):
    """--compress-down qsgd:bits=8 (Caldas et al. 2018): each sampled client downloads one
    message of 64 + 8 P bits (its norm and P codes) and trains from the decoded model, so the run
    differs from the dense one; fp16 keeps the accuracy of the dense run."""
    import pandas as pd

    from flcli.data.store import load_partition

    partition = load_partition(iid_dir)
    P = partition.num_features * partition.num_classes + partition.num_classes
    args = ["--rounds", 4, "--clients-per-round", 5, "--seed", 2]
    for name, extra in (("dense", []), ("q8", ["--compress-down", "qsgd:bits=8"])):
        assert cli("train", iid_dir, *args, *extra, "--out", tmp_path / name).code == 0
    dense, q8 = (pd.read_csv(tmp_path / n / "rounds.csv") for n in ("dense", "q8"))
    per_client = -(-(64 + 8 * P) // 8)
    assert list(q8["bytes_down"]) == [r * 5 * per_client for r in range(5)]
    assert list(dense["bytes_down"]) == [r * 5 * 8 * P for r in range(5)]
    assert list(q8["bytes_up"]) == list(dense["bytes_up"])  # the uplink is untouched
    assert not q8["train_loss"].equals(dense["train_loss"])
    assert (
        cli("train", iid_dir, *args, "--compress-down", "fp16", "--out", tmp_path / "f").code == 0
    )
    fp16 = pd.read_csv(tmp_path / "f" / "rounds.csv")
    assert abs(fp16["test_accuracy"].iloc[-1] - dense["test_accuracy"].iloc[-1]) < 0.02


COMPILED_SPECS = [
    "qsgd:bits=8",
    "qsgd:bits=2",
    "uniform:bits=4",
    "terngrad",
    "sign",
    "randk:fraction=0.01",
    "randk:fraction=0.3",
    "hadamard+qsgd:bits=4",
    "hadamard+uniform:bits=2",
    "hadamard+terngrad",
    "hadamard+sign",
    "bf16",
    "fp16",
    "topk:fraction=0.01",
    "topk:fraction=0.3",
]


@pytest.mark.parametrize("spec", COMPILED_SPECS)
@pytest.mark.parametrize("P", [1, 3, 7, 610, 1025])
def test_the_compiled_kernels_are_bit_identical_to_numpy(spec, P, monkeypatch):
    """flcli.compression_kernels repeats the NumPy functions operation for operation: the same
    bits for zero rows, odd widths, padded rotations, and clients with large ids."""
    rng = np.random.default_rng(P)
    x = rng.normal(size=(23, P)) * rng.uniform(0.01, 10, size=(23, 1))
    x[3], x[5, ::2] = 0, 0
    ids = rng.choice(10**9, 23, replace=False)
    parsed = compression.parse(spec)
    monkeypatch.setattr(compression, "COMPILED", False)
    plain, plain_bits = compression.compress(parsed, x, 5, 3, ids, 32)
    monkeypatch.setattr(compression, "COMPILED", True)
    assert compression.compiled() is not None
    fast, fast_bits = compression.compress(parsed, x, 5, 3, ids, 32)
    assert np.array_equal(plain.view(np.uint64), fast.view(np.uint64))
    assert np.array_equal(plain_bits, fast_bits)


@pytest.mark.parametrize("spec", ["bf16", "fp16"])
def test_the_compiled_float_roundings_match_numpy_at_every_edge(spec, monkeypatch):
    """Ties, subnormals, overflow, infinities, NaN and signed zeros of each 16-bit format."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64)
    finite = halves[np.isfinite(halves)]
    ties = (finite[:-1] + finite[1:]) / 2
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 65520.0, 65519.99, 1e300, 1e-300, 2.0**-25]
    rng = np.random.default_rng(0)
    noise = rng.normal(size=4000) * 10.0 ** rng.integers(-40, 40, size=4000)
    x = np.concatenate([halves, ties, np.nextafter(ties, 0), np.nextafter(ties, 1e9), edges])
    x = np.concatenate([x, noise])
    x = x[: len(x) // 8 * 8].reshape(8, -1)
    parsed = compression.parse(spec)
    monkeypatch.setattr(compression, "COMPILED", False)
    with np.errstate(all="ignore"):
        plain, _ = compression.compress(parsed, x, 0, 0, np.arange(8))
    monkeypatch.setattr(compression, "COMPILED", True)
    fast, _ = compression.compress(parsed, x, 0, 0, np.arange(8))
    assert np.array_equal(plain.view(np.uint64), fast.view(np.uint64))


@pytest.mark.parametrize("feedback", ["ef", "ef21"])
@pytest.mark.parametrize("spec", ["topk:fraction=0.1", "sign", "qsgd:bits=3"])
def test_the_compiled_error_feedback_matches_numpy(spec, feedback, monkeypatch):
    """The table read and written in place by the kernels: the same deltas and the same table,
    bit for bit, over rounds with clients that drop out."""
    plain = compressed_rounds(spec, feedback, (30, 12, 50), np.float64, False, monkeypatch)
    fast = compressed_rounds(spec, feedback, (30, 12, 50), np.float64, True, monkeypatch)
    assert np.array_equal(plain[0].view(np.uint64), fast[0].view(np.uint64))
    assert np.array_equal(plain[1].view(np.uint64), fast[1].view(np.uint64))


def compressed_rounds(spec, feedback, shape, dtype, compiled, monkeypatch, rounds=3):
    """(the deltas the Compress stage sends over `rounds` rounds, concatenated; its table after
    them, or None) for N clients, cohorts of K, P coordinates (shape = (N, K, P)), about 30% of
    the messages lost; with the compiled kernels or the NumPy functions."""
    monkeypatch.setattr(compression, "COMPILED", compiled)
    N, K, P = shape
    stage = Compress(compression.parse(spec), 3, feedback, N, P)
    state, sent = stage.initial_state(), []
    for round in range(rounds):
        ids = np.random.default_rng(round).choice(N, K, replace=False)
        alive = np.random.default_rng(round + 10).random(K) < 0.7
        x = np.random.default_rng(round + 20).normal(size=(K, P)).astype(dtype)
        message, state = stage.apply(Message(round, ids, x, alive), state)
        assert message.deltas.dtype == dtype
        sent.append(message.deltas)
    return np.concatenate(sent), state.get(stage.key)


def test_secure_randk_shares_the_rounds_positions_and_is_unbiased_over_rounds():
    parsed = compression.parse("randk:fraction=0.25")
    x = vector()
    k = compression.kept(0.25, len(x))
    cohort = np.tile(x, (3, 1)) * np.array([[1.0], [-2.0], [0.5]])
    values, positions = compression.shared_selection(parsed, cohort, 7, 4)
    assert values.shape == (3, k) and len(set(positions.tolist())) == k  # the same k for all
    np.testing.assert_allclose(values, cohort[:, positions] * len(x) / k)
    total = np.zeros_like(x)
    rounds = 4_000
    for round in range(rounds):
        kept_values, kept_at = compression.shared_selection(parsed, x[None, :], 7, round)
        exponent = int(compression.exponents("randk", kept_values)[0])
        codes = compression.grid_codes(parsed, kept_values, exponent, 7, round, np.array([0]))
        codes = dataclasses.replace(codes, width=len(x), positions=kept_at)
        decoded = codes.placed(codes.offset + codes.step * codes.codes.astype(np.float64))[0]
        assert np.count_nonzero(decoded) <= k
        total += decoded
    # each coordinate is kept in about k / P of the rounds, scaled by P / k: mean x, with a
    # standard error of about |x_i| sqrt(P / k - 1) / sqrt(rounds)
    bound = 5 * np.abs(x) * math.sqrt(len(x) / k - 1) / math.sqrt(rounds) + 1e-9
    assert np.all(np.abs(total / rounds - x) <= bound)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("feedback", [None, "ef", "ef21"])
@pytest.mark.parametrize("spec", ["topk:fraction=0.01", "qsgd:bits=3", "hadamard+sign", "fp16"])
def test_a_cohort_compressed_in_blocks_on_threads_matches_numpy(spec, feedback, dtype, monkeypatch):
    """A cohort of more coordinates than one block (70 x 20,000) goes through in blocks of rows
    on every core, top-k with error feedback row by row: the same deltas and table, bit for bit,
    as the NumPy functions over the whole cohort."""
    shape = (90, 70, 20_000)
    plain, table = compressed_rounds(spec, feedback, shape, dtype, False, monkeypatch, rounds=2)
    fast, fast_table = compressed_rounds(spec, feedback, shape, dtype, True, monkeypatch, rounds=2)
    assert np.array_equal(plain, fast)
    if feedback:
        assert np.array_equal(table, fast_table) and np.any(table != 0)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("spec", COMPILED_SPECS)
def test_a_clients_message_does_not_depend_on_its_cohort(spec, compiled, monkeypatch):
    """Each client's C(x) is the same, bit for bit, in a cohort of 9, of 8, and alone: the row
    groups whose scalars are computed together (7 rows of 18,186, 4 rotated ones of 32,768)
    leave one row alone in some cohorts, and its norm must come out as in a group."""
    monkeypatch.setattr(compression, "COMPILED", compiled)
    x = np.random.default_rng(0).normal(size=(9, 18_186))
    ids = np.arange(100, 109)
    parsed = compression.parse(spec)
    nine = compression.compress(parsed, x, 4, 2, ids)[0]
    eight = compression.compress(parsed, x[:8], 4, 2, ids[:8])[0]
    assert np.array_equal(nine[:8], eight)
    for row in (0, 4, 7, 8):
        alone = compression.compress(parsed, x[row : row + 1], 4, 2, ids[row : row + 1])[0]
        assert np.array_equal(alone[0], nine[row])
