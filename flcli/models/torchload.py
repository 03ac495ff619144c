"""`--model torch:REFERENCE`: a user's PyTorch module, named as Flower names objects
(`torch:FILE.py:NAME`, `torch:package.module:NAME`) or by an installed package's entry point in
group flcli.torch_models (`torch:NAME`).

NAME is a torch.nn.Module class or a function returning a module. It is called with the
partition's `num_classes` (1 for regression), `input_shape` (one sample's shape, e.g. (3, 32, 32))
and `vocabulary_size` (token data) when its signature takes them, and with every --model-arg.
Its optional attribute default_lr is its default --lr.

A module flcli can train as a flat vector has parameters and no buffers (BatchNorm's running
statistics are state outside the parameters: use GroupNorm or LayerNorm) and no dropout (its
randomness would not be addressed by seed, round and client).
"""

import inspect

from flcli.errors import FLError
from flcli.plugins import call, find, model_reference

DEFAULT_LR = 0.05


def import_torch(name: str):
    try:
        import torch
    except ImportError:
        raise FLError(
            f"--model {name} needs PyTorch: pip install 'flcli[torch]' (the CPU build: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None
    return torch


def module_factory(name: str):
    """The class or function `torch:REFERENCE` names, or FLError."""
    import_torch(name)
    _, reference, kind = model_reference(name)
    found = find(reference, kind)
    if found is None:
        raise FLError(
            f"--model {name}: no such module; give torch:FILE.py:NAME, torch:package.module:NAME "
            "or an installed entry point (see: fl list models)"
        )
    if not callable(found[0]):
        raise FLError(f"--model {name} is a {type(found[0]).__name__}, not a module class")
    return found[0]


def arguments(factory, data: dict, model_args: dict) -> dict:
    """What the factory is called with: the data's facts its signature names, then --model-arg."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = {k: v for k, v in data.items() if v is not None and (open_ended or k in parameters)}
    return {**given, **model_args}


def module_builder(name: str, data: dict, model_args: dict):
    """build(seed): the module, its parameters drawn under torch's generator seeded with seed
    (restored after), checked once here."""
    torch = import_torch(name)
    factory = module_factory(name)
    kwargs = arguments(factory, data, model_args)

    def build(seed: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return call(factory, f"--model {name}", **kwargs)

    check_module(build(0), name, torch)
    return build


def check_module(module, name: str, torch) -> None:
    if not isinstance(module, torch.nn.Module):
        raise FLError(f"--model {name} returned a {type(module).__name__}, not a torch.nn.Module")
    if not any(True for _ in module.parameters()):
        raise FLError(f"--model {name} has no parameters to train")
    buffers = [buffer_name for buffer_name, _ in module.named_buffers()]
    if buffers:
        raise FLError(
            f"--model {name} has buffers ({', '.join(buffers[:3])}), state outside its "
            "parameters that FL does not average: replace BatchNorm with GroupNorm or LayerNorm"
        )
    dropouts = [
        layer_name
        for layer_name, layer in module.named_modules()
        if isinstance(layer, torch.nn.modules.dropout._DropoutNd) and layer.p > 0
    ]
    if dropouts:
        raise FLError(
            f"--model {name} has dropout ({', '.join(dropouts[:3])}), whose randomness flcli "
            "cannot address by seed, round and client: set p=0"
        )


def make_torch_model(name, num_features, num_classes, task, dtype, model_args, shape=None):
    """The TorchModel of `name` for the data; shape: (input_shape, vocabulary_size)."""
    from flcli.models.torchmodel import TorchModel

    input_shape, vocabulary_size = shape or ((num_features,), None)
    data = {
        "num_classes": num_classes if task == "classification" else 1,
        "input_shape": tuple(input_shape),
        "vocabulary_size": vocabulary_size,
    }
    build = module_builder(name, data, model_args)
    tokens = vocabulary_size is not None
    model = call(TorchModel, f"--model {name}", build, task, input_shape, dtype, tokens=tokens)
    expected = (data["num_classes"],) if task == "classification" else ((1,), ())
    if model.output_shape not in (expected if task == "regression" else (expected,)):
        wanted = f"{num_classes} class scores" if task == "classification" else "one output"
        raise FLError(
            f"--model {name} outputs shape {list(model.output_shape)} per sample, not "
            f"{wanted}: its last layer must give {wanted}"
        )
    return model
