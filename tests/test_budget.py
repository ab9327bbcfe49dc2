import pytest

from nas.budget import BudgetError, parse_budget
from nas.objectives import Constraint


@pytest.mark.parametrize("text, expected", [
    ("300M-flops", (Constraint("flops", 300e6),)),
    ("300m-FLOPS", (Constraint("flops", 300e6),)),
    ("1.5G-flops, 5M-params", (Constraint("flops", 1.5e9), Constraint("params", 5e6))),
    ("20ms-latency", (Constraint("latency_ms", 20.0),)),
    ("0.02s-latency", (Constraint("latency_ms", 20.0),)),
    ("250K-params", (Constraint("params", 250e3),)),
    ("100M-flops_sparse", (Constraint("flops_sparse", 100e6),)),
    ("", ()),
    (None, ()),
])
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["300X-flops", "flops", "300M", "-5M-params", "0M-flops",
                                  "300M-flops,300M-flops", "20-latency", "5M-parms"])
def test_malformed_budget_names_accepted_forms(text):
    with pytest.raises(BudgetError) as info:
        parse_budget(text)
    assert "\n" not in str(info.value)


def test_constraint_satisfied_and_violation():
    c = Constraint("flops", 100.0)
    assert c.satisfied({"flops": 100.0}) and not c.satisfied({"flops": 101.0})
    assert not c.satisfied({"params": 1.0}) and not c.satisfied({"flops": float("nan")})
    assert c.violation({"flops": 150.0}) == pytest.approx(0.5)
