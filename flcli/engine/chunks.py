"""Splitting a cohort into chunks for worker processes, and joining their results.

Every chunk is trained by the same vectorized trainer (train_cohort). A client's batches are
addressed by (seed, round, client) and each client's rows of the step are computed independently,
so the joined result is the same, bit for bit, as training the whole cohort at once.
"""

import numpy as np

from flcli.algorithms.work import LocalWork
from flcli.engine.local import Cohort, CohortResult


def chunk_indices(cohort_size: int, chunks: int) -> list[np.ndarray]:
    """Up to `chunks` contiguous, non-empty index ranges covering the cohort."""
    return [part for part in np.array_split(np.arange(cohort_size), chunks) if len(part)]


def join(results: list[CohortResult]) -> CohortResult:
    return CohortResult(
        params=np.concatenate([r.params for r in results]),
        num_steps=np.concatenate([r.num_steps for r in results]),
        carry=None if results[0].carry is None else np.concatenate([r.carry for r in results]),
    )


def chunks_of(
    cohort: Cohort, work: LocalWork | None, chunks: int
) -> list[tuple[slice, Cohort, LocalWork | None]]:
    """The cohort and the algorithm's per-client work, cut into the same chunks: (the chunk's
    positions in the cohort, its clients, their work)."""
    return [
        (
            slice(index[0], index[-1] + 1),
            cohort.chunk(index),
            None if work is None else work.chunk(index),
        )
        for index in chunk_indices(len(cohort.ids), chunks)
    ]
