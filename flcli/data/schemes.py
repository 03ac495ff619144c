"""Partition schemes: names and one-line descriptions, without NumPy (`fl --help` lists them),
and the options that shape each."""

from flcli.errors import FLError

SCHEMES = {
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
}

# The options that shape each scheme, with their defaults; any other scheme refuses them.
SCHEME_OPTIONS = {
    "alpha": 0.5,
    "classes_per_client": 2,
    "shards_per_client": 2,
    "sizes": "dirichlet",
    "noise_std": 0.1,
    "by": None,
    "strictness": 0.5,
}


def shaping_options(scheme: str, sizes: str | None) -> tuple[str, ...]:
    """The SCHEME_OPTIONS that shape `scheme` (quantity takes --alpha only with dirichlet sizes)."""
    return {
        "dirichlet": ("alpha",),
        "pathological": ("classes_per_client",),
        "shards": ("shards_per_client",),
        "quantity": ("sizes", "alpha") if sizes in (None, "dirichlet") else ("sizes",),
        "noise": ("noise_std",),
        "continuous": ("by", "strictness"),
        "natural": ("by",),
    }.get(scheme, ())


def scheme_options(scheme: str, given: dict) -> dict:
    """The scheme options as given (None: not given) with SCHEME_OPTIONS' defaults filled in; an
    option that shapes another scheme only is an FLError (it would be silently ignored)."""
    for name, value in given.items():
        if value is not None and name not in shaping_options(scheme, given.get("sizes")):
            if scheme == "quantity" and name == "alpha":
                raise FLError(f"--alpha applies to --sizes dirichlet, not {given['sizes']}")
            users = [other for other in SCHEMES if name in shaping_options(other, None)]
            raise FLError(
                f"--{name.replace('_', '-')} does not apply to --scheme {scheme}; it shapes "
                f"{', '.join(users)}"
            )
    return {name: SCHEME_OPTIONS[name] if value is None else value for name, value in given.items()}
