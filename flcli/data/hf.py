"""`hf:NAME[@REVISION][:SPLIT]`: a Hugging Face dataset through the `datasets` library
(the optional extra flcli[hf]), and `flower:DIR`: partitions as `flwr-datasets create` writes them.

NAME is a local folder (a `save_to_disk` folder is read with datasets.load_from_disk, offline; any
other folder of data files with datasets.load_dataset) or a hub name (datasets.load_dataset, cached
where datasets caches: HF_DATASETS_CACHE, by default ~/.cache/huggingface/datasets), loaded at the
commit its REVISION (by default main) resolves to (flcli.data.hub). A dataset with splits uses
SPLIT, or its train split with its test split as the central test set, or its only one.

Columns become a table for dataset_from_frame: an image column (PIL images) and a list-of-numbers
column (any nesting) become float features, flattened into COLUMN_0, COLUMN_1, ...; numbers stay
numbers; text needs --encode (one-hot). The label is --target, or else the one ClassLabel column.
Images are flattened channels first (C, H, W); when one image column is all the features, its
(C, H, W) is the input_shape.
"""

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flcli.data.dataset import Dataset
from flcli.data.files import TableOptions, columns_text, dataset_from_frame
from flcli.data.hub import resolve_revision
from flcli.errors import FLError

INSTALL = "pip install 'flcli[hf]'"


def import_datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise FLError(f"{what} needs the datasets library: {INSTALL}") from None
    datasets.disable_progress_bars()
    return datasets


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    """hf:NAME[@REVISION][:SPLIT] -> (NAME, REVISION or None, SPLIT or None)."""
    rest = spec.split(":", 1)[1]
    name, _, split = rest.partition(":")
    name, _, revision = name.partition("@")
    if not name or (split == "" and rest.endswith(":")) or (revision == "" and "@" in rest):
        raise FLError(
            f"{spec!r} is not hf:NAME[@REVISION][:SPLIT]; e.g. hf:flwrlabs/femnist or hf:DIR:train"
        )
    return name, revision or None, split or None


def is_saved_folder(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def open_hf(spec: str):
    """The Dataset or DatasetDict that spec names, and the record of its revision: `local` for a
    local folder; for a hub name the revision asked for and the commit it resolved to, at which
    the dataset is loaded (flcli.data.hub)."""
    datasets = import_datasets(spec)
    name, revision, split = parse_spec(spec)
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", ".", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise FLError(f"{spec}: folder {path} does not exist; give a save_to_disk folder")
    saved = looks_local and is_saved_folder(path)
    if saved and revision is not None:
        raise FLError(f"{spec}: a local folder has no revisions; drop @{revision}")
    record = {"revision": "local"}
    if not looks_local:
        offline = bool(datasets.config.HF_DATASETS_OFFLINE)
        record = resolve_revision(name, revision, offline)
        revision = record["revision"]
    try:
        if saved:
            found = datasets.load_from_disk(str(path))
        else:
            found = datasets.load_dataset(str(path) if looks_local else name, revision=revision)
        if split is not None:
            found = pick_split(found, split, spec)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FLError(
            f"cannot read {spec} ({type(e).__name__}: {first}); give a save_to_disk folder, "
            "or a hub name reachable from here (or in the datasets cache)"
        ) from None
    return found, record


def pick_split(found, split: str, spec: str):
    if not hasattr(found, "keys"):
        raise FLError(f"{spec}: the dataset has no splits; drop :{split}")
    if split not in found:
        raise FLError(f"{spec}: no split {split!r}; splits: {', '.join(found.keys())}")
    return found[split]


def train_test(found, spec: str):
    """(train Dataset, test Dataset or None) of a Dataset or DatasetDict."""
    if not hasattr(found, "keys"):
        return found, None
    names = list(found.keys())
    if "train" in names:
        return found["train"], found["test"] if "test" in names else None
    if len(names) == 1:
        return found[names[0]], None
    raise FLError(f"{spec} has splits {', '.join(names)}; choose one with {spec}:SPLIT")


def default_target(data, spec: str) -> str:
    labels = [c for c, f in data.features.items() if type(f).__name__ == "ClassLabel"]
    if len(labels) != 1:
        raise FLError(
            f"{spec}: give the label column with --target COLUMN; columns: "
            f"{columns_text(data.column_names)}"
        )
    return labels[0]


def numbers_block(column, name: str, spec: str) -> np.ndarray:
    """[n, d] float64 of an Arrow column of (nested) lists of numbers, flattened per row."""
    import pyarrow as pa

    array, rows = column.combine_chunks(), len(column)
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        array = array.flatten()
    if pa.types.is_fixed_size_list(array.type):
        array = array.flatten()
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise FLError(f"{spec}: column {name!r} holds lists of {array.type}, not numbers")
    values = array.to_numpy(zero_copy_only=False).astype(np.float64)
    if rows == 0 or len(values) % rows:
        raise FLError(f"{spec}: column {name!r} has rows of different lengths; pad or drop it")
    return values.reshape(rows, -1)


def image_block(data, name: str, spec: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """[n, C*H*W] float64 of an image column, each image channels first (PIL's H x W x C
    transposed; a grayscale image one channel), and (C, H, W)."""
    try:
        images = np.stack([np.asarray(im, dtype=np.float64) for im in data[name]])
    except ValueError:
        raise FLError(f"{spec}: images of {name!r} differ in size; resize them first") from None
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return images.reshape(len(images), -1), images.shape[1:]


def to_frame(data, spec: str) -> tuple[pd.DataFrame, dict[str, tuple[int, ...]]]:
    """A DataFrame of a datasets.Dataset, images and lists of numbers flattened into columns,
    and the shape of each image column's images."""
    import pyarrow as pa

    table = data.with_format("arrow")[:]  # the rows of a selected or shuffled view, in order
    parts: list[pd.DataFrame] = []
    shapes = {}
    for name, feature in data.features.items():
        column = table.column(name)
        if type(feature).__name__ == "Image":
            block, shapes[name] = image_block(data, name, spec)
        elif (
            pa.types.is_list(column.type)
            or pa.types.is_large_list(column.type)
            or (pa.types.is_fixed_size_list(column.type))
        ):
            block = numbers_block(column, name, spec)
        else:
            parts.append(pd.DataFrame({name: column.to_pandas()}))
            continue
        parts.append(pd.DataFrame(block, columns=flat_columns(name, block.shape[1])))
    return pd.concat(parts, axis=1), shapes


def flat_columns(name: str, width: int) -> list[str]:
    return [f"{name}_{j}" for j in range(width)]


def image_shape(data: Dataset, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The shape of the one image column's images when its pixels are all of data's features
    (no other feature column besides it), else None."""
    if len(shapes) != 1:
        return None
    [(name, shape)] = shapes.items()
    pixels = flat_columns(name, int(np.prod(shape)))
    return shape if list(data.feature_names) == pixels else None


def fingerprint(data) -> str:
    return str(getattr(data, "_fingerprint", "") or "")


def load_hf(
    spec: str, target=None, encode=False, group_by=None, table: TableOptions = TableOptions()
) -> Dataset:
    found, revision = open_hf(spec)  # revision: its record, for partition.json
    train, test = train_test(found, spec)
    target = target or default_target(train, spec)
    frame, shapes = to_frame(train, spec)
    if test is not None:
        if table.impute == "drop":
            raise FLError(f"{spec} has its own test split; use --impute mean|median, not drop")
        test_frame, test_shapes = to_frame(test, spec)
        shapes = shapes if test_shapes == shapes else {}
        frame = pd.concat([frame, test_frame], ignore_index=True)
    data = dataset_from_frame(spec, frame, target, encode, group_by, table=table)
    data = dataclasses.replace(data, input_shape=image_shape(data, shapes))
    data = with_label_names(data, train.features.get(target))
    source = {"loader": "datasets", "fingerprint": fingerprint(train)}
    if test is not None:
        source["test_fingerprint"] = fingerprint(test)
    source.update(revision)
    return with_test_rows(data, len(train), test is not None, source)


def with_label_names(data: Dataset, label) -> Dataset:
    """A ClassLabel's names as the classes (its ids, factorized in order, index them)."""
    if type(label).__name__ != "ClassLabel" or data.classes is None:
        return data
    names = tuple(label.names[int(c)] for c in data.classes)
    return dataclasses.replace(data, classes=names)


def with_test_rows(data: Dataset, num_train: int, has_test: bool, source: dict) -> Dataset:
    changes: dict[str, Any] = {"source": {k: v for k, v in source.items() if v}}
    if has_test:
        is_test = np.arange(len(data.y)) >= num_train
        changes["is_test"] = is_test
        if data.groups is not None:
            groups = data.groups.copy()
            groups[is_test] = -1
            changes["groups"] = groups
    return dataclasses.replace(data, **changes)
