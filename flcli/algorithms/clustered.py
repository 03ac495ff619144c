"""Clustered FL: the server keeps one model per cluster of clients, and each client trains and is
scored on its cluster's model. Write eta for the local step, n_i for client i's training rows,
F_i for its loss, theta_j for cluster j's model.

- ifca (Ghosh, Chung, Yin, Ramchandran 2020, "An Efficient Framework for Clustered Federated
  Learning", NeurIPS), model averaging variant: the server keeps k models theta_0..theta_{k-1}
  (--clusters k). Each sampled client i computes F_i(theta_j) on its own training rows for every
  j, picks j_i = argmin_j F_i(theta_j) (ties: the lowest j), runs the local epochs of SGD from
  theta_{j_i} and sends its model theta_i'. The server averages per cluster among that round's
  senders: theta_j <- sum_{i: j_i = j} n_i theta_i' / sum_{i: j_i = j} n_i; a cluster nobody
  chose keeps its model. Counting clusters from 0, theta_0 is the model's usual init (from
  rng(seed, INIT, 0, 0)) and theta_j its init from rng(seed, INIT, 0, j): distinct inits, or the
  clusters never separate (a model whose init draws nothing, such as softmax's zeros, is refused
  for k > 1).
- cfl (Sattler, Mueller, Samek 2020, "Clustered Federated Learning: Model-Agnostic Distributed
  Multitask Optimization under Privacy Constraints", IEEE TNNLS): every client starts in one
  cluster; each cluster runs FedAvg, theta_c <- theta_c + sum_{i in c} n_i dtheta_i / n_c, with
  dtheta_i = theta_i' - theta_c. After the update, a cluster c all of whose clients sent updates
  this round is split when it has stalled on a stationary point of the joint loss that is not one
  of its clients': ||sum_i n_i dtheta_i / n_c|| < --eps1 and max_i ||dtheta_i|| > --eps2. Its
  clients are bi-partitioned by the cosine similarities alpha_ij = <dtheta_i, dtheta_j> /
  (||dtheta_i|| ||dtheta_j||) into the paper's optimal bipartition
  argmin_{c1 u c2 = c} max_{i in c1, j in c2} alpha_ij, computed exactly (a maximum spanning tree
  of alpha cut at its weakest edge: single linkage stopped at two clusters). Both halves start
  from theta_c; each is split again in later rounds by the same test (recursively).

What rounds.csv calls the global model (test_accuracy, train_loss, client_accuracy_*) is the model
of the cluster that holds the most clients (ties: the lowest cluster id; every client is in
cluster 0 until it first chooses). personal_accuracy scores each client of the round on its own
cluster's model after the round's update, on its local test split: the clustered accuracy.
Each client's cluster is the per-client array extra["cluster"] [N] (0 until a client first
chooses or splits), in the checkpoint, logged as clients.csv's `cluster` and rounds.csv's
`clusters`.

Memory: ifca keeps [k, P] models and [N] assignments; cfl keeps [N, P] models (a cluster per client
at most, since every split makes a new non-empty cluster) and [N] assignments, N * P floats as
Ditto's personal models.
"""

from functools import partial
from typing import Annotated

import numpy as np

from flcli.algorithms.aggregate import weighted_mean
from flcli.algorithms.base import (
    Algorithm,
    AlgorithmSpec,
    ClientUpdates,
    Context,
    Hyper,
    ServerState,
    Train,
)
from flcli.algorithms.work import LocalWork
from flcli.errors import FLError
from flcli.options import Check
from flcli.rng import Purpose, rng

CLUSTERS = Hyper(
    "Number of cluster models (IFCA's k).",
    Check(lambda v: isinstance(v, int) and 1 <= v <= 1000, "must be an integer in 1..1000, e.g. 2"),
)
EPS1 = Hyper(
    "CFL splits a cluster only when the norm of its mean update is below eps1.",
    Check(lambda v: v > 0, "must be > 0, e.g. 0.4"),
)
EPS2 = Hyper(
    "CFL splits a cluster only when its largest client update norm is above eps2.",
    Check(lambda v: v > 0, "must be > 0, e.g. 1.6"),
)
OWN_WEIGHTS = "it averages each cluster's clients by their training rows itself"
OWN_START = "each client starts from its cluster's model, not from the broadcast one"


def largest(cluster: np.ndarray) -> int:
    """The cluster holding the most clients (ties: the lowest id)."""
    return int(np.bincount(cluster).argmax())


def cluster_models(key: str):
    """client_work and personalize shared by ifca and cfl: client i starts from, and is scored on,
    extra[key][extra["cluster"][i]]."""

    def mine(state: ServerState, ids: np.ndarray) -> np.ndarray:
        return state.extra[key][state.extra["cluster"][ids]]

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(start=mine(state, ids))

    def personalize(before: ServerState, after: ServerState, ids: np.ndarray, train: Train):
        return after, mine(after, ids)

    return client_work, personalize


def lowest_loss(models, state: ServerState, ids, train: Train, losses) -> np.ndarray:
    """A new client's personal model: of the cluster models models(state) [M, P], the one of
    lowest loss on its training rows (as a training client chooses in IFCA; it trains nothing)."""
    candidates = models(state)
    return candidates[losses(candidates).argmin(axis=1)]


def ifca(ctx: Context, clusters: Annotated[int, CLUSTERS] = 2) -> Algorithm:
    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        others = [ctx.model.init(rng(ctx.seed, Purpose.INIT, 0, j)) for j in range(1, clusters)]
        models = np.stack([params, *others]).astype(params.dtype)
        if clusters > 1 and all(np.array_equal(m, params) for m in others):
            raise FLError(
                "--algo ifca needs distinct initial models, and this model's init does not draw "
                "from its random generator (e.g. softmax starts at zero); use --model mlp"
            )
        cluster = np.zeros(num_clients, dtype=np.int64)
        return ServerState(params.copy(), {"models": models, "cluster": cluster})

    def candidates(state: ServerState) -> np.ndarray:
        return state.extra["models"]

    def choose(state: ServerState, ids: np.ndarray, losses: np.ndarray) -> ServerState:
        cluster = state.extra["cluster"].copy()
        cluster[ids] = losses.argmin(axis=1)
        return ServerState(state.params, {**state.extra, "cluster": cluster}, state.uplink)

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        models, cluster = state.extra["models"].copy(), state.extra["cluster"]
        local = state.params + updates.deltas  # each sender's model theta_i'
        chosen = cluster[updates.ids]
        for j in np.unique(chosen):
            members = chosen == j
            models[j] = weighted_mean(local[members], updates.num_samples[members])
        extra = {**state.extra, "models": models}
        return ServerState(models[largest(cluster)].copy(), extra, state.uplink)

    client_work, personalize = cluster_models("models")
    return Algorithm(
        name="ifca",
        server_init=server_init,
        server_update=server_update,
        client_work=client_work,
        personalize=personalize,
        personalize_new=partial(lowest_loss, candidates),
        candidates=candidates,
        choose=choose,
    )


def bipartition(similarity: np.ndarray) -> np.ndarray:
    """[n] bool, True on one part (n >= 2): the bipartition argmin over (c1, c2) of
    max_{i in c1, j in c2} similarity_ij, exactly: a maximum spanning tree of the similarities
    (Prim's) cut at its weakest edge; by the cut property no pair across that cut is more
    similar than the edge, and every bipartition crosses some tree edge at least as similar."""
    n = len(similarity)
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    best, parent = similarity[0].copy(), np.zeros(n, dtype=np.int64)
    edges = []  # (weight, child, parent) in the order Prim adds them
    for _ in range(n - 1):
        child = int(np.flatnonzero(~in_tree)[np.argmax(best[~in_tree])])
        edges.append((best[child], child, int(parent[child])))
        in_tree[child] = True
        closer = ~in_tree & (similarity[child] > best)
        best[closer], parent[closer] = similarity[child][closer], child
    weakest = min(range(n - 1), key=lambda e: edges[e][0])
    part = np.zeros(n, dtype=bool)
    part[edges[weakest][1]] = True
    for _, child, up in edges[weakest + 1 :]:  # Prim adds a child after its parent
        part[child] = part[up]
    return part


def cosine_similarities(deltas: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(deltas, axis=1)
    unit = deltas / np.maximum(norms, np.finfo(np.float64).tiny)[:, None]
    return unit @ unit.T


def split_stalled(cluster: np.ndarray, models: np.ndarray, updates: ClientUpdates, eps1, eps2):
    """cluster with every stalled cluster whose clients all sent split in two (CFL's test), the
    new half taking the lowest unused id and a copy of the cluster's model (models, in place)."""
    cluster = cluster.copy()
    sent_by = cluster[updates.ids]
    for c in np.unique(sent_by):
        members = sent_by == c
        if members.sum() < 2 or members.sum() < np.sum(cluster == c):
            continue
        deltas, weights = updates.deltas[members], updates.num_samples[members]
        mean_norm = np.linalg.norm(weighted_mean(deltas, weights))
        max_norm = np.linalg.norm(deltas, axis=1).max()
        if mean_norm < eps1 and max_norm > eps2:
            part = bipartition(cosine_similarities(deltas))
            new = int(np.setdiff1d(np.arange(len(cluster)), cluster)[0])
            cluster[updates.ids[members][part]] = new
            models[new] = models[c]
    return cluster


def cfl(
    ctx: Context, eps1: Annotated[float, EPS1] = 0.4, eps2: Annotated[float, EPS2] = 1.6
) -> Algorithm:
    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        models = np.tile(params, (num_clients, 1))
        cluster = np.zeros(num_clients, dtype=np.int64)
        return ServerState(params.copy(), {"models": models, "cluster": cluster})

    def server_update(state: ServerState, updates: ClientUpdates) -> ServerState:
        models, cluster = state.extra["models"].copy(), state.extra["cluster"]
        # each sender's update from its own cluster's model (the engine's deltas are from params)
        start = models[cluster[updates.ids]]
        deltas = state.params + updates.deltas - start
        own = ClientUpdates(updates.ids, deltas, updates.num_samples, updates.num_steps)
        sent_by = cluster[updates.ids]
        for c in np.unique(sent_by):
            members = sent_by == c
            models[c] = models[c] + weighted_mean(deltas[members], updates.num_samples[members])
        cluster = split_stalled(cluster, models, own, eps1, eps2)
        extra = {"models": models, "cluster": cluster}
        return ServerState(models[largest(cluster)].copy(), extra, state.uplink)

    def in_use(state: ServerState) -> np.ndarray:
        return state.extra["models"][np.unique(state.extra["cluster"])]

    client_work, personalize = cluster_models("models")
    return Algorithm(
        name="cfl",
        server_init=server_init,
        server_update=server_update,
        client_work=client_work,
        personalize=personalize,
        personalize_new=partial(lowest_loss, in_use),
    )


SPECS = (
    AlgorithmSpec(
        "ifca",
        ifca,
        "Ghosh et al. 2020 (IFCA)",
        "k cluster models (--clusters); each client trains the one with its lowest loss",
        personalizes=True,
        reads_clients="each client's chosen cluster, to average its models per cluster",
        display_name="IFCA",
        refuses_compress_down=OWN_START,
        own_weighting=OWN_WEIGHTS,
    ),
    AlgorithmSpec(
        "cfl",
        cfl,
        "Sattler et al. 2020 (CFL)",
        "FedAvg per cluster; a stalled cluster splits by its clients' update similarities",
        personalizes=True,
        reads_clients="each client's update, to split clusters by their cosine similarities",
        display_name="CFL",
        client_state=1,
        refuses_compress_down=OWN_START,
        own_weighting=OWN_WEIGHTS,
    ),
)
