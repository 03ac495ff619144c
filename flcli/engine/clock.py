"""Synchronous rounds under the simulated clock (flcli.system): who may be sampled, who makes the
deadline, who is kept under over-selection, and how long the round took.

- Only clients available at the round's start are sampled (a fixed-size cohort among them; under
  DP's Poisson sampling, the sampled ones that are available). When nobody is, the round waits for
  the next window to open and samples nobody.
- Over-selection (Bonawitz et al. 2019, "Towards Federated Learning at Scale: System Design",
  section 2.2): F x the cohort is sampled, everyone downloads the model, and the server keeps the
  cohort-size clients that would finish first (ties to the lower id); the others' work is wasted.
- A deadline S (the same paper's reporting window): a client that would finish after S is dropped,
  or, when the algorithm keeps stragglers, does the local steps that fit in S once its download
  and upload are counted (none fit: dropped).
- The round lasts as long as its slowest kept client, or S when someone missed it.
"""

import math
from dataclasses import dataclass

import numpy as np

from flcli.engine.stages import sample_clients
from flcli.system import System


@dataclass(frozen=True)
class Plan:
    index: np.ndarray  # [K] the positions, among the sampled ids, of the clients that train
    budgets: np.ndarray  # [K] local steps each does (below its full budget when the deadline cuts)
    sent: np.ndarray  # [K] whether each sends its update


def sample_available(uplink, system: System, round: int, now: float, over_select: float):
    """(ids sampled among the clients available at now, seconds waited for the first to be)."""
    if system.windows is None and over_select == 1:
        return uplink.sample(round), 0.0
    available = system.available(now)
    if not available.any():
        opening = system.next_opening(now)
        return np.zeros(0, dtype=np.int64), (0.0 if math.isinf(opening) else opening - now)
    sampler = uplink.sampler
    if not hasattr(sampler, "cohort_size"):  # Poisson sampling: keep who is there
        ids = uplink.sample(round)
        return ids[available[ids]], 0.0
    pool = np.flatnonzero(available)
    wanted = min(pool.size, math.ceil(over_select * sampler.cohort_size - 1e-9))
    return pool[sample_clients(sampler.seed, round, pool.size, wanted)], 0.0


def samples_of(steps: np.ndarray, batch_size: int) -> np.ndarray:
    """Samples a device processes in `steps` minibatches of batch_size (FedScale's count)."""
    return np.asarray(steps, dtype=np.float64) * batch_size


def plan_round(
    system: System,
    ids: np.ndarray,
    full_steps: np.ndarray,
    batch_size: int,
    message_bytes: int,
    keep: int,
    deadline: float | None,
    partial: bool,
) -> Plan:
    """Who of the sampled ids trains, for how many steps, and who sends (see the module)."""
    comm = system.seconds(ids, 0, message_bytes, message_bytes)
    busy = comm + samples_of(full_steps, batch_size) / system.compute_sps[ids]
    order = np.lexsort((ids, busy))[:keep]
    chosen = np.sort(order)
    ids, full_steps, comm, busy = ids[chosen], full_steps[chosen], comm[chosen], busy[chosen]
    budgets = np.array(full_steps, dtype=np.int64)
    sent = np.ones(ids.size, dtype=bool)
    if deadline is not None:
        late = busy > deadline
        if partial:
            fit = np.floor((deadline - comm) * system.compute_sps[ids] / batch_size)
            budgets = np.where(late, np.clip(fit, 0, None).astype(np.int64), budgets)
            sent = budgets > 0
        else:
            sent = ~late
    return Plan(chosen, budgets, sent)


def round_seconds(
    system: System,
    ids: np.ndarray,
    steps: np.ndarray,
    batch_size: int,
    sent: np.ndarray,
    bytes_down: int,
    bytes_up: int,
    deadline: float | None,
) -> float:
    """The round's length: its slowest client's download, steps and upload, each client's share
    of the round's counted bytes; the deadline when someone missed it."""
    if not len(ids):
        return 0.0
    up_each = bytes_up / max(int(sent.sum()), 1)
    seconds = system.seconds(ids, samples_of(steps, batch_size), bytes_down / len(ids), 0.0)
    seconds = seconds + np.where(sent, up_each / system.up_bps[ids], 0.0)
    if deadline is not None and not sent.all():
        return deadline
    return float(seconds.max())
