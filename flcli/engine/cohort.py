"""Vectorized local SGD: a whole cohort of clients trains at once.

Each client walks its own permutation per epoch in batches of B. A model with sgd_steps (the
dense models, compiled) takes every step of a chunk of clients in one call, each client walking
its own rows, when the algorithm asks for plain SGD with at most a linear correction (pull and
shift): no Python runs between steps, and a client with many steps costs only its arithmetic.
Otherwise at step s every client still training contributes one [B] block of row indices, so a
step is one cohort-wide loss_grad on a [K, B] block of rows (gathered for several steps at once),
or, for a model with an sgd_step, one compiled call that takes the whole step. Clients of
different sizes are handled with a mask: a short last batch masks its missing slots, and a client
that has finished its steps (its epochs, or a straggler's smaller budget) drops out of the step.

A step is a stack of small per-client matrix products, which multithreaded BLAS runs badly (it
wakes its threads for every small product): BLAS is held to one thread, and the cohort is cut into
chunks of clients small enough for their parameters to stay in cache, trained in threads (NumPy
releases the GIL in its kernels). A step costs a few dozen NumPy calls whatever the chunk's size,
so they are kept few. Each client's arithmetic is the same whatever the chunking, so the results
are too.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

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
from flcli.engine.local import (
    Cohort,
    CohortResult,
    compiled_epoch_rows,
    epoch_orders,
    order_starts,
)
from flcli.models.base import Batches, LinearCorrection, capabilities_of
from flcli.models.workspace import WorkspacePool

MIN_CHUNK = 32  # clients per thread, below which threads cost more than they save
MIN_WORK = 20_000_000  # nor a thread for less work than this (a few ms of arithmetic)
MIN_WORK_AT_ONCE = 10_000_000  # the same when a chunk takes all its steps in one compiled call
CACHE_BYTES = 4 * 2**20  # parameters + gradients of a chunk of clients: what stays in cache
MIN_PIECE = 8  # clients per chunk, below which NumPy's per-call overhead dominates a step
PIECES = 4  # chunks per thread when a chunk takes all its steps at once
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
    compiled: bool = True,
) -> CohortResult:
    """Local SGD of every client of the cohort from w_global (or work.start); threads None uses
    one per available core (backends that already run one process per core pass 1). The local
    models go into out [K, P] when given (the process backend's shared file), else a new array;
    the trained work.carry likewise into carry_out. compiled: take the model's fused steps where
    it has them (False: loss_grad throughout).

    Every step is spec.batch_size wide (short batches are masked): give a batch size no larger
    than the largest shard (run_rounds does), not the cohort's largest, which depends on who was
    sampled."""
    work = work or LocalWork()
    size = len(cohort.ids)
    work_size = int(cohort.sizes.sum()) * spec.epochs * model.num_params  # ~ multiply-adds
    at_once = compiled and takes_all_steps_at_once(model, work)
    fewest = 1 if capabilities_of(model).heavy_clients else MIN_CHUNK  # clients per thread
    threads = thread_count(threads or default_threads(), size, work_size, at_once, fewest)
    params = np.empty((size, model.num_params), dtype=x.dtype) if out is None else out
    carry = carry_out
    if carry is None and work.carry is not None:
        carry = np.empty(work.carry.shape, dtype=x.dtype)
    cuts = chunk_cuts(model, x, cohort, spec, work, threads, at_once)
    # NumPy's BLAS serves the step loop only: the compiled steps hold their own to one thread
    with nullcontext() if at_once else one_blas_thread():
        if len(cuts) == 1:
            args = (w_global, spec, seed, round, work, params, carry, compiled)
            return train_chunk(model, x, y, cohort, *args)
        num_steps = np.empty(size, dtype=np.int64)

        def train(index: slice) -> None:
            chunk, chunk_work = cohort.chunk(index), work.chunk(index)
            chunk_carry = None if carry is None else carry[index]
            args = (w_global, spec, seed, round, chunk_work, params[index], chunk_carry, compiled)
            num_steps[index] = train_chunk(model, x, y, chunk, *args).num_steps

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(train, cuts))
    return CohortResult(params=params, num_steps=num_steps, carry=carry)


def thread_count(threads: int, size: int, work_size: int, at_once: bool, fewest: int) -> int:
    """At most `threads` threads for a cohort of `size` clients and work_size multiply-adds, at
    least `fewest` clients each in the step loop."""
    if at_once:  # a thread costs only its start: no Python runs between the steps
        return max(1, min(threads, size, work_size // MIN_WORK_AT_ONCE))
    return max(1, min(threads, size // fewest, work_size // MIN_WORK))


def chunk_cuts(model, x, cohort: Cohort, spec: LocalSpec, work: LocalWork, threads, at_once):
    """The chunks of the cohort, trained in turn by `threads` threads.

    Step by step, clients are independent through all their local steps, so a chunk of them can
    run every step before the next chunk starts: chunks sized so that their parameters and
    gradients stay in cache, as many per thread, so that the threads finish together. All steps
    at once (at_once), a client's work is its steps, and a few large clients would keep one
    thread busy after the others finish: PIECES chunks per thread of about equal steps, the
    largest first."""
    size = len(cohort.ids)
    if at_once:
        if threads == 1:
            return [slice(0, size)]
        batch = int(min(spec.batch_size, len(x)))
        steps = work.step_counts(cohort.sizes, batch, spec.epochs)
        return balanced_cuts(steps, threads * PIECES)
    per_client = 2 * model.num_params * x.dtype.itemsize
    chunks_per_thread = -(-size // (threads * max(MIN_PIECE, CACHE_BYTES // per_client)))
    pieces = threads * chunks_per_thread  # the threads finish together
    return [slice(part[0], part[-1] + 1) for part in chunk_indices(size, pieces)]


def balanced_cuts(weights: np.ndarray, pieces: int) -> list[slice]:
    """Up to `pieces` contiguous, non-empty slices of about equal total weight, heaviest first."""
    total = np.cumsum(weights)
    targets = total[-1] * np.arange(1, pieces) / pieces
    inner = np.searchsorted(total, targets, side="right")
    bounds = np.unique(np.concatenate([[0], inner, [len(weights)]]))
    cuts = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    return sorted(cuts, key=lambda cut: -int(weights[cut].sum()))


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
    compiled: bool = True,
) -> CohortResult:
    """train_cohort for one chunk of clients, in one thread: their local models go into out (and
    their trained work.carry into carry_out)."""
    w_global = np.asarray(w_global, dtype=x.dtype)  # the data's dtype is the compute dtype
    sizes = cohort.sizes
    # Every step is spec.batch_size wide, whatever the chunk holds: a narrower block (a chunk of
    # small clients) would change how BLAS sums over the batch, and so the clients' last bits.
    batch = int(min(spec.batch_size, len(x)))
    total_steps = work.step_counts(sizes, batch, spec.epochs)
    out[...] = w_global if work.start is None else work.start
    if compiled and takes_all_steps_at_once(model, work):
        rows = compiled_epoch_rows(seed, round, cohort, spec.epochs)
        batches = Batches(rows, order_starts(sizes, spec.epochs), sizes, total_steps, batch)
        with WORKSPACES.borrow() as space:
            correction = LinearCorrection(work.pull, w_global, work.shift)
            model.sgd_steps(out, x, y, batches, spec.lr, correction, space)
        return CohortResult(params=out, num_steps=total_steps)
    orders = epoch_orders(seed, round, cohort.ids, sizes, spec.epochs)
    orders += np.repeat(cohort.starts, sizes * spec.epochs)  # rows of x, not positions in a shard
    plan = BatchPlan(orders, sizes, batch, spec.epochs)
    fused = compiled and capabilities_of(model).fused_step
    args = (plan, total_steps, w_global, spec, work, out, carry_out, fused)
    carry = step_by_step(model, x, y, *args)
    return CohortResult(params=out, num_steps=total_steps, carry=carry)


def takes_all_steps_at_once(model, work: LocalWork) -> bool:
    """Whether the model's sgd_steps can take the whole of this work: its plain SGD steps with at
    most a linear correction (pull and shift)."""
    plain = work.step is None and work.correction is None and work.frozen is None
    return plain and capabilities_of(model).fused_steps


def step_by_step(
    model,
    x: np.ndarray,
    y: np.ndarray,
    plan: "BatchPlan",
    total_steps: np.ndarray,
    w_global: np.ndarray,
    spec: LocalSpec,
    work: LocalWork,
    W: np.ndarray,
    carry_out: np.ndarray | None,
    fused: bool,
) -> np.ndarray | None:
    """The chunk's local steps one at a time from W, which they update (and carry_out, the trained
    work.carry, returned), each a cohort-wide loss_grad (or the model's fused sgd_step) over the
    clients still training. fused: the model's sgd_step takes the steps."""
    everyone = np.arange(len(total_steps))
    # The clients still training and their parameters: W_active is W itself until someone
    # finishes, then a compact copy written back to W only when the active set changes.
    active, W_active, inputs, shift = everyone, W, work.inputs, work.shift
    C = C_active = carry_out  # the carry, kept as W is
    if C is not None:
        C[...] = work.carry
    frozen = frozen_index(work)
    held = None if frozen is None else W[:, frozen]  # fancy indexing: a copy
    held_active = held
    step_bytes = len(total_steps) * plan.batch * x.shape[1] * x.dtype.itemsize
    fused = fused or work.step is not None  # (or the algorithm takes the step): no gradient buffer
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
    return C


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
        self.base = order_starts(sizes, epochs)  # where each client's orders start

    def rows(self, clients: np.ndarray, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows of x [S, A, B], valid slots [S, A, B]) of steps first..stop-1 of these clients."""
        n = self.sizes[clients]
        epoch, within = np.divmod(np.arange(first, stop)[:, None], self.per_epoch[clients])
        position = within[..., None] * self.batch + np.arange(self.batch)  # in the epoch's order
        valid = position < n[:, None]
        start = self.base[clients] + epoch * n  # where this epoch's order starts in orders
        return self.orders[start[..., None] + np.minimum(position, n[:, None] - 1)], valid
