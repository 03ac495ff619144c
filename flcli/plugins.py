"""A user's own code: an algorithm, model, scheme or dataset named by an object reference, or an
installed package's entry point.

A reference is Flower's `<module>:<attribute>` (flwr.common.object_ref): `my_fl.py:fedx` (a file,
relative to the working directory) or `my_package.algorithms:fedx` (an importable module). A file's
folder goes on sys.path and the file is imported by its name, so that worker processes (which
inherit sys.path) unpickle its functions and classes by reference like any module's; Ray's workers,
which do not, get the module by value (see share_with_ray).

Entry points: an installed package adds names under the groups flcli.algorithms, flcli.models,
flcli.schemes and flcli.datasets (`[project.entry-points."flcli.algorithms"] fedx =
"my_package.algorithms:fedx"`), and `--algo fedx` then works like a built-in name; `fl list`
shows them.
"""

import hashlib
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from flcli.errors import FLError

GROUPS = {
    "algorithm": "flcli.algorithms",
    "model": "flcli.models",
    "torch_model": "flcli.torch_models",
    "scheme": "flcli.schemes",
    "dataset": "flcli.datasets",
}
FLAGS = {
    "algorithm": "--algo",
    "model": "--model",
    "torch_model": "--model torch:",
    "scheme": "--scheme",
    "dataset": "DATASET",
    "size": "--sizes",
}
LOADED: dict[str, ModuleType] = {}  # modules loaded from references, by reference's module part
SOURCES: dict[str, dict[str, str]] = {}  # their files and sha256 as loaded, likewise


TORCH_PREFIX = "torch:"  # --model torch:REFERENCE names a PyTorch module


def model_reference(name: str) -> tuple[str, str, str]:
    """(prefix, reference, kind) of a --model name: torch:FILE.py:Net is a "torch_model"
    reference behind the prefix "torch:", any other name a "model" one without prefix."""
    if name.startswith(TORCH_PREFIX):
        return TORCH_PREFIX, name[len(TORCH_PREFIX) :], "torch_model"
    return "", name, "model"


def label_of(kind: str, reference: str) -> str:
    """How the user wrote it: '--algo my.py:fedx', '--model torch:my.py:Net'."""
    flag = FLAGS[kind]
    return f"{flag}{reference}" if flag.endswith(":") else f"{flag} {reference}"


def is_reference(name: str) -> bool:
    """Whether name is `FILE.py:NAME` or `package.module:NAME` (not a built-in name such as
    sklearn:SGDClassifier or synthetic:alpha=1)."""
    module, sep, attribute = str(name).rpartition(":")
    return bool(sep) and attribute.isidentifier() and (module.endswith(".py") or "." in module)


def _import(module_name: str, kind: str, reference: str) -> ModuleType:
    label = label_of(kind, reference)
    path = Path(module_name).resolve() if module_name.endswith(".py") else None
    if path is not None:
        if not path.is_file():
            raise FLError(f"{label}: file {module_name} does not exist; check the path")
        if not path.stem.isidentifier():
            raise FLError(
                f"{label}: {path.name} cannot be imported (its name is not a Python "
                "identifier); rename it, e.g. my_algorithms.py"
            )
        if str(path.parent) not in sys.path:  # last: the folder's files shadow no library
            sys.path.append(str(path.parent))
        module_name = path.stem
        check_not_shadowed(sys.modules.get(module_name), path, label)
    elif os.getcwd() not in sys.path:  # package.module from the working directory, as python -m
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name and module_name.startswith(missing.name):
            raise FLError(
                f"{label}: no module {module_name!r}; give FILE.py:NAME or an installed "
                "package.module:NAME"
            ) from None
        raise FLError(f"{label}: importing it failed: {missing}") from None
    except Exception as failure:  # the user's module raised while importing: say what and where
        raise FLError(
            f"{label}: importing it failed: {type(failure).__name__}: {failure}"
        ) from None
    if path is not None:
        check_not_shadowed(module, path, label)
    if module_name not in LOADED:
        LOADED[module_name] = module
        SOURCES[reference.rpartition(":")[0]] = file_record(getattr(module, "__file__", None))
    return module


def check_not_shadowed(module: ModuleType | None, path: Path, label: str) -> None:
    """A file is imported by its name: refuse when that name is another module's."""
    if module is not None and Path(getattr(module, "__file__", "") or "").resolve() != path:
        raise FLError(
            f"{label}: a module named {path.stem} is already importable from {module.__file__}; "
            f"rename {path.name}"
        )


def file_record(file: str | None) -> dict[str, str]:
    """A module's file and its sha256, taken when it is loaded (the code that runs)."""
    if not file or not Path(file).is_file():
        return {}
    return {"file": str(Path(file).resolve()), "sha256": sha256_of(Path(file))}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(reference: str, kind: str) -> Any:
    """The object a reference names; FLError naming what is wrong (no file, no module, no such
    attribute, an import that raised)."""
    module_name, _, attribute = reference.rpartition(":")
    module = _import(module_name, kind, reference)
    if not hasattr(module, attribute):
        public = [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])]
        raise FLError(
            f"{label_of(kind, reference)}: {module_name} has no {attribute!r}; it defines: "
            f"{', '.join(public) or 'nothing callable'}"
        )
    return getattr(module, attribute)


def source_of(reference: str) -> dict[str, str]:
    """What run.json records of a reference: itself, and the file that holds it with the sha256
    it had when it was loaded."""
    module_name = reference.rpartition(":")[0]
    if module_name not in SOURCES:
        stem = Path(module_name).stem if module_name.endswith(".py") else module_name
        module = sys.modules.get(stem)
        SOURCES[module_name] = file_record(getattr(module, "__file__", None))
    return {"reference": reference, **SOURCES[module_name]}


def entry_points(kind: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The names installed packages add to a kind, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUPS[kind])}


def load_entry_point(name: str, kind: str) -> Any | None:
    """The object an installed package registered as `name`, or None when none did."""
    point = entry_points(kind).get(name)
    if point is None:
        return None
    try:
        return point.load()
    except Exception as failure:  # a broken installed plugin: name it, do not crash
        raise FLError(
            f"{label_of(kind, name)}: the entry point {point.value} failed to load: "
            f"{type(failure).__name__}: {failure}"
        ) from None


def find(name: str, kind: str) -> tuple[Any, dict[str, str]] | None:
    """The object `name` names and what a run or partition records of it (the reference, its
    file and the file's sha256); None when name is neither a reference nor an entry point."""
    if is_reference(name):
        return load(name, kind), source_of(name)
    point = entry_points(kind).get(name)
    if point is None:
        return None
    found = load_entry_point(name, kind)
    return found, {"entry_point": name, **source_of(point.value)}


def call(function: Callable, label: str, *args, **kwargs) -> Any:
    """function(*args, **kwargs), the user's code: what it raises becomes one FLError line."""
    try:
        return function(*args, **kwargs)
    except FLError as refused:
        raise FLError(f"{label}: {refused}") from None
    except MemoryError:
        raise
    except Exception as failure:  # the user's code: name it and what it raised, no traceback
        text = str(failure).strip().splitlines()
        said = f": {text[0]}" if text else ""
        raise FLError(f"{label} raised {type(failure).__name__}{said}") from None


def plugin_folders() -> tuple[str, ...]:
    """The folders of the plugin files loaded so far (for worker processes' sys.path)."""
    files = (getattr(module, "__file__", None) for module in LOADED.values())
    return tuple(sorted({str(Path(file).parent) for file in files if file}))


def share_with_ray() -> None:
    """Ray's workers do not inherit sys.path: pickle the loaded plugin modules by value."""
    if not LOADED:
        return
    from ray import cloudpickle

    for module in LOADED.values():
        cloudpickle.register_pickle_by_value(module)
