"""A partition scheme from its own file: `fl partition digits --scheme
examples/label_bands.py:label_bands --scheme-arg bands=2 --clients 10 --out results/bands`.

Clients are split into `bands` groups; each group owns a contiguous range of the labels, and the
samples of a label are dealt at random among the clients of the group that owns it, so clients
of one band share their labels and bands share none: a planted clustering of the federation (the
setting of clustered FL, e.g. IFCA). With bands = 1 it is an IID split.

The contract (see docs/api.md): scheme(labels, num_clients, rng, *, min_samples, **options) ->
one array of sample indices per client, together covering every sample exactly once; the keyword
options with defaults are what --scheme-arg sets; rng is the only source of randomness.
"""

import numpy as np


def label_bands(labels, num_clients, rng, *, min_samples, bands=2):
    if not 1 <= bands <= min(num_clients, len(np.unique(labels))):
        raise ValueError(f"bands {bands} must be between 1 and the clients and the classes")
    classes = np.unique(labels)
    band_of_class = np.arange(len(classes)) * bands // len(classes)
    band_of_client = np.arange(num_clients) * bands // num_clients
    client_of = np.empty(len(labels), dtype=np.int64)
    for c, label in enumerate(classes):
        members = np.flatnonzero(labels == label)
        owners = np.flatnonzero(band_of_client == band_of_class[c])
        client_of[members] = rng.choice(owners, len(members))
    parts = [np.flatnonzero(client_of == k) for k in range(num_clients)]
    if min(len(p) for p in parts) < min_samples:
        raise ValueError(f"a client got fewer than {min_samples} samples; use fewer clients")
    return parts
