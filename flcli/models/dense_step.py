"""The local SGD steps of dense networks, compiled: forward, backward and update of each client in
one pass.

A dense network is a stack of affine layers, each one [in + 1, out] block [W; b] of the flat
parameter vector, with ReLU between them, and a head: the MLP, and the linear models as networks
without a hidden layer (softmax regression: units [D, C] and the softmax head; logistic regression
[D, 1] and the sigmoid head; least squares [D, 1] and the squared error).

The NumPy step (loss_grad, then W -= grad) spends more time between its matrix products than in
them: a few dozen NumPy calls per step, each a pass over [K, B, units] arrays. Here numba compiles
the whole step, client after client: the matrix products go to BLAS gemm, whose beta = 1 adds
-(a^T delta) into the weights in place (no gradient array), and the ReLU, the head and the masks
are loops over a client's small batch. sgd_step takes one step of a block of clients; sgd_steps
takes every local step of a chunk of clients in one call, each client walking its own rows of x
with its parameters in cache, so that no Python runs between steps and a client with many steps
costs its arithmetic only. Same arithmetic as the NumPy step up to rounding;
tests/test_dense_step.py and tests/test_mlp_step.py compare the two.

BLAS is OpenBLAS from the scipy-openblas64 package (the build NumPy's wheels ship), called
through its CBLAS symbols and held to one thread: the engine parallelizes over clients.
"""

import ctypes
from functools import cache
from pathlib import Path

import llvmlite.binding
import numpy as np
import scipy_openblas64
from numba import njit, types

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
SGEMM, DGEMM = "scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"  # the ILP64 CBLAS symbols
SOFTMAX, SIGMOID, SQUARED = 0, 1, 2  # the heads: softmax or sigmoid cross-entropy, squared error


def gemm_type(real):
    """cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) with
    64-bit integers; the matrices are passed as addresses."""
    i, enum, address = types.int64, types.int32, types.intp
    return types.void(enum, enum, enum, i, i, i, real, address, i, address, i, real, address, i)


sgemm = types.ExternalFunction(SGEMM, gemm_type(types.float32))
dgemm = types.ExternalFunction(DGEMM, gemm_type(types.float64))


@cache
def link_blas() -> None:
    """Make the gemm symbols known to numba's linker, and BLAS single-threaded."""
    directory = Path(scipy_openblas64.get_lib_dir())
    library = next(
        path
        for path in sorted(directory.iterdir())
        if path.name.startswith("libscipy_openblas") and path.suffix in (".so", ".dylib", ".dll")
    )
    blas = ctypes.CDLL(str(library))
    for name in (SGEMM, DGEMM):
        address = ctypes.cast(getattr(blas, name), ctypes.c_void_p).value
        llvmlite.binding.add_symbol(name, address)
    blas.scipy_openblas_set_num_threads64_(1)


@njit(cache=True, nogil=True)
def gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """c [m, n] = alpha op(a) [m, k] op(b) [k, n] + beta c, row-major, from each array's start."""
    if c.itemsize == 4:
        sgemm(
            ROW_MAJOR, trans_a, trans_b, m, n, k, np.float32(alpha), a.ctypes.data, lda,
            b.ctypes.data, ldb, np.float32(beta), c.ctypes.data, ldc,
        )  # fmt: skip
    else:
        dgemm(
            ROW_MAJOR, trans_a, trans_b, m, n, k, np.float64(alpha), a.ctypes.data, lda,
            b.ctypes.data, ldb, np.float64(beta), c.ctypes.data, ldc,
        )  # fmt: skip


@njit(cache=True, nogil=True)
def client_step(w, inputs, batch, labels, weights, units, head, deltas):
    """One SGD step of one client: w -= the gradient of sum_row weights[row] x loss(row) over its
    batch rows (weights: lr x mask / count).

    inputs starts with the batch's rows of the first layer, each with a last column of ones
    (batch x (units[0] + 1)); each hidden layer's input follows it there. labels: the batch's
    targets. deltas: scratch for two batch x max(units[1:]) gradients."""
    layers = len(units) - 1
    half = deltas.size // 2
    # forward: inputs[l] = [relu(inputs[l - 1] @ block[l - 1]), 1]; outputs into deltas
    block, start = 0, 0
    for layer in range(layers):
        fan_in, fan_out = units[layer], units[layer + 1]
        x = inputs[start:]
        last = layer == layers - 1
        out = deltas if last else inputs[start + batch * (fan_in + 1) :]
        width = fan_out if last else fan_out + 1
        gemm(NO_TRANS, NO_TRANS, batch, fan_out, fan_in + 1, 1.0, x, fan_in + 1,
             w[block:], fan_out, 0.0, out, width)  # fmt: skip
        if not last:
            for row in range(batch):
                for j in range(fan_out):
                    if out[row * width + j] < 0:
                        out[row * width + j] = 0
                out[row * width + fan_out] = 1
            block += (fan_in + 1) * fan_out
            start += batch * (fan_in + 1)
    # the head: d(loss) / d(outputs), times the row's weight, in place of the outputs
    outputs = units[layers]
    for row in range(batch):
        weight = weights[row]
        z = deltas[row * outputs : (row + 1) * outputs]
        if weight == 0:  # a masked slot: what the formulas below give it, without the exps
            z[:] = 0
        elif head == SOFTMAX:
            top = z.max()
            total = 0.0
            for c in range(outputs):
                z[c] = np.exp(z[c] - top)
                total += z[c]
            for c in range(outputs):
                z[c] *= weight / total
            label = np.int64(labels[row])
            if not 0 <= label < outputs:
                raise IndexError("a label is not one of the network's classes")
            z[label] -= weight
        elif head == SIGMOID:
            e = np.exp(-abs(z[0]))
            p = 1 / (1 + e) if z[0] >= 0 else e / (1 + e)
            z[0] = (p - labels[row]) * weight
        else:
            z[0] = 2 * weight * (z[0] - labels[row])
    # backward: the gradient into each layer's input from the old weights, then the update
    dout, spare = deltas[:half], deltas[half:]
    for layer in range(layers - 1, -1, -1):
        fan_in, fan_out = units[layer], units[layer + 1]
        x = inputs[start:]
        if layer:
            gemm(NO_TRANS, TRANS, batch, fan_in, fan_out, 1.0, dout, fan_out,
                 w[block:], fan_out, 0.0, spare, fan_in)  # fmt: skip
            for row in range(batch):  # ReLU's derivative: x is the layer's post-ReLU input
                for j in range(fan_in):
                    if x[row * (fan_in + 1) + j] <= 0:
                        spare[row * fan_in + j] = 0
        gemm(TRANS, NO_TRANS, fan_in + 1, fan_out, batch, -1.0, x, fan_in + 1,
             dout, fan_out, 1.0, w[block:], fan_out)  # fmt: skip
        if layer:
            dout, spare = spare, dout
            block -= (units[layer - 1] + 1) * fan_in
            start -= batch * (units[layer - 1] + 1)


@njit(cache=True, nogil=True)
def sgd_step(W, X, y, mask, lr, units, head, inputs, deltas, labels, weights):
    """One SGD step of each client k: W[k] -= lr x the gradient of its mean loss over its masked
    batch (X[k], y[k], mask[k]).

    units: [D, hidden..., outputs]; W[k] holds each layer's [in + 1, out] block [W; b] in turn.
    inputs: scratch for every layer's input with its column of ones, B (units[l] + 1) each;
    deltas: scratch for two B x max(units[1:]) gradients; labels and weights: B each."""
    num_clients, batch = X.shape[0], X.shape[1]
    fan_in = units[0]
    for k in range(num_clients):
        count = 0.0
        for row in range(batch):
            count += mask[k, row]
        count = max(count, 1.0)
        for row in range(batch):
            for j in range(fan_in):
                inputs[row * (fan_in + 1) + j] = X[k, row, j]
            inputs[row * (fan_in + 1) + fan_in] = 1
            labels[row] = y[k, row]
            weights[row] = lr * mask[k, row] / count
        client_step(W[k], inputs, batch, labels, weights, units, head, deltas)


@njit(cache=True, nogil=True)
def sgd_steps(
    W, x, y, rows, starts, sizes, steps, batch, lr, units, head, pull, shift, anchor,
    inputs, deltas, labels, weights, correction,
):  # fmt: skip
    """Every local step of each client k, in one call: steps[k] steps, each over its next batch of
    rows[starts[k]:] (its epochs' orders of rows of x, sizes[k] rows each, one after another, in
    batches of `batch`; an epoch's last batch may be short), from W[k], which it updates.

    Each step is sgd_step's on the engine's [B]-wide block, bit for bit: a short batch is padded
    with its epoch's last row, weighted 0, as the engine pads it.

    With the linear correction, each step also subtracts lr (pull (w - anchor) + shift[k]) at the
    w before the step (shift has no rows when there is none). pull is [pull, lr] in W's dtype,
    shift and correction (scratch, P) are float64: the correction is computed in the precision
    NumPy gives it (W's dtype, or float64 with a float64 shift) for the same rounding.
    Scratch as in sgd_step."""
    num_params, fan_in = W.shape[1], units[0]
    has_shift = shift.shape[0] > 0
    corrected = pull[0] != 0 or has_shift
    for k in range(W.shape[0]):
        w, size = W[k], sizes[k]
        per_epoch = (size + batch - 1) // batch
        for step in range(steps[k]):
            epoch, within = divmod(step, per_epoch)
            first, last = starts[k] + epoch * size, size - 1  # this epoch's order
            count = float(min(batch, size - within * batch))
            for row in range(batch):
                position = within * batch + row
                source = rows[first + min(position, last)]
                for j in range(fan_in):
                    inputs[row * (fan_in + 1) + j] = x[source, j]
                inputs[row * (fan_in + 1) + fan_in] = 1
                labels[row] = y[source]
                weights[row] = lr / count if position <= last else 0.0
            if corrected:
                for p in range(num_params):
                    if not has_shift:
                        correction[p] = pull[1] * (pull[0] * (w[p] - anchor[p]))
                    elif pull[0] != 0:
                        correction[p] = lr * (pull[0] * (w[p] - anchor[p]) + shift[k, p])
                    else:
                        correction[p] = lr * shift[k, p]
            client_step(w, inputs, batch, labels, weights, units, head, deltas)
            if corrected:
                for p in range(num_params):
                    w[p] -= correction[p]
