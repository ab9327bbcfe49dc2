"""A tiny space for the latency tests (few distinct blocks, microsecond-scale forwards)."""
from __future__ import annotations

from estimators.latency.timing import TimingPlan
from search_spaces import Chain, Dimension, InvalidArchError, SearchSpace, register_space

FAST_PLAN = TimingPlan(warmup_ms=1.0, rounds=2, round_ms=0.5, max_calls=50)


class LatencyToySpace(SearchSpace):
    """Resolution 8 or 12, two MBConv blocks with kernel 3/5 and expand 2/4."""

    name = "lattoy"
    dimensions = (Dimension("r", (8, 12)), Dimension("k1", (3, 5)), Dimension("e1", (2, 4)),
                  Dimension("k2", (3, 5)), Dimension("e2", (2, 4)))
    default_classes = 5

    def blocks(self, arch, num_classes=None, in_channels=None):
        r = arch["r"]
        chain = Chain((in_channels or 3, r, r))
        chain.add("conv_bn_act", "stem", out=8, k=3, stride=1, act="relu")
        chain.add("mbconv", "stage1.0", out=8, mid=8 * arch["e1"], k=arch["k1"], stride=1,
                  act="relu")
        chain.add("mbconv", "stage2.0", out=16, mid=8 * arch["e2"], k=arch["k2"], stride=2,
                  act="hswish")
        chain.add("global_pool", "head.pool")
        chain.add("classifier", "classifier", classes=num_classes or self.default_classes)
        return chain.specs

    def encode(self, arch):
        return f"r{arch['r']}-k{arch['k1']}e{arch['e1']}-k{arch['k2']}e{arch['e2']}"

    def decode(self, body):
        try:
            r, b1, b2 = body.split("-")
            k1, e1 = b1[1:].split("e")
            k2, e2 = b2[1:].split("e")
            genes = {"r": int(r[1:]), "k1": int(k1), "e1": int(e1), "k2": int(k2), "e2": int(e2)}
        except ValueError:
            raise InvalidArchError(f"bad lattoy key {body!r}: expected rR-kKeE-kKeE") from None
        return self.make(genes)

    def input_size(self, arch):
        return arch["r"]


def toy_space() -> LatencyToySpace:
    return register_space(LatencyToySpace())
