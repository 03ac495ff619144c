"""Federated bagging of estimators without parameters to average; `--algo fedbag`.

After Flower's FedXgbBagging strategy (flwr.server.strategy.FedXgbBagging, for boosted trees):
the global model is the union of the trees the clients grew, and it predicts by their vote. Here a
client cannot grow its estimator on top of the global ensemble (a scikit-learn forest or
k-nearest-neighbours model does not continue from someone else's), so each sampled client fits a
fresh estimator on its own shard - bagging in which the bags are the clients' shards - and the
global model is the soft vote of the members, the mean of their predict_proba:

    p(y | x) = (1/M) sum_{c in S} p_c^{(r_c)}(y | x),

S the clients sampled so far and r_c the last round client c was sampled in. A client sampled
again replaces its member, so the ensemble grows as new clients take part and then holds at most
one member per client (memory bounded by --clients, whatever the number of rounds). The members
vote equally, as Flower's appended trees do.

The server state is r_c per client (-1 before its first round), an array: a member is refitted
from (seed, r_c, c) on resume, so a resumed run equals an uninterrupted one and no estimator is
ever pickled to disk.
"""

import numpy as np

from flcli.algorithms.base import AlgorithmSpec, Context, EnsembleAlgorithm, ServerState


def fedbag(ctx: Context) -> EnsembleAlgorithm:
    def server_init(init_rng: np.random.Generator, num_clients: int) -> ServerState:
        never = np.full(num_clients, -1, dtype=np.int64)
        return ServerState(params=np.empty(0), extra={"fitted_round": never})

    def server_update(state: ServerState, round: int, ids: np.ndarray, members: list):
        fitted = state.extra["fitted_round"].copy()
        fitted[ids] = round
        return ServerState(params=state.params, extra={"fitted_round": fitted})

    def voters(state: ServerState) -> np.ndarray:
        fitted = state.extra["fitted_round"]
        clients = np.flatnonzero(fitted >= 0)
        return np.stack([clients, fitted[clients]], axis=1)

    return EnsembleAlgorithm(
        name="fedbag", server_init=server_init, server_update=server_update, voters=voters
    )


SPEC = AlgorithmSpec(
    "fedbag",
    None,
    "bagging, after Flower's FedXgbBagging",
    "the soft vote of the clients' fitted estimators (sklearn:RandomForestClassifier, ...)",
    ensemble_factory=fedbag,
    reads_clients="each client's fitted estimator to let them vote",
    display_name="FedBag",
)
