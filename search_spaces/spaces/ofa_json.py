"""OFA's subnet JSON form of inverted-residual archs: `{"ks":[..],"e":[..],"d":[..],"r":N}`
(kernel and expand ratio per block slot, depth per stage, resolution; optional `w`, for
sparse spaces `density` per stage, and for spaces with a norm dimension `norm`)."""
from __future__ import annotations

import json
from typing import Any, Protocol

from search_spaces import settings
from search_spaces.arch import Arch, Gene
from search_spaces.errors import InvalidArchError
from search_spaces.ops.norm import DEFAULT_NORM
from search_spaces.space import Dimension


class InvertedResidualSpace(Protocol):
    """What the codec reads of an inverted-residual space (not imported: it imports us)."""

    name: str
    sparse: bool
    has_width: bool
    dimension_names: tuple[str, ...]

    @property
    def num_stages(self) -> int: ...
    def max_depth(self, stage: int) -> int: ...
    def dimension(self, name: str) -> Dimension: ...
    def make(self, genes: dict[str, Gene]) -> Arch: ...


def decode(space: InvertedResidualSpace, text: str) -> Arch:
    """An arch from OFA's subnet JSON (`ks` and `e` per slot, `d` per stage, `r`;
    optional `w` and, for sparse spaces, `density` per stage); inactive slots are ignored."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArchError(f"{space.name}: bad OFA JSON {text!r}: {exc}") from None
    slots = sum(space.max_depth(i) for i in range(1, space.num_stages + 1))
    form = (f'{{"ks":[{slots} kernels],"e":[{slots} expand ratios],'
            f'"d":[{space.num_stages} depths],"r":N}}')
    if not isinstance(data, dict) or not _lists_ok(data, slots, space.num_stages) \
            or not settings.is_int(data.get("r")):
        raise InvalidArchError(f"{space.name}: bad OFA JSON {text!r}; expected {form}")
    density = data.get("density", [1.0] * space.num_stages)
    if not _numbers(data.get("w", 1.0)) or (space.sparse and not (
            isinstance(density, list) and len(density) == space.num_stages
            and all(_numbers(d) for d in density))):
        raise InvalidArchError(f"{space.name}: bad OFA JSON {text!r}; 'w' must be a number "
                               f"and 'density' a list of {space.num_stages} numbers")
    genes: dict[str, Gene] = {"r": data["r"]}
    if space.has_width:
        genes["w"] = float(data.get("w", 1.0))
    slot = 0
    for i in range(1, space.num_stages + 1):
        genes[f"d{i}"] = data["d"][i - 1]
        for j in range(1, space.max_depth(i) + 1):
            genes[f"k{i}_{j}"], genes[f"e{i}_{j}"] = data["ks"][slot], data["e"][slot]
            slot += 1
        if space.sparse:
            genes[f"density{i}"] = float(density[i - 1])
    if "norm" in space.dimension_names:  # OFA's own subnets are BatchNorm networks
        norms = space.dimension("norm").options
        genes["norm"] = data.get("norm", DEFAULT_NORM if DEFAULT_NORM in norms else norms[0])
    # JSON numbers become the dimension's own option values (7.0 -> 7), so keys match
    return space.make({name: _option(space, name, value) for name, value in genes.items()})


def _option(space: InvertedResidualSpace, name: str, value: Gene) -> Gene:
    return next((o for o in space.dimension(name).options if o == value), value)


def encode(space: InvertedResidualSpace, arch: Arch) -> str:
    """OFA's JSON form of `arch`; the slots beyond a stage's depth hold 3."""
    ks, es, ds = [], [], []
    for i in range(1, space.num_stages + 1):
        ds.append(arch[f"d{i}"])
        for j in range(1, space.max_depth(i) + 1):
            ks.append(3 if arch[f"k{i}_{j}"] is None else arch[f"k{i}_{j}"])
            es.append(3 if arch[f"e{i}_{j}"] is None else arch[f"e{i}_{j}"])
    data: dict[str, Any] = {"ks": ks, "e": es, "d": ds, "r": arch["r"]}
    if space.has_width:
        data["w"] = arch["w"]
    if space.sparse:
        data["density"] = [arch[f"density{i}"] for i in range(1, space.num_stages + 1)]
    if "norm" in space.dimension_names:
        data["norm"] = arch["norm"]
    return json.dumps(data, separators=(",", ":"))


def _numbers(value: Any) -> bool:
    return settings.is_number(value)


def _lists_ok(data: dict[str, Any], slots: int, stages: int) -> bool:
    return all(isinstance(data.get(key), list) and len(data[key]) == n
               and all(_numbers(v) for v in data[key])
               for key, n in (("ks", slots), ("e", slots), ("d", stages)))
