"""Which candidate ops of one network position share weights.

A bank key is `<slot>/<variant>/<tensor>`: the block's position in the network (`stage2.1`,
`block3.osa`: depth skips trailing slots, so a slot means the same thing in every subnet), a
variant naming the candidate op, and the tensor's name inside the block. Candidates with the
same variant share one tensor, sliced to each one's shape (widths, expand ratios, kernels,
heads, MLP ratios, densities nest); candidates whose shapes do not nest get their own variant.
"""
from __future__ import annotations

from search_spaces.ops.cell import EDGE_ARGS
from search_spaces.space import BlockSpec

# Arguments that make a separate candidate when they differ: grouped and dense 1x1 convs do
# not nest (a group sees another slice of the input), nor do patch sizes.
SEPARATING_ARGS: dict[str, tuple[str, ...]] = {
    "mbconv": ("groups",),
    "conv_bn_act": ("groups",),
    "patch_embed": ("patch",),
}


def variant(spec: BlockSpec, tensor: str) -> str:
    """The candidate name of `tensor` (a state name inside the block built from `spec`)."""
    args = spec.kwargs
    parts = [spec.op]
    for name in SEPARATING_ARGS.get(spec.op, ()):
        value = args.get(name)
        if value is not None and value != 1:
            parts.append(f"{name}{value}")
    if spec.op == "nb201_cell":
        # Each edge of a cell is its own single-path choice: `edges.<i>...` belongs to the op
        # chosen on edge i (a 1x1 conv is not trained as the centre of the 3x3 one).
        head, _, rest = tensor.partition(".")
        if head == "edges":
            index = int(rest.split(".", 1)[0])
            parts.append(str(args[EDGE_ARGS[index]]))
    return "_".join(parts)


def bank_key(spec: BlockSpec, tensor: str) -> str:
    return f"{spec.name}/{variant(spec, tensor)}/{tensor}"
