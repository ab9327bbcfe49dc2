"""Key tokens shared by the spaces' codecs: '.'-joined int and float lists (resnet, densenet),
per-stage gene lists, and the per-stage `<blocks>@<density>` parts of the inverted-residual and
hybrid attention spaces. Every malformed token goes through the space's `bad_key`."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from search_spaces.arch import Gene
from search_spaces.space import SearchSpace

# Keys are ASCII: `[0-9]`, not `\d` (which also matches Arabic-Indic or full-width digits).
INTS = r"[0-9]+(?:\.[0-9]+)*"
FLOATS = r"[0-9]+\.[0-9]+(?:\.[0-9]+\.[0-9]+)*"  # floats joined by '.': each has one '.'

BLOCK_FORMS = {"k": "k<kernel>e<expand>", "h": "h<heads>e<expand>"}


def join_ints(values: Iterable[Any]) -> str:
    return ".".join(str(int(v)) for v in values)


def join_floats(values: Iterable[Any]) -> str:
    return ".".join(repr(float(v)) for v in values)


def split_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(".")]


def split_floats(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"[0-9]+\.[0-9]+", text)]


def check_densities_field(space: SearchSpace, body: str, given: bool, sparse: bool) -> None:
    """The `-s<densities>` field is present exactly in sparse spaces."""
    if given != sparse:
        space.bad_key(body, "'-s<densities>' is given in sparse spaces only")


def per_stage(space: SearchSpace, body: str, lists: Mapping[str, Sequence[Any]], stages: int,
              wrong_count: Callable[[str], str]) -> dict[str, Gene]:
    """Genes `<prefix><i>` (1-based) from one list of values per prefix; a list of another
    length than `stages` is a bad key, explained by `wrong_count(prefix)`."""
    genes: dict[str, Gene] = {}
    for prefix, values in lists.items():
        if len(values) != stages:
            space.bad_key(body, wrong_count(prefix))
        genes.update({f"{prefix}{i + 1}": v for i, v in enumerate(values)})
    return genes


def split_density(space: SearchSpace, body: str, stage: int, text: str) -> tuple[str, str]:
    """A sparse stage part `<blocks>@<density>`: the blocks text and the density token."""
    text, sep, density = text.rpartition("@")
    if not sep:
        space.bad_key(body, f"stage {stage} has no '@<density>'")
    return text, density


def stage_blocks(space: SearchSpace, body: str, stage: int, text: str, letter: str,
                 depths: Sequence[int]) -> list[str]:
    """The '.'-joined blocks of a stage part, each starting with `letter`; their number must
    be one of `depths`."""
    blocks = re.split(rf"\.(?={letter})", text)  # an expand ratio may itself contain a '.'
    if len(blocks) not in depths:
        space.bad_key(body, f"stage {stage} has {len(blocks)} blocks, expected one of "
                      f"{list(depths)}")
    return blocks


def block_tokens(space: SearchSpace, body: str, stage: int, block: str,
                 letter: str) -> tuple[str, str]:
    """The two tokens of a block `<letter><first>e<expand>`."""
    match = re.fullmatch(rf"{letter}([^e]*)e(.*)", block)
    if match is None:
        space.bad_key(body, f"block {block!r} of stage {stage} is not {BLOCK_FORMS[letter]}")
    return match.group(1), match.group(2)
