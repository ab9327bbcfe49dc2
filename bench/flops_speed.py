"""Analytical FLOPs+params speed: 1,000 random `mobile` architectures (target: under 2 s).

Prints the median of several rounds, cold (block-cost cache cleared, as in a fresh process) and
warm, and checks a few against fvcore. Usage: python bench/flops_speed.py [--n 1000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from estimators import flops as flops_module
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--space", default="mobile")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    space = get_space(args.space)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(args.n)]
    cold, warm = [], []
    for _ in range(args.rounds):
        flops_module._cached_block_cost.cache_clear()
        for bucket in (cold, warm):
            start = time.perf_counter()
            for arch in archs:
                flops_module.analytical_cost(arch)
            bucket.append(time.perf_counter() - start)
    values = np.array([flops_module.analytical_cost(a).macs for a in archs]) / 1e6
    print(f"{args.n} random {args.space} archs, FLOPs {values.min():.1f}M..{values.max():.1f}M "
          f"(median {np.median(values):.1f}M)")
    print(f"analytical flops+params, cold cache: median {statistics.median(cold):.3f} s "
          f"(min {min(cold):.3f}) per {args.n}")
    print(f"analytical flops+params, warm cache: median {statistics.median(warm):.3f} s "
          f"(min {min(warm):.3f}) per {args.n}")
    start = time.perf_counter()
    for arch in archs[:5]:
        model = space.build(arch)
        counted = flops_module.fvcore_cost(model, model.example_input())
        assert counted == flops_module.analytical_cost(arch), arch.key
    print(f"fvcore agrees exactly on 5 of them ({(time.perf_counter() - start) / 5:.2f} s each "
          f"to build and trace)")


if __name__ == "__main__":
    main()
