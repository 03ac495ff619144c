"""A multilayer perceptron: ReLU hidden layers, then a softmax output (classification) or one
linear output trained by least squares (regression).

Parameters are one flat vector, layer after layer: [vec(W_1) (row-major, in x out), b_1, ...],
so a layer's weights and bias are one [in + 1, out] block, [W; b]. A cohort of K clients trains as
batched matmuls [K, B, in + 1] @ [K, in + 1, out]: each layer's input carries a column of ones, so
one product adds the bias and, in the backward pass, one product gives the bias's gradient too.
No per-client loop.
Initialisation: He et al. 2015, W_l ~ N(0, 2 / fan_in), biases 0.
"""

import numpy as np

from flcli.models.base import Capabilities
from flcli.models.dense import DenseSteps, FusedSteps
from flcli.models.heads import log_softmax, softmax, softmax_cross_entropy, squared_error
from flcli.models.workspace import Workspace


class MLP(FusedSteps):
    capabilities = Capabilities(
        fused_step=True, fused_steps=True, exact_log_proba=True, splits_head=True
    )

    @classmethod
    def for_data(cls, num_features: int, num_classes: int | None, dtype: str, hidden=(128, 64)):
        return cls(num_features, tuple(hidden), num_classes, dtype)

    def __init__(
        self,
        num_features: int,
        hidden: tuple[int, ...],
        num_classes: int | None,
        dtype="float64",
    ):
        """num_classes None makes a regression network (one output, squared error)."""
        self.task = "regression" if num_classes is None else "classification"
        self.num_features = num_features
        self.num_classes = num_classes
        self.dtype = np.dtype(dtype)
        self.units = [num_features, *hidden, num_classes or 1]
        self.blocks = []  # per layer: (the slice of the flat vector holding [W; b], its shape)
        start = 0
        for fan_in, fan_out in zip(self.units[:-1], self.units[1:], strict=True):
            self.blocks.append(
                (slice(start, start + (fan_in + 1) * fan_out), (fan_in + 1, fan_out))
            )
            start += (fan_in + 1) * fan_out
        self.num_params = start
        self.fused = DenseSteps(tuple(self.units), "squared" if num_classes is None else "softmax")

    def init(self, rng: np.random.Generator) -> np.ndarray:
        w = np.zeros(self.num_params, dtype=self.dtype)
        for (weights, _), fan_in in zip(self.layers(w), self.units[:-1], strict=True):
            weights[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), weights.shape)
        return w

    def head_slice(self) -> slice:
        """The last layer's [W; b] in the flat vector: the head; the layers before it the body."""
        return self.blocks[-1][0]

    def affine(self, W: np.ndarray) -> list[np.ndarray]:
        """[W_l; b_l] of each layer: [..., in + 1, out] views of W [..., P]."""
        lead = W.shape[:-1]
        return [W[..., block].reshape(*lead, *shape) for block, shape in self.blocks]

    def layers(self, W: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weights [..., in, out], bias [..., out]) views of W [..., P], layer by layer."""
        return [(block[..., :-1, :], block[..., -1, :]) for block in self.affine(W)]

    def forward(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Outputs of the last layer for one w [P] on X [N, D]."""
        a = X
        layers = self.layers(w)
        for index, (weights, bias) in enumerate(layers):
            a = a @ weights
            a += bias  # in place: a fresh [N, out] array costs page faults, as much as the product
            if index < len(layers) - 1:
                np.maximum(a, 0, out=a)
        return a

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
        space = workspace or Workspace()
        blocks, lead = self.affine(W), X.shape[:-1]
        first = space.array("input 0", (*lead, X.shape[-1] + 1), X.dtype)
        first[..., :-1], first[..., -1] = X, 1
        inputs = [first]  # every layer's input, with a last column of ones
        for index, block in enumerate(blocks[:-1], start=1):
            hidden = space.array(f"input {index}", (*lead, block.shape[-1] + 1), X.dtype)
            np.matmul(inputs[-1], block, out=hidden[..., :-1])
            hidden[..., -1] = 1
            inputs.append(np.maximum(hidden, space.zeros(hidden.shape, X.dtype), out=hidden))
        outputs = space.array("outputs", (*lead, blocks[-1].shape[-1]), X.dtype)
        np.matmul(inputs[-1], blocks[-1], out=outputs)
        if self.task == "regression":
            loss, dout = squared_error(outputs[..., 0], y, mask, scale)
            dout = dout[..., None]
        else:
            loss, dout = softmax_cross_entropy(outputs, y, mask, scale)
        grad = np.empty_like(W) if out is None else out
        grads = self.affine(grad)
        for index in range(len(blocks) - 1, -1, -1):
            a = inputs[index]
            np.matmul(np.swapaxes(a, -1, -2), dout, out=grads[index])  # weights' and bias's
            if index:
                weights = blocks[index][..., :-1, :]
                delta = space.array(f"delta {index}", (*lead, weights.shape[-2]), X.dtype)
                np.matmul(dout, np.swapaxes(weights, -1, -2), out=delta)
                # ReLU's derivative: a is the layer's post-ReLU input
                alive = np.greater(a, 0, out=space.array("alive", a.shape, bool))
                dout = np.multiply(delta, alive[..., :-1], out=delta)
        return loss, grad

    def predict_proba(self, w, X):
        return softmax(self.forward(w, X))

    def log_proba(self, w, X):
        """log predict_proba, from the logits: finite where a probability underflows to 0."""
        return log_softmax(self.forward(w, X))

    def predict(self, w, X):
        out = self.forward(w, X)
        return out[:, 0] if self.task == "regression" else out.argmax(axis=1)
