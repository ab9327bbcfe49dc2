"""The meta-controller of the network-editing searches: a bidirectional LSTM reads the network
block by block, and one actor per kind of edit chooses among the edits of that kind the
network offers, either independently (`each`: one sigmoid per offered edit) or exactly one of
them (`one`: a softmax). EAS (Cai et al., AAAI 2018) has a widen actor (`each`) and a deepen
actor (`one`) over function-preserving transformations; N2N (Ashok et al., ICLR 2018) a remove
actor and a narrow actor (both `each`) over reductions of a teacher.

It reads any space the transformations support: each block is described by generic features
of its `BlockSpec` (its op hashed into buckets, channels, size, kernel, stride, expansion,
position), so no vocabulary is tied to one space. A transformation acts on the block its
family names `stage{s}.{b-1}` (or `block{s}.{b-1}`): the last such block for a whole stage.

Decisions are recorded as (arch key, actor, offered transformations, chosen ones) and their
log-probabilities recomputed at the update, so an episode survives a kill: the trajectory is
plain JSON and the controller's weights are lists of numbers (`state_json`).
"""
from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from search_spaces import Arch, SearchSpace
from search_spaces.space import BlockSpec
from search_spaces.transforms import Transform, TransformError

OP_BUCKETS = 16
FEATURES = OP_BUCKETS + 7
CHOICES = ("each", "one")
REDUCTIONS = ("remove", "narrow")  # the kinds `search_spaces.transforms.reductions` lists


def offered(space: SearchSpace, arch: Arch, kind: str) -> list[Transform]:
    """The edits of `kind` that apply to `arch`: growth (`available`) or reductions."""
    from search_spaces import transforms

    moves = transforms.reductions(space, arch) if kind in REDUCTIONS \
        else transforms.available(space, arch)
    return [t for t in moves if t.kind == kind]


def block_features(spec: BlockSpec, index: int, count: int) -> list[float]:
    """One block as numbers of comparable scale (log channels and sizes, ratios)."""
    args = spec.kwargs
    bucket = [0.0] * OP_BUCKETS
    bucket[zlib.crc32(spec.op.encode()) % OP_BUCKETS] = 1.0
    channels = spec.in_shape[0]
    size = spec.in_shape[-1] if len(spec.in_shape) == 3 else 1
    out = args.get("out", args.get("growth", channels))
    out = out if isinstance(out, int) else channels
    mid = args.get("mid")
    expand = mid / channels if isinstance(mid, int) and channels else 1.0
    kernel = args.get("k", 0)
    stride = args.get("stride", 1)
    return bucket + [math.log2(channels + 1) / 10, math.log2(out + 1) / 10,
                     math.log2(size + 1) / 8, (kernel if isinstance(kernel, int) else 0) / 7,
                     (stride if isinstance(stride, int) else 1) / 2, min(expand, 8.0) / 8,
                     index / max(count - 1, 1)]


def site(specs: Sequence[BlockSpec], transform: Transform) -> int:
    """Index of the block a transformation acts on: block `transform.block` of stage
    `transform.stage` (the stage's last block for a whole-stage transformation)."""
    pattern = re.compile(rf"^(?:stage|block){transform.stage}\.")
    blocks = [i for i, s in enumerate(specs) if pattern.match(s.name)]
    if not blocks:
        raise TransformError(f"no block of stage {transform.stage} among "
                             f"{[s.name for s in specs][:6]}...")
    if transform.block is None:
        return blocks[-1]
    return blocks[min(transform.block, len(blocks)) - 1]


@dataclass(frozen=True)
class Decision:
    """One actor's decision on one network: what it was offered and what it chose."""

    key: str
    actor: str
    offered: tuple[str, ...]
    chosen: tuple[str, ...]

    def to_json(self) -> list:
        return [self.key, self.actor, list(self.offered), list(self.chosen)]

    @staticmethod
    def from_json(value: list) -> Decision:
        key, actor, offered, chosen = value
        return Decision(str(key), str(actor), tuple(offered), tuple(chosen))


def parse_transform(text: str) -> Transform:
    """`Transform` from its `str` form (`widen stage 2 block 1`, `deepen stage 3`)."""
    parts = text.split()
    block = int(parts[4]) if len(parts) == 5 else None
    return Transform(parts[0], int(parts[2]), block)


class MetaController(nn.Module):
    """Encoder (bi-LSTM over blocks) and one actor per kind of edit: `actors` maps the kind
    (`widen`, `deepen`, `remove`, `narrow`...) to its choice: `each` (a yes/no per offered
    edit; the bias starts at `each_bias`, sigmoid(-1.5) = 0.18: a few edits per network, not
    half of them) or `one` (exactly one of the offered edits, as EAS's deeper actor always
    inserts a layer; no decision when none is offered)."""

    def __init__(self, actors: dict[str, str], hidden: int = 50, each_bias: float = -1.5,
                 seed: int = 0):
        super().__init__()
        bad = {k: v for k, v in actors.items() if v not in CHOICES}
        if bad:
            raise ValueError(f"actor choices must be one of {CHOICES}, got {bad}")
        torch.manual_seed(seed)
        self.actors = dict(actors)
        self.encoder = nn.LSTM(FEATURES, hidden, batch_first=True, bidirectional=True)
        self.heads = nn.ModuleDict({kind: nn.Linear(2 * hidden, 1) for kind in actors})
        with torch.no_grad():
            for kind, choice in actors.items():
                if choice == "each":
                    self.heads[kind].bias.fill_(each_bias)

    def encode(self, specs: Sequence[BlockSpec]) -> torch.Tensor:
        rows = [block_features(s, i, len(specs)) for i, s in enumerate(specs)]
        out, _ = self.encoder(torch.tensor([rows], dtype=torch.float32))
        return out[0]

    def distribution(self, space: SearchSpace, arch: Arch, actor: str
                     ) -> tuple[list[Transform], torch.Tensor]:
        """The edits `actor` may choose on `arch` and their logits (`each`: one independent
        logit per edit; `one`: a softmax over them)."""
        moves = offered(space, arch, actor)
        if not moves:
            return [], torch.zeros(0)
        specs = space.blocks(arch)
        hidden = self.encode(specs)
        return moves, self.heads[actor](hidden[[site(specs, t) for t in moves]]).squeeze(-1)

    def sample(self, space: SearchSpace, arch: Arch, actor: str,
               generator: torch.Generator) -> Decision:
        with torch.no_grad():
            moves, logits = self.distribution(space, arch, actor)
        if not moves:
            return Decision(arch.key, actor, (), ())
        if self.actors[actor] == "each":
            take = torch.rand(len(moves), generator=generator) < torch.sigmoid(logits)
            # last blocks first: removing a block renumbers the blocks after it, not before
            picked = [t for t, yes in zip(moves, take.tolist()) if yes]
            picked.sort(key=lambda t: (t.stage, t.block or 0), reverse=True)
            chosen = tuple(str(t) for t in picked)
        else:
            pick = int(torch.multinomial(torch.softmax(logits, 0), 1, generator=generator))
            chosen = (str(moves[pick]),)
        return Decision(arch.key, actor, tuple(str(t) for t in moves), chosen)

    def log_prob(self, space: SearchSpace, decision: Decision
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probability, entropy) of a recorded decision under the current weights."""
        if not decision.offered:
            return torch.zeros(()), torch.zeros(())
        arch = space.parse(decision.key)
        moves, logits = self.distribution(space, arch, decision.actor)
        names = [str(t) for t in moves]
        if names != list(decision.offered):
            raise TransformError(f"the transformations offered on {decision.key} changed "
                                 f"since the decision was recorded")
        if self.actors[decision.actor] == "each":
            taken = torch.tensor([n in decision.chosen for n in names], dtype=torch.float32)
            logp = -nn.functional.binary_cross_entropy_with_logits(logits, taken,
                                                                    reduction="sum")
            p = torch.sigmoid(logits)
            entropy = -(p * torch.log(p + 1e-12) + (1 - p) * torch.log(1 - p + 1e-12)).sum()
            return logp, entropy
        log_probs = torch.log_softmax(logits, 0)
        return log_probs[names.index(decision.chosen[0])], -(log_probs.exp() * log_probs).sum()

    # --- JSON state ------------------------------------------------------------------------------
    def state_json(self) -> dict[str, list]:
        return {k: v.detach().tolist() for k, v in self.state_dict().items()}

    def load_state_json(self, state: dict[str, list]) -> None:
        self.load_state_dict({k: torch.tensor(v, dtype=torch.float32)
                              for k, v in state.items()})


def eas_reward(accuracy_percent: float) -> float:
    """EAS's reward shaping tan(acc * pi / 2): a point of accuracy is worth more near 100 %."""
    acc = min(max(accuracy_percent / 100.0, 0.0), 0.999)
    return math.tan(acc * math.pi / 2)


__all__ = ["CHOICES", "Decision", "MetaController", "block_features", "eas_reward",
           "offered", "parse_transform", "site"]
