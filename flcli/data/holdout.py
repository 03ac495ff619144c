"""Hold out a fraction of every client's shard: clients' local test splits (fl partition
--client-test-fraction, for personalization; or the data's own, LEAF's) and FedDF's unlabeled
proxy set.

Which rows a client holds out depends only on (seed, purpose, client): not on the other clients.
"""

from dataclasses import replace

import numpy as np

from flcli.data import stats
from flcli.data.store import Partition
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
    """The partition with a local test split of `fraction` of each client's shard (its meta's
    hash is the caller's to set, once every holdout is cut)."""
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
    describe_clients(meta, arrays)
    return Partition(meta=meta, **arrays)


def with_own_client_test(
    partition: Partition, x: np.ndarray, y: np.ndarray, test_offsets: np.ndarray
) -> Partition:
    """The partition with the data's own local test splits (LEAF's users' test rows): client i's
    are x[test_offsets[i]:test_offsets[i + 1]]; its training rows and the central test set stay
    as they are."""
    meta = dict(partition.meta)
    meta["params"] = {**meta["params"], "client_test_split": "own"}
    meta["client_test_sizes"] = np.diff(test_offsets).tolist()
    return replace(
        partition, meta=meta, x_client_test=x, y_client_test=y, client_test_offsets=test_offsets
    )


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


def new_client_ids(num_clients: int, fraction: float, seed: int) -> np.ndarray:
    """The sorted ids of the round(fraction * num_clients) clients (at least one, and at most
    num_clients - 1) whose addressed draws rng(seed, NEW_CLIENTS, 0, client) are smallest: whether
    a client is new depends only on its own draw and on how many are taken."""
    if num_clients < 2:
        raise FLError(
            f"--new-clients needs at least 2 clients to keep one for training; got {num_clients}"
        )
    count = min(num_clients - 1, max(1, round(fraction * num_clients)))
    draws = [rng(seed, Purpose.NEW_CLIENTS, 0, client).random() for client in range(num_clients)]
    return np.sort(np.argsort(draws, kind="stable")[:count])


def take_clients(x, y, offsets, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, offsets) of only the clients ids, in their order."""
    starts, sizes = offsets[ids], offsets[ids + 1] - offsets[ids]
    rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, sizes, strict=True)])
    rows = rows.astype(np.int64)
    return x[rows], y[rows], np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def with_new_clients(partition: Partition, fraction: float, seed: int) -> Partition:
    """The partition without a `fraction` of its clients, which move to the new-client arrays
    (x_new, y_new, new_offsets, and their local test rows when the partition has clients' test
    splits); the remaining clients are renumbered 0.. in their order. Its meta's hash is the
    caller's to set."""
    if not 0 < fraction < 1:
        raise FLError(f"--new-clients {fraction} must be in (0, 1), e.g. 0.2")
    if "vertical" in partition.meta:
        raise FLError(
            "--new-clients holds whole clients out; a vertical partition's clients "
            "share every row: drop --new-clients"
        )
    new = new_client_ids(partition.num_clients, fraction, seed)
    kept = np.setdiff1d(np.arange(partition.num_clients), new)
    p = partition
    x, y, offsets = take_clients(p.x_train, p.y_train, p.offsets, kept)
    arrays = {
        "x_train": x,
        "y_train": y,
        "offsets": offsets,
        "x_test": p.x_test,
        "y_test": p.y_test,
    }
    x_new, y_new, new_offsets = take_clients(p.x_train, p.y_train, p.offsets, new)
    arrays.update(x_new=x_new, y_new=y_new, new_offsets=new_offsets)
    meta = dict(p.meta)
    meta["params"] = {**meta["params"], "new_clients": fraction}
    described = {"ids": new.tolist(), "sizes": np.diff(new_offsets).tolist()}
    if p.has_client_test:
        tests = (p.x_client_test, p.y_client_test, p.client_test_offsets)
        arrays.update(zip(OPTIONAL_TEST, take_clients(*tests, kept), strict=True))
        arrays.update(zip(NEW_TEST, take_clients(*tests, new), strict=True))
        meta["client_test_sizes"] = np.diff(arrays["client_test_offsets"]).tolist()
        described["test_sizes"] = np.diff(arrays["new_test_offsets"]).tolist()
    meta["new_clients"] = described
    if "client_names" in meta:
        names = meta["client_names"]
        meta["client_names"] = [names[i] for i in kept]
        described["names"] = [names[i] for i in new]
    meta["num_clients"] = len(kept)
    meta["client_sizes"] = np.diff(offsets).tolist()
    meta["num_train"] = int(len(y))
    describe_clients(meta, arrays)
    return Partition(meta=meta, **arrays)


OPTIONAL_TEST = ("x_client_test", "y_client_test", "client_test_offsets")
NEW_TEST = ("x_new_test", "y_new_test", "new_test_offsets")


def describe_clients(meta: dict, arrays: dict) -> None:
    """meta's label_counts and heterogeneity (or target figures) of the training clients' arrays."""
    offsets = arrays["offsets"]
    if "label_counts" in meta:
        counts = stats.label_counts_from_offsets(
            arrays["y_train"], offsets, int(meta["num_classes"])
        )
        meta["label_counts"] = counts.tolist()
        meta["heterogeneity"] = stats.heterogeneity(counts)
    else:
        meta["heterogeneity"] = stats.target_heterogeneity(arrays["y_train"], offsets)
