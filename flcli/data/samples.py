"""A loaded Dataset's sample description for partition.json (input_shape, vocabulary), and the
check of token ids against a vocabulary; the rules themselves are in flcli.data.sample_format."""

import numpy as np

from flcli.data.dataset import Dataset
from flcli.data.sample_format import (
    parse_input_shape,
    shape_example,
    shape_problem,
    shape_text,
    vocabulary_problem,
)
from flcli.errors import FLError


def token_ids_problem(x: np.ndarray, vocabulary_size: int) -> str | None:
    """What is wrong with x as token ids of a vocabulary of vocabulary_size tokens, or None."""
    if not len(x):
        return None
    if x.min() < 0 or x.max() >= vocabulary_size:
        return f"holds token ids outside [0, {vocabulary_size}), the ids of the vocabulary"
    if not np.array_equal(x, np.round(x)):
        return "holds token ids that are not whole numbers"
    return None


def sample_description(data: Dataset, given_shape) -> dict:
    """What partition.json records of a sample of data: input_shape (--input-shape given_shape,
    else the source's own) and vocabulary, each checked against data's features."""
    features = data.X.shape[1]
    described: dict = {}
    if given_shape is not None:
        shape = parse_input_shape(given_shape)
        problem = shape_problem(shape, features)
        if problem is not None:
            raise FLError(
                f"--input-shape {shape_text(shape)} {problem}; give a shape whose product is "
                f"{features}, e.g. {shape_example(features)}"
            )
        described["input_shape"] = list(shape)
    elif data.input_shape is not None:
        problem = shape_problem(data.input_shape, features)
        if problem is not None:
            raise FLError(
                f"{data.name}'s input_shape {data.input_shape} {problem}; fix the loader's "
                "Dataset.input_shape, or give --input-shape"
            )
        described["input_shape"] = list(data.input_shape)
    if data.vocabulary is not None:
        problem = vocabulary_problem(data.vocabulary)
        if problem is not None:
            raise FLError(f"{data.name}'s vocabulary {problem}; fix its loader")
        problem = token_ids_problem(data.X, len(data.vocabulary))
        if problem is not None:
            raise FLError(f"{data.name}'s features {problem}; fix its loader")
        described["vocabulary"] = list(data.vocabulary)
    return described
