"""Head/body splits: the model's last layer is the head (model.head_slice(), capability
splits_head), the layers before it the body; one part is shared through the server, the other is
personal. Write phi for the body, h for the head, eta for the local step, F_k for client k's loss.

- fedper (Arivazhagan, Aggarwal, Singh, Choudhary 2019, "Federated Learning with Personalization
  Layers", arXiv:1912.00818): client k starts from (phi_t, h_k), trains both jointly for the local
  epochs, keeps its head h_k <- h_k' and sends only its body; phi_{t+1} = sum_k n_k phi_k' / n.
  The head never leaves the client. Personal model: (phi_{t+1}, h_k).
- lg-fedavg (Liang, Liu, Ziyin, Allen, Auerbach, Brent, Salakhutdinov, Morency 2020, "Think
  Locally, Act Globally: Federated Learning with Local and Global Representations",
  arXiv:2001.01523): the mirror image: the local representation (the body) stays on the client,
  the head is global: client k starts from (phi_k, h_t), trains both, keeps phi_k <- phi_k', sends
  its head; h_{t+1} = sum_k n_k h_k' / n. Personal model: (phi_k, h_{t+1}).
- fedrep (Collins, Hassani, Mokhtari, Shakkottai 2021, "Exploiting Shared Representations for
  Personalized Federated Learning", ICML): client k first trains its head alone on the received
  body for --head-epochs, h_k <- h_k - eta grad_h F_k(phi_t, h_k), then the body alone with that
  head for the local epochs, phi <- phi - eta grad_phi F_k(phi, h_k); it keeps h_k and sends the
  body, averaged as in FedAvg. Personal model: (phi_{t+1}, h_k).
- fedbabu (Oh, Kim, Yun 2022, "FedBABU: Toward Enhanced Representation for Federated Image
  Classification", ICLR): the head stays at its random initialisation during federated training
  (only the body trains and is averaged); each client personalizes by fine-tuning the whole new
  global model for --finetune-epochs (default 5, the paper's fine-tuning budget); the fine-tuned
  model is scored, then discarded.

Personal state is [N, |head|] (fedper, fedrep) or [N, |body|] (lg-fedavg) in ServerState.extra,
so it is in the checkpoint and --resume is exact; fedbabu keeps none. For a one-layer model
(softmax, logistic, linear) the head is every parameter and the body is empty: fedper and fedrep
then train each client alone, lg-fedavg is FedAvg, and fedbabu cannot train, so it refuses it.
bytes_up counts whole models (the part a client keeps is sent as zeros).
"""

from dataclasses import replace
from typing import Annotated

import numpy as np

from flcli.algorithms.aggregate import scatter
from flcli.algorithms.base import (
    PERSONAL_EPOCHS,
    Algorithm,
    AlgorithmSpec,
    Context,
    Hyper,
    ServerState,
    Train,
    as_new_clients,
    plain_init,
)
from flcli.algorithms.fedavg import fedavg_update
from flcli.algorithms.work import LocalWork
from flcli.errors import FLError
from flcli.models.base import capabilities_of

HEAD_EPOCHS = Hyper(
    "Epochs of head-only training before the body's (FedRep).", PERSONAL_EPOCHS.check
)
FINETUNE_EPOCHS = Hyper(
    "Epochs each client fine-tunes the whole global model for its personal model.",
    PERSONAL_EPOCHS.check,
)


def head_mask(model, algo: str) -> np.ndarray:
    """[P] bool, True on the model's head; FLError for a model that does not split its head."""
    if not capabilities_of(model).splits_head:
        raise FLError(
            f"--algo {algo} splits the model into a body and a head, and this model does not say "
            "where its head is (Capabilities(splits_head=True) and head_slice()); use --model mlp"
        )
    mask = np.zeros(model.num_params, dtype=bool)
    mask[model.head_slice()] = True
    return mask


def with_part(params: np.ndarray, mask: np.ndarray, part: np.ndarray) -> np.ndarray:
    """[K, P]: the vector params with the coordinates in mask replaced by each row of part."""
    models = np.tile(params, (len(part), 1))
    models[:, mask] = part
    return models


def personal_part(mask: np.ndarray, key: str, epochs: int) -> Algorithm:
    """The state machinery shared by fedper (personal head) and lg-fedavg (personal body): each
    client keeps params[mask] as extra[key], starts from the global model with its own part, and
    sends the rest."""

    def server_init(params: np.ndarray, num_clients: int) -> ServerState:
        return ServerState(params.copy(), {key: np.tile(params[mask], (num_clients, 1))})

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(start=with_part(state.params, mask, state.extra[key][ids]))

    def keep(state: ServerState, ids: np.ndarray, local: np.ndarray) -> ServerState:
        mine = scatter(state.extra[key], ids, local[:, mask])
        return ServerState(state.params, {**state.extra, key: mine}, state.uplink)

    def personalize(before: ServerState, after: ServerState, ids: np.ndarray, train: Train):
        return after, with_part(after.params, mask, after.extra[key][ids])

    def personalize_new(state: ServerState, ids: np.ndarray, train: Train, losses):
        """A new client trains only its personal part, the shared part frozen at the global
        one, for a round's local epochs."""
        return train(state.params, LocalWork(frozen=~mask), epochs).params

    return Algorithm(
        name=key,
        server_init=server_init,
        server_update=fedavg_update,
        client_work=client_work,
        keep=keep,
        sends=~mask,
        personalize=personalize,
        personalize_new=personalize_new,
    )


def fedper(ctx: Context) -> Algorithm:
    head = head_mask(ctx.model, "fedper")
    parts = personal_part(head, "heads", ctx.local_epochs)
    return replace(parts, name="fedper")


def lg_fedavg(ctx: Context) -> Algorithm:
    head = head_mask(ctx.model, "lg-fedavg")
    parts = personal_part(~head, "bodies", ctx.local_epochs)
    return replace(parts, name="lg-fedavg")


def fedrep(ctx: Context, head_epochs: Annotated[int, HEAD_EPOCHS] = 1) -> Algorithm:
    head = head_mask(ctx.model, "fedrep")
    parts = personal_part(head, "heads", ctx.local_epochs)

    def prepare(state: ServerState, ids: np.ndarray, work: LocalWork, train: Train) -> LocalWork:
        head_only = LocalWork(start=work.start, frozen=~head)
        trained = train(state.params, head_only, head_epochs).params
        return LocalWork(start=trained, frozen=head, max_steps=work.max_steps)

    return replace(parts, name="fedrep", prepare=prepare)


def fedbabu(ctx: Context, finetune_epochs: Annotated[int, FINETUNE_EPOCHS] = 5) -> Algorithm:
    head = head_mask(ctx.model, "fedbabu")
    if head.all():
        raise FLError(
            "--algo fedbabu trains only the body, and this model is all head (one layer); use "
            "--model mlp"
        )

    def client_work(state: ServerState, ids: np.ndarray) -> LocalWork:
        return LocalWork(frozen=head)

    def personalize_new(state: ServerState, ids: np.ndarray, train: Train, losses):
        return train(state.params, LocalWork(), finetune_epochs).params

    return Algorithm(
        name="fedbabu",
        server_init=plain_init,
        server_update=fedavg_update,
        client_work=client_work,
        sends=~head,
        personalize=as_new_clients(personalize_new),
        personalize_new=personalize_new,
    )


SPECS = (
    AlgorithmSpec(
        "fedper",
        fedper,
        "Arivazhagan et al. 2019 (FedPer)",
        "shared body, a personal head per client that never leaves it; label-skewed clients",
        personalizes=True,
        display_name="FedPer",
        client_state=1,
    ),
    AlgorithmSpec(
        "lg-fedavg",
        lg_fedavg,
        "Liang et al. 2020 (LG-FedAvg)",
        "personal bodies (local representations), a shared head; personalization",
        personalizes=True,
        display_name="LG-FedAvg",
        client_state=1,
    ),
    AlgorithmSpec(
        "fedrep",
        fedrep,
        "Collins et al. 2021 (FedRep)",
        "shared body; each client fits its head first (--head-epochs), then the body",
        personalizes=True,
        display_name="FedRep",
        client_state=1,
    ),
    AlgorithmSpec(
        "fedbabu",
        fedbabu,
        "Oh et al. 2022 (FedBABU)",
        "body trained with the head frozen at init; clients fine-tune (--finetune-epochs)",
        personalizes=True,
        display_name="FedBABU",
    ),
)
