"""--algo names -> factories, with the paper, when to use each, and the hyperparameters each takes.

`factory` builds the algorithm for parametric models (a flat parameter vector); `ensemble_factory`
for scikit-learn classifiers without parameters to average (flcli.models.ensemble); None where the
algorithm cannot take such models.

`defaults` lists every hyperparameter (a TrainConfig field) the algorithm accepts, with its
default; a callable default is computed from the config (Ditto: personal epochs = local epochs).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flcli.algorithms.base import Algorithm, Context, EnsembleAlgorithm
from flcli.algorithms.fedavg import fedavg
from flcli.algorithms.fedbag import fedbag
from flcli.algorithms.feddf import feddist
from flcli.algorithms.feddf_fitted import feddist_fitted
from flcli.algorithms.feddyn import feddyn
from flcli.algorithms.fednova import fednova
from flcli.algorithms.fedopt import fedadagrad, fedadam, fedavgm, fedyogi
from flcli.algorithms.fedprox import fedprox
from flcli.algorithms.fedsgd import fedsgd
from flcli.algorithms.personal import ditto, fedavglu
from flcli.algorithms.qfedavg import qfedavg
from flcli.algorithms.scaffold import scaffold
from flcli.errors import FLError
from flcli.models.base import capabilities_of


@dataclass(frozen=True)
class AlgorithmInfo:
    factory: Callable[..., Algorithm] | None
    paper: str
    use_when: str
    defaults: dict[str, Any] = field(default_factory=dict)
    drop_stragglers: bool = False  # what it does with stragglers unless told
    personalizes: bool = False  # needs clients' local test splits; logs personal_accuracy
    ensemble_factory: Callable[..., EnsembleAlgorithm] | None = None
    # What the server update reads of single clients besides updates.aggregate, if anything:
    # DP, secure aggregation and robust aggregators replace only the aggregate, so they are
    # refused for an algorithm that reads more.
    reads_clients: str | None = None
    # Why scikit-learn estimators, which train through their own fit, cannot run it, if so; or
    # why with them it only approximates its paper.
    refuses_estimators: str | None = None
    approximate_with_estimators: str | None = None

    @property
    def description(self) -> str:
        return f"{self.paper}: {self.use_when}{self.models}"

    @property
    def models(self) -> str:
        if self.factory is None:
            return " (models without parameters to average only)"
        if self.ensemble_factory is not None:
            return " (also models without parameters to average)"
        return ""


ADAPTIVE = {"server_lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}
STEP_SIZE_CAVEAT = (
    "its server divides by the local step --lr, which a scikit-learn estimator does not take (it "
    "steps on its own schedule): the run only approximates the paper"
)

ALGORITHMS = {
    "fedavg": AlgorithmInfo(
        fedavg,
        "McMahan et al. 2017",
        "weighted mean of locally trained models; the baseline to beat (drops stragglers)",
        drop_stragglers=True,
    ),
    "fedsgd": AlgorithmInfo(
        fedsgd,
        "McMahan et al. 2017",
        "one full-batch gradient per client, a server step; the no-local-work reference",
        {"server_lr": 0.5},
        refuses_estimators="needs one full-batch gradient step per client, which an estimator's "
        "own fit does not take",
    ),
    "fedprox": AlgorithmInfo(
        fedprox,
        "Li et al. 2020 (FedProx)",
        "proximal term --mu keeps local models near the global one; non-IID data, stragglers",
        {"mu": 0.01},
    ),
    "scaffold": AlgorithmInfo(
        scaffold,
        "Karimireddy et al. 2020 (SCAFFOLD)",
        "control variates cancel client drift; strong label skew, many local steps",
        {"server_lr": 1.0},
        reads_clients="each client's update to set its control variate",
        approximate_with_estimators=STEP_SIZE_CAVEAT,
    ),
    "fednova": AlgorithmInfo(
        fednova,
        "Wang et al. 2020 (FedNova)",
        "averages updates normalized by local steps; clients doing unequal work",
        reads_clients="each client's step count to normalize its update",
    ),
    "fedavgm": AlgorithmInfo(
        fedavgm,
        "Hsu et al. 2019 (FedAvgM)",
        "server momentum --server-momentum on the averaged update; non-IID, partial sampling",
        {"server_lr": 1.0, "server_momentum": 0.9},
    ),
    "fedadagrad": AlgorithmInfo(
        fedadagrad,
        "Reddi et al. 2021 (FedOpt)",
        "Adagrad on the server; sparse or rarely seen features",
        {"server_lr": 0.3, "beta1": 0.9, "tau": 1e-3},
    ),
    "fedadam": AlgorithmInfo(
        fedadam,
        "Reddi et al. 2021 (FedOpt)",
        "Adam on the server; less tuning of the client --lr, heterogeneous data",
        dict(ADAPTIVE),
    ),
    "fedyogi": AlgorithmInfo(
        fedyogi,
        "Reddi et al. 2021 (FedOpt)",
        "Yogi on the server; like fedadam with a steadier effective step",
        dict(ADAPTIVE),
    ),
    "feddyn": AlgorithmInfo(
        feddyn,
        "Acar et al. 2021 (FedDyn)",
        "dynamic regularization --alpha-dyn aligns local and global optima; full participation",
        {"alpha_dyn": 0.01},
        reads_clients="each client's update for its gradient state and the uniform mean",
        approximate_with_estimators=STEP_SIZE_CAVEAT,
    ),
    "qfedavg": AlgorithmInfo(
        qfedavg,
        "Li et al. 2020 (q-FFL)",
        "weighs clients with a high loss more (--q); when the worst clients matter (fairness)",
        {"q": 0.1},
        reads_clients="each client's loss and update norm",
        approximate_with_estimators=STEP_SIZE_CAVEAT,
    ),
    "ditto": AlgorithmInfo(
        ditto,
        "Li et al. 2021 (Ditto)",
        "a personal model per client pulled to the global one by --lambda; personalization",
        {"lam": 0.1, "personal_epochs": lambda config: config.local_epochs},
        personalizes=True,
    ),
    "feddist": AlgorithmInfo(
        feddist,
        "Lin et al. 2020 (FedDF)",
        "averages, then distills the clients' ensemble on a proxy set; models hard to average",
        {"temperature": 1.0, "distill_steps": 50, "proxy_fraction": 0.1},
        reads_clients="each client's model to distill their ensemble",
        ensemble_factory=feddist_fitted,
    ),
    "fedbag": AlgorithmInfo(
        None,
        "bagging, after Flower's FedXgbBagging",
        "the soft vote of the clients' fitted estimators (sklearn:RandomForestClassifier, ...)",
        ensemble_factory=fedbag,
        reads_clients="each client's fitted estimator to let them vote",
    ),
    "fedavglu": AlgorithmInfo(
        fedavglu,
        "FedAvg with a local update",
        "each client fine-tunes the global model (--personal-epochs); cheap personalization",
        {"personal_epochs": 1},
        personalizes=True,
    ),
}


def algorithm_info(name: str) -> AlgorithmInfo:
    if name not in ALGORITHMS:
        raise FLError(f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def make_algorithm(
    name: str, hyperparameters: dict[str, Any], context: Context
) -> Algorithm | EnsembleAlgorithm:
    """The algorithm `name` with its hyperparameters (already resolved and validated), in its
    parametric or its ensemble form as the model requires; FLError when it takes no such model."""
    info = algorithm_info(name)
    if capabilities_of(context.model).parametric:
        if info.factory is None:
            raise FLError(
                f"--algo {name} combines models without parameters to average; use it with "
                "e.g. --model sklearn:RandomForestClassifier, or choose --algo fedavg"
            )
        return info.factory(context, **hyperparameters)
    if info.ensemble_factory is None:
        takes = [other for other, i in ALGORITHMS.items() if i.ensemble_factory is not None]
        raise FLError(
            f"--model {context.model.name} has no parameters to average, so --algo {name} "
            f"cannot combine it; use --algo {' or --algo '.join(takes)}"
        )
    return info.ensemble_factory(context, **hyperparameters)
