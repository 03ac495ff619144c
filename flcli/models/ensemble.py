"""scikit-learn classifiers without parameters to average (RandomForestClassifier,
HistGradientBoostingClassifier, KNeighborsClassifier, any classifier without coef_/coefs_).

Such a model is not a point in a parameter space: a client fits its own estimator on its shard and
the federation combines fitted estimators, through --algo feddist (an ensemble distilled into a
student) or --algo fedbag (the ensemble votes). A fitted estimator is a "member"; the global model
of fedbag is a list of members and its class probabilities are the soft vote

    p(y | x) = (1 / M) sum_m p_m(y | x),

each member's predict_proba laid out over all the federation's classes (a class a client never saw
gets probability 0 from its member). An empty list votes uniformly (the untrained model of round 0).
"""

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.dummy import DummyClassifier

from flcli.errors import RunFailed
from flcli.models.base import Capabilities


class FittedClassifiers:
    """Fits one scikit-learn classifier per client and soft-votes lists of them."""

    capabilities = Capabilities(trains="fitted_members")  # only feddist and fedbag accept it
    task = "classification"

    def __init__(self, template, num_features: int, num_classes: int):
        self.template = template  # unfitted, with the --model-arg values
        self.num_features = num_features
        self.num_classes = num_classes
        self.name = f"sklearn:{type(template).__name__}"

    def fit(self, x: np.ndarray, y: np.ndarray, random_state: int):
        """A member fitted on (x, y). A shard of one class gives the constant classifier of that
        class (many estimators refuse a single class); a k-nearest-neighbours member looks at
        no more neighbours than the shard holds."""
        if len(np.unique(y)) == 1:
            return DummyClassifier(strategy="prior").fit(x, y)
        estimator = clone(self.template)
        params = estimator.get_params()
        if "random_state" in params:
            estimator.set_params(random_state=random_state)
        if isinstance(params.get("n_neighbors"), int) and params["n_neighbors"] > len(y):
            estimator.set_params(n_neighbors=len(y))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning and the like on small shards
                return estimator.fit(x, y)
        except ValueError as failure:
            raise RunFailed(f"{self.name} could not fit a client's shard: {failure}") from None

    def member_proba(self, member, X: np.ndarray) -> np.ndarray:
        """[N, num_classes] probabilities of one member, its classes_ placed in their columns."""
        proba = np.zeros((len(X), self.num_classes))
        proba[:, member.classes_.astype(np.int64)] = member.predict_proba(X)
        return proba

    def predict_proba(self, members: list, X: np.ndarray) -> np.ndarray:
        """The soft vote of the members: the mean of their predict_proba."""
        if not members:
            return np.full((len(X), self.num_classes), 1.0 / self.num_classes)
        return sum(self.member_proba(m, X) for m in members) / len(members)

    def predict(self, members: list, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(members, X).argmax(axis=1)


def has_parameters(fitted) -> bool:
    """Whether a fitted estimator exposes parameters to average (coef_ or coefs_)."""
    return hasattr(fitted, "coef_") or hasattr(fitted, "coefs_")
