"""PyTorch image classifiers for `fl train --model torch:examples/cnn.py:NAME` (needs flcli[torch]).

flcli calls a class with the partition's `num_classes` and `input_shape` (C, H, W) when its
signature takes them; --model-arg passes the rest. The modules have no BatchNorm and no dropout,
which flcli refuses (their state and randomness sit outside the flat parameter vector).

- FedAvgCNN: the CNN of McMahan et al. 2017 ("Communication-Efficient Learning of Deep Networks
  from Decentralized Data", sec. 3): two 5x5 convolutions of 32 and 64 channels, each followed by
  2x2 max pooling, a 512-unit ReLU layer and a softmax output; 1,663,370 parameters on 28x28 MNIST.
- LeNet5: LeCun et al. 1998 ("Gradient-based learning applied to document recognition"), with ReLU
  and max pooling as commonly run today: conv 6@5x5 (padded to keep 28x28), pool, conv 16@5x5, pool,
  120, 84, output.
- CifarCNN: the 2-convolution CNN of pfl-research's CIFAR-10 benchmarks (Granlund et al. 2024):
  conv 32@3x3, conv 64@3x3, 2x2 max pooling, a 128-unit ReLU layer, output; Glorot-uniform
  weights. pfl's adds dropout (0.25, 0.5), left out here.
"""

import torch
from torch import nn


def after_convolutions(input_shape, layers: nn.Module) -> int:
    """The number of features the convolutional layers give for one sample of input_shape."""
    with torch.no_grad():
        return layers(torch.zeros(1, *input_shape)).numel()


class FedAvgCNN(nn.Module):
    default_lr = 0.1

    def __init__(self, num_classes: int = 10, input_shape=(1, 28, 28)):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(after_convolutions(input_shape, self.features), 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    default_lr = 0.1

    def __init__(self, num_classes: int = 10, input_shape=(1, 28, 28)):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(after_convolutions(input_shape, self.features), 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class CifarCNN(nn.Module):
    default_lr = 0.05

    def __init__(self, num_classes: int = 10, input_shape=(3, 32, 32)):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(after_convolutions(input_shape, self.features), 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(layer.weight)

    def forward(self, x):
        return self.classifier(self.features(x))
