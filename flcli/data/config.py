"""PartitionConfig: what `fl partition` builds, declared once (see flcli.options).

Its fields are the options of `fl partition`, the partition keys of a sweep file and the keyword
arguments of api.partition. The scheme options (alpha ... strictness) left at None take the
chosen scheme's own defaults, the keyword defaults of its function (flcli.data.partition).
"""

from dataclasses import dataclass
from typing import Any

from flcli.data.sample_format import (
    DEFAULT_VOCABULARY_SIZE,
    SHAPE_HINT,
    TEXT_MODES,
    parse_input_shape,
    shape_of,
)
from flcli.data.schemes import DESCRIPTIONS
from flcli.options import (
    Check,
    at_least,
    check_fields,
    one_of,
    option,
    parse_key_values,
    positive_int,
)

AT_LEAST_ONE = Check(lambda v: v >= 1, "must be at least 1")
FRACTION = "use a fraction in (0, 1), e.g. 0.2"
IMPUTE = ("mean", "median", "drop")


@dataclass(frozen=True)
class PartitionConfig:
    """A partition: dataset, clients, scheme and its options, test split and seed."""

    dataset: str = "digits"  # fl partition's positional DATASET, so not an option()
    clients: int | None = option(
        None, "Number of clients.", show_default="10; natural: the data's own", check=AT_LEAST_ONE
    )
    scheme: str = option("iid", f"{', '.join(DESCRIPTIONS)} (see: fl list schemes).")
    alpha: float | None = option(
        None,
        "Dirichlet concentration (dirichlet, quantity); small = skewed.",
        show_default="0.5",
        check=Check(lambda v: v > 0, "must be > 0; e.g. 0.1 (strong skew) to 100 (near IID)"),
    )
    classes_per_client: int | None = option(
        None, "Classes each client holds (pathological, distribution).", show_default="2"
    )
    shards_per_client: int | None = option(
        None, "Shards dealt to each client (shards).", show_default="2"
    )
    sizes: str | None = option(
        None,
        "Size law: quantity's dirichlet, lognormal[:SIGMA], linear, exponential; size's and "
        "inner-dirichlet's linear, square, exponential, N1,N2,... or FILE.py:NAME (a function "
        "of the client id); inner-dirichlet's equal.",
        show_default="quantity: dirichlet; size: linear; inner-dirichlet: equal",
    )
    sigma: float | None = option(
        None,
        "Std of the log of the (client, class) shares (distribution): larger = more skewed sizes.",
        show_default="2.0",
        check=Check(lambda v: 0 < v < float("inf"), "must be a finite number > 0, e.g. 2"),
    )
    group_size: int | None = option(
        None,
        "Natural clients merged into one (grouped-natural).",
        show_default="2",
        check=AT_LEAST_ONE,
    )
    feature_groups: str | None = option(
        None,
        "Each client's feature columns (vertical): even, counts N1,N2,... (or fractions), or "
        "names a+b|c+d.",
        show_default="even",
    )
    noise_std: float | None = option(
        None,
        "Noise std of the last client (noise); client i gets i/(N-1) of it.",
        show_default="0.1",
        check=at_least(0, 0.1),
    )
    by: str | None = option(
        None,
        "Column whose values are the clients (natural), or feature to sort by (continuous).",
    )
    strictness: float | None = option(
        None,
        "0 = IID to 1 = strictly sorted by --by (continuous).",
        show_default="0.5",
        check=Check(lambda v: 0 <= v <= 1, "must be in [0, 1]: 0 is IID, 1 strictly sorted"),
    )
    scheme_args: dict[str, Any] = option(
        {},
        "An option of your own scheme (--scheme FILE.py:NAME or package.module:NAME), "
        "repeatable; the value is a Python literal, or else a string.",
        flag="--scheme-arg",
        cli_type=list[str],
        parse=lambda items: parse_key_values(items, "--scheme-arg"),
        show_default=False,
        metavar="KEY=VALUE",
    )
    target: str | None = option(None, "Label column of a file or openml: dataset.")
    encode: bool = option(
        False, "One-hot encode non-numeric feature columns of a file.", show_default="no-encode"
    )
    drop: str | None = option(
        None,
        "Columns of a file or openml: table that are not features (ids, dates): COL,...",
        metavar="COL,...",
    )
    features: str | None = option(
        None, "The only feature columns of a file or openml: table: COL,...", metavar="COL,..."
    )
    impute: str | None = option(
        None,
        "Missing feature cells of a table: mean or median of the column (over all rows), or "
        "drop the rows.",
        show_default="refuse",
        check=Check(lambda v: v in IMPUTE, f"must be one of: {', '.join(IMPUTE)}"),
    )
    dataset_args: dict[str, Any] = option(
        {},
        "A parameter of your own dataset loader (DATASET FILE.py:NAME or package.module:NAME), "
        "repeatable; the value is a Python literal, or else a string.",
        flag="--dataset-arg",
        cli_type=list[str],
        parse=lambda items: parse_key_values(items, "--dataset-arg"),
        show_default=False,
        metavar="KEY=VALUE",
    )
    input_shape: tuple[int, ...] | None = option(
        None,
        "The shape of one sample, recorded in partition.json for models that read images "
        "(C,H,W, e.g. 1,28,28) or sequences (T); its product must be the number of features.",
        show_default="the source's own, e.g. digits: 1,8,8",
        cli_type=str,
        parse=parse_input_shape,
        check=Check(lambda v: shape_of(v) is not None, f"is not a shape; {SHAPE_HINT}"),
        metavar="C,H,W",
    )
    text: str = option(
        "hashed",
        "Text samples (leaf: Sent140, Shakespeare) as: hashed (a bag of words, 1024 features), "
        "chars (character ids in LEAF's Shakespeare alphabet) or words (word ids of a vocabulary "
        "of the training rows); chars and words record input_shape T and the vocabulary.",
        check=one_of(*TEXT_MODES),
        metavar="|".join(TEXT_MODES),
    )
    sequence_length: int | None = option(
        None,
        "Tokens per sample of --text chars or words: longer texts are cut, shorter padded.",
        show_default="chars: the longest sample; words: 25",
        check=positive_int(80, 100_000),
    )
    vocabulary_size: int | None = option(
        None,
        "Ids of --text words in all, the padding and unknown ids included.",
        show_default=f"{DEFAULT_VOCABULARY_SIZE}",
        check=Check(
            lambda v: isinstance(v, int) and 3 <= v <= 10_000_000,
            "must be an integer in [3, 10,000,000], e.g. 10000",
        ),
    )
    test_size: float | None = option(
        None,
        "Fraction held out as the central test set.",
        show_default="0.2, or the dataset's own split",
        check=Check(lambda v: 0 < v < 1, f"is out of range; {FRACTION}"),
    )
    min_samples: int | None = option(
        None,
        "Least samples per client (before --client-test-fraction holds some out).",
        show_default="min(10, n / 3 clients)",
        check=AT_LEAST_ONE,
    )
    client_test_fraction: float = option(
        0.0,
        "Fraction of each client's shard kept as its local test split "
        "(for personalization: ditto, fedavglu).",
        show_default="0: none",
        check=Check(lambda v: v == 0 or 0 < v < 1, "must be in (0, 1), e.g. 0.2"),
    )
    new_clients: float = option(
        0.0,
        "Fraction of the clients held out of training entirely, as new clients that arrive "
        "after training (their rows go to x_new/y_new of data.npz; for personalization).",
        show_default="0: none",
        check=Check(lambda v: v == 0 or 0 < v < 1, "must be in (0, 1), e.g. 0.2"),
    )
    seed: int = option(
        0,
        "Seed of every random stream (same seed, same results).",
        check=Check(lambda v: 0 <= v < 2**63, "must be an integer >= 0 and below 2^63, e.g. 0"),
    )

    def __post_init__(self) -> None:
        check_fields(self)
