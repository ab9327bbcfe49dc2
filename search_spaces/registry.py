"""Space registry. Built-in spaces are listed explicitly (no import side effects) and created
lazily; `<name>-sparse` adds the per-stage density dimension to any conv/linear space; a path
to a YAML/JSON file defines a space from a family without writing Python."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from search_spaces import lookup
from search_spaces.errors import NasError, UnknownSpaceError, first_line
from search_spaces.space import SearchSpace

SPARSE_SUFFIX = "-sparse"

# family -> module; each module has PRESETS {space name: config} and create(name, config, sparse)
FAMILIES: dict[str, str] = {
    "inverted_residual": "search_spaces.spaces.inverted_residual",
    "fbnet": "search_spaces.spaces.fbnet",
    "nb201": "search_spaces.spaces.nb201",
    "resnet": "search_spaces.spaces.resnet",
    "densenet": "search_spaces.spaces.densenet",
    "vit": "search_spaces.spaces.vit",
    "vit_resnas": "search_spaces.spaces.vit_resnas",
}

# built-in space name -> family
BUILTIN: dict[str, str] = {
    "mobile": "inverted_residual",
    "mobilenetv2": "inverted_residual",
    "fbnet": "fbnet",
    "nb201": "nb201",
    "resnet": "resnet",
    "densenet": "densenet",
    "vit": "vit",
    "vit-hybrid": "vit",
    "vit-resnas": "vit_resnas",
}


# Spaces of layers rather than networks: get_space finds them, list_spaces() leaves them out
# (the networks' contract does not apply). Name -> module with create(name).
LAYER_SPACES: dict[str, str] = {"evonorm": "search_spaces.layer_graph.space"}

_cache: dict[str, SearchSpace] = {}


def list_spaces() -> list[str]:
    return list(BUILTIN)


def _family(name: str):
    return importlib.import_module(FAMILIES[name])


def register_space(space: SearchSpace) -> SearchSpace:
    """Make a space (e.g. one loaded from a file) findable by name, so its keys decode."""
    _cache[space.name] = space
    return space


def has_sparse_variant(name: str) -> bool:
    """Whether built-in space `name` comes as `<name>-sparse` (its family declares it)."""
    return name in BUILTIN and _family(BUILTIN[name]).SPARSE_VARIANT


def sparse_spaces() -> list[str]:
    """The `<name>-sparse` variants of the built-in spaces."""
    return [name + SPARSE_SUFFIX for name in BUILTIN if has_sparse_variant(name)]


def _builtin_name(name: str) -> bool:
    """`name` is a built-in space (a layer space included) or its sparse variant."""
    base = name[: -len(SPARSE_SUFFIX)] if name.endswith(SPARSE_SUFFIX) else name
    return name in LAYER_SPACES or base in BUILTIN and (base == name or has_sparse_variant(base))


def _is_file(name: str) -> bool:
    """Path(name).is_file(), False for names no file can have (too long, NUL bytes)."""
    try:
        return Path(name).is_file()
    except (OSError, ValueError):
        return False


def get_space(name: str) -> SearchSpace:
    """A space by name (`mobile`, `resnet-sparse`, ...) or by path to a YAML/JSON file."""
    if name in _cache:
        return _cache[name]
    if name in LAYER_SPACES:
        return register_space(importlib.import_module(LAYER_SPACES[name]).create(name))
    # a built-in name wins over a file of the same name in the working folder
    if not _builtin_name(name) and (name.endswith((".yaml", ".yml", ".json"))
                                    or _is_file(name)):
        return register_space(load_space_file(name))
    base = name[: -len(SPARSE_SUFFIX)] if name.endswith(SPARSE_SUFFIX) else name
    sparse = base != name
    if base not in BUILTIN or (sparse and not has_sparse_variant(base)):
        known = list_spaces() + sparse_spaces()
        raise UnknownSpaceError(
            f"unknown space {name!r}; known: {', '.join(known)}, or a path to a .yaml/.json file")
    module = _family(BUILTIN[base])
    return register_space(module.create(name, dict(module.PRESETS[base]), sparse))


# A space name is the prefix of every key (`<name>:<body>`) and part of cache file names.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}", re.ASCII)


def load_space_file(path: str | Path) -> SearchSpace:
    """A space from YAML/JSON: `name`, `family` (or `base`: a built-in space whose settings
    are the starting point), `sparse` (bool), and the family's settings to override."""
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix == ".json":
            config: Any = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except FileNotFoundError:
        raise NasError(f"space file {path} does not exist") from None
    except Exception as exc:  # OSError, JSONDecodeError, yaml.YAMLError, UnicodeDecodeError
        raise NasError(f"cannot read space file {path}: {first_line(exc)}") from None
    if not isinstance(config, dict):
        raise NasError(f"space file {path} must hold a mapping with 'name' and 'family' or 'base'")
    config = dict(config)
    name = config.pop("name", path.stem)
    sparse = config.pop("sparse", False)
    base = config.pop("base", None)
    family = config.pop("family", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise NasError(f"{path}: the space name {shown} (its 'name', else the file name) must "
                       f"be 1 to 100 ASCII letters, digits and _.+- (starting with a letter or "
                       f"digit): it begins every key")
    if _builtin_name(name):
        raise NasError(f"{path}: the space name {name!r} is a built-in space (its keys "
                       f"'{name}:...' would collide); give the file another 'name'")
    if not isinstance(sparse, bool):
        raise NasError(f"{path}: 'sparse' must be true or false, got {sparse!r}")
    if base is not None:
        if not isinstance(base, str) or base not in BUILTIN:
            raise NasError(f"{path}: unknown base {base!r}; known: {', '.join(BUILTIN)}")
        if family is not None and family != BUILTIN[base]:
            raise NasError(f"{path}: base {base!r} is of family {BUILTIN[base]!r}, not "
                           f"{family!r}; give one of them")
        family = BUILTIN[base]
        config = {**_family(family).PRESETS[base], **config}
    if not isinstance(family, str) or family not in FAMILIES:
        raise NasError(f"{path}: 'family' must be one of {', '.join(FAMILIES)} "
                       f"(or give 'base': one of {', '.join(BUILTIN)})")
    unnamed = [k for k in config if not isinstance(k, str)]
    if unnamed:
        raise NasError(f"{path}: setting names must be text, got {unnamed[0]!r}")
    return _family(family).create(name, config, sparse)


def space_spec(space: SearchSpace) -> dict[str, Any] | None:
    """What rebuilds `space` in another process: {"family", "sparse", "config"} (its family's
    settings, plain values), or None for a space that no family makes (one written in Python).
    Checked: the spec is returned only when it rebuilds the same dimensions."""
    import dataclasses

    config = getattr(space, "config", None)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return None
    kind = type(config)
    family = next((f for f in FAMILIES if getattr(_family(f), kind.__name__, None) is kind), None)
    if family is None:
        return None
    spec = {"family": family, "sparse": bool(getattr(space, "sparse", False)),
            "config": dataclasses.asdict(config)}
    try:
        rebuilt = _family(family).create(space.name, dict(spec["config"]), spec["sparse"])
    except NasError:
        return None
    same = type(rebuilt) is type(space) and [(d.name, d.options) for d in rebuilt.dimensions] \
        == [(d.name, d.options) for d in space.dimensions]
    return spec if same else None


def space_from_spec(name: str, spec: Any) -> SearchSpace:
    """The space `name` that `space_spec` described, registered so that its keys decode: a
    built-in space by name; a space already registered under `name` if it is the same one;
    else rebuilt from `spec` (a space written in Python, spec None, must be registered with
    `register_space` first)."""
    if _builtin_name(name):
        return get_space(name)
    if name in _cache:
        known = _cache[name]
        if spec is not None and space_spec(known) not in (None, spec):
            raise NasError(f"a different space named {name!r} is already loaded in this "
                           f"process; cannot load a second one of that name")
        return known
    if spec is None and (name.endswith((".yaml", ".yml", ".json")) or _is_file(name)):
        return get_space(name)  # a space file named by its path (as `nas export` records it)
    if spec is None:
        raise NasError(f"space {name!r} was written in Python and cannot be rebuilt from a "
                       f"file; register_space() it before loading")
    if not isinstance(spec, dict) or spec.get("family") not in FAMILIES \
            or not isinstance(spec.get("config"), dict) or not isinstance(spec.get("sparse"), bool):
        raise NasError(f"the description of space {name!r} is damaged (family, config or "
                       f"sparse missing or of the wrong type)")
    return register_space(_family(spec["family"]).create(name, dict(spec["config"]),
                                                         spec["sparse"]))


lookup.install(get_space)  # how `Arch` finds its space (see search_spaces.lookup)
