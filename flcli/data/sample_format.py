"""What partition.json says of one sample beyond its row of features, as rules without NumPy
(fl --help imports them): its shape, a token sequence's vocabulary and its reserved ids, and the
--text modes that make token sequences (flcli.data.text).

A partition keeps its features flat, [n, prod(input_shape)] in C order (channels, height, width
for an image), so a model that wants images reshapes a block of rows without copying. A token
sequence of length T has input_shape (T,) and its feature j is the id of its j-th token in the
vocabulary, whose first two entries are reserved: id 0 (PAD) fills a sequence shorter than T and
id 1 (UNKNOWN) stands for a token outside the vocabulary.

Each check returns what is wrong, in words, or None; the callers (a flag, a loader's Dataset,
partition.json on load) say where it came from and how to fix it.
"""

import math

from flcli.errors import FLError

PAD, UNKNOWN = "<pad>", "<unk>"
PAD_ID, UNKNOWN_ID = 0, 1
RESERVED = (PAD, UNKNOWN)
MAX_DIMENSIONS = 8
TEXT_MODES = ("hashed", "chars", "words")  # fl partition --text
DEFAULT_WORDS_LENGTH = 25  # LEAF's Sent140 models read 25 words
DEFAULT_VOCABULARY_SIZE = 10_000


def is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shape_problem(shape, num_features: int | None) -> str | None:
    """What is wrong with shape as the shape of a sample of num_features features (None: not
    known here), or None."""
    if not isinstance(shape, list | tuple) or not 1 <= len(shape) <= MAX_DIMENSIONS:
        return f"must be a list of 1 to {MAX_DIMENSIONS} positive integers"
    if not all(is_whole(size) and size >= 1 for size in shape):
        return "must be positive integers"
    if num_features is not None and math.prod(shape) != num_features:
        return f"multiplies to {math.prod(shape)}, not the {num_features} features of a sample"
    return None


def shape_example(num_features: int) -> str:
    """A shape of num_features features to suggest: a square image if there is one."""
    for channels in (1, 3):
        side = math.isqrt(num_features // channels)
        if channels * side * side == num_features and side > 1:
            return f"{channels},{side},{side}"
    return str(num_features)


def shape_text(shape) -> str:
    return ",".join(str(size) for size in shape)


SHAPE_HINT = (
    "give the shape of one sample as positive integers separated by commas, e.g. 1,28,28 (an "
    "image C,H,W) or 80 (a sequence T)"
)


def shape_of(value) -> tuple[int, ...] | None:
    """ "1,28,28" or [1, 28, 28] -> (1, 28, 28); None when value is no such shape."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        shape = tuple(int(part.strip()) if isinstance(part, str) else part for part in parts)
    except (TypeError, ValueError):
        return None
    return shape if shape_problem(shape, None) is None else None


def parse_input_shape(value) -> tuple[int, ...]:
    """--input-shape "1,28,28" (or a list from a TOML file) -> (1, 28, 28)."""
    shape = shape_of(value)
    if shape is None:
        raise FLError(f"--input-shape {value!r} is not a shape; {SHAPE_HINT}")
    return shape


def vocabulary_problem(vocabulary) -> str | None:
    """What is wrong with vocabulary (a token per id, PAD and UNKNOWN first), or None."""
    if not isinstance(vocabulary, list | tuple) or not all(isinstance(t, str) for t in vocabulary):
        return "must be a list of strings (the token of each id)"
    if tuple(vocabulary[: len(RESERVED)]) != RESERVED:
        return f"must start with {PAD!r} (id {PAD_ID}) and {UNKNOWN!r} (id {UNKNOWN_ID})"
    if len(set(vocabulary)) != len(vocabulary):
        return "holds a token twice"
    return None
