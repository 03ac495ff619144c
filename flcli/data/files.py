"""The user's own tables: .csv, .parquet and .npz files, and `openml:NAME` (scikit-learn's fetcher).

A table becomes a Dataset through dataset_from_frame: one --target column, numeric feature
columns (non-numeric ones are an error, or one-hot encoded with --encode), no NaNs, features
standardized. Files are never unpickled.
"""

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flcli.data import progress
from flcli.data.dataset import Dataset
from flcli.errors import FLError

FILE_TYPES = (".csv", ".parquet", ".npz")
MAX_LISTED = 25


def columns_text(columns) -> str:
    names = [str(c) for c in columns]
    more = f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def read_table(path: Path) -> pd.DataFrame:
    """Read a .csv, .parquet or .npz file into a DataFrame, or raise FLError saying why not."""
    path = Path(path)
    if path.suffix.lower() not in FILE_TYPES:
        raise FLError(f"cannot read {path}: use a .csv, .parquet or .npz file")
    if not path.is_file():
        raise FLError(f"file {path} does not exist; check the path")
    try:
        if path.suffix.lower() == ".csv":
            return read_csv(path)
        if path.suffix.lower() == ".parquet":
            progress.stage(f"reading {path.name} ({size_text(path.stat().st_size)})")
            return read_parquet(path)
        return read_npz(path)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FLError(f"cannot read {path}: {first_line}") from None


def size_text(size: int) -> str:
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def read_csv(path: Path) -> pd.DataFrame:
    """pandas' C parser over the file, reporting the bytes read as it goes."""
    total = path.stat().st_size
    text = f"reading {path.name} ({size_text(total)})"
    progress.stage(text, total)
    with path.open("rb") as handle:
        return pd.read_csv(progress.CountingReader(handle, text, total), engine="c")


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise FLError(
            f"reading {path} needs pyarrow: pip install 'flcli[parquet]' (or use a .csv file)"
        ) from None
    return pd.read_parquet(path)


def read_npz(path: Path) -> pd.DataFrame:
    """Every array becomes columns: a 1-D array `a` the column a, a 2-D one the columns a0, a1..."""
    columns = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise FLError(f"{path} is not a readable .npz file ({e})") from None
    lengths = {len(a) for a in arrays.values() if a.ndim}
    if len(lengths) != 1 or any(a.ndim not in (1, 2) for a in arrays.values()):
        shapes = ", ".join(f"{k} {a.shape}" for k, a in arrays.items())
        raise FLError(f"{path} must hold 1-D or 2-D arrays with the same rows; it has: {shapes}")
    for name, a in arrays.items():
        if a.ndim == 1:
            columns[name] = a
        else:
            columns.update({f"{name}{j}": a[:, j] for j in range(a.shape[1])})
    return pd.DataFrame(columns)


@dataclass(frozen=True)
class TableOptions:
    """--drop, --features and --impute: what of a user's table is a feature, and missing cells."""

    drop: str | None = None
    features: str | None = None
    impute: str | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.drop, self.features, self.impute))


def column_list(text: str, flag: str, frame: pd.DataFrame) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    missing = [name for name in names if name not in frame.columns]
    if missing or not names:
        raise FLError(
            f"{flag} {missing[0] if missing else text!r} is not a column; columns: "
            f"{columns_text(frame.columns)}"
        )
    return names


def prepare_frame(
    frame: pd.DataFrame, target: str, group_by: str | None, table: TableOptions
) -> pd.DataFrame:
    """The table with --drop's columns gone (or only --features' kept) and missing feature cells
    filled or their rows dropped (--impute)."""
    kept = [c for c in (target, group_by) if c is not None]
    if table.drop is not None:
        dropped = column_list(table.drop, "--drop", frame)
        if set(dropped) & set(kept):
            raise FLError(f"--drop {table.drop} names the --target or --by column; keep those")
        frame = frame.drop(columns=dropped)
    if table.features is not None:
        chosen = column_list(table.features, "--features", frame)
        frame = frame[[*chosen, *[c for c in kept if c not in chosen]]]
    features = [c for c in frame.columns if c not in kept]
    if table.impute == "drop":
        return frame.dropna(subset=features).reset_index(drop=True)
    if table.impute is not None:
        numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c])]
        fill = frame[numeric].mean() if table.impute == "mean" else frame[numeric].median()
        frame = frame.assign(**{c: frame[c].fillna(fill[c]) for c in numeric})
    return frame


def _factorize(values: pd.Series, column: str, role: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if values.isna().any():
        raise FLError(f"{role} column {column!r} has missing values (NaN); fill or drop those rows")
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), tuple(str(u) for u in uniques)


def infer_task(target: pd.Series) -> str:
    """A float column is a regression target; integers, text, booleans and categories are labels."""
    return "regression" if pd.api.types.is_float_dtype(target) else "classification"


def standardize(X: np.ndarray) -> np.ndarray:
    std = X.std(axis=0)
    X -= X.mean(axis=0)
    X /= np.where(std > 0, std, 1.0)
    return X


def dataset_from_frame(
    name: str,
    frame: pd.DataFrame,
    target: str | None,
    encode: bool = False,
    group_by: str | None = None,
    scale=standardize,
    task: str | None = None,
    table: TableOptions = TableOptions(),
) -> Dataset:
    """One --target column, the rest numeric features (one-hot with encode); group_by's column, if
    given, names each row's natural client and is not a feature."""
    frame.columns = [str(c) for c in frame.columns]
    if target is None:
        raise FLError(f"give the label column with --target COLUMN; columns: {columns_text(frame)}")
    for column, flag in ((target, "--target"), (group_by, "--by")):
        if column is not None and column not in frame.columns:
            raise FLError(f"{flag} {column!r} is not a column; columns: {columns_text(frame)}")
    if group_by == target:
        raise FLError(f"--by {group_by!r} is the --target column; group clients by another column")
    frame = prepare_frame(frame, target, group_by, table)
    labels = frame[target]
    if labels.isna().any():
        raise FLError(f"target column {target!r} has missing values (NaN); fill or drop those rows")
    classes = None
    if (task or infer_task(labels)) == "classification":
        y, classes = _factorize(labels, target, "target")
    else:
        y = labels.to_numpy(np.float64)
    groups, group_names = None, None
    if group_by is not None:
        groups, group_names = _factorize(frame[group_by], group_by, "--by")
    features = frame.drop(columns=[c for c in (target, group_by) if c is not None])
    if features.shape[1] == 0:
        raise FLError(f"{name} has no feature columns besides --target {target!r}")
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text and not encode:
        raise FLError(
            f"feature column {text[0]!r} is not numeric; one-hot encode it with --encode, "
            "or drop the column"
        )
    if text:
        for column in text:
            if features[column].isna().any():
                raise FLError(f"feature column {column!r} has missing values (NaN); fill them")
        features = pd.get_dummies(features, columns=text, dtype=np.float64)
    X = features.to_numpy(np.float64)
    if not X.flags.writeable:  # a read-only view of the frame's block
        X = X.copy()
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        column = features.columns[int(np.argmax(bad))]
        raise FLError(
            f"feature column {column!r} has missing or infinite values; fill them with --impute "
            "mean|median, drop the rows with --impute drop, or leave the column out with --drop"
        )
    return Dataset(
        name=name,
        X=scale(X),
        y=y,
        num_classes=None if classes is None else len(classes),
        feature_names=tuple(features.columns),
        groups=groups,
        classes=classes,
        group_names=group_names,
    )


def load_file(path: str, target, encode=False, group_by=None, table=TableOptions()) -> Dataset:
    frame = read_table(Path(path))
    progress.stage(f"preparing {len(frame):,} rows")
    return dataset_from_frame(Path(path).name, frame, target, encode, group_by, table=table)


def load_openml(
    spec: str, target=None, encode=False, group_by=None, fetch=None, table=TableOptions()
) -> Dataset:
    """`openml:NAME` or `openml:ID` through scikit-learn's fetch_openml and its cache
    (SCIKIT_LEARN_DATA, by default ~/scikit_learn_data)."""
    if fetch is None:
        from sklearn.datasets import fetch_openml as fetch
    key = spec.split(":", 1)[1]
    if not key:
        raise FLError("openml: needs a dataset name or id, e.g. openml:iris or openml:61")
    which = {"data_id": int(key)} if key.isdigit() else {"name": key}
    call = ", ".join(f"{k}={v!r}" for k, v in which.items())
    try:
        bunch = fetch(**which, as_frame=True, n_retries=1, delay=0.5)
    except OSError as e:
        raise FLError(
            f"cannot fetch {spec} ({e}); it is not in scikit-learn's cache and OpenML is "
            'unreachable: pre-fetch it where there is network with python -c "from '
            f'sklearn.datasets import fetch_openml; fetch_openml({call})" and copy '
            "~/scikit_learn_data (or $SCIKIT_LEARN_DATA) here"
        ) from None
    except ValueError as e:
        raise FLError(f"{spec}: {e}") from None
    frame = bunch.frame
    if target is None:
        names = list(getattr(bunch, "target_names", None) or [])
        if len(names) != 1:
            raise FLError(f"{spec} has no single default target; give --target COLUMN")
        target = names[0]
    return dataset_from_frame(spec, frame, target, encode, group_by, table=table)
