"""Hostile input through the CLI: every case is refused with exit code 2 and one line on stderr,
no traceback, and the dirs it was given are left as they were."""

import hashlib

import numpy as np
import pytest
from conftest import assert_one_line_error, write_generated_partition

BIG = "99999999999999999999999"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A tiny classification partition (4 clients, 3 classes) and a completed 2-round run of it."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.arange(60) % 3
    part = write_generated_partition(root / "part", x[:48], y[:48], [12] * 4, x[48:], y[48:], 3)
    return root, part


def digest(*dirs) -> str:
    """The bytes of every file under dirs (a check that nothing there was touched)."""
    h = hashlib.sha256()
    for d in dirs:
        for file in sorted(p for p in d.rglob("*") if p.is_file() and p.name != ".lock"):
            h.update(str(file).encode() + file.read_bytes())
    return h.hexdigest()


FLAG_CASES = [
    # (extra fl train flags, fragment of the one line)
    (["--rounds", BIG], "--rounds"),
    (["--rounds", "0"], "--rounds"),
    (["--rounds", "-3"], "--rounds"),
    (["--rounds", "nan"], "--rounds"),
    (["--rounds", "1e9"], "--rounds"),
    (["--local-epochs", BIG], "--local-epochs"),
    (["--local-epochs", "10000000"], "--local-epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", BIG], "--batch-size"),
    (["--clients-per-round", "0"], "--clients-per-round"),
    (["--clients-per-round", BIG], "--clients-per-round"),
    (["--fraction", "0"], "--fraction"),
    (["--fraction", "1.5"], "--fraction"),
    (["--fraction", "nan"], "--fraction"),
    (["--seed", str(2**64)], "--seed"),
    (["--seed", str(2**63)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "-0.1"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--model", "mlp", "--hidden", "0"], "--hidden"),
    (["--model", "mlp", "--hidden", "10,-1"], "--hidden"),
    (["--model", "mlp", "--hidden", "a,b"], "--hidden"),
    (["--model", "mlp", "--hidden", BIG], "--hidden"),
    (["--model", "mlp", "--hidden", "100000000"], "--hidden"),
    (["--model", "mlp", "--hidden", "100000,100000"], "memory"),
    (["--dp-clip", "inf"], "--dp-clip"),
    (["--dp-clip", "nan"], "--dp-clip"),
    (["--dp-clip", "-1"], "--dp-clip"),
    (["--dp-clip", "1", "--dp-noise", "nan"], "--dp-noise"),
    (["--dp-clip", "1", "--dp-noise", "inf"], "--dp-noise"),
    (["--dp-clip", "1", "--dp-epsilon", "nan"], "--dp-epsilon"),
    (["--dp-clip", "1", "--dp-epsilon", "inf"], "--dp-epsilon"),
    (["--dp-clip", "1", "--dp-epsilon", "-2"], "--dp-epsilon"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "0.5"], "--dp-delta"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "0.3"], "--dp-delta"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "1"], "--dp-delta"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "nan"], "--dp-delta"),
    (["--dp-clip", "1", "--dp-epsilon", "2", "--dp-delta", "0"], "--dp-delta"),
    (["--model", "sklearn:VotingClassifier"], "VotingClassifier"),
    (["--model", "sklearn:NoSuchEstimator"], "NoSuchEstimator"),
    (["--model", "nosuchmodel"], "nosuchmodel"),
    (["--algo", "nosuchalgo"], "nosuchalgo"),
    (["--algo", "../../etc/passwd.py:f"], "passwd"),
    (["--model-arg", "alpha"], "--model-arg"),
    (["--algo-arg", "=3"], "--algo-arg"),
    (["--backend", "gpu"], "--backend"),
    (["--jobs", "0"], "--jobs"),
    (["--dtype", "float16"], "--dtype"),
    (["--checkpoint-every", "0"], "--checkpoint-every"),
    (["--checkpoint-every", "-1"], "--checkpoint-every"),
    (["--dropout", "1.5"], "--dropout"),
    (["--dropout", "nan"], "--dropout"),
    (["--aggregator", "nope"], "--aggregator"),
    (["--attack", "nope"], "--attack"),
    (["--malicious", "0.9"], "--malicious"),
    (["--mu", "nan"], "--mu"),
    (["--mu", "-1"], "--mu"),
    (["--algo", "fedprox", "--mu", "inf"], "--mu"),
    (["--secure-agg", "--secagg-threshold", "1"], "--secagg-threshold"),
    (["--secure-agg", "--secagg-threshold", "2"], "--secagg-threshold"),
]


@pytest.mark.parametrize("flags, fragment", FLAG_CASES, ids=lambda v: " ".join(map(str, v)))
def test_train_flags_at_the_edges_are_one_line_errors(cli, small, tmp_path, flags, fragment):
    root, part = small
    before = digest(part)
    result = cli("train", part, "--out", tmp_path / "run", *flags)
    assert_one_line_error(result, fragment)
    assert digest(part) == before
    assert not (tmp_path / "run").exists()
