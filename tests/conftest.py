import numpy as np
import pytest

from flcli import api
from flcli.cli import main


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys):
    """Run `fl ARGS...` in-process; returns the exit code and what it printed."""

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def iid_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts") / "iid"
    api.partition(out, "digits", num_clients=10, scheme="iid", seed=0)
    return out


@pytest.fixture(scope="session")
def dirichlet_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("parts") / "dirichlet"
    api.partition(out, "digits", num_clients=8, scheme="dirichlet", alpha=0.3, seed=1)
    return out


def assert_one_line_error(result, *fragments):
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def same_numbers(a, b, atol=0.0):
    return np.allclose(a, b, rtol=0, atol=atol)


def write_generated_partition(out, x_train, y_train, sizes, x_test, y_test, num_classes):
    """A partition dir from arrays (rows already grouped by client), without a dataset loader."""
    from flcli.data.partition import heterogeneity, label_counts
    from flcli.data.store import Partition, array_hash, write_partition

    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    arrays = {
        "x_train": x_train,
        "y_train": y_train,
        "offsets": offsets,
        "x_test": x_test,
        "y_test": y_test,
    }
    parts = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(sizes))]
    counts = label_counts(parts, y_train, num_classes)
    meta = {
        "dataset": "generated",
        "scheme": "natural",
        "params": {},
        "seed": 0,
        "num_clients": len(sizes),
        "num_classes": num_classes,
        "num_features": int(x_train.shape[1]),
        "num_train": len(y_train),
        "num_test": len(y_test),
        "client_sizes": [int(s) for s in sizes],
        "label_counts": counts.tolist(),
        "heterogeneity": heterogeneity(counts),
        "hash": array_hash(arrays),
    }
    write_partition(Partition(meta=meta, **arrays), out)
    return out
