"""A PyTorch module as flcli's model, `--model torch:FILE.py:NAME` (built by models/torchload.py).

The module's parameters travel as one flat vector, in named_parameters order, so every algorithm,
DP, secure aggregation, robust rule and compression works on it unchanged. A cohort trains at once:
with torch.func, the loss of one client is a pure function of its parameters (functional_call),
its gradient is torch.func.grad of it, and torch.func.vmap maps that over a block of clients
whose parameters are [K, P] rows viewed as the module's tensors (no copies). A step subtracts
lr x gradient from those views in place, so the engine's [K, P] array is the model's state.

Reproducible: the same client gets the same numbers whatever else is in its cohort. Every vmap call
takes exactly `block` clients (a short block repeats its last client; the repeats are dropped),
so the kernels see the same shapes whatever the cohort and backend, and PyTorch runs one thread
with its deterministic algorithms on; the engine trains chunks of clients in parallel instead.
`block` follows the model's size: blocks of clients whose parameters fit CACHE_BYTES (a large CNN
trains one client at a time, where batching clients gains nothing on a CPU; a small one in blocks
of up to MAX_BLOCK).

The loss is the mean over each client's masked batch, as for flcli's NumPy models: cross-entropy of
the logits for classification, squared error of the one output for regression.
"""

import copy
import threading

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, vmap

from flcli.models.base import Capabilities

CACHE_BYTES = 2**20  # a block's parameters
MAX_BLOCK = 16
PREDICT_ROWS = 256  # rows per forward pass when predicting (bounds activations' memory)


def tensor(array, dtype=None) -> torch.Tensor:
    """The array as a tensor, sharing its memory when it is writable (PyTorch does not take
    read-only memory, such as a worker's memory-mapped data, without a copy)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def one_deterministic_thread() -> None:
    """PyTorch as the engine needs it: one intra-op thread (the engine threads over clients) and
    deterministic algorithms."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


class TorchModel:
    capabilities = Capabilities(
        fused_step=True,
        exact_log_proba=True,
        splits_head=True,
        heavy_clients=True,
        distillable=True,
    )

    def __init__(self, build, task: str, input_shape: tuple[int, ...], dtype, tokens=False):
        """build(seed) returns the torch.nn.Module with its parameters drawn from that seed
        (flcli.models.torchload.module_builder); tokens: inputs are token ids (an embedding's)."""
        one_deterministic_thread()
        self.build, self.task, self.tokens = build, task, tokens
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.torch_dtype = torch.float64 if self.dtype == np.float64 else torch.float32
        self.module = build(0).to(self.torch_dtype).eval()
        named = list(self.module.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.bounds = np.concatenate([[0], np.cumsum(self.sizes)]).tolist()
        self.num_params = int(self.bounds[-1])
        self.block = max(1, min(MAX_BLOCK, CACHE_BYTES // (self.num_params * self.dtype.itemsize)))
        self.threads = threading.local()  # each thread's own module and vmapped step
        probe = torch.zeros(1, int(np.prod(self.input_shape)), dtype=self.torch_dtype)
        with torch.no_grad():
            self.output_shape = tuple(self.module(self.inputs(probe)).shape[1:])

    def __getstate__(self):  # each thread's module and step are rebuilt where it is unpickled
        return {key: value for key, value in self.__dict__.items() if key != "threads"}

    def __setstate__(self, state):
        self.__dict__.update(state, threads=threading.local())
        one_deterministic_thread()

    def own_module(self) -> torch.nn.Module:
        """This thread's copy of the module: functional_call swaps a module's parameters while it
        runs, so threads training chunks at once must not share one."""
        if not hasattr(self.threads, "module"):
            self.threads.module = copy.deepcopy(self.module)
            self.threads.step = vmap(grad_and_value(self.client_loss))
        return self.threads.module

    def init(self, rng: np.random.Generator) -> np.ndarray:
        module = self.build(int(rng.integers(2**63)))
        return self.flat(module)

    def flat(self, module) -> np.ndarray:
        """The module's parameters as one vector in the model's dtype."""
        with torch.no_grad():
            vector = torch.cat([p.reshape(-1).to(self.torch_dtype) for p in module.parameters()])
        return vector.numpy().astype(self.dtype, copy=True)

    def views(self, W: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each parameter of every row of W [K, P], as [K, *shape] views."""
        lead = W.shape[:-1]
        return {
            name: W[..., start:stop].view(*lead, *shape)
            for name, shape, start, stop in zip(
                self.names, self.shapes, self.bounds[:-1], self.bounds[1:], strict=True
            )
        }

    def inputs(self, X: torch.Tensor) -> torch.Tensor:
        """Rows [..., D] as the module takes them: [..., *input_shape], token ids as integers."""
        shaped = X.reshape(*X.shape[:-1], *self.input_shape)
        return shaped.long() if self.tokens else shaped

    def client_loss(self, params, x, y, mask):
        """One client's mean loss over its masked batch (vmapped over clients)."""
        out = functional_call(self.own_module(), params, (self.inputs(x),))
        if self.task == "regression":
            per_sample = (out.reshape(-1) - y) ** 2
        else:
            per_sample = torch.nn.functional.cross_entropy(out, y, reduction="none")
        return (per_sample * mask).sum() / mask.sum().clamp(min=1)

    def gradients(self, W, X, y, mask):
        """({name: [K, *shape] gradient}, loss [K]) of a block of exactly `block` clients."""
        if self.block == 1:  # one client: plain autograd, as a per-client loop runs
            params = {name: p.detach().requires_grad_() for name, p in self.views(W[0]).items()}
            with torch.enable_grad():
                value = self.client_loss(params, X[0], y[0], mask[0])
                grads = torch.autograd.grad(value, list(params.values()))
            named = zip(params, grads, strict=True)
            return {name: grad[None] for name, grad in named}, value.detach()[None]
        self.own_module()
        return self.threads.step(self.views(W), X, y, mask)

    def blocks(self, W: np.ndarray, X, y, mask):
        """(rows of W, their tensors) per vmap call: blocks of `block` clients, a short last block
        padded with repeats of its last client (which compute the same and are dropped)."""
        K = len(W)
        W_t = torch.from_numpy(W)
        X_t, y_t, mask_t = tensor(X), tensor(y), tensor(mask)
        for start in range(0, K, self.block):
            stop = min(start + self.block, K)
            if stop - start == self.block:
                rows = slice(start, stop)
                yield rows, (W_t[rows], X_t[rows], y_t[rows], mask_t[rows])
            else:
                repeats = [stop - 1] * (self.block - stop + start)
                index = torch.tensor([*range(start, stop), *repeats])
                yield slice(start, stop), tuple(t[index] for t in (W_t, X_t, y_t, mask_t))

    def loss_grad(self, W, X, y, mask, out=None, scale=1.0, workspace=None):
        grad = np.empty_like(W) if out is None else out
        grad_t, loss = torch.from_numpy(grad), np.empty(len(W), dtype=W.dtype)
        with torch.no_grad():
            for rows, (W_b, X_b, y_b, mask_b) in self.blocks(W, X, y, mask):
                grads, values = self.gradients(W_b, X_b, y_b, mask_b)
                real = rows.stop - rows.start
                for name, view in self.views(grad_t[rows]).items():
                    torch.mul(grads[name][:real], scale, out=view)
                loss[rows] = values[:real].numpy()
        return loss, grad

    def sgd_step(self, W, X, y, mask, lr, workspace):
        """W [K, P] -= lr x gradient, in place, block by block."""
        if not W.flags.c_contiguous:
            raise ValueError("sgd_step updates W in place: pass a C-contiguous [K, P] array")
        W_t = torch.from_numpy(W)
        with torch.no_grad():
            for rows, (W_b, X_b, y_b, mask_b) in self.blocks(W, X, y, mask):
                grads, _ = self.gradients(W_b, X_b, y_b, mask_b)
                real = rows.stop - rows.start
                for name, view in self.views(W_t[rows]).items():
                    view.sub_(grads[name][:real], alpha=lr)

    def forward(self, w: np.ndarray, X: np.ndarray) -> torch.Tensor:
        """The module's outputs for one parameter vector w [P] on rows X [N, D]."""
        params = self.views(tensor(w, self.dtype))
        x = tensor(X, self.dtype)
        with torch.no_grad():
            parts = [
                functional_call(self.own_module(), params, (self.inputs(x[i : i + PREDICT_ROWS]),))
                for i in range(0, len(x), PREDICT_ROWS)
            ]
        return torch.cat(parts) if parts else torch.empty(0, *self.output_shape)

    def distill_loss_grad(self, w, X, targets, temperature):
        """Knowledge distillation towards soft targets [N, C] (Hinton et al. 2015, FedDF's
        student): the mean over rows of T^2 KL(targets || softmax(logits / T)), and its gradient
        with respect to w [P], by autograd."""
        w_t = torch.from_numpy(np.array(w, dtype=self.dtype)).requires_grad_()
        x = self.inputs(tensor(X, self.dtype))
        soft = tensor(targets, self.dtype)
        with torch.enable_grad():
            logits = functional_call(self.own_module(), self.views(w_t), (x,))
            log_student = torch.log_softmax(logits / temperature, dim=-1)
            kl = torch.nn.functional.kl_div(log_student, soft, reduction="batchmean")
            loss = temperature**2 * kl
            (grad,) = torch.autograd.grad(loss, w_t)
        return loss.item(), grad.numpy()

    def head_slice(self) -> slice:
        """The last layer's parameters (those of the module that owns the last parameter), which
        named_parameters puts at the end of the flat vector."""
        owner = self.names[-1].rpartition(".")[0]
        first = next(i for i, name in enumerate(self.names) if name.rpartition(".")[0] == owner)
        return slice(self.bounds[first], self.num_params)

    def predict_proba(self, w, X):
        return torch.softmax(self.forward(w, X), dim=-1).numpy()

    def log_proba(self, w, X):
        return torch.log_softmax(self.forward(w, X), dim=-1).numpy()

    def predict(self, w, X):
        out = self.forward(w, X)
        return out.reshape(-1).numpy() if self.task == "regression" else out.argmax(-1).numpy()
