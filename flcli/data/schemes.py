"""Partition schemes' names and one-line descriptions, without NumPy (`fl --help` lists them).
The schemes themselves, with their options, are flcli.data.partition.SCHEMES."""

DESCRIPTIONS = {
    "iid": "uniformly shuffled, equal-sized shards (sizes differ by at most one)",
    "dirichlet": "label skew: each class split over clients by proportions ~ Dir(--alpha) "
    "(NIID-Bench); small alpha = few labels per client",
    "pathological": "label skew: exactly --classes-per-client K classes per client, each class "
    "split evenly among its holders (NIID-Bench's #C=k)",
    "shards": "label skew: sort by label, cut into clients x --shards-per-client shards, deal them "
    "out at random (McMahan et al. 2017)",
    "quantity": "size skew, labels IID: sizes ~ Dir(--alpha), or --sizes lognormal[:SIGMA], "
    "linear or exponential",
    "noise": "feature skew: IID split, then client i's inputs get Gaussian noise of std "
    "--noise-std * i / (clients - 1)",
    "continuous": "feature skew: sorted by feature --by blended with noise, --strictness 0 (IID) "
    "to 1 (strictly sorted), as Flower Datasets' ContinuousPartitioner",
    "natural": "the data's own clients: one per value of column --by, or a generator's devices "
    "(synthetic, fcube); --clients fewer merges them",
    "size": "size skew, labels IID: client i's share ~ --sizes linear (i+1), square ((i+1)^2), "
    "exponential (e^i), N1,N2,... or a function of i (Flower Datasets' SizePartitioner)",
    "inner-dirichlet": "label skew within given sizes (--sizes equal, a law or N1,N2,...): each "
    "client's label mix ~ Dir(--alpha) (Flower Datasets' InnerDirichletPartitioner)",
    "distribution": "power-law sizes with --classes-per-client K labels each: client i holds "
    "classes i..i+K-1, shares ~ LogNormal(0, --sigma) (FedProx's MNIST; DistributionPartitioner)",
    "grouped-natural": "the data's own clients (--by), every --group-size G of them merged into "
    "one client (Flower Datasets' GroupedNaturalIdPartitioner)",
    "vertical": "feature split: every client holds all rows but only its --feature-groups "
    "columns (fl train refuses it: flcli has no vertical algorithm yet)",
}


def catalogue() -> dict[str, str]:
    """What `fl list schemes` shows: the built-in schemes, then those installed packages add."""
    from flcli import plugins  # importlib.metadata: not for `fl --help`

    rows = dict(DESCRIPTIONS)
    for name, point in plugins.entry_points("scheme").items():
        rows.setdefault(name, f"installed plugin scheme {point.value} (--scheme-arg KEY=VALUE)")
    return rows
