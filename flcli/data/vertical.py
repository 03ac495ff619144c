"""The vertical scheme: every client holds every training row but only some feature columns (Flower
Datasets' VerticalEvenPartitioner and VerticalSizePartitioner); the labels stay with the server.

A vertical partition records the columns of each client in partition.json (`vertical`); its data
are the training rows as one block. `fl train` refuses it until flcli has a vertical algorithm.
"""

import numpy as np

from flcli.data.sizes import whole_sizes
from flcli.errors import FLError

FORMS = "even, column counts N1,N2,... (or fractions), or names a+b|c+d"


def named_groups(spec: str, features: tuple[str, ...]) -> list[np.ndarray]:
    index = {name: i for i, name in enumerate(features)}
    groups = []
    for piece in spec.split("|"):
        names = [name.strip() for name in piece.split("+") if name.strip()]
        unknown = [name for name in names if name not in index]
        if unknown or not names:
            listed = ", ".join(features[:25])
            raise FLError(
                f"--feature-groups {spec}: {unknown[0] if unknown else 'an empty group'!r} is "
                f"not a feature; features: {listed}"
            )
        groups.append(np.array(sorted(index[name] for name in names), dtype=np.int64))
    joined = np.concatenate(groups)
    if len(np.unique(joined)) != len(joined):
        raise FLError(f"--feature-groups {spec} gives a feature to two clients; give each to one")
    return groups


def vertical(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    min_samples: int,
    features: tuple[str, ...],
    feature_groups: str = "even",
) -> list[np.ndarray]:
    """The feature columns of each client: --feature-groups even (consecutive, as equal as can
    be), N1,N2,... column counts or fractions (consecutive), or names a+b|c+d (one group per
    client; features named by no group are held by none)."""
    d = len(features)
    if "|" in feature_groups or not feature_groups[:1].isdigit() and feature_groups != "even":
        groups = named_groups(feature_groups, features)
    elif feature_groups == "even":
        groups = np.array_split(np.arange(d), num_clients)
    else:
        try:
            given = np.array([float(p) for p in feature_groups.split(",")])
        except ValueError:
            raise FLError(f"--feature-groups {feature_groups!r}: use {FORMS}") from None
        if not (np.isfinite(given).all() and (given > 0).all()):
            raise FLError(f"--feature-groups {feature_groups}: sizes must be > 0")
        counts = given.astype(np.int64) if given.sum() == d else whole_sizes(d, given)
        groups = np.split(np.arange(d), np.cumsum(counts)[:-1])
    if len(groups) != num_clients:
        raise FLError(
            f"--feature-groups {feature_groups} makes {len(groups)} clients; give --clients "
            f"{len(groups)}"
        )
    empty = [i for i, g in enumerate(groups) if not len(g)]
    if empty:
        raise FLError(
            f"--feature-groups {feature_groups} leaves client {empty[0]} without a column of the "
            f"{d} features; use fewer --clients"
        )
    return [np.asarray(g, dtype=np.int64) for g in groups]
