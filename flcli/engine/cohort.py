"""Vectorized local SGD: a whole cohort of clients trains at once.

Each client walks its own permutation per epoch in batches of B; at step s every client still
training contributes one [B] block of row indices, so a step is one cohort-wide loss_grad on a
[K, B] block of rows (gathered for several steps at once), or, for a model with an sgd_step (the
MLP, compiled), one call that takes the whole step. Clients of different sizes are handled
with a mask: a short last batch masks its missing slots, and a client that has finished its steps
(its epochs, or a straggler's smaller budget) drops out of the step.

A step is a stack of small per-client matrix products, which multithreaded BLAS runs badly (it
wakes its threads for every small product): BLAS is held to one thread, and the cohort is cut into
chunks of clients small enough for their parameters to stay in cache, trained in threads (NumPy
releases the GIL in its kernels). A step costs a few dozen NumPy calls whatever the chunk's size,
so they are kept few. Each client's arithmetic is the same whatever the chunking, so the results
are too.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from flcli.algorithms.work import (
    LocalSpec,
    LocalWork,
    correction_at,
    frozen_index,
    steps_per_epoch,
)
from flcli.engine.blas import one_blas_thread
from flcli.engine.chunks import chunk_indices
from flcli.engine.local import Cohort, CohortResult, epoch_orders
from flcli.models.base import capabilities_of
from flcli.models.workspace import WorkspacePool

MIN_CHUNK = 32  # clients per thread, below which threads cost more than they save
MIN_WORK = 20_000_000  # nor a thread for less work than this (a few ms of arithmetic)
CACHE_BYTES = 4 * 2**20  # parameters + gradients of a chunk of clients: what stays in cache
MIN_PIECE = 8  # clients per chunk, below which NumPy's per-call overhead dominates a step
SEGMENT_BYTES = 2**19  # the inputs of this many steps' batches are gathered at once
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
    out: np.ndarray | None = None,
    carry_out: np.ndarray | None = None,
) -> CohortResult:
    """Local SGD of every client of the cohort from w_global (or work.start); threads None uses
    one per available core (backends that already run one process per core pass 1). The local
    models go into out [K, P] when given (the process backend's shared file), else a new array;
    the trained work.carry likewise into carry_out.

    Every step is spec.batch_size wide (short batches are masked): give a batch size no larger
    than the largest shard (run_rounds does), not the cohort's largest, which depends on who was
    sampled."""
    work = work or LocalWork()
    size = len(cohort.ids)
    work_size = int(cohort.sizes.sum()) * spec.epochs * model.num_params  # ~ multiply-adds
    fewest = 1 if capabilities_of(model).heavy_clients else MIN_CHUNK  # clients per thread
    threads = max(1, min(threads or default_threads(), size // fewest, work_size // MIN_WORK))
    # Clients are independent through all their local steps, so a chunk of them can run every
    # step before the next chunk starts: sized so its parameters and gradients stay in cache.
    per_client = 2 * model.num_params * x.dtype.itemsize
    chunks_per_thread = -(-size // (threads * max(MIN_PIECE, CACHE_BYTES // per_client)))
    pieces = threads * chunks_per_thread  # the threads finish together
    params = np.empty((size, model.num_params), dtype=x.dtype) if out is None else out
    carry = carry_out
    if carry is None and work.carry is not None:
        carry = np.empty(work.carry.shape, dtype=x.dtype)
    with one_blas_thread():
        if pieces == 1:
            args = (w_global, spec, seed, round, work, params, carry)
            return train_chunk(model, x, y, cohort, *args)

        def train(index: slice) -> np.ndarray:
            chunk, chunk_work = cohort.chunk(index), work.chunk(index)
            chunk_carry = None if carry is None else carry[index]
            args = (w_global, spec, seed, round, chunk_work, params[index], chunk_carry)
            return train_chunk(model, x, y, chunk, *args).num_steps

        cuts = [slice(part[0], part[-1] + 1) for part in chunk_indices(size, pieces)]
        with ThreadPoolExecutor(threads) as pool:
            num_steps = np.concatenate(list(pool.map(train, cuts)))
    return CohortResult(params=params, num_steps=num_steps, carry=carry)


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
    carry_out: np.ndarray | None = None,
) -> CohortResult:
    """train_cohort for one chunk of clients, in one thread: their local models go into out (and
    their trained work.carry into carry_out)."""
    w_global = np.asarray(w_global, dtype=x.dtype)  # the data's dtype is the compute dtype
    sizes = cohort.sizes
    # Every step is spec.batch_size wide, whatever the chunk holds: a narrower block (a chunk of
    # small clients) would change how BLAS sums over the batch, and so the clients' last bits.
    batch = int(min(spec.batch_size, len(x)))
    total_steps = work.step_counts(sizes, batch, spec.epochs)
    orders = epoch_orders(seed, round, cohort.ids, sizes, spec.epochs)
    orders += np.repeat(cohort.starts, sizes * spec.epochs)  # rows of x, not positions in a shard
    plan = BatchPlan(orders, sizes, batch, spec.epochs)
    W = out
    W[...] = w_global if work.start is None else work.start
    everyone = np.arange(len(sizes))
    # The clients still training and their parameters: W_active is W itself until someone
    # finishes, then a compact copy written back to W only when the active set changes.
    active, W_active, inputs, shift = everyone, W, work.inputs, work.shift
    C = C_active = carry_out  # the carry, kept as W is
    if C is not None:
        C[...] = work.carry
    frozen = frozen_index(work)
    held = None if frozen is None else W[:, frozen]  # fancy indexing: a copy
    held_active = held
    step_bytes = len(sizes) * batch * x.shape[1] * x.dtype.itemsize
    fused = capabilities_of(model).fused_step  # the model takes a whole step at once (compiled)
    fused = fused or work.step is not None  # (or the algorithm does): no gradient buffer
    with WORKSPACES.borrow() as space:  # the step loop allocates nothing large
        grad = None if fused else space.array("grad", W.shape, W.dtype)
        for first, stop in segments(total_steps, max(1, SEGMENT_BYTES // step_bytes)):
            still = total_steps > first
            if still.sum() < len(active):
                if W_active is not W:
                    W[active] = W_active
                    if C is not None:
                        C[active] = C_active
                active = everyone[still]  # changes only when someone finishes
                W_active = W[active]
                C_active = None if C is None else C[active]
                grad = None if fused else grad[: len(active)]
                inputs = {name: value[active] for name, value in work.inputs.items()}
                shift = None if work.shift is None else work.shift[active]
                held_active = None if held is None else held[active]
            rows, mask = plan.rows(active, first, stop)  # [S, A, B] each
            X = space.array("X", (*rows.shape, *x.shape[1:]), x.dtype)
            np.take(x, rows, axis=0, out=X, mode="clip")  # faster than x[rows]; rows are in range
            Y, mask = np.take(y, rows, axis=0), mask.astype(x.dtype)
            for i in range(stop - first):
                correction = correction_at(work, W_active, w_global, inputs, shift)
                if correction is not None:
                    correction = spec.lr * correction
                if work.step is not None:
                    more = inputs if C is None else {**inputs, "carry": C_active}
                    work.step(model, W_active, X[i], Y[i], mask[i], spec.lr, w_global, **more)
                elif fused:
                    model.sgd_step(W_active, X[i], Y[i], mask[i], spec.lr, space)
                else:
                    model.loss_grad(
                        W_active, X[i], Y[i], mask[i], out=grad, scale=spec.lr, workspace=space
                    )
                    W_active -= grad  # in place: no [K, P] temporaries inside the step loop
                if correction is not None:
                    W_active -= correction
                if held_active is not None:
                    W_active[:, frozen] = held_active
    if W_active is not W:
        W[active] = W_active
        if C is not None:
            C[active] = C_active
    return CohortResult(params=W, num_steps=total_steps, carry=C)


def segments(total_steps: np.ndarray, longest: int):
    """(first, stop) step ranges covering every step, at most `longest` long, none spanning a step
    at which a client finishes (so the set of clients still training is constant in each)."""
    ends = np.unique(total_steps)
    first = 0
    for end in ends[ends > 0]:
        for start in range(first, int(end), longest):
            yield start, min(start + longest, int(end))
        first = int(end)


class BatchPlan:
    """Which rows of x each client trains on at each step, gathered for many steps at once.

    Client k walks its own part of orders (one permutation of its rows per epoch) in batches of B;
    a short last batch repeats the client's last sample in its masked slots."""

    def __init__(self, orders: np.ndarray, sizes: np.ndarray, batch: int, epochs: int):
        self.orders, self.sizes, self.batch = orders, sizes, batch
        self.per_epoch = steps_per_epoch(sizes, batch)
        self.base = np.concatenate([[0], np.cumsum(sizes * epochs)[:-1]])  # each client's orders

    def rows(self, clients: np.ndarray, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows of x [S, A, B], valid slots [S, A, B]) of steps first..stop-1 of these clients."""
        n = self.sizes[clients]
        epoch, within = np.divmod(np.arange(first, stop)[:, None], self.per_epoch[clients])
        position = within[..., None] * self.batch + np.arange(self.batch)  # in the epoch's order
        valid = position < n[:, None]
        start = self.base[clients] + epoch * n  # where this epoch's order starts in orders
        return self.orders[start[..., None] + np.minimum(position, n[:, None] - 1)], valid
