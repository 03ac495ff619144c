"""Options declared once.

A command's options are the fields of one frozen dataclass (TrainConfig, PartitionConfig), each
declared with `option(default, help, ...)`: its type, default, help, flag spelling, help panel and
constraint live on that one line. Everything else is derived from the fields:

- the Typer parameters of the command (`command_parameters`), so `--help` shows the same help;
- the keys of a TOML file, a sweep's [base] and [grid] and a run.json (`from_mapping`), checked
  against the field types, with one line naming an unknown key or a wrongly typed value;
- the range checks (`check_fields`), whose messages name the flag and give an example.

A field left at None means "not given": a later step (the run's resolve against its partition)
fills it from the model, the algorithm or the data. Construction only stores and checks values,
it never rewrites them, so `dataclasses.replace` works on a config like on any dataclass.
"""

import ast
import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from flcli.errors import FLError


@dataclass(frozen=True)
class Check:
    """A constraint on a value and how to say it: Check(lambda v: v > 0, "must be > 0, e.g. 1")."""

    test: Callable[[Any], bool]
    hint: str

    def __call__(self, label: str, value: Any) -> None:
        if not self.test(value):
            shown = repr(value) if isinstance(value, str) else value
            raise FLError(f"{label} {shown} {self.hint}")


MOST = 10**9  # a count above it is a typo or a script gone wrong, not an experiment


def positive_int(example: int = 1, most: int = MOST) -> Check:
    return Check(
        lambda v: isinstance(v, int) and 1 <= v <= most,
        f"must be an integer in [1, {most:,}], e.g. {example}",
    )


def at_least(bound: float, example: float) -> Check:
    return Check(
        lambda v: math.isfinite(v) and v >= bound,
        f"must be finite and >= {bound:g}, e.g. {example:g}",
    )


def above(bound: float, example: float) -> Check:
    return Check(
        lambda v: math.isfinite(v) and v > bound,
        f"must be finite and > {bound:g}, e.g. {example:g}",
    )


def within(low: float, high: float, example: float, closed: str = "[)") -> Check:
    """low <= v < high by default; closed names which ends belong to the interval."""
    left = (lambda v: v >= low) if closed[0] == "[" else (lambda v: v > low)
    right = (lambda v: v <= high) if closed[1] == "]" else (lambda v: v < high)
    shown = f"{closed[0]}{low:g}, {high:g}{closed[1]}"
    return Check(lambda v: left(v) and right(v), f"must be in {shown}, e.g. {example:g}")


def one_of(*choices: str) -> Check:
    return Check(lambda v: v in choices, f"is not one of: {', '.join(choices)}")


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    panel: str | None = None,
    show_default: str | bool | None = None,
    check: Check | None = None,
    cli_type: type | None = None,
    parse: Callable[[Any], Any] | None = None,
    metavar: str | None = None,
) -> Any:
    """A config field that is also a command-line option.

    flag: the spelling on the command line (default --name-with-dashes; "--a/--b" for an on/off
    pair); cli_type and parse: what the command line takes when it differs from the field's type
    (--hidden "128,64" becomes (128, 64); repeated --model-arg k=v become a dict)."""
    metadata = {
        "help": help,
        "flag": flag,
        "panel": panel,
        "show_default": show_default,
        "check": check,
        "cli_type": cli_type,
        "parse": parse,
        "metavar": metavar,
    }
    if isinstance(default, dict | list):
        kind = type(default)
        return dataclasses.field(default_factory=lambda: kind(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared(cls) -> list[dataclasses.Field]:
    """The fields of a config class declared with option()."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def flag_of(item: dataclasses.Field) -> str:
    """--local-epochs for local_epochs (the first spelling of an on/off pair)."""
    spelled = item.metadata.get("flag")
    return spelled.split("/")[0] if spelled else "--" + item.name.replace("_", "-")


def check_fields(config) -> None:
    """Each declared field's own constraint, and finite numbers, on the values given."""
    for item in declared(type(config)):
        value = getattr(config, item.name)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise FLError(f"{flag_of(item)} {value} must be a finite number")
        if item.metadata["check"] is not None:
            item.metadata["check"](flag_of(item), value)


# --- values from files: TOML, sweep tables, run.json ---------------------------------------------

KINDS = {  # what a value of each annotated type may be in a file, and how to say it
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    tuple: (lambda v: isinstance(v, list | tuple | str), "a list of integers"),
    dict: (lambda v: isinstance(v, dict), "a table of key = value"),
}


def options_of(annotation) -> list:
    """The plain types an annotation allows: float | None -> [float, NoneType]."""
    union = typing.get_origin(annotation) in (types.UnionType, typing.Union)
    kinds = typing.get_args(annotation) if union else (annotation,)
    return [typing.get_origin(kind) or kind for kind in kinds]


def of_type(annotation, value) -> bool:
    """Whether value may stand for annotation; an annotation of no kind flcli knows (a class of
    the user's, a NumPy type) takes any value."""
    kinds = options_of(annotation)
    if value is None:
        return type(None) in kinds
    known = [kind for kind in kinds if kind in KINDS]
    return not known or any(KINDS[kind][0](value) for kind in known)


def describe_type(annotation) -> str:
    known = [KINDS[kind][1] for kind in options_of(annotation) if kind in KINDS]
    return " or ".join(known) if known else f"a {getattr(annotation, '__name__', annotation)}"


def normalize_keys(values: dict[str, Any], where: str, known: list[str]) -> dict[str, Any]:
    """Dashes to underscores; an unknown key is an FLError listing the known ones."""
    normalized = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(normalized) - set(known))
    if unknown:
        raise FLError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}"
        )
    return normalized


def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_mapping(cls, values: dict[str, Any], where: str = "config"):
    """cls(**values) from a file's table: unknown keys and wrongly typed values are one line."""
    names = [f.name for f in dataclasses.fields(cls)]
    values = normalize_keys(values, where, names)
    hints = field_types(cls)
    for name, value in values.items():
        if not of_type(hints[name], value):
            raise FLError(
                f"{where}: {name} = {value!r} must be {describe_type(hints[name])}; fix its value"
            )
    return cls(**{name: as_declared(hints[name], value) for name, value in values.items()})


def as_declared(annotation, value):
    """An integer given for a float-only field as that float (`lr = 1` in a file and `--lr 1` on
    the command line are one config)."""
    kinds = options_of(annotation)
    if isinstance(value, int) and not isinstance(value, bool) and float in kinds:
        return value if int in kinds else float(value)
    return value


# --- the command line ----------------------------------------------------------------------------


def parse_key_values(items: list[str], flag: str) -> dict[str, Any]:
    """["alpha=1e-4", "loss=log_loss"] -> {"alpha": 0.0001, "loss": "log_loss"}: each value a
    Python literal (ast.literal_eval), or else the plain string."""
    args = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise FLError(f"{flag} {item!r} must be key=value, e.g. {flag} alpha=0.001")
        try:
            args[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            args[key.strip()] = text.strip()
    return args


def command_parameters(cls) -> list[inspect.Parameter]:
    """One keyword parameter per declared field, typed for Typer, default None (not given, so a
    config file's value is not overridden by a default)."""
    import typer

    hints = field_types(cls)
    parameters = []
    for item in declared(cls):
        meta = item.metadata
        kind = meta["cli_type"] or next(k for k in options_of(hints[item.name]) if k is not None)
        names = [meta["flag"]] if meta["flag"] else []
        shown = meta["show_default"]
        if shown is None:
            default = item.default if item.default is not dataclasses.MISSING else None
            shown = False if default is None else str(default)
        info = typer.Option(
            *names,
            help=meta["help"],
            rich_help_panel=meta["panel"],
            show_default=shown,
            metavar=meta["metavar"],
        )
        annotation = Annotated[kind | None, info]
        parameters.append(
            inspect.Parameter(
                item.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
            )  # fmt: skip
        )
    return parameters


def given_options(cls, values: dict[str, Any]) -> dict[str, Any]:
    """The declared fields the command line gave (not None), parsed into their field types."""
    given = {}
    for item in declared(cls):
        value = values.get(item.name)
        if value is None or value == []:
            continue
        parse = item.metadata["parse"]
        given[item.name] = parse(value) if parse else value
    return given


def command(cls, fixed: Callable, extra: list[inspect.Parameter] = ()) -> Callable:
    """The Typer callback of a command whose options are cls's fields plus the parameters of
    `fixed` (arguments and options that are not config fields, such as --out). The callback
    calls fixed(options, **its own parameters), options being the fields given on the command
    line, parsed, and the `extra` parameters given (such as the algorithms' --mu), as they are."""
    own = list(inspect.signature(fixed, eval_str=True).parameters.values())[1:]
    names = {p.name for p in own}
    extra_names = [p.name for p in extra]

    def callback(**values):
        fixed_values = {name: values.pop(name) for name in names}
        extras = {name: values.pop(name) for name in extra_names}
        options = given_options(cls, values)
        options.update({name: value for name, value in extras.items() if value is not None})
        return fixed(options, **fixed_values)

    parameters = own + command_parameters(cls) + list(extra)
    callback.__signature__ = inspect.Signature(parameters)
    callback.__annotations__ = {p.name: p.annotation for p in parameters}
    callback.__doc__ = fixed.__doc__
    callback.__name__ = fixed.__name__
    return callback
