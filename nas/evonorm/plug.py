"""Plugging a candidate normalization-activation layer into the evaluation networks.

An evaluation architecture is a network built with the norm `evonorm_s0` (its key ends with
`-evonorm_s0`, or carries it after the resolution in inverted-residual keys): every
normalization-activation pair of such a network is one `EvoNormS0` module (its own
nonlinearity replaces the block's activation), and every normalization without an activation
(the last conv of a residual block, an MBConv's projection, a projection shortcut) is a
`ChannelAffine`, `x * gamma + beta`. `plug` replaces each `EvoNormS0` by the candidate's module,
`layer_graph.build(candidate, channels, groups)` with the channels and the groups of the module
it replaces, and leaves the `ChannelAffine`s as they are: the candidate goes where a
normalization-activation layer goes, and positions without an activation keep the affine
transform, as the EvoNorm reference code does (`nonlinearity=False`). Reference layers
(`REFERENCES["bn_relu"]`, ...) are plugged the same way, so they are measured by the same
code: plugged EvoNorm-S0 computes exactly what the native network computes.

The default evaluation networks (`DEFAULT_ARCHS`) live in two small spaces defined here
(`EVAL_SPACES`), so the package needs no space file: a 3-stage basic-block ResNet (16/32/64
channels, one block per stage, 32 px: the CIFAR ResNets' shape) and a 4-stage MobileNetV2-like
network (ReLU6, no SE, expansion 3, 16/24/32/48 channels, strides 1-2-2-1 after a stride-2
stem, 32 px). Both keep their last feature maps at 2x2 or more: batch-independent statistics
(`var_wh`, `var_group`) of 1x1 maps hold one value per channel or group, and GN-ReLU and
EvoNorm-S0 barely learn in the 4-stage shape of bench/spaces/evonorm_resnet.yaml at 32 px.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search_spaces import Arch, NasError, get_space
from search_spaces.registry import space_from_spec, space_spec
from search_spaces.spaces import inverted_residual, resnet

NORMS = ["bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0"]
PLUG_NORM = "evonorm_s0"  # the norm whose modules mark where a candidate goes

# name -> (family, built-in preset, settings over it)
EVAL_SPACES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "layer_resnet": ("resnet", "resnet", {
        "blocks": ["basic"], "depths": [[1, 2]] * 3, "widths": [0.5, 1.0],
        "stage_channels": [16, 32, 64], "resolutions": [32], "stem": 16, "norms": NORMS}),
    "layer_mobilenet": ("inverted_residual", "mobilenetv2", {
        "widths": [16, 24, 32, 48], "strides": [1, 2, 2, 1], "acts": ["relu6"] * 4,
        "se": [False] * 4, "depths": [[1, 2]] * 4, "kernels": [3], "expands": [3, 6],
        "resolutions": [32], "width_mults": [1.0], "stem": 16, "first": 8, "head": 256,
        "mix": 0, "dropout": 0.0, "classes": 10, "norms": NORMS}),
}
DEFAULT_ARCHS: tuple[str, ...] = (
    "layer_resnet:basic-d1.1.1-w1.0.1.0.1.0-r32-evonorm_s0",
    "layer_mobilenet:r32-evonorm_s0-k3e3-k3e3-k3e3-k3e3",
)
_PRESETS = {"resnet": resnet.PRESETS, "inverted_residual": inverted_residual.PRESETS}
_SPECS: dict[str, Any] = {}
_FILES: set[str] = set()


def register_eval_spaces(space_files: Sequence[str] = ()) -> None:
    """Make the built-in evaluation spaces and the given space files findable by name, so
    that evaluation keys decode (in the driver and in every Ray worker)."""
    for name, (family, preset, changes) in EVAL_SPACES.items():
        if name not in _SPECS:  # the settings as the family normalises them
            module = resnet if family == "resnet" else inverted_residual
            made = module.create(name, {**_PRESETS[family][preset], **changes}, False)
            _SPECS[name] = space_spec(made)
        space_from_spec(name, _SPECS[name])  # the same space again is no error
    for path in space_files:
        if path not in _FILES:  # once per process: loading again would replace the space
            get_space(path)
            _FILES.add(path)


def eval_arch(key: str) -> Arch:
    """The evaluation architecture of `key`, checked: a network whose norm is evonorm_s0."""
    if not isinstance(key, str) or ":" not in key:
        raise NasError(f"evaluation architecture {key!r} is not a key '<space>:<body>'")
    arch = Arch.decode(key)
    genes = arch.as_dict()
    norm = genes.get("norm")
    if norm != PLUG_NORM:
        what = f"norm {norm}" if norm else "no norm gene (its space offers one kind)"
        raise NasError(f"evaluation architecture {key} has {what}: it must be built with "
                       f"norm {PLUG_NORM} (a space offering it among its norms, key ending "
                       f"with -{PLUG_NORM} or carrying it after the resolution), whose "
                       f"EvoNormS0 modules mark where the candidate layer goes")
    return arch


def arch_label(key: str, taken: Sequence[str] = ()) -> str:
    """The accuracy column of an evaluation architecture: `acc_<space>` (`_<n>` appended
    when another architecture of the same space came first)."""
    base = "acc_" + "".join(c if c.isalnum() else "_" for c in key.partition(":")[0])
    label, n = base, 2
    while label in taken:
        label, n = f"{base}_{n}", n + 1
    return label


def plug(model: Any, layer: Any) -> int:
    """Replace every `EvoNormS0` of `model` (in place) by the module of `layer` (an `Arch` of
    the layer space, a key or a `LayerGraph`) for its channels and groups; returns how many."""
    from search_spaces.layer_graph import build
    from search_spaces.ops.norm import EvoNormS0

    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, EvoNormS0):
                setattr(parent, name, build(layer, int(child.weight.shape[0]),
                                            groups=child.groups))
                count += 1
    return count


def plugged_network(key: str, layer: Any, num_classes: int, in_channels: int,
                    seed: int) -> Any:
    """The network of evaluation architecture `key` (weights drawn from `seed`) with `layer`
    in place of each EvoNormS0."""
    import torch

    arch = eval_arch(key)
    torch.manual_seed(seed)
    model = get_space(arch.space).build(arch, num_classes=num_classes, in_channels=in_channels)
    if plug(model, layer) == 0:
        raise NasError(f"evaluation architecture {key} has no EvoNormS0 module to replace")
    return model.train()


def layer_modules(model: Any) -> list[Any]:
    """The plugged layers of `model` (its `LayerGraphModule`s)."""
    from search_spaces.layer_graph import LayerGraphModule

    return [m for m in model.modules() if isinstance(m, LayerGraphModule)]


def recalibrate_layers(model: Any, data: Any, images: int, batch_size: int = 250,
                       seed: int = 0) -> None:
    """Replace the running estimates of the plugged layers (their `mean_bwh`/`var_bwh`
    nodes, BatchNorm-like) by their plain average over `images` shuffled training images, as
    `estimators.train.recalibrate_bn` does for BatchNorm: a short run's running averages
    lag its weights. Weights unchanged; layers without running estimates are not touched."""
    import torch

    layers = [m for m in layer_modules(model) if any(True for _ in m.buffers())]
    if not layers or images <= 0:
        return
    momenta = [m.momentum for m in layers]
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            batches = data.batches("train", batch_size, shuffle=True, seed=seed, limit=images)
            for count, (inputs, _) in enumerate(batches, 1):
                for layer in layers:
                    layer.momentum = 1.0 / count  # the first batch replaces, then averages
                model(inputs)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)


def train_plugged(model: Any, data: Any, recipe: Any, seed: int,
                  recal_images: int, split: str = "val") -> float:
    """Train `model` in place by `recipe` from `seed`, re-estimate its layers' running
    statistics, and return its top-1 accuracy (%) on `split`."""
    import torch

    from estimators.train import evaluate, make_optimizer, plan_steps, train_epoch

    total = plan_steps(data, recipe)[2]
    optimizer = make_optimizer(model, recipe)
    torch.manual_seed(seed)
    model.train()
    step = epoch = 0
    while step < total:
        step, _, _ = train_epoch(model, optimizer, data, recipe, seed=seed, epoch=epoch,
                                 step=step, total_steps=total)
        epoch += 1
    recalibrate_layers(model, data, recal_images, seed=seed)
    return evaluate(model, data, split, recipe.eval_batch_size, recipe.eval_images)


__all__ = ["DEFAULT_ARCHS", "EVAL_SPACES", "PLUG_NORM", "arch_label", "eval_arch",
           "layer_modules", "plug", "plugged_network", "recalibrate_layers",
           "register_eval_spaces", "train_plugged"]
