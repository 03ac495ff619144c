"""Hold out a fraction of every client's shard: clients' local test splits (fl partition
--client-test-fraction, for personalization) and FedDF's unlabeled proxy set.

Which rows a client holds out depends only on (seed, purpose, client): not on the other clients.
"""

from dataclasses import replace

import numpy as np

from flcli.data import stats
from flcli.data.store import Partition, array_hash
from flcli.errors import FLError
from flcli.rng import Purpose, rng


def split_shards(
    offsets: np.ndarray, fraction: float, seed: int, purpose: Purpose
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(kept rows, kept offsets, held-out rows, held-out offsets) of the rows offsets describe.

    Each client holds out round(fraction * n) of its n rows (at least one, and at most n - 1, so
    every client keeps a row to train on and a client of one row holds out nothing).
    """
    kept, held = [], []
    for client, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        n = int(stop - start)
        count = min(n - 1, max(1, round(fraction * n)))
        chosen = np.zeros(n, dtype=bool)
        chosen[rng(seed, purpose, 0, client).permutation(n)[:count]] = True
        rows = np.arange(start, stop)
        kept.append(rows[~chosen])
        held.append(rows[chosen])

    def flat(parts):
        sizes = [len(p) for p in parts]
        return np.concatenate(parts), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    return (*flat(kept), *flat(held))


def with_client_test(partition: Partition, fraction: float, seed: int) -> Partition:
    """The partition with a local test split of `fraction` of each client's shard."""
    if not 0 < fraction < 1:
        raise FLError(f"--client-test-fraction {fraction} must be in (0, 1), e.g. 0.2")
    kept, offsets, held, test_offsets = split_shards(
        partition.offsets, fraction, seed, Purpose.CLIENT_TEST
    )
    x, y = partition.x_train, partition.y_train
    arrays = {
        "x_train": x[kept],
        "y_train": y[kept],
        "offsets": offsets,
        "x_test": partition.x_test,
        "y_test": partition.y_test,
        "x_client_test": x[held],
        "y_client_test": y[held],
        "client_test_offsets": test_offsets,
    }
    meta = dict(partition.meta)
    meta["params"] = {**meta["params"], "client_test_fraction": fraction}
    meta["client_sizes"] = np.diff(offsets).tolist()
    meta["client_test_sizes"] = np.diff(test_offsets).tolist()
    meta["num_train"] = int(len(kept))
    if "label_counts" in meta:
        counts = stats.label_counts_from_offsets(
            arrays["y_train"], offsets, int(meta["num_classes"])
        )
        meta["label_counts"] = counts.tolist()
        meta["heterogeneity"] = stats.heterogeneity(counts)
    else:
        meta["heterogeneity"] = stats.target_heterogeneity(arrays["y_train"], offsets)
    meta["hash"] = array_hash(arrays)
    return Partition(meta=meta, **arrays)


def hold_out_proxy(
    partition: Partition, fraction: float, seed: int
) -> tuple[Partition, np.ndarray]:
    """(the partition without the proxy rows, the proxy features): FedDF's unlabeled proxy set, a
    `fraction` of every client's shard that no client trains on."""
    kept, offsets, held, _ = split_shards(partition.offsets, fraction, seed, Purpose.PROXY)
    reduced = replace(
        partition,
        x_train=partition.x_train[kept],
        y_train=partition.y_train[kept],
        offsets=offsets,
    )
    return reduced, partition.x_train[held]
