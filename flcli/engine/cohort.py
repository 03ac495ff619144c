"""Vectorized local SGD: a whole cohort of clients trains at once.

Each client walks its own permutation per epoch in batches of B; at step s every client still
training contributes one [B] block of row indices, so a step is a single [K, B] gather and one
cohort-wide loss_grad. Clients of different sizes are handled with a mask: a short last batch masks
its missing slots, and a client that has finished its steps (its epochs, or a straggler's smaller
budget) drops out of the step.

A step is a stack of small per-client matrix products, which multithreaded BLAS runs badly (it
wakes its threads for every small product): BLAS is held to one thread, and a large cohort is cut
into one chunk of clients per core, trained in threads (NumPy releases the GIL in its kernels).
Each client's arithmetic is the same whatever the chunking, so the results are too.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from flcli.engine.blas import one_blas_thread
from flcli.engine.chunks import chunk_indices
from flcli.engine.local import (
    Cohort,
    CohortResult,
    LocalSpec,
    LocalWork,
    epoch_orders,
    steps_per_epoch,
)
from flcli.models.workspace import WorkspacePool

MIN_CHUNK = 32  # clients per thread, below which threads cost more than they save
MIN_WORK = 20_000_000  # nor a thread for less work than this (a few ms of arithmetic)
CACHE_BYTES = 8 * 2**20  # parameters + gradients of a chunk of clients: a share of the L3 cache
WORKSPACES = WorkspacePool()  # scratch arrays kept from one chunk, and one round, to the next


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def train_cohort(
    model,
    x: np.ndarray,
    y: np.ndarray,
    cohort: Cohort,
    w_global: np.ndarray,
    spec: LocalSpec,
    seed: int,
    round: int,
    work: LocalWork | None = None,
    threads: int | None = None,
) -> CohortResult:
    """Local SGD of every client of the cohort from w_global (or work.start); threads None uses
    one per available core (backends that already run one process per core pass 1)."""
    work = work or LocalWork()
    size = len(cohort.ids)
    work_size = int(cohort.sizes.sum()) * spec.epochs * model.num_params  # ~ multiply-adds
    threads = max(1, min(threads or default_threads(), size // MIN_CHUNK, work_size // MIN_WORK))
    # Clients are independent through all their local steps, so a chunk of them can run every
    # step before the next chunk starts: sized so its parameters and gradients stay in cache.
    per_client = 2 * model.num_params * x.dtype.itemsize
    pieces = max(threads, -(-size // max(MIN_CHUNK, CACHE_BYTES // per_client)))
    params = np.empty((size, model.num_params), dtype=x.dtype)
    with one_blas_thread():
        if pieces == 1:
            return train_chunk(model, x, y, cohort, w_global, spec, seed, round, work, params)

        def train(index: slice) -> np.ndarray:
            chunk, chunk_work = cohort.chunk(index), work.chunk(index)
            args = (w_global, spec, seed, round, chunk_work, params[index])
            return train_chunk(model, x, y, chunk, *args).num_steps

        cuts = [slice(part[0], part[-1] + 1) for part in chunk_indices(size, pieces)]
        with ThreadPoolExecutor(threads) as pool:
            num_steps = np.concatenate(list(pool.map(train, cuts)))
    return CohortResult(params=params, num_steps=num_steps)


def train_chunk(
    model,
    x: np.ndarray,
    y: np.ndarray,
    cohort: Cohort,
    w_global: np.ndarray,
    spec: LocalSpec,
    seed: int,
    round: int,
    work: LocalWork,
    out: np.ndarray,
) -> CohortResult:
    """train_cohort for one chunk of clients, in one thread: their local models go into out."""
    w_global = np.asarray(w_global, dtype=x.dtype)  # the data's dtype is the compute dtype
    sizes = cohort.sizes
    batch = int(min(spec.batch_size, sizes.max()))
    per_epoch = steps_per_epoch(sizes, batch)
    total_steps = work.step_counts(sizes, batch, spec.epochs)
    orders = epoch_orders(seed, round, cohort.ids, sizes, spec.epochs)
    orders += np.repeat(cohort.starts, sizes * spec.epochs)  # rows of x, not positions in a shard
    order_base = np.concatenate([[0], np.cumsum(sizes * spec.epochs)[:-1]])
    slots = np.arange(batch)
    W = out
    W[...] = w_global if work.start is None else work.start
    everyone = np.arange(len(sizes))
    # The clients still training and their parameters: W_active is W itself until someone
    # finishes, then a compact copy written back to W only when the active set changes.
    active, W_active, inputs = everyone, W, work.inputs
    with WORKSPACES.borrow() as space:  # the step loop allocates nothing large
        grad = space.array("grad", W.shape, W.dtype)
        for step in range(int(total_steps.max())):
            if step >= total_steps.min() and (active is everyone or step in total_steps):
                still = step < total_steps[active]
                if W_active is not W:
                    W[active] = W_active
                active = active[still]  # changes only when someone finishes
                W_active, grad = W[active], grad[: len(active)]
                inputs = {name: value[active] for name, value in work.inputs.items()}
            n, epoch, within = sizes[active], step // per_epoch[active], step % per_epoch[active]
            position = within[:, None] * batch + slots  # [A, B] position inside the epoch's order
            valid = position < n[:, None]
            # a short last batch repeats the client's last sample in its masked slots
            flat = (order_base[active] + epoch * n)[:, None] + np.minimum(position, n[:, None] - 1)
            rows = orders[flat]
            X = space.array("X", (*rows.shape, *x.shape[1:]), x.dtype)
            np.take(x, rows, axis=0, out=X, mode="clip")  # faster than x[rows]; rows are in range
            Y = np.take(y, rows, axis=0)
            mask = valid.astype(x.dtype)
            model.loss_grad(W_active, X, Y, mask, out=grad, scale=spec.lr, workspace=space)
            if work.correction is not None:
                grad += spec.lr * work.correction(W_active, w_global, **inputs)
            W_active -= grad  # in place: no [K, P] temporaries inside the step loop
    if W_active is not W:
        W[active] = W_active
    return CohortResult(params=W, num_steps=total_steps)
