"""What the config and the model say about the privacy, robustness and fault options: --dp-clip
parsed, the flags given, and the algorithms and models that cannot take them. The options' own
checks are the uplink stages' (flcli.engine.uplink.check_uplink_options)."""

import math

from flcli.errors import FLError
from flcli.models.base import capabilities_of


def parse_clip(value) -> float | str | None:
    if value is None or value == "adaptive":
        return value
    try:
        clip = float(value)
    except (TypeError, ValueError):
        raise FLError(f"--dp-clip {value!r} must be a positive norm or 'adaptive'") from None
    if not 0 < clip < math.inf:
        raise FLError(f"--dp-clip {value} must be a finite norm > 0 (e.g. 1.0) or 'adaptive'")
    return clip


def uplink_flags(config) -> list[str]:
    """The privacy, robustness and fault options the config sets, as flags."""
    given = (
        ("--dp-clip", config.dp_clip is not None),
        ("--secure-agg", config.secure_agg),
        (f"--aggregator {config.aggregator}", config.aggregator != "mean"),
        ("--attack", config.attack is not None),
        ("--dropout", config.dropout > 0),
        ("--server-weighting uniform", config.server_weighting == "uniform"),
        (f"--compress {config.compress}", config.compress is not None),
        (f"--compress-down {config.compress_down}", config.compress_down is not None),
    )
    return [flag for flag, set_ in given if set_]


def refuse_for_algorithm(config, spec) -> None:
    """DP, secure aggregation, robust aggregators and compression replace the server's aggregate
    of the clients' updates or the updates themselves: an algorithm that reads single clients'
    values besides it cannot have them (spec: the algorithm's AlgorithmSpec)."""
    from flcli.algorithms.registry import ALGORITHMS

    reads = spec.reads_clients
    starts = ("--dp", "--sec", "--agg", "--compress ")  # --compress-down is the server's
    asked = [flag for flag in uplink_flags(config) if flag.startswith(starts)]
    if reads is not None and asked:
        able = [name for name, info in ALGORITHMS.items() if info.reads_clients is None]
        raise FLError(
            f"{asked[0]} does not apply to --algo {config.algo}: its server reads {reads}, "
            f"not only their aggregate; use one of: {', '.join(able)}"
        )


def refuse_for_model(config, model) -> None:
    """A model without parameters to average (flcli.models.ensemble) sends fitted estimators,
    not updates: there is nothing to clip, mask, attack or drop on the way. Label flipping needs
    classes to flip."""
    flags = uplink_flags(config)
    if flags and not capabilities_of(model).parametric:
        raise FLError(
            f"{flags[0]} needs a model with parameters to average; --model {config.model} has "
            "none; use e.g. --model softmax or sklearn:SGDClassifier"
        )
    if config.attack == "labelflip" and model.task == "regression":
        raise FLError(
            "--attack labelflip needs classes to flip; this partition is a regression task: "
            "use --attack signflip, gaussian or scale"
        )
