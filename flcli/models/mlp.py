"""A multilayer perceptron: ReLU hidden layers, then a softmax output (classification) or one
linear output trained by least squares (regression).

Parameters are one flat vector, layer after layer: [vec(W_1) (row-major, in x out), b_1, ...].
A cohort of K clients runs as batched matmuls [K, B, in] @ [K, in, out]: no per-client loop.
Initialisation: He et al. 2015, W_l ~ N(0, 2 / fan_in), biases 0.
"""

import numpy as np

from flcli.models.heads import softmax, softmax_cross_entropy, squared_error


class MLP:
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
        self.slices = []  # per layer: (weights slice, bias slice) of the flat vector
        start = 0
        for fan_in, fan_out in zip(self.units[:-1], self.units[1:], strict=True):
            middle, end = start + fan_in * fan_out, start + fan_in * fan_out + fan_out
            self.slices.append((slice(start, middle), slice(middle, end)))
            start = end
        self.num_params = start

    def init(self, rng: np.random.Generator) -> np.ndarray:
        w = np.zeros(self.num_params, dtype=self.dtype)
        for (weights, _), fan_in in zip(self.slices, self.units[:-1], strict=True):
            size = weights.stop - weights.start
            w[weights] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size)
        return w

    def layers(self, W: np.ndarray):
        """(weights [..., in, out], bias [..., out]) views of W [..., P], layer by layer."""
        lead = W.shape[:-1]
        for (weights, bias), fan_in, fan_out in zip(
            self.slices, self.units[:-1], self.units[1:], strict=True
        ):
            yield W[..., weights].reshape(*lead, fan_in, fan_out), W[..., bias]

    def forward(self, W: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Outputs of the last layer and the input of every layer (X, then hidden activations).

        W [K, P] with X [K, B, D], or one w [P] with X [N, D]."""
        inputs, a = [], X
        layers = list(self.layers(W))
        for index, (weights, bias) in enumerate(layers):
            inputs.append(a)
            z = a @ weights
            z += bias[..., None, :] if W.ndim == 2 else bias
            a = np.maximum(z, 0, out=z) if index < len(layers) - 1 else z
        return a, inputs

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0):
        outputs, inputs = self.forward(W, X)
        if self.task == "regression":
            loss, dout = squared_error(outputs[..., 0], y, mask, scale)
            dout = dout[..., None]
        else:
            loss, dout = softmax_cross_entropy(outputs, y, mask, scale)
        grad = np.empty_like(W) if out is None else out
        layers, grads = list(self.layers(W)), list(self.layers(grad))
        for index in range(len(layers) - 1, -1, -1):
            a = inputs[index]
            grad_w, grad_b = grads[index]
            np.matmul(np.swapaxes(a, 1, 2), dout, out=grad_w)
            dout.sum(axis=1, out=grad_b)
            if index:
                dout = dout @ np.swapaxes(layers[index][0], 1, 2)
                dout *= a > 0  # ReLU's derivative (a is the layer's post-ReLU input)
        return loss, grad

    def predict_proba(self, w, X):
        return softmax(self.forward(w, X)[0])

    def predict(self, w, X):
        out = self.forward(w, X)[0]
        return out[:, 0] if self.task == "regression" else out.argmax(axis=1)
