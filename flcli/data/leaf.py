"""`leaf:PATH`: a LEAF benchmark (FEMNIST, Sent140, Shakespeare, synthetic, ...) as its
preprocessing writes it, with its natural clients and the users' own train/test split.

PATH is a folder with `train/` and `test/` (LEAF's `data/<name>/data`, or its parent). Every
*.json file in them holds `users`, `num_samples` and `user_data` {user: {"x": [...], "y": [...]}}.
A sample x is a list of numbers (an image, flattened), a list of lists of numbers (flattened, the
nesting's shape its input_shape), or text: a string (Shakespeare) or a list whose last string is
the text (Sent140's [id, date, query, user, tweet]). Text becomes, by default (--text hashed), a
bag of words through scikit-learn's HashingVectorizer(n_features=TEXT_FEATURES,
alternate_sign=False, norm="l2"): stateless, so train and test are encoded alike without fitting
on either; --text chars or words make it a token sequence instead (flcli.data.text), whose word
vocabulary only the train folder's rows build. Labels are factorized in sorted order.

Every training user is one client. A user's rows in the test folder are that client's local test
split, exactly as LEAF split them (Dataset.test_groups), and all test rows pooled are the central
test set: LEAF's reported metric, the accuracy over every user's test rows. A test user with no
training rows (LEAF's user split, `-t user`) is in the central test set only; when no test user
has training rows, the clients have no local test split of LEAF's.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from flcli.data.dataset import Dataset
from flcli.data.text import TextOptions, encode_texts
from flcli.errors import FLError

TEXT_FEATURES = 1024


def leaf_folders(path: Path) -> tuple[Path, Path]:
    for root in (path, path / "data"):
        if (root / "train").is_dir() and (root / "test").is_dir():
            return root / "train", root / "test"
    raise FLError(
        f"leaf:{path} has no train/ and test/ folders; give the folder LEAF's preprocessing "
        "wrote them in (data/<benchmark>/data)"
    )


def read_leaf_file(file: Path) -> list[tuple[str, list, list]]:
    """(user, xs, ys) of every user in one LEAF JSON file, checked."""
    try:
        content = json.loads(file.read_text())
        users, user_data = content["users"], content["user_data"]
        rows = [(str(u), user_data[u]["x"], user_data[u]["y"]) for u in users]
    except (OSError, ValueError) as e:
        raise FLError(
            f"{file} is not readable LEAF JSON ({e}); re-run LEAF's preprocessing"
        ) from None
    except (KeyError, TypeError) as e:
        raise FLError(
            f"{file} lacks LEAF's users / user_data / x / y ({type(e).__name__}: {e}); "
            "re-run LEAF's preprocessing"
        ) from None
    counts = content.get("num_samples")
    for i, (user, xs, ys) in enumerate(rows):
        given = counts[i] if isinstance(counts, list) and i < len(counts) else len(ys)
        if not isinstance(xs, list) or not isinstance(ys, list) or not len(xs) == len(ys) == given:
            raise FLError(
                f"{file}: user {user!r} has x, y and num_samples of different lengths; "
                "re-run LEAF's preprocessing"
            )
    return rows


def read_split(folder: Path) -> list[tuple[str, list, list]]:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FLError(f"{folder} holds no .json files; give LEAF's preprocessed data folder")
    return [row for file in files for row in read_leaf_file(file)]


def sample_text(x) -> str | None:
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[-1], str):
        return x[-1]
    return None


def samples_of(xs: list, is_train: np.ndarray, text: TextOptions, source: str) -> dict:
    """The Dataset's X [n, d] and, when the samples have them, input_shape and vocabulary: text
    as text asks (flcli.data.text), numbers flattened."""
    texts = [sample_text(x) for x in xs]
    if all(t is not None for t in texts):
        return text_samples(texts, is_train, text)
    if text.as_sequences:
        raise FLError(
            f"--text {text.mode} applies to text samples (Sent140, Shakespeare); {source} holds "
            "numbers: drop --text"
        )
    return number_samples(xs, source)


def text_samples(texts: list[str], is_train: np.ndarray, text: TextOptions) -> dict:
    if not text.as_sequences:
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(n_features=TEXT_FEATURES, alternate_sign=False, norm="l2")
        return {"X": vectorizer.transform(texts).toarray()}
    encoded = encode_texts(texts, is_train, text)
    return {
        "X": encoded.ids.astype(np.float64),
        "input_shape": (encoded.ids.shape[1],),
        "vocabulary": encoded.vocabulary,
    }


def number_samples(xs: list, source: str) -> dict:
    """Each sample flattened; the shape of its nesting its input_shape, when it is nested and
    every sample has the same."""
    try:
        arrays = [np.asarray(x, dtype=np.float64) for x in xs]
        X = np.stack([a.ravel() for a in arrays])
    except (TypeError, ValueError):
        arrays, X = [], np.empty(0)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise FLError(
            f"{source}: x must be numbers of one length (an image, flattened) or text; other "
            "kinds (CelebA's image file names) are not read"
        )
    shape = arrays[0].shape
    nested = len(shape) > 1 and all(a.shape == shape for a in arrays)
    return {"X": X, "input_shape": shape if nested else None}


def load_leaf(spec: str, group_by: str | None = None, text: TextOptions = TextOptions()) -> Dataset:
    path = Path(spec.split(":", 1)[1])
    if group_by is not None:
        raise FLError(f"{spec} has its own clients (LEAF's users); drop --by")
    train_folder, test_folder = leaf_folders(path)
    train, test = read_split(train_folder), read_split(test_folder)
    users = unique_users(train, train_folder)
    unique_users(test, test_folder)
    xs = [x for _, x_user, _ in train + test for x in x_user]
    ys = [y for _, _, y_user in train + test for y in y_user]
    sizes = [len(y) for _, _, y in train]
    num_train = sum(sizes)
    if not num_train or len(ys) == num_train:
        raise FLError(f"leaf:{path} has an empty train or test folder; both need samples")
    samples = samples_of(xs, np.arange(len(ys)) < num_train, text, str(path))
    codes, classes = pd.factorize(
        pd.Series([str(y) if isinstance(y, str) else y for y in ys]), sort=True
    )
    groups = np.full(len(ys), -1, dtype=np.int64)
    groups[:num_train] = np.repeat(np.arange(len(users)), sizes)
    is_test = np.arange(len(ys)) >= num_train
    test_groups = np.full(len(ys), -1, dtype=np.int64)
    test_groups[num_train:] = test_owners(users, test)
    return Dataset(
        name=spec,
        y=codes.astype(np.int64),
        num_classes=len(classes),
        feature_names=tuple(f"x{j}" for j in range(samples["X"].shape[1])),
        groups=groups,
        is_test=is_test,
        classes=tuple(str(c) for c in classes),
        group_names=tuple(users),
        test_groups=test_groups if (test_groups >= 0).any() else None,
        **samples,
    )


def unique_users(split: list[tuple[str, list, list]], folder: Path) -> list[str]:
    users = [user for user, _, _ in split]
    if len(set(users)) != len(users):
        raise FLError(f"{folder}: a user appears in two files; re-run LEAF's preprocessing")
    return users


def test_owners(users: list[str], test: list[tuple[str, list, list]]) -> np.ndarray:
    """Each test row's training user (its index in users), -1 for a user with no training rows."""
    index = {user: i for i, user in enumerate(users)}
    return np.array([index.get(user, -1) for user, _, ys in test for _ in ys], dtype=np.int64)
