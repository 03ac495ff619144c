"""Baseline: FedAvg as a plain Python loop over scikit-learn clients (no framework).

Usage: python benchmarks/plain_sklearn.py PARTITION_DIR ROUNDS  -> prints JSON
{"train_s": ..., "accuracy": ...}
"""

import json
import sys
import time

import numpy as np
from sklearn_client import accuracy, client_slices, fit_client, load_partition


def main(path, rounds):
    data = load_partition(path)
    x, y = data["x_train"], data["y_train"]
    classes, features = int(max(y.max(), data["y_test"].max())) + 1, x.shape[1]
    coef, intercept = np.zeros((classes, features)), np.zeros(classes)
    start = time.perf_counter()
    for _ in range(rounds):
        results, weights = [], []
        for rows in client_slices(data["offsets"]):
            results.append(fit_client(coef, intercept, x[rows], y[rows]))
            weights.append(rows.stop - rows.start)
        weights = np.asarray(weights, dtype=float) / sum(weights)
        coef = sum(w * c for w, (c, _) in zip(weights, results, strict=True))
        intercept = sum(w * b for w, (_, b) in zip(weights, results, strict=True))
    train_s = time.perf_counter() - start
    score = accuracy(coef, intercept, data["x_test"], data["y_test"])
    print(json.dumps({"train_s": train_s, "accuracy": score}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
