"""--algo names -> algorithm specs: the built-in modules' specs, installed packages' entry points
(group flcli.algorithms) and a user's file or module named by a reference (FILE.py:NAME).

A new built-in algorithm is one module (its factory and its SPEC) and one line in BUILT_IN.
"""

from dataclasses import replace

from flcli.algorithms import (
    apfl,
    asynchronous,
    clustered,
    fedavg,
    fedbag,
    feddf,
    feddyn,
    fednova,
    fedopt,
    fedprox,
    fedsgd,
    headbody,
    meta,
    personal,
    qfedavg,
    scaffold,
)
from flcli.algorithms.base import Algorithm, AlgorithmSpec, Context, EnsembleAlgorithm, ServerState
from flcli.errors import FLError
from flcli.plugins import call, entry_points, find

BUILT_IN = (
    fedavg.SPEC,
    fedsgd.SPEC,
    fedprox.SPEC,
    scaffold.SPEC,
    fednova.SPEC,
    *fedopt.SPECS,
    feddyn.SPEC,
    qfedavg.SPEC,
    *personal.SPECS,
    *headbody.SPECS,
    *clustered.SPECS,
    *meta.SPECS,
    apfl.SPEC,
    feddf.SPEC,
    fedbag.SPEC,
    *asynchronous.SPECS,
)
ALGORITHMS = {spec.name: spec for spec in BUILT_IN}


def as_spec(found, name: str) -> AlgorithmSpec:
    """A plugin's object as a spec: an AlgorithmSpec as it is, a factory wrapped in one."""
    if isinstance(found, AlgorithmSpec):
        factories = (found.factory, found.ensemble_factory)
        if not any(callable(f) for f in factories) or any(
            f is not None and not callable(f) for f in factories
        ):
            raise FLError(
                f"--algo {name}: its AlgorithmSpec needs a factory (or an ensemble_factory) that "
                "is a function"
            )
        return replace(found, name=name)
    if not callable(found):
        raise FLError(
            f"--algo {name} is a {type(found).__name__}, not an algorithm factory; give a "
            "function (ctx, **hyperparameters) -> flcli.algorithms.base.Algorithm"
        )
    doc = (found.__doc__ or "").strip().splitlines()
    return AlgorithmSpec(name, found, use_when=doc[0] if doc else "")


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The spec --algo `name` names; FLError when there is none."""
    if name in ALGORITHMS:
        return ALGORITHMS[name]
    found = find(name, "algorithm")
    if found is not None:
        return as_spec(found[0], name)
    known = list(dict.fromkeys([*ALGORITHMS, *entry_points("algorithm")]))
    raise FLError(
        f"unknown algorithm {name!r}; choose one of: {', '.join(known)}, or give your own as "
        "FILE.py:FACTORY"
    )


def algorithm_specs() -> dict[str, AlgorithmSpec]:
    """Every algorithm a name reaches: the built-ins, then installed packages' entry points."""
    specs = dict(ALGORITHMS)
    for name in entry_points("algorithm"):
        if name not in specs:  # a built-in name is the built-in's
            specs[name] = algorithm_spec(name)
    return specs


def hyperparameters_for(spec: AlgorithmSpec, given: dict, fallback: dict) -> dict:
    """spec's hyperparameters resolved from those given; a built-in one the algorithm does not
    take is one line naming its flag and the algorithms that take it."""
    takes = spec.hyperparameters
    for name in given:
        users = [n for n, s in ALGORITHMS.items() if name in s.hyperparameters]
        if name not in takes and users:
            flag = ALGORITHMS[users[0]].hyperparameters[name].flag
            raise FLError(
                f"{flag} does not apply to --algo {spec.name}; it is a hyperparameter of "
                f"{', '.join(users)}"
            )
    return spec.resolve(given, fallback)


def make_algorithm(name: str, hyperparameters: dict, context: Context):
    """The parametric algorithm `name` with the hyperparameters given (the rest at defaults)."""
    spec = algorithm_spec(name)
    return build(spec, spec.resolve(hyperparameters, {}), context, parametric=True)


def build(spec: AlgorithmSpec, hyperparameters: dict, context: Context, parametric: bool):
    """The algorithm in its parametric or its ensemble form as the model requires; FLError when
    it takes no such model, or when its factory raises."""
    if parametric:
        if spec.factory is None:
            raise FLError(
                f"--algo {spec.name} combines models without parameters to average; use it with "
                "e.g. --model sklearn:RandomForestClassifier, or choose --algo fedavg"
            )
        factory = spec.factory
    else:
        if spec.ensemble_factory is None:
            takes = [n for n, s in ALGORITHMS.items() if s.ensemble_factory is not None]
            raise FLError(
                f"--model {context.model.name} has no parameters to average, so --algo "
                f"{spec.name} cannot combine it; use --algo {' or --algo '.join(takes)}"
            )
        factory = spec.ensemble_factory
    if spec.name in ALGORITHMS:
        return factory(context, **hyperparameters)
    built = call(factory, f"--algo {spec.name}", context, **hyperparameters)
    if not isinstance(built, Algorithm | EnsembleAlgorithm):
        raise FLError(
            f"--algo {spec.name} returned a {type(built).__name__}, not an "
            "flcli.algorithms.base.Algorithm; return Algorithm(name, server_init, server_update)"
        )
    return guarded(built, f"--algo {spec.name}")


def guarded(algorithm, label: str):
    """A user's algorithm whose functions, when they raise or return something else than a
    ServerState, stop the run with one line naming the function (the run is marked failed)."""

    def guard(name: str, function, returns_state: bool):
        if function is None:
            return None

        def call_it(*args):
            result = call(function, f"{label}'s {name}", *args)
            state = result[0] if name == "personalize" and isinstance(result, tuple) else result
            if returns_state and not isinstance(state, ServerState):
                raise FLError(
                    f"{label}'s {name} returned a {type(state).__name__}, not a ServerState"
                )
            return result

        return call_it

    functions = {"server_init": True, "server_update": True}
    if isinstance(algorithm, Algorithm):
        functions.update(
            client_work=False,
            local_spec=False,
            personalize=True,
            prepare=False,
            keep=True,
            carried=True,
            candidates=False,
            choose=True,
        )
    wrapped = {
        name: guard(name, getattr(algorithm, name), state) for name, state in functions.items()
    }
    return replace(algorithm, **wrapped)
