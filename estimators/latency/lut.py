"""Importing published per-operator lookup tables as devices.

Two formats are understood:
- `tfnas`: TF-NAS's JSON (`{"base": ms, "MBInvertedResBlock_{H}_{Cin}_{SE}_{Cout}_k{k}_s{s}_{act}":
  {mid: ms}}`). It times MBConv blocks only; `base` is the rest of the network (stem, first
  block, head), so it becomes the overhead and every other block counts as free. Its `swish`
  blocks are matched by our `hswish` ones (the piecewise form of the same activation; our ops
  have no exact swish), and its few negative interpolated entries are clamped to 0.
- `proxyless`: ProxylessNAS's YAML (`{op}-input:HxWxC-output:HxWxC[-expand:E-kernel:K-stride:S-
  idskip:0|1]: {count, mean, var}`): the stem `Conv`, `expanded_conv` blocks, the head `Conv_1`
  and `Logits` (global pool + classifier, charged to the pool block). Activations are not in
  its keys.
A block a table does not cover is reported by name, never guessed.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from estimators.latency.errors import LatencyError
from search_spaces import BlockSpec, first_line
from search_spaces.ops import block_out_shape

FORMATS = ("tfnas", "proxyless")
TFNAS_ACTS = {"relu": "relu", "hswish": "swish", "relu6": "relu6"}
_TFNAS_KEY = re.compile(r"MBInvertedResBlock_(\d+)_(\d+)_(\d+)_(\d+)_k(\d+)_s(\d+)_(\w+)")


def detect_format(path: Path) -> str:
    text = path.read_text(errors="replace")[:4096]
    if "MBInvertedResBlock_" in text:
        return "tfnas"
    if "expanded_conv-input:" in text or "Conv-input:" in text:
        return "proxyless"
    raise LatencyError(f"{path}: not a known lookup-table format; accepted: "
                       f"{', '.join(FORMATS)} (TF-NAS JSON or ProxylessNAS YAML)")


def read_lut(path: str | Path, fmt: str | None = None) -> tuple[str, dict[str, float], float, dict]:
    """(format, entries by key, overhead ms, notes) of a published table."""
    path = Path(path)
    if not path.is_file():
        raise LatencyError(f"lookup table {path} does not exist")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise LatencyError(f"unknown lookup-table format {fmt!r}; accepted: {', '.join(FORMATS)}")
    try:
        return (fmt, *_read_tfnas(path)) if fmt == "tfnas" else (fmt, *_read_proxyless(path))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise LatencyError(f"{path}: not a valid {fmt} table ({first_line(exc)})") from None
    except yaml_errors() as exc:
        raise LatencyError(f"{path}: not a valid {fmt} table ({first_line(exc)})") from None


def yaml_errors() -> type[Exception]:
    import yaml

    return yaml.YAMLError


def _read_tfnas(path: Path) -> tuple[dict[str, float], float, dict]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of block keys")
    base = _ms("base", data.pop("base", 0.0))
    if base < 0:
        raise ValueError(f"'base' is {base}, expected a latency >= 0 ms")
    entries: dict[str, float] = {}
    negative = 0
    for block, by_mid in data.items():
        if not _TFNAS_KEY.fullmatch(block) or not isinstance(by_mid, dict):
            raise ValueError(f"unexpected key {block!r}")
        for mid, ms in by_mid.items():
            ms = _ms(f"{block}[{mid}]", ms)
            negative += ms < 0
            entries[f"{block}|mid={int(mid)}"] = max(0.0, ms)
    return entries, base, {"clamped_negative_entries": negative, "base_ms": base}


def _ms(where: str, value: object) -> float:
    """A finite latency in ms (JSON/YAML numbers only: text, null or NaN is a damaged table)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"{where} is {value!r}, expected a finite number of ms")
    return float(value)


def _read_proxyless(path: Path) -> tuple[dict[str, float], float, dict]:
    import yaml

    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("expected a mapping of op keys to {count, mean, var}")
    entries: dict[str, float] = {}
    for key, value in data.items():
        if not isinstance(value, dict) or "mean" not in value:
            raise ValueError(f"{key!r} has no 'mean'")
        entries[str(key)] = _ms(f"{key}: mean", value["mean"])
        if entries[str(key)] < 0:
            raise ValueError(f"{key}: mean is {value['mean']}, expected a latency >= 0 ms")
    return entries, 0.0, {"entries": len(entries)}


# --- block keys ---------------------------------------------------------------------------------
def tfnas_keys(specs: Sequence[BlockSpec]) -> list[str | None]:
    keys: list[str | None] = []
    for spec in specs:
        a = spec.kwargs
        if spec.op != "mbconv" or not a.get("expand", True):
            keys.append(None)  # stem, first block, head: inside TF-NAS's `base`
            continue
        act = TFNAS_ACTS.get(a.get("act", "relu"), a.get("act"))
        keys.append(f"MBInvertedResBlock_{spec.in_shape[1]}_{spec.in_shape[0]}_{a.get('se', 0)}_"
                    f"{a['out']}_k{a['k']}_s{a.get('stride', 1)}_{act}|mid={a['mid']}")
    return keys


def _hwc(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[2]}x{shape[0]}"


def proxyless_keys(specs: Sequence[BlockSpec]) -> list[str | None]:
    keys: list[str | None] = []
    for i, spec in enumerate(specs):
        a = spec.kwargs
        out = block_out_shape(spec)
        io = f"input:{_hwc(spec.in_shape)}-output:"
        if spec.op == "conv_bn_act" and spec.in_shape[0] == 3:
            keys.append(f"Conv-{io}{_hwc(out)}")
        elif spec.op == "conv_bn_act" and a.get("k", 1) == 1 and len(out) == 3 and out[1] > 1:
            keys.append(f"Conv_1-{io}{_hwc(out)}")
        elif spec.op == "mbconv":
            cin = spec.in_shape[0]
            expand = a["mid"] / cin if a.get("expand", True) else 1
            expand_text = int(expand) if float(expand).is_integer() else expand
            idskip = int(a.get("stride", 1) == 1 and cin == a["out"])
            keys.append(f"expanded_conv-{io}{_hwc(out)}-expand:{expand_text}-kernel:{a['k']}-"
                        f"stride:{a.get('stride', 1)}-idskip:{idskip}")
        elif spec.op == "global_pool" and i + 1 < len(specs) and specs[i + 1].op == "classifier":
            keys.append(f"Logits-{io}{specs[i + 1].kwargs['classes']}")
        elif spec.op == "classifier" and i > 0 and specs[i - 1].op == "global_pool":
            keys.append(None)  # charged with the pool as `Logits`
        else:
            keys.append(f"<no {spec.op} entry in ProxylessNAS tables: {spec.signature}>")
    return keys


KEYERS: dict[str, Callable[[Sequence[BlockSpec]], list[str | None]]] = {
    "tfnas": tfnas_keys, "proxyless": proxyless_keys}
