"""`fl partition ... --export flower DIR` and `flower:DIR`: shards in Flower Datasets' layout.

`flwr-datasets create NAME --num-partitions N --out-dir DIR` (flwr_datasets/cli/create.py) saves
partition i of the train split with datasets' `save_to_disk` in DIR/partition_{i}. flcli writes
the same: DIR/partition_{i} holds client i's rows as two columns, `x` (the feature vector, a list
of float64) and `label` (a ClassLabel with the partition's class names, or float64 targets for
regression). flcli adds DIR/test, the central test set in the same form (Flower's command writes
none; a reader of partition_* folders ignores it). Needs `datasets` (flcli[hf]).

`flower:DIR` reads such a folder back: partition_{i} is natural client i (named partition_{i}),
DIR/test the test set when present (else --test-size of all rows); features are taken as they are
(not standardized again), so an export read back has the same rows, clients and labels.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd

from flcli.data.dataset import Dataset
from flcli.data.files import TableOptions, dataset_from_frame
from flcli.data.hf import (
    default_target,
    fingerprint,
    image_shape,
    import_datasets,
    to_frame,
    with_label_names,
)
from flcli.data.store import Partition
from flcli.errors import FLError

PARTITION = re.compile(r"partition_(\d+)")
GROUP_COLUMN = "flower_partition"
FORMATS = ("flower",)


def features_of(partition: Partition, datasets):
    if partition.num_classes is None:
        label = datasets.Value("float64")
    else:
        classes = partition.meta.get("classes") or [str(c) for c in range(partition.num_classes)]
        label = datasets.ClassLabel(names=[str(c) for c in classes])
    return datasets.Features({"x": datasets.Sequence(datasets.Value("float64")), "label": label})


def export_flower(partition: Partition, out: Path) -> Path:
    """Write out/partition_{i} (and out/test) as flwr-datasets create does; out must be new."""
    datasets = import_datasets("--export flower")
    out = Path(out)
    if out.exists():
        raise FLError(f"--export flower {out} already exists; choose a new folder or delete it")
    if "vertical" in partition.meta:
        raise FLError("--export flower takes horizontal partitions; a vertical one has no shards")
    features = features_of(partition, datasets)

    def save(x: np.ndarray, y: np.ndarray, folder: Path) -> None:
        columns = {"x": np.asarray(x, dtype=np.float64), "label": y}
        datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(folder))

    offsets = partition.offsets
    for i in range(partition.num_clients):
        rows = slice(offsets[i], offsets[i + 1])
        save(partition.x_train[rows], partition.y_train[rows], out / f"partition_{i}")
    save(partition.x_test, partition.y_test, out / "test")
    return out


def partition_folders(root: Path, spec: str) -> list[Path]:
    if not root.is_dir():
        raise FLError(f"{spec}: folder {root} does not exist; give the --out-dir of flwr-datasets")
    found = {}
    for child in root.iterdir():
        match = PARTITION.fullmatch(child.name)
        if match and child.is_dir():
            found[int(match.group(1))] = child
    if not found or sorted(found) != list(range(len(found))):
        raise FLError(
            f"{spec}: expected partition_0 ... partition_N-1 folders (flwr-datasets create's "
            f"layout); found {len(found)} partition folders"
        )
    return [found[i] for i in range(len(found))]


def read_folder(datasets, folder: Path, spec: str):
    try:
        return datasets.load_from_disk(str(folder))
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FLError(
            f"{spec}: cannot read {folder} ({type(e).__name__}: {first}); re-export it"
        ) from None


def load_flower(
    spec: str, target=None, encode=False, group_by=None, table: TableOptions = TableOptions()
) -> Dataset:
    import dataclasses

    datasets = import_datasets(spec)
    root = Path(spec.split(":", 1)[1]).expanduser()
    if group_by is not None:
        raise FLError(f"{spec} has its own clients (its partition_* folders); drop --by")
    parts = [read_folder(datasets, f, spec) for f in partition_folders(root, spec)]
    test = read_folder(datasets, root / "test", spec) if (root / "test").is_dir() else None
    target = target or default_target(parts[0], spec)
    splits = {i: part for i, part in enumerate(parts)} | ({-1: test} if test is not None else {})
    frames, shapes = [], []
    for group, split in splits.items():
        columns, image_shapes = to_frame(split, spec)
        frames.append(columns.assign(**{GROUP_COLUMN: group}))
        shapes.append(image_shapes)
    frame = pd.concat(frames, ignore_index=True)
    same_images = shapes[0] if shapes.count(shapes[0]) == len(shapes) else {}
    data = dataset_from_frame(
        spec, frame, target, encode, GROUP_COLUMN, scale=lambda X: X, table=table
    )
    data = with_label_names(data, parts[0].features.get(target))
    client = frame[GROUP_COLUMN].to_numpy(np.int64)
    changes = {
        "groups": client,
        "group_names": tuple(f"partition_{i}" for i in range(len(parts))),
        "source": {"loader": "flower", "fingerprints": ",".join(map(fingerprint, parts))},
        "input_shape": image_shape(data, same_images),
    }
    if len(client) != len(data.y):
        raise FLError(f"{spec}: --impute drop changes the partitions; use --impute mean|median")
    if test is not None:
        changes["is_test"] = client < 0
    return dataclasses.replace(data, **changes)
