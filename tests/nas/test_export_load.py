"""`nas.load` of a damaged export file: one-line ExportError, never a KeyError or torch's
multi-line state-dict message."""
from __future__ import annotations

import pytest
import torch

from nas.export import EXPORT_FORMAT, ExportError, load
from search_spaces import get_space


@pytest.fixture()
def payload():
    space = get_space("nb201")
    arch = space.min_arch()
    model = space.build(arch, num_classes=10, in_channels=1)
    return {"format": EXPORT_FORMAT, "key": arch.key, "space": "nb201", "num_classes": 10,
            "in_channels": 1, "resolution": 28, "state_dict": model.state_dict()}


def test_a_whole_export_loads(tmp_path, payload):
    torch.save(payload, tmp_path / "m.pt")
    assert load(tmp_path / "m.pt").arch_key == payload["key"]


@pytest.mark.parametrize("damage", [
    lambda p: p.pop("num_classes"), lambda p: p.update(key=7),
    lambda p: p.update(state_dict="weights"),
    lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))),
    lambda p: p.update(num_classes=3)])
def test_a_damaged_export_is_one_line(tmp_path, payload, damage):
    damage(payload)
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(ExportError) as info:
        load(tmp_path / "m.pt")
    assert "\n" not in str(info.value)
