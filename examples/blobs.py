"""A dataset from its own file: `fl partition examples/blobs.py:blobs --dataset-arg classes=4
--clients 8 --out results/blobs`.

Gaussian blobs: `classes` clusters of `n` points in `features` dimensions, cluster c centred at
`spread` * e_c (on its own axis), unit variance. A loader returns (X, y) (integer y:
classification, real y: regression) or a flcli.data.dataset.Dataset; it receives `seed` when it
takes one, and the --dataset-arg values as keywords.
"""

import numpy as np


def blobs(seed, n=600, classes=3, features=5, spread=3.0):
    if classes > features:
        raise ValueError(f"classes {classes} needs at least as many features, not {features}")
    generator = np.random.default_rng(seed)
    y = generator.integers(0, classes, n)
    X = generator.normal(size=(n, features))
    X[np.arange(n), y] += spread
    return X, y
