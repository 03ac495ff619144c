"""Flower itself on the same work: FedAvg over scikit-learn LogisticRegression clients, run by
Flower's simulation engine (Ray backend). Needs `pip install "flwr[simulation]"`.

Usage: python benchmarks/flower_digits.py PARTITION_DIR ROUNDS  -> prints JSON
{"train_s": ..., "accuracy": ...} (train_s: from building the apps to the end of the simulation)
"""

import json
import logging
import sys
import time

import numpy as np
from sklearn_client import accuracy, client_slices, fit_client, load_partition


def main(path, rounds):
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    data = load_partition(path)
    x, y = data["x_train"], data["y_train"]
    slices = client_slices(data["offsets"])
    classes, features = int(max(y.max(), data["y_test"].max())) + 1, x.shape[1]
    final = {}

    class Client(NumPyClient):
        def __init__(self, rows):
            self.x, self.y = x[rows], y[rows]

        def fit(self, parameters, config):
            coef, intercept = fit_client(parameters[0], parameters[1], self.x, self.y)
            return [coef, intercept], len(self.y), {}

    def client_fn(context: Context):
        return Client(slices[int(context.node_config["partition-id"])]).to_client()

    def evaluate(server_round, parameters, config):
        score = accuracy(parameters[0], parameters[1], data["x_test"], data["y_test"])
        final["accuracy"] = score
        return 0.0, {"accuracy": score}

    def server_fn(context: Context):
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=len(slices),
            min_available_clients=len(slices),
            evaluate_fn=evaluate,
            initial_parameters=ndarrays_to_parameters(
                [np.zeros((classes, features)), np.zeros(classes)]
            ),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    logging.getLogger("flwr").setLevel(logging.WARNING)
    start = time.perf_counter()
    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=len(slices),
        backend_config={"client_resources": {"num_cpus": 1}},
    )
    print(json.dumps({"train_s": time.perf_counter() - start, "accuracy": final["accuracy"]}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
