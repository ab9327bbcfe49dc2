"""The supernet of a space: Once-for-All style (elastic) for the inverted-residual spaces,
single-path one-shot for the others. Both share weights the same way (slots, slicing, masks);
they differ in what a slot's candidates are and whether kernels get OFA transform matrices.
"""
from __future__ import annotations

from search_spaces.registry import get_space
from search_spaces.space import SearchSpace
from search_spaces.supernets.base import Supernet


class ElasticSupernet(Supernet):
    """OFA-style: elastic kernel (centre of the largest, through kernel transform matrices),
    expand ratio and width by channel slicing, depth by skipping a stage's trailing blocks,
    resolution by input size. FBNet's candidates are elastic MBConvs too (grouped ones share
    among themselves), and its conv `skip` is a candidate of its own."""

    style = "elastic"

    def __init__(self, space: SearchSpace, num_classes: int | None = None,
                 in_channels: int | None = None, *, kernel_transform: bool = True,
                 **kwargs) -> None:
        super().__init__(space, num_classes, in_channels, kernel_transform=kernel_transform,
                         **kwargs)


class OneShotSupernet(Supernet):
    """Single-path one-shot: one candidate per slot, weights shared where shapes nest
    (widths, heads, MLP ratios, depths, densities), separate where they do not (NB201 edge
    ops, basic vs bottleneck vs plain, dense vs OSA, patch sizes)."""

    style = "one-shot"


# A space names its style (`SearchSpace.supernet_style`); the style names the class.
SUPERNETS: dict[str, type[Supernet]] = {"elastic": ElasticSupernet, "one-shot": OneShotSupernet}


def supernet_class(space: SearchSpace) -> type[Supernet]:
    return SUPERNETS[space.supernet_style]


def build_supernet(space: SearchSpace | str, num_classes: int | None = None,
                   in_channels: int | None = None, **kwargs) -> Supernet:
    """The supernet of `space` (a space or its name) for `num_classes` and `in_channels`."""
    resolved = get_space(space) if isinstance(space, str) else space
    return supernet_class(resolved)(resolved, num_classes, in_channels, **kwargs)
