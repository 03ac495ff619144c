"""Model names for --model."""

from flcli.errors import FLError
from flcli.models.linear import SoftmaxRegression

MODELS = {
    "softmax": "multinomial logistic regression (NumPy, convex; the default for classification)",
}


def make_model(name: str, num_features: int, num_classes: int):
    if name == "softmax":
        return SoftmaxRegression(num_features, num_classes)
    raise FLError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
