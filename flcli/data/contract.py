"""What a partition scheme is, flcli's own or a user's: a function

    scheme(labels, num_clients, rng, *, min_samples, **options) -> one index array per client

labels: the class id of each training sample (zeros for a regression target); rng: a NumPy
Generator (the PARTITION stream of --seed), its only source of randomness; min_samples: the least
samples a client may get. Its keyword parameters with defaults are its options, with their
defaults (--alpha for dirichlet's alpha=0.5; --scheme-arg KEY=VALUE for a user's scheme). It
returns num_clients arrays of sample indices that together cover every training sample exactly
once. flcli's own schemes may also take `values` (the --by feature of each training sample),
`groups` (the data's own client of each sample) and `features` (the feature names; a vertical
scheme returns each client's feature columns instead of rows).
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from flcli import plugins
from flcli.data.user_code import REQUIRED, keyword_parameters, signature_of
from flcli.errors import FLError

INPUTS = ("min_samples", "values", "groups", "features")  # handed over by flcli, not options


@dataclass(frozen=True)
class Scheme:
    """A partition function and what flcli knows of it beyond its signature."""

    function: Callable[..., list[np.ndarray]]
    description: str
    label_skew: bool = False  # refused on a regression target
    own_clients: bool = False  # the data's own clients: --clients and --min-samples default
    # options that another option's value leaves without effect, and why (quantity's alpha)
    idle: Callable[[dict[str, Any]], dict[str, str]] | None = None
    perturb: Callable[..., None] | None = None  # (x_train, offsets, seed, **options), in place
    reference: str | None = None  # a user's scheme: as given to --scheme
    source: dict[str, str] | None = None  # a user's scheme: its file and sha256
    alias: str | None = None  # a built-in's name when it is not its function's (inner-dirichlet)
    given_sizes: bool = False  # its options fix the sizes: --min-samples defaults to 1
    vertical: bool = False  # returns each client's feature columns, not rows (flcli.data.vertical)

    @property
    def name(self) -> str:
        return self.reference or self.alias or self.function.__name__

    @cached_property
    def keywords(self) -> tuple[dict[str, Any], bool]:
        """Its keyword parameters after (labels, num_clients, rng), with their defaults, and
        whether it takes **options (any option name)."""
        label = f"--scheme {self.name}"
        return keyword_parameters(signature_of(self.function, label), skip=3)

    @property
    def inputs(self) -> list[str]:
        return [name for name in self.keywords[0] if name in INPUTS]

    @property
    def options(self) -> dict[str, Any]:
        """Its options and their defaults (REQUIRED: none), from its signature."""
        return {name: d for name, d in self.keywords[0].items() if name not in INPUTS}

    @property
    def open_ended(self) -> bool:
        return self.keywords[1]

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: d for name, d in self.options.items() if d is not REQUIRED}

    def idle_options(self, options: dict[str, Any]) -> dict[str, str]:
        return self.idle(options) if self.idle else {}

    def split(
        self,
        labels: np.ndarray,
        num_clients: int | None,
        rng: np.random.Generator,
        min_samples: int,
        options: dict[str, Any],
        **inputs: np.ndarray | None,
    ) -> list[np.ndarray]:
        """The scheme's split of len(labels) training samples; a user's scheme's result checked.
        num_clients None: the data's own clients (own_clients schemes)."""
        check_feasible(len(labels), 1 if num_clients is None else num_clients, min_samples)
        given = {"min_samples": min_samples, **inputs}
        taken = {name: given.get(name) for name in self.inputs}
        if self.reference is None:
            return self.function(labels, num_clients, rng, **taken, **options)
        label = f"--scheme {self.reference}"
        parts = plugins.call(self.function, label, labels, num_clients, rng, **taken, **options)
        return checked_parts(parts, len(labels), num_clients, min_samples, label)


def user_scheme(function: Any, reference: str, source: dict[str, str]) -> Scheme:
    """A user's partition function as a Scheme, if it can be called as one."""
    label = f"--scheme {reference}"
    listed = signature_of(function, label).parameters.values()
    positional = [p for p in listed if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3 and not any(p.kind == p.VAR_POSITIONAL for p in listed):
        raise FLError(
            f"{label} takes ({', '.join(p.name for p in positional)}); a scheme takes (labels, "
            "num_clients, rng, *, min_samples, **options) and returns one index array per client"
        )
    doc = inspect.getdoc(function) or ""
    return Scheme(function, doc.split("\n")[0], reference=reference, source=source)


def check_feasible(num_samples: int, num_clients: int, min_samples: int) -> None:
    if num_clients < 1:
        raise FLError(f"--clients {num_clients} must be at least 1")
    if min_samples < 1:
        raise FLError(f"--min-samples {min_samples} must be at least 1")
    if num_clients > num_samples:
        raise FLError(
            f"--clients {num_clients} is more than the {num_samples} training samples; "
            f"use at most {num_samples} clients"
        )
    if min_samples * num_clients > num_samples:
        raise FLError(
            f"--min-samples {min_samples} x --clients {num_clients} exceeds the {num_samples} "
            f"training samples; lower --min-samples to at most {num_samples // num_clients}"
        )


def check_min_samples(parts: list[np.ndarray], min_samples: int, scheme: str) -> list[np.ndarray]:
    sizes = np.array([len(p) for p in parts])
    if sizes.min() < min_samples:
        client = int(np.argmin(sizes))
        raise FLError(
            f"{scheme} leaves client {client} with {sizes[client]} samples, fewer than "
            f"--min-samples {min_samples}; use fewer --clients or lower --min-samples"
        )
    return parts


def checked_parts(
    parts: Any, num_samples: int, num_clients: int, min_samples: int, label: str
) -> list[np.ndarray]:
    """A user's scheme's result as sorted int64 index arrays, if it is a valid split: one array
    per client, every training sample in exactly one, each client at least min_samples."""
    if not isinstance(parts, list | tuple):
        raise FLError(
            f"{label} returned a {type(parts).__name__}; it must return a list of "
            f"{num_clients} (--clients) index arrays"
        )
    if len(parts) != num_clients:
        raise FLError(f"{label} returned {len(parts)} index arrays for --clients {num_clients}")
    arrays = [client_indices(part, client, label) for client, part in enumerate(parts)]
    joined = np.concatenate(arrays)
    outside = joined[(joined < 0) | (joined >= num_samples)]
    if outside.size:
        raise FLError(
            f"{label} returned index {outside[0]}, outside the {num_samples} training samples "
            f"(0 to {num_samples - 1})"
        )
    counts = np.bincount(joined, minlength=num_samples)
    repeated, dropped = np.flatnonzero(counts > 1), np.flatnonzero(counts == 0)
    once = "every training sample must go to exactly one client"
    if repeated.size:
        raise FLError(
            f"{label} gives {repeated.size} training sample(s) to more than one client or twice "
            f"(e.g. sample {repeated[0]}); {once}"
        )
    if dropped.size:
        raise FLError(
            f"{label} leaves out {dropped.size} training sample(s) (e.g. sample {dropped[0]}); "
            f"{once}"
        )
    return check_min_samples(arrays, min_samples, label)


def client_indices(part: Any, client: int, label: str) -> np.ndarray:
    try:
        indices = np.asarray(part)
    except (TypeError, ValueError):
        indices = np.asarray([None])
    if indices.size == 0:
        return np.zeros(0, dtype=np.int64)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise FLError(
            f"{label} returned for client {client} a {indices.dtype} array of shape "
            f"{indices.shape}; each client's indices must be a 1-D array of integers"
        )
    return np.sort(indices.astype(np.int64))


def group_indices(client_of: np.ndarray, num_clients: int) -> list[np.ndarray]:
    """Sorted sample indices of each client, from each sample's client id."""
    order = np.argsort(client_of, kind="stable")
    return np.split(order, np.cumsum(np.bincount(client_of, minlength=num_clients))[:-1])
