"""The compiled steps of a dense network (flcli.models.dense_step) as a model calls them: shapes
and rows checked here, since the kernels index raw memory, scratch arrays from the engine's
workspace, and numba imported on first use (`fl --help` and the NumPy path do without it)."""

from dataclasses import dataclass

import numpy as np

from flcli.models.base import Batches, LinearCorrection

HEADS = ("softmax", "sigmoid", "squared")  # dense_step's SOFTMAX, SIGMOID, SQUARED


def kernels():
    """flcli.models.dense_step, its BLAS linked."""
    from flcli.models import dense_step

    dense_step.link_blas()
    return dense_step


@dataclass(frozen=True)
class DenseSteps:
    """The fused local steps of a network of `units` [D, hidden..., outputs] whose parameters are
    each layer's [in + 1, out] block [W; b] in turn, with ReLU between layers and `head`'s loss."""

    units: tuple[int, ...]
    head: str

    @property
    def num_params(self) -> int:
        return sum((a + 1) * b for a, b in zip(self.units[:-1], self.units[1:], strict=True))

    def sgd_step(self, W, X, y, mask, lr, workspace) -> None:
        """W [K, P] -= lr x the gradient of each client's mean loss over its masked batch."""
        clients, batch = X.shape[:2]
        self.check_params(W, clients)
        if X.shape[2:] != (self.units[0],) or not y.shape == mask.shape == (clients, batch):
            raise ValueError(
                f"sgd_step takes X [K, B, {self.units[0]}], y and mask [K, B]: got "
                f"{X.shape}, {y.shape} and {mask.shape}"
            )
        dtype = W.dtype  # the compute dtype is the data's, as in loss_grad
        X, mask = np.ascontiguousarray(X, dtype), np.ascontiguousarray(mask, dtype)
        scratch = self.scratch(batch, dtype, y.dtype, workspace)
        kernels().sgd_step(
            np.asarray(W), X, y, mask, float(lr), self.layout, self.head_code, *scratch
        )

    def sgd_steps(
        self, W, x, y, batches: Batches, lr, correction: LinearCorrection | None, workspace
    ) -> None:
        """Every local step of each client of the chunk (see flcli.models.base.Batches), with the
        correction's pull and shift added to each step's gradient."""
        self.check_params(W, len(batches.steps))
        self.check_batches(x, y, batches, W.dtype)
        dtype, size = W.dtype, W.shape[1]
        correction = correction or LinearCorrection(0.0, np.zeros(size, dtype))
        anchor = np.ascontiguousarray(correction.anchor, dtype)
        shift = correction.shift
        if shift is None:
            shift = np.zeros((0, size))
        elif shift.shape != W.shape:
            raise ValueError(f"the correction's shift is {shift.shape}, not W's {W.shape}")
        factors = np.array([correction.pull, lr], dtype)  # as NumPy multiplies W's dtype by them
        scratch = self.scratch(batches.batch_size, dtype, y.dtype, workspace)
        walk = [np.ascontiguousarray(a, np.int64) for a in (batches.rows, batches.starts)]
        walk += [np.ascontiguousarray(a, np.int64) for a in (batches.sizes, batches.steps)]
        kernels().sgd_steps(
            np.asarray(W), x, y, *walk, int(batches.batch_size), float(lr), self.layout,
            self.head_code, factors,
            np.ascontiguousarray(shift), anchor, *scratch,
            workspace.array("step correction", (size,), np.float64),
        )  # fmt: skip

    @property
    def layout(self) -> np.ndarray:
        return np.array(self.units, dtype=np.int64)

    @property
    def head_code(self) -> int:
        return HEADS.index(self.head)

    def scratch(self, batch: int, dtype, label_dtype, workspace) -> tuple[np.ndarray, ...]:
        """The kernels' scratch: every layer's input, two gradients, a batch's labels and
        weights (float64, as the loss's weights are in NumPy)."""
        every_input = batch * sum(fan_in + 1 for fan_in in self.units[:-1])
        return (
            workspace.array("step inputs", (every_input,), dtype),
            workspace.array("step deltas", (2 * batch * max(self.units[1:]),), dtype),
            workspace.array("step labels", (batch,), label_dtype),
            workspace.array("step weights", (batch,), np.float64),
        )

    def check_params(self, W, clients: int) -> None:
        if W.shape != (clients, self.num_params) or not W.flags.c_contiguous:
            raise ValueError(
                f"the fused steps update W in place: pass a C-contiguous [{clients}, "
                f"{self.num_params}] array, not one of shape {W.shape}"
            )

    def check_batches(self, x, y, batches: Batches, dtype) -> None:
        """What would make sgd_steps read out of bounds, or in the wrong width."""
        if x.dtype != dtype or x.ndim != 2 or x.shape[1] != self.units[0]:
            raise ValueError(
                f"sgd_steps takes x [N, {self.units[0]}] in W's dtype {dtype}: got {x.shape} "
                f"{x.dtype}"
            )
        if not x.flags.c_contiguous or y.shape != (len(x),):
            raise ValueError(f"sgd_steps takes a C-contiguous x and y [{len(x)}]: got {y.shape}")
        rows, starts, sizes, steps = batches.rows, batches.starts, batches.sizes, batches.steps
        if len(rows) and (rows.min() < 0 or rows.max() >= len(x)):
            raise ValueError("a row of batches.rows is not a row of x")
        per_epoch = -(-sizes // max(batches.batch_size, 1))
        epochs = -(-steps // np.maximum(per_epoch, 1))  # the epochs the steps walk into
        outside = (sizes < 1) | (starts < 0) | (starts + epochs * sizes > len(rows))
        if batches.batch_size < 1 or np.any((steps > 0) & outside):
            raise ValueError("batches.steps walk past a client's rows in batches.rows")


class FusedSteps:
    """sgd_step and sgd_steps (flcli.models.base) for a model whose `fused` is its DenseSteps."""

    fused: DenseSteps

    def sgd_step(self, W, X, y, mask, lr, workspace) -> None:
        """W [K, P] -= lr x loss_grad(W, X, y, mask)'s gradient, in place, compiled: the step of
        loss_grad and a subtraction in one pass per client."""
        self.fused.sgd_step(W, X, y, mask, lr, workspace)

    def sgd_steps(self, W, x, y, batches, lr, correction, workspace) -> None:
        """Every local step of a chunk of clients, in place, in one compiled call."""
        self.fused.sgd_steps(W, x, y, batches, lr, correction, workspace)
