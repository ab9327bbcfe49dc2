"""`SearchSpace`: declarative dimensions plus a mapping from an `Arch` to a list of blocks.

Every space describes a network as a sequence of `BlockSpec`s (op name, input shape, op
arguments). The same list builds the `nn.Module`, counts FLOPs/params analytically and names the
units a latency profiler times, so these three can never disagree about what the network is.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import numpy as np

from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError

if TYPE_CHECKING:
    from search_spaces.network import Network

Rng = np.random.Generator | int | None


def as_rng(rng: Rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


@dataclass(frozen=True)
class Dimension:
    """One named choice. Options are ordered from the cheapest to the most expensive."""

    name: str
    options: tuple[Gene, ...]

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError(f"dimension {self.name} has no options")


@dataclass(frozen=True)
class BlockSpec:
    """One unit of a network: what runs as one block (fused conv-bn-act, an MBConv with SE and
    residual, an attention block...), at the exact input shape it sees (without batch)."""

    op: str
    in_shape: tuple[int, ...]
    args: tuple[tuple[str, Any], ...] = ()
    name: str = field(default="", compare=False)

    @staticmethod
    def of(op: str, in_shape: Sequence[int], name: str = "", **args: Any) -> BlockSpec:
        return BlockSpec(op, tuple(int(s) for s in in_shape), tuple(sorted(args.items())), name)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    @property
    def signature(self) -> str:
        """Stable text form used as a lookup-table key (op, shape and arguments)."""
        args = ",".join(f"{k}={v}" for k, v in self.args)
        shape = "x".join(str(s) for s in self.in_shape)
        return f"{self.op}[{shape}]({args})"


class SearchSpace(ABC):
    """What can be built. Subclasses define `name`, `dimensions`, `blocks`, `encode`, `decode`."""

    name: str
    dimensions: tuple[Dimension, ...]
    default_classes: int = 1000
    default_channels: int = 3
    # How its supernet shares weights (search_spaces.supernets.factory.SUPERNETS): "one-shot"
    # (one candidate per slot, shared where shapes nest) or "elastic" (Once-for-All).
    supernet_style: ClassVar[str] = "one-shot"
    # A zero-cost proxy the `supernet` estimator blends into its accuracy by default (a name
    # of estimators.proxies; None: the supernet alone). Set only where measured to help.
    score_proxy: ClassVar[str | None] = None

    # --- what a subclass provides -------------------------------------------------------------
    @abstractmethod
    def blocks(self, arch: Arch, num_classes: int | None = None,
               in_channels: int | None = None) -> list[BlockSpec]:
        """The network of `arch` as blocks in execution order."""

    @abstractmethod
    def encode(self, arch: Arch) -> str:
        """Readable canonical body of the key (without the `<space>:` prefix)."""

    @abstractmethod
    def decode(self, body: str) -> Arch:
        """Inverse of `encode`; raises `InvalidArchError` naming the expected form."""

    def key_form(self) -> str:
        """How a key body looks, for error messages (by default an example: the first options)."""
        return repr(self.encode(self.min_arch()))

    def bad_key(self, body: str, why: str) -> NoReturn:
        """Raise the one error every malformed key gets: what is wrong and the expected form."""
        raise InvalidArchError(f"{self.name}: bad key {body!r} ({why}); expected the form "
                               f"{self.key_form()}")

    @abstractmethod
    def input_size(self, arch: Arch) -> int:
        """Input resolution (pixels per side) the architecture is defined at."""

    def canonical(self, genes: dict[str, Gene]) -> dict[str, Gene]:
        """Set genes that do not affect the network (inactive layers) to None."""
        return genes

    def reference_archs(self) -> dict[str, Arch]:
        """Named canonical networks this space expresses."""
        return {}

    def parse(self, text: str) -> Arch:
        """An arch from a key, with or without the `<space>:` prefix. Spaces extend this with the
        forms that published data uses (NB201 cell strings, FBNet op lists, OFA JSON)."""
        text = text.strip()
        prefix = f"{self.name}:"
        if text.startswith(prefix):
            text = text[len(prefix):]
        refs = self.reference_archs()
        if text in refs:
            return refs[text]
        return self.decode(text)

    def log10_size(self) -> float:
        """log10 of the number of distinct architectures (override for conditional spaces)."""
        return float(sum(math.log10(len(d.options)) for d in self.dimensions))

    # --- generic machinery --------------------------------------------------------------------
    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def dimension(self, name: str) -> Dimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)

    def make(self, genes: Mapping[str, Gene]) -> Arch:
        """A canonical, validated Arch from a mapping of dimension name to value."""
        unknown = set(genes) - set(self.dimension_names)
        if unknown:
            raise InvalidArchError(f"{self.name}: unknown dimensions {sorted(unknown)}")
        full = {d.name: genes.get(d.name, d.options[0]) for d in self.dimensions}
        full = self.canonical(full)
        for dim in self.dimensions:
            value = full[dim.name]
            if value is not None and value not in dim.options:
                raise InvalidArchError(
                    f"{self.name}: {dim.name}={value!r} is not one of {list(dim.options)}")
        return Arch(self.name, tuple((n, full[n]) for n in self.dimension_names))

    def contains(self, arch: Arch) -> bool:
        if arch.space != self.name or tuple(k for k, _ in arch.genes) != self.dimension_names:
            return False
        genes = arch.as_dict()
        if any(v is not None and v not in self.dimension(k).options for k, v in genes.items()):
            return False
        return self.canonical(dict(genes)) == genes

    def sample(self, rng: Rng = None) -> Arch:
        rng = as_rng(rng)
        return self.make({d.name: d.options[rng.integers(len(d.options))] for d in self.dimensions})

    def active_dimensions(self, arch: Arch) -> list[Dimension]:
        """Dimensions whose value matters for `arch` (with more than one option)."""
        return [d for d in self.dimensions if arch[d.name] is not None and len(d.options) > 1]

    def mutate(self, arch: Arch, rng: Rng = None, num_genes: int = 1) -> Arch:
        """Resample `num_genes` active genes to a different option; always returns a new arch."""
        rng = as_rng(rng)
        dims = [d for d in self.dimensions if len(d.options) > 1]
        for _ in range(100):
            genes = arch.as_dict()
            active = self.active_dimensions(arch) or dims
            picks = rng.choice(len(active), size=min(num_genes, len(active)), replace=False)
            for i in picks:
                dim = active[int(i)]
                others = [o for o in dim.options if o != genes[dim.name]]
                genes[dim.name] = others[rng.integers(len(others))]
            # A gene that was inactive takes a random value if it becomes active.
            for dim in self.dimensions:
                if genes[dim.name] is None:
                    genes[dim.name] = dim.options[rng.integers(len(dim.options))]
            child = self.make(genes)
            if child != arch:
                return child
        raise InvalidArchError(f"{self.name}: cannot mutate {arch.key}")

    def crossover(self, a: Arch, b: Arch, rng: Rng = None) -> Arch:
        """Uniform crossover: each gene from either parent."""
        rng = as_rng(rng)
        ga, gb = a.as_dict(), b.as_dict()
        genes = {}
        for dim in self.dimensions:
            first, second = (ga, gb) if rng.random() < 0.5 else (gb, ga)
            value = first[dim.name] if first[dim.name] is not None else second[dim.name]
            genes[dim.name] = value if value is not None else dim.options[0]
        return self.make(genes)

    def min_arch(self) -> Arch:
        return self.make({d.name: d.options[0] for d in self.dimensions})

    def max_arch(self) -> Arch:
        return self.make({d.name: d.options[-1] for d in self.dimensions})

    def to_vector(self, arch: Arch) -> np.ndarray:
        """One-hot per dimension, concatenated; an inactive gene is all zeros."""
        parts = []
        for dim in self.dimensions:
            one_hot = np.zeros(len(dim.options), dtype=np.float32)
            value = arch[dim.name]
            if value is not None:
                one_hot[dim.options.index(value)] = 1.0
            parts.append(one_hot)
        return np.concatenate(parts)

    def build(self, arch: Arch, num_classes: int | None = None,
              in_channels: int | None = None) -> Network:
        from search_spaces.network import Network
        from search_spaces.ops import build_block

        specs = self.blocks(arch, num_classes, in_channels)
        channels = in_channels or self.default_channels
        size = self.input_size(arch)
        return Network((build_block(s) for s in specs), arch.key, (channels, size, size))

    def check(self, arch: Arch) -> Arch:
        if not self.contains(arch):
            raise InvalidArchError(f"{arch.space}:{dict(arch.genes)} "
                                   f"is not an architecture of space {self.name!r}")
        return arch


class Chain:
    """Builds a block list while tracking the shape: `chain.add("conv_bn_act", out=16, k=3)`."""

    def __init__(self, in_shape: Sequence[int]):
        self.shape: tuple[int, ...] = tuple(int(s) for s in in_shape)
        self.specs: list[BlockSpec] = []

    def add(self, op: str, name: str = "", **args: Any) -> BlockSpec:
        from search_spaces.ops import block_out_shape

        spec = BlockSpec.of(op, self.shape, name, **args)
        self.specs.append(spec)
        self.shape = block_out_shape(spec)
        return spec


def config_from_dict(cls: type, space_name: str, config: Mapping[str, Any]) -> Any:
    """Build a family's config dataclass, with a one-line error naming the accepted keys."""
    import dataclasses

    from search_spaces.errors import NasError

    accepted = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise NasError(f"space {space_name!r}: unknown settings {unknown}; accepted: {accepted}")
    try:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()})
    except (TypeError, ValueError) as exc:
        raise NasError(f"space {space_name!r}: {exc}") from None
