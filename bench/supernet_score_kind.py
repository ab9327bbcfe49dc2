"""Does the supernet rank better by validation loss than by accuracy? (issue 13, the record)

The default supernet's subnets are scored exactly as the estimator scores them (BatchNorm
recalibrated on its calibration images, then folded), on its evaluation images, three ways:
top-1 accuracy (what `nas search` uses), the mean cross-entropy, and the mean probability of
the true class. Each is compared with the ground truth's mean over `--truth-seeds` seeds on
the connected cells (Kendall tau), alone and rank-blended with jacov as the default blends it
(2/3 and 1/3). Writes results/bench/ranking-estimators/SPACE/score-kinds.json.

    python bench/supernet_score_kind.py --space nb201 --recipe e24 --truth-seeds 6
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ranking_estimators import supernet_setup  # noqa: E402
from ranking_groundtruth import (  # noqa: E402
    EXTRA_SEEDS,
    GROUND_TRUTHS,
    ROOT,
    SEEDS,
    architectures,
    ground_truth,
    load_json,
    load_split_data,
)
from ranking_report import OUT  # noqa: E402
from scipy.stats import kendalltau, rankdata  # noqa: E402

from estimators.batchnorm import fold_batchnorm  # noqa: E402
from estimators.files import atomic_write_text  # noqa: E402
from estimators.supernet import SupernetEstimator, train_supernet  # noqa: E402
from estimators.supernet.estimator import input_size  # noqa: E402
from estimators.train import resize_batch  # noqa: E402
from search_spaces.supernets.dead_taps import dead_taps_trimmed  # noqa: E402

KINDS = ("acc", "neg_loss", "true_prob")  # higher is better for each


@torch.no_grad()
def score_kinds(estimator: SupernetEstimator, arch, batch: int = 250) -> dict[str, float]:
    size = input_size(estimator.supernet, estimator.data, estimator.recipe, arch)
    model = estimator.extract(arch)
    fold_batchnorm(model)
    model.eval()
    images = resize_batch(estimator.images, size).contiguous(memory_format=torch.channels_last)
    correct, loss, prob = 0, 0.0, 0.0
    with dead_taps_trimmed():
        for start in range(0, images.shape[0], batch):
            logits = model(images[start:start + batch]).float()
            labels = estimator.labels[start:start + batch]
            correct += int((logits.argmax(1) == labels).sum())
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            prob += float(F.softmax(logits, 1).gather(1, labels[:, None]).sum())
    n = images.shape[0]
    return {"acc": 100 * correct / n, "neg_loss": -loss / n, "true_prob": prob / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="nb201", choices=sorted(GROUND_TRUTHS))
    parser.add_argument("--recipe", default="e24")
    parser.add_argument("--truth-seeds", type=int, default=6)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "nas" / "ranking-bench"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = OUT / args.space / "score-kinds.json"
    saved = load_json(path)
    if "scores" not in saved:
        protocol = GROUND_TRUTHS[args.space].protocols[args.recipe]
        data = load_split_data(args.space, protocol, Path(args.data) / "fashion-mnist")
        recipe, images = supernet_setup(args.space, None)
        trained = train_supernet(GROUND_TRUTHS[args.space].space(), data, recipe,
                                 cache_dir=args.cache, log=print, quiet=True)
        estimator = SupernetEstimator(trained, data, **images)
        began = time.perf_counter()
        saved = {"supernet": str(trained.path.name), "scores": {
            arch.key: score_kinds(estimator, arch) for arch in architectures(args.space)},
            "seconds": time.perf_counter() - began}
    seeds = (SEEDS + EXTRA_SEEDS)[:args.truth_seeds]
    rows = [r for r in ground_truth(args.space, args.recipe, seeds) if r["connected"]]
    truth = np.array([r["acc"] for r in rows])
    jacov = load_json(OUT / args.space / "scores-proxy_jacov.json")["scores"]
    jacov_rank = rankdata([jacov[r["key"]] for r in rows])
    taus = {}
    for kind in KINDS:
        own = np.array([saved["scores"][r["key"]][kind] for r in rows])
        blended = 2 / 3 * rankdata(own) + 1 / 3 * jacov_rank
        taus[kind] = {"alone": float(kendalltau(truth, own)[0]),
                      "rank_blend_jacov": float(kendalltau(truth, blended)[0])}
    saved[f"kendall_tau_connected_{len(seeds)}seeds"] = taus
    atomic_write_text(path, json.dumps(saved, indent=1))
    print(json.dumps(taus, indent=1))


if __name__ == "__main__":
    main()
