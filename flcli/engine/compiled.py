"""Whether a run trains with its model's compiled steps, and loading them while the run starts.

A model's fused steps (sgd_steps, sgd_step: numba) cost a process about half a second of CPU the
first time it takes one, even with numba's cache warm: importing numba (and scipy.linalg, which
numba imports), then loading the kernels' machine code; 1-1.5 s of wall time on a busy machine.
That is more than the whole local training of a small run of a linear model, which then trains
faster with its NumPy steps. So a model that declares fused_for_long_runs (the linear models)
takes its fused steps only in a run whose local training would keep the NumPy steps busy for
longer than PAYS_AFTER_S, as estimated from its config and partition alone: the choice, and with
it the run's last bits (the two paths agree to rounding), is the same on every machine and
backend and after --resume. Any other model with fused steps (the MLP, whose NumPy step is slow)
always takes them. A run that takes them starts loading them in a background thread as soon as it
is assembled, while round 0 is evaluated.
"""

import threading

import numpy as np

from flcli.models.base import Batches, capabilities_of

NUMPY_STEP_S = 75e-6  # what a NumPy step costs beyond its arithmetic, whatever its clients
NUMPY_FLOPS = 2.5e9  # the NumPy steps' arithmetic on small clients (benchmarks/smallclients.py)
PAYS_AFTER_S = 2.0  # a few times what loading the compiled steps costs


def numpy_seconds(num_params: int, sizes: np.ndarray, cohort: int, config) -> float:
    """The seconds a run's NumPy steps would take, roughly: each round steps as long as the
    largest client does (NUMPY_STEP_S a step), and 6 P FLOPs per sample each epoch (the forward
    and backward pass of a dense model)."""
    batch = max(1, min(config.batch_size, int(sizes.max())))
    steps = config.local_epochs * -(-int(sizes.max()) // batch)
    visits = config.local_epochs * cohort * float(sizes.mean())
    per_round = steps * NUMPY_STEP_S + 6 * num_params * visits / NUMPY_FLOPS
    return config.rounds * per_round


def takes_compiled_steps(model, sizes: np.ndarray, cohort: int, config) -> bool:
    """Whether a run of config on clients of these sizes, cohort per round, trains with the
    model's compiled steps where it has them."""
    if not capabilities_of(model).fused_for_long_runs or not len(sizes):
        return True
    return numpy_seconds(model.num_params, sizes, cohort, config) > PAYS_AFTER_S


def start_loading(model, x: np.ndarray, y: np.ndarray) -> threading.Thread:
    """Loads the model's sgd_steps for training on x and y (numba's import, the kernel's machine
    code from its cache, or its compilation the first time) in a daemon thread: one step of one
    client on a row of x, into a scratch copy of no one's parameters."""
    thread = threading.Thread(target=take_one_step, args=(model, x, y), daemon=True)
    thread.start()
    return thread


def take_one_step(model, x: np.ndarray, y: np.ndarray) -> None:
    from flcli.models.workspace import Workspace

    W = np.zeros((1, model.num_params), dtype=x.dtype)
    one = np.ones(1, dtype=np.int64)
    batches = Batches(np.zeros(1, dtype=np.int64), one - 1, one, one, 1)
    model.sgd_steps(W, x, y, batches, 0.0, None, Workspace())
