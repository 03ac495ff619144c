"""The per-client work of the scikit-learn baselines: LogisticRegression(warm_start, max_iter=5)
started from the global softmax model, as Flower's scikit-learn example trains.

A client of a non-IID split rarely holds every class; scikit-learn then fits only the classes it
sees. Their rows of the global model are the warm start and are written back after the fit; with
two classes scikit-learn fits one row w = w_1 - w_0, whose change is split evenly between the two
rows (the softmax of those two classes depends on their difference only). A one-class client cannot
fit a classifier and returns the global model unchanged.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression


def load_partition(path):
    """The arrays of an flcli partition dir (data.npz), read without flcli."""
    with np.load(f"{path}/data.npz", allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def client_slices(offsets):
    return [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def fit_client(coef, intercept, X, y, max_iter=5):
    """One client's local training; returns its new (coef [C, D], intercept [C])."""
    classes = np.unique(y)
    coef, intercept = coef.copy(), intercept.copy()
    if len(classes) < 2:
        return coef, intercept
    model = LogisticRegression(warm_start=True, max_iter=max_iter)
    model.classes_ = classes
    if len(classes) == 2:
        c0, c1 = classes
        start_w, start_b = coef[c1] - coef[c0], intercept[c1] - intercept[c0]
        model.coef_, model.intercept_ = start_w[None].copy(), np.array([start_b])
    else:
        model.coef_, model.intercept_ = coef[classes].copy(), intercept[classes].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    if len(classes) == 2:
        dw, db = (model.coef_[0] - start_w) / 2, (model.intercept_[0] - start_b) / 2
        coef[c1] += dw
        coef[c0] -= dw
        intercept[c1] += db
        intercept[c0] -= db
    else:
        coef[classes], intercept[classes] = model.coef_, model.intercept_
    return coef, intercept


def accuracy(coef, intercept, X, y):
    return float(((X @ coef.T + intercept).argmax(axis=1) == y).mean())
