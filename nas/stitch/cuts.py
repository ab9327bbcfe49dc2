"""Which stitches a family has: the cut rule.

A stitch runs the front of one anchor up to and including block `cut`, a stitching layer, then
the back of another anchor from block `resume` to its head. Following SN-Net, only
neighbouring anchors (by FLOPs) are stitched, and a front that has done a share t of its body
joins the back where the back has done the same share t ("matching relative depth"):

- the body is grouped by stage (the block name's prefix, `stage2` of `stage2.1`) when both
  anchors have the same stages, else taken as one run of blocks (a plain ViT's `block<j>`);
- a boundary is "k body blocks done"; in a stage of n blocks, p done (1..p..n) maps to
  round(p * m / n) done in the other anchor's m blocks of that stage;
- every boundary of the front is mapped to the back and every boundary of the back to the
  front (the union, without repeats), so both anchors' granularities appear; at least one body
  block of each anchor runs;
- SN-Net stitches small -> large only; SN-Netv2's two-way stitching adds large -> small.

Equal depths give SN-Net's paired stitching exactly: cut after block j, resume at block j + 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nas.stitch.anchors import Anchor


@dataclass(frozen=True)
class Stitch:
    """Anchor `front` up to block `cut`, then anchor `back` from block `resume`; with `cut`
    None it is anchor `front` alone (an anchor is a stitch of the family too)."""

    front: int
    back: int
    cut: int | None = None
    resume: int | None = None

    @property
    def is_anchor(self) -> bool:
        return self.cut is None

    def describe(self, anchors: list[Anchor]) -> str:
        """`A0` for an anchor; `A0[..stage2.1]>A1[stage2.2..]` for a stitch."""
        if self.is_anchor:
            return f"A{self.front}"
        front, back = anchors[self.front], anchors[self.back]
        return (f"A{self.front}[..{front.block_name(self.cut)}]>"
                f"A{self.back}[{back.block_name(self.resume)}..]")

    def to_json(self) -> list[int | None]:
        return [self.front, self.back, self.cut, self.resume]


def plan_stitches(anchors: list[Anchor], two_way: bool = True) -> list[Stitch]:
    """The anchors (in FLOPs order) then, for each neighbouring pair, the small -> large
    stitches and (two-way) the large -> small ones."""
    plan = [Stitch(i, i) for i in range(len(anchors))]
    for small in range(len(anchors) - 1):
        directions = [(small, small + 1), (small + 1, small)] if two_way else \
            [(small, small + 1)]
        for front, back in directions:
            plan += [Stitch(front, back, cut, resume)
                     for cut, resume in matched_cuts(anchors[front], anchors[back])]
    return plan


def matched_cuts(front: Anchor, back: Anchor) -> list[tuple[int, int]]:
    """(cut, resume) block pairs at matching relative depth (see the module docstring)."""
    stages_f, stages_b = _stages(front), _stages(back)
    if [name for name, _ in stages_f] != [name for name, _ in stages_b]:
        stages_f, stages_b = [("", front.body)], [("", back.body)]
    sizes_f, sizes_b = [len(b) for _, b in stages_f], [len(b) for _, b in stages_b]
    body_f, body_b = [i for _, b in stages_f for i in b], [i for _, b in stages_b for i in b]
    done_pairs = {(u, _map(u, sizes_f, sizes_b)) for u in range(1, len(body_f) + 1)}
    done_pairs |= {(_map(v, sizes_b, sizes_f), v) for v in range(1, len(body_b))}
    cuts = []
    for u, v in sorted(done_pairs):
        if not (1 <= u <= len(body_f) and 0 <= v < len(body_b)):
            continue  # nothing of the front, or nothing of the back, would run
        cut, resume = body_f[u - 1], body_b[v]
        if len(front.shapes[cut]) == len(back.input_shape(resume)):  # maps to maps, tokens
            cuts.append((cut, resume))
    return cuts


def _stages(anchor: Anchor) -> list[tuple[str, list[int]]]:
    """The body as runs of consecutive blocks of one stage (the name's prefix before '.')."""
    runs: list[tuple[str, list[int]]] = []
    for index in anchor.body:
        name = anchor.specs[index].name
        stage = name.split(".")[0] if "." in name else ""
        if runs and runs[-1][0] == stage and runs[-1][1][-1] == index - 1:
            runs[-1][1].append(index)
        else:
            runs.append((stage, [index]))
    return runs


def _map(done: int, sizes_from: list[int], sizes_to: list[int]) -> int:
    """Body blocks done in the other anchor at the relative depth of `done` blocks done here:
    the same stage, the same share of it (rounded half up)."""
    before_from = before_to = 0
    for n, m in zip(sizes_from, sizes_to):
        if done <= before_from + n:
            return before_to + math.floor((done - before_from) * m / n + 0.5)
        before_from, before_to = before_from + n, before_to + m
    return before_to


__all__ = ["Stitch", "matched_cuts", "plan_stitches"]
