"""Checks of the privacy, robustness and fault options that need nothing but the options
themselves (the ones that depend on the partition are in flcli.engine.uplink)."""

import math

from flcli.engine.attacks import check_attack
from flcli.errors import FLError
from flcli.models.base import capabilities_of

AGGREGATORS = {
    "mean": "the sample-weighted mean (the algorithm's own rule)",
    "median": "coordinate-wise median (Yin et al. 2018)",
    "trimmed-mean": "coordinate-wise mean without the f largest and f smallest (Yin et al. 2018)",
    "krum": "the update closest to its K-f-2 nearest neighbours (Blanchard et al. 2017)",
    "multi-krum": "the mean of the K-f updates with the best Krum scores (Blanchard et al. 2017)",
    "bulyan": "iterated Krum, then a trimmed mean around the median (El Mhamdi et al. 2018)",
    "geomed": "geometric median by smoothed Weiszfeld (RFA, Pillutla et al. 2022)",
}
ACCOUNTANTS = ("rdp", "pld")


def parse_clip(value) -> float | str | None:
    if value is None or value == "adaptive":
        return value
    try:
        clip = float(value)
    except (TypeError, ValueError):
        raise FLError(f"--dp-clip {value!r} must be a positive norm or 'adaptive'") from None
    if not clip > 0:
        raise FLError(f"--dp-clip {value} must be > 0 (e.g. 1.0) or 'adaptive'")
    return clip


def uplink_flags(config) -> list[str]:
    """The privacy, robustness and fault options the config sets, as flags."""
    given = (
        ("--dp-clip", config.dp_clip is not None),
        ("--secure-agg", config.secure_agg),
        (f"--aggregator {config.aggregator}", config.aggregator != "mean"),
        ("--attack", config.attack is not None),
        ("--dropout", config.dropout > 0),
    )
    return [flag for flag, set_ in given if set_]


def refuse_for_algorithm(config, spec) -> None:
    """DP, secure aggregation and robust aggregators replace the server's aggregate of the
    clients' updates: an algorithm that reads single clients' values besides it cannot have them."""
    from flcli.algorithms.registry import ALGORITHMS

    reads = spec.reads_clients
    asked = [flag for flag in uplink_flags(config) if flag.startswith(("--dp", "--sec", "--agg"))]
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


def check_strength(attack: str | None, strength: float | None) -> None:
    """--attack-strength: only with an attack that has one, and > 0 (a negative signflip or scale
    strength would turn the attack into help)."""
    if strength is None:
        return
    if attack is None or attack == "labelflip":
        raise FLError(
            f"--attack-strength {strength} applies to --attack signflip, gaussian or scale only; "
            "drop it"
        )
    if not 0 < strength < math.inf:
        raise FLError(f"--attack-strength {strength} must be > 0, e.g. 4")


def check_options(config) -> float | str | None:
    """Raise FLError on a bad value or combination; returns --dp-clip parsed."""
    clip = parse_clip(config.dp_clip)
    dp = clip is not None
    if config.dp_noise is not None and config.dp_epsilon is not None:
        raise FLError("give --dp-noise or --dp-epsilon, not both")
    if dp and config.dp_noise is None and config.dp_epsilon is None:
        raise FLError("--dp-clip needs --dp-noise Z (noise multiplier) or --dp-epsilon E")
    for flag, value in (
        ("--dp-noise", config.dp_noise),
        ("--dp-epsilon", config.dp_epsilon),
        ("--dp-delta", config.dp_delta),
    ):
        if value is not None and not dp:
            raise FLError(f"{flag} needs --dp-clip C (a norm, or 'adaptive')")
    if config.dp_noise is not None and not config.dp_noise >= 0:
        raise FLError(f"--dp-noise {config.dp_noise} must be >= 0, e.g. 1.0")
    if config.dp_epsilon is not None and not config.dp_epsilon > 0:
        raise FLError(f"--dp-epsilon {config.dp_epsilon} must be > 0, e.g. 2")
    if config.dp_delta is not None and not 0 < config.dp_delta < 1:
        raise FLError(f"--dp-delta {config.dp_delta} must be in (0, 1), e.g. 1e-5")
    if config.dp_accountant not in ACCOUNTANTS:
        raise FLError(f"--dp-accountant {config.dp_accountant!r}: choose rdp or pld")
    if config.aggregator not in AGGREGATORS:
        raise FLError(
            f"unknown --aggregator {config.aggregator!r}; choose one of: {', '.join(AGGREGATORS)}"
        )
    robust = config.aggregator != "mean"
    if robust and dp:
        raise FLError(
            f"--aggregator {config.aggregator} with DP: the privacy accounting holds for the "
            "noised mean only; drop --aggregator or --dp-clip"
        )
    if robust and config.secure_agg:
        raise FLError(
            f"--aggregator {config.aggregator} with --secure-agg: the server sees only the sum "
            "of the updates; drop one of them"
        )
    if config.secagg_threshold is not None:
        if not config.secure_agg:
            raise FLError("--secagg-threshold needs --secure-agg")
        if config.secagg_threshold < 2:
            raise FLError(f"--secagg-threshold {config.secagg_threshold} must be at least 2")
    if config.attack is not None:
        check_attack(config.attack)
    if (config.attack is None) != (config.malicious is None):
        raise FLError(
            "--attack and --malicious F go together (e.g. --attack signflip --malicious 0.2)"
        )
    if config.malicious is not None and not 0 < config.malicious < 1:
        raise FLError(f"--malicious {config.malicious} must be a fraction in (0, 1), e.g. 0.2")
    check_strength(config.attack, config.attack_strength)
    byzantine = config.byzantine
    if byzantine is not None and not robust:
        raise FLError(
            f"--byzantine {byzantine} is what a robust --aggregator tolerates; give one (e.g. "
            "--aggregator krum) or drop --byzantine"
        )
    if byzantine is not None and not 0 <= byzantine < 0.5:
        raise FLError(f"--byzantine {byzantine} must be in [0, 0.5), e.g. 0.2")
    if robust and config.malicious is not None and config.malicious >= 0.5:
        raise FLError(
            f"--malicious {config.malicious} with --aggregator {config.aggregator}: no robust "
            "aggregator tolerates half the clients or more; use --malicious below 0.5"
        )
    if not 0 <= config.dropout < 1:
        raise FLError(f"--dropout {config.dropout} must be in [0, 1), e.g. 0.1")
    return clip
