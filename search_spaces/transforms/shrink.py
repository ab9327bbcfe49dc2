"""What the reductions (N2N students: Ashok et al., ICLR 2018) share: the smaller option, the
removal rule, unit importance and the copy of the kept units.

Reductions are NOT function-preserving: a removed block or a dropped unit takes its
contribution with it. The student starts from the teacher's weights (every kept layer whole,
the most important units of a narrowed one) and is meant to be trained again.

Importance of a unit produced by a conv + BatchNorm pair: the L1 norm of its incoming conv
weights (its output row) times |gamma| of its BN channel, both taken from the teacher. A
channel that several pairs produce (summed by residual adds) scores the sum over them. A conv
without BN (squeeze-excite) scores its L1 norm alone. The kept units are the top k by score
(ties: the lower index), in their original order.
"""
from __future__ import annotations

import torch
from torch import nn

from search_spaces.arch import Arch, Gene
from search_spaces.space import SearchSpace
from search_spaces.transforms.base import TransformError


def smaller_options(space: SearchSpace, gene: str, value: Gene) -> list[Gene]:
    return sorted(o for o in space.dimension(gene).options if o < value)  # type: ignore[operator]


def previous_option(space: SearchSpace, gene: str, value: Gene, what: str) -> Gene:
    smaller = smaller_options(space, gene, value)
    if not smaller:
        raise TransformError(f"{space.name}: {what} {gene}={value!r} is already the smallest "
                             f"option {list(space.dimension(gene).options)}")
    return smaller[-1]


def removed_depth(space: SearchSpace, arch: Arch, stage: int, block: int) -> int:
    """The depth after removing `block` of `stage` (checked in range by the caller).

    Rule: only blocks 2..d are removable (block 1 carries the stage's stride and channel
    change), and only when the next smaller depth option is exactly d - 1; with gaps in the
    options ([2, 4]) nothing is removed: one block out is one step down."""
    gene = f"d{stage}"
    depth = int(arch[gene])
    if block == 1:
        raise TransformError(f"{space.name}: block 1 of stage {stage} carries the stage's "
                             f"stride and channel change; only blocks 2..{depth} are removable")
    new_depth = int(previous_option(space, gene, depth, "stage depth"))
    if new_depth != depth - 1:
        raise TransformError(f"{space.name}: removing one block of stage {stage} leaves "
                             f"{depth - 1} blocks, not a depth option "
                             f"{list(space.dimension(gene).options)}")
    return new_depth


def removable(space: SearchSpace, arch: Arch, stage: int) -> bool:
    """Whether `stage` has blocks to remove (`removed_depth`'s rule)."""
    return int(arch[f"d{stage}"]) - 1 in space.dimension(f"d{stage}").options


def shifted_names(stage: int, block: int, new_depth: int) -> dict[str, str]:
    """New block name -> old name for the blocks after the removed one (one slot down)."""
    return {f"stage{stage}.{j}": f"stage{stage}.{j + 1}" for j in range(block - 1, new_depth)}


# --- importance and the kept units -------------------------------------------------------------
def conv_importance(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
    """Per output unit: ||incoming weights||_1 (times |gamma| when a BN follows)."""
    score = conv.weight.detach().abs().flatten(1).sum(1)
    return score if bn is None else score * bn.weight.detach().abs()


def top_units(score: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` highest-scoring unit indices (ties: the lower index), ascending."""
    order = torch.argsort(-score, stable=True)
    return order[:count].sort().values


def take(tensor: torch.Tensor, rows: torch.Tensor | None = None,
         cols: torch.Tensor | None = None) -> torch.Tensor:
    """`tensor` restricted to output units `rows` and input channels `cols` (None: all)."""
    out = tensor if rows is None else tensor.index_select(0, rows)
    return out if cols is None else out.index_select(1, cols)


def keep_layer(old: nn.Module, new: nn.Module, rows: torch.Tensor | None,
               cols: torch.Tensor | None) -> None:
    """A conv or linear layer keeping output units `rows` and input channels `cols`."""
    new.weight.copy_(take(old.weight, rows, cols))
    if old.bias is not None:
        new.bias.copy_(take(old.bias, rows))


def keep_bn(old: nn.BatchNorm2d, new: nn.BatchNorm2d, rows: torch.Tensor | None) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(take(getattr(old, name), rows))
    new.num_batches_tracked.copy_(old.num_batches_tracked)


def keep_conv_bn(old: nn.Sequential, new: nn.Sequential, rows: torch.Tensor | None,
                 cols: torch.Tensor | None) -> None:
    """A conv + BN pair keeping output units `rows` and reading input channels `cols`."""
    keep_layer(old[0], new[0], rows, cols)
    keep_bn(old[1], new[1], rows)
