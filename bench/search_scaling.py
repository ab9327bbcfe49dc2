"""Throughput of Ray evaluation: two workers against one, measured side by side.

One embedded Ray (2 CPUs) and one `RayRunner` with two actors; the one-worker runs use the first
actor alone, so both sides share warm actors and nothing but the number of workers differs.
Each round draws 2N new architectures, sorts them by FLOPs and deals them alternately into two
sets of matched cost; one set runs on one worker, the other on two, the order alternating
between rounds. Prints candidates per second of each side per round and the median ratio.

    python bench/search_scaling.py [--space mobile] [--estimator proxy|supernet] [--rounds 4]
        [--candidates 16] [--data-dir ../shared/data/fashion-mnist] [--option epochs=4 ...]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobile")
    parser.add_argument("--budget", default="300M-flops")
    parser.add_argument("--estimator", default="supernet", choices=("proxy", "supernet"))
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" /
                                                  "fashion-mnist"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=16, help="per side and round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="estimator option, e.g. epochs=4 (a supernet recipe in the cache)")
    args = parser.parse_args()
    import json

    options = {}
    for pair in args.option:
        name, _, text = pair.partition("=")
        try:
            options[name] = json.loads(text)
        except ValueError:
            options[name] = text

    from estimators.flops import FlopsEstimator
    from estimators.ray_local import start_local_ray
    from nas.budget import parse_budget
    from nas.evaluation import evaluation_config, prepare
    from nas.runners import RayRunner
    from nas.sampling import sample_within
    from search_spaces import get_space

    start_local_ray(num_cpus=2, log_to_driver=False, logging_level="ERROR")
    config = evaluation_config(args.space, args.estimator, options,
                               data={"name": "fashion-mnist", "dir": args.data_dir},
                               seed=args.seed)
    start = time.perf_counter()
    shared = prepare(config, print)
    print(f"prepared {args.estimator} on {args.space} in {time.perf_counter() - start:.1f}s")
    two = RayRunner(config, shared, workers=2)
    one = copy.copy(two)
    one.actors = two.actors[:1]  # the same warm actor, alone
    space = get_space(args.space)
    flops = FlopsEstimator()
    constraints = parse_budget(args.budget)
    rng = np.random.default_rng(args.seed)
    seen: set[str] = set()

    def fresh(count: int) -> list[str]:
        keys: list[str] = []
        while len(keys) < count:
            key = sample_within(space, constraints, flops, rng).key
            if key not in seen:
                seen.add(key)
                keys.append(key)
        return keys

    two.evaluate(fresh(4))  # warm-up: first evaluations import and allocate
    ratios, rows = [], []
    for round_ in range(args.rounds):
        keys = sorted(fresh(2 * args.candidates), key=lambda k: flops(space.parse(k))["flops"])
        sets = (keys[0::2], keys[1::2])
        order = [(one, "1 worker", sets[0]), (two, "2 workers", sets[1])]
        if round_ % 2:
            order.reverse()
        rates = {}
        for runner, label, batch in order:
            start = time.perf_counter()
            results = runner.evaluate(batch)
            seconds = time.perf_counter() - start
            errors = sum(1 for r in results if "error" in r)
            rates[label] = len(batch) / seconds
            rows.append((round_, label, len(batch), seconds, rates[label], errors))
        ratios.append(rates["2 workers"] / rates["1 worker"])
        print(f"round {round_}: 1 worker {rates['1 worker']:.2f}/s, 2 workers "
              f"{rates['2 workers']:.2f}/s, ratio {ratios[-1]:.2f}")
    two.close()
    import ray

    ray.shutdown()
    print(f"\n{args.estimator} on {args.space} ({args.candidates} candidates per side and "
          f"round, {args.rounds} rounds): median ratio {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); target >= 1.7")
    return 0


if __name__ == "__main__":
    sys.exit(main())
