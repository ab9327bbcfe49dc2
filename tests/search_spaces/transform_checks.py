"""Shared set-up of the transformation tests (test_transforms*.py): tiny space texts, their
registration as module fixtures, randomised eval-mode models, and the exactness check
(max |out_before - out_after| <= TOL in float32)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from search_spaces import NasError, load_space_file, register_space

TOL = 1e-5

# Space bodies without a name (`registered` adds one); variants through `space_text`.
MOBILE = """base: mobile
widths: [8, 16, 24]
strides: [2, 2, 2]
acts: [relu, hswish, hswish]
se: [false, true, true]
depths: [[1, 2, 3], [1, 2, 3], [1, 2, 3]]
kernels: [3, 5, 7]
expands: [3, 4, 6]
resolutions: [32]
stem: 8
first: 8
head: 32
mix: 32
classes: 10
"""
# MobileNetV2 style: no mid rounding, relu6, no SE, no feature mix, a width multiplier.
MOBILENETV2 = """base: mobilenetv2
widths: [8, 12]
strides: [2, 2]
acts: [relu6, relu6]
se: [false, false]
depths: [[1, 2, 3], [1, 2, 3]]
kernels: [3, 5]
expands: [3, 4, 6]
resolutions: [32]
width_mults: [0.75, 1.0]
stem: 8
first: 8
head: 32
classes: 10
"""
# stage 1 reads the 16-channel stem: w1.0 gives 16 channels (identity shortcut), w1.5 gives 24
# (a projection appears), w0.5 gives 8 (a projection that w1.0 would lose)
RESNET = """base: resnet
blocks: [basic, bottleneck, plain]
expansions: [2, 4]
depths: [[1, 2, 3], [1, 2, 3]]
widths: [0.5, 1.0, 1.5]
stage_channels: [16, 32]
resolutions: [32]
stem: 16
"""
DENSENET = """base: densenet
growths: [4, 6, 8]
compressions: [0.5, 1.0]
block_types: [osa, dense]
layers: [[1, 2, 3], [1, 2, 4, 5], [1, 2]]
resolutions: [32]
bn_size: 2
"""


def space_text(base: str, **keys) -> str:
    """`base` (one top-level key a line) with `keys` set: a line replaced, or appended if
    absent. Values other than strings are written as JSON (valid YAML: [3, 5], true)."""
    lines = base.splitlines()
    for key, value in keys.items():
        line = f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
        at = [i for i, old in enumerate(lines) if old.startswith(f"{key}:")]
        if at:
            lines[at[0]] = line
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def registered(name: str, text: str, **keys):
    """A module-scoped fixture (named after the attribute it is assigned to): the space `name`
    from `space_text(text, **keys)`, written to a YAML space file and registered."""

    @pytest.fixture(scope="module")
    def space(tmp_path_factory):
        path = tmp_path_factory.mktemp("spaces") / f"{name}.yaml"
        path.write_text(f"name: {name}\n{space_text(text, **keys)}")
        return register_space(load_space_file(path))

    return space


def randomised(space, arch, seed: int):
    """The arch's model in eval mode with random weights, BN running stats and BN affine
    parameters (so that zeroed or replicated units are not trivially preserved)."""
    torch.manual_seed(seed)
    model = space.build(arch, num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return model


def outputs(model, seed: int = 0) -> torch.Tensor:
    x = torch.randn(4, *model.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def assert_same(before: nn.Module, after: nn.Module, measured: list[float] | None = None) -> float:
    """`after` (in eval mode) computes what `before` does on a fixed batch, within TOL; the
    difference is appended to `measured` first when given."""
    assert not after.training
    a, b = outputs(before), outputs(after)
    assert a.shape == b.shape and a.abs().max() > 1e-3  # a non-trivial function
    diff = float((a - b).abs().max())
    if measured is not None:
        measured.append(diff)
    assert diff <= TOL, diff
    return diff


class Measured(list):
    """One test file's measured differences: `MEASURED = Measured()`, then
    `assert_same = MEASURED.assert_same` records each check, and the file's last test calls
    `MEASURED.report()` (the largest difference over that file's checks)."""

    def assert_same(self, before: nn.Module, after: nn.Module) -> float:
        return assert_same(before, after, self)

    def report(self) -> None:
        assert self and max(self) <= TOL
        print(f"\nmax |out_before - out_after| over {len(self)} checks: {max(self):.3g}")


def one_line_error(cls, fn, *args, **kwargs) -> str:
    """`fn(*args, **kwargs)` raises `cls`, a NasError with a non-empty one-line message."""
    with pytest.raises(cls) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, NasError) and message and "\n" not in message
    return message
