"""The model interface: a model is a small object over a flat float parameter vector.

Everything works on a whole cohort of K clients at once: W is [K, P], X is [K, B, D], y is [K, B]
and mask [K, B] marks the real samples of each client's batch (clients differ in size).
"""

from typing import Protocol

import numpy as np


class Model(Protocol):
    num_params: int

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Initial parameters, shape [P]."""

    def loss_grad(
        self,
        W: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        mask: np.ndarray,
        out=None,
        scale: float = 1.0,
        workspace=None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss over each client's masked batch, [K], and scale x its gradient, [K, P].

        The engine reuses across local steps the buffer `out` the gradient is written into and a
        Workspace of scratch arrays (for models with large temporaries), and passes its learning
        rate as scale, which the model applies where it is cheapest."""

    def predict_proba(self, w: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] of one parameter vector w [P] on inputs X [N, D]."""
