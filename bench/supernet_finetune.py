"""Does fine-tuning each subnet alone before scoring rank NB201 cells better (issue 13)?

The supernet estimator's `finetune_steps` / `finetune_lr` (estimators.supernet.finetune): each
extracted subnet takes a few SGD steps on its own before BatchNorm recalibration. This scores
the 58 connected ground-truth cells with the cached 30-epoch supernets of seeds 0-2 (trained
by bench/ranking_estimators.py, `supernet:fair-e30-eval5k-wd0[-seedN]`) under each setting
and each draw of the fine-tuning batches (`draw`: the estimator's seed, which picks the images
and dropout masks), against the ten-seed `e24` mean: Kendall tau alone and rank-blended with
jacov as the engine blends (2/3, 1/3). Resumable: one entry per (supernet, setting, draw) in
results/bench/ranking-estimators/nb201/finetune.json.

    python bench/supernet_finetune.py --steps 40 --lr 0.02 --batch 64 --draws 0 5
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from ranking_estimators import supernet_setup  # noqa: E402
from ranking_groundtruth import GROUND_TRUTHS, ROOT, ground_truth, load_split_data  # noqa: E402
from ranking_report import OUT  # noqa: E402
from ranking_seeds import BLEND  # noqa: E402
from scipy.stats import kendalltau, rankdata  # noqa: E402

from estimators.files import atomic_write_text  # noqa: E402
from estimators.supernet import SupernetEstimator, train_supernet  # noqa: E402
from estimators.supernet.finetune import SubnetFinetune  # noqa: E402

SUPERNETS = ["fair-e30-eval5k-wd0", "fair-e30-eval5k-wd0-seed1", "fair-e30-eval5k-wd0-seed2"]
RESULTS = OUT / "nb201" / "finetune.json"


def cached_estimator(variant: str, data) -> SupernetEstimator:
    """The estimator on the cached supernet of `variant` (trained by ranking_estimators.py)."""
    recipe, images = supernet_setup("nb201", variant)
    trained = train_supernet(GROUND_TRUTHS["nb201"].space(), data, recipe, quiet=True,
                             cache_dir=Path.home() / ".cache" / "nas" / "ranking-bench")
    return SupernetEstimator(trained, data, **images)


def score(estimator: SupernetEstimator, finetune: SubnetFinetune,
          cells: list[str]) -> dict[str, float]:
    estimator.finetune = finetune
    estimator.forget()
    space = GROUND_TRUTHS["nb201"].space()
    return {key: float(estimator(space.parse(key))["acc_supernet"]) for key in cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--draws", type=int, nargs="+", default=[0])
    parser.add_argument("--supernets", nargs="+", default=SUPERNETS)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [r for r in ground_truth("nb201", "e24", seeds=tuple(range(10))) if r["connected"]]
    cells, truth = [r["key"] for r in rows], [r["acc"] for r in rows]
    jacov = json.loads((OUT / "nb201" / "scores-proxy_jacov.json").read_text())["scores"]
    jacov_share = BLEND[1] * rankdata([jacov[k] for k in cells])
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data = load_split_data("nb201", GROUND_TRUTHS["nb201"].protocols["e24"],
                           Path(args.data) / "fashion-mnist")
    for variant in args.supernets:
        estimator = None
        for draw in args.draws:
            name = f"{variant}/f{args.steps}x{args.lr:g}-b{args.batch}-d{draw}"
            if name not in results:
                estimator = estimator or cached_estimator(variant, data)
                scores = score(estimator, SubnetFinetune(data, args.steps, args.lr, args.batch,
                                                         draw), cells)
                own = [scores[k] for k in cells]
                results[name] = {
                    "tau": float(kendalltau(own, truth)[0]),
                    "blended": float(kendalltau(BLEND[0] * rankdata(own) + jacov_share,
                                                truth)[0]),
                    "scores": scores}
                atomic_write_text(RESULTS, json.dumps(results, indent=1))
            print(name, round(results[name]["tau"], 3), round(results[name]["blended"], 3),
                  flush=True)
    taus = [v["tau"] for k, v in results.items() if k.split("/")[1].startswith(
        f"f{args.steps}x{args.lr:g}-b{args.batch}-")]
    print(f"mean over {len(taus)}: {np.mean(taus):.3f}")


if __name__ == "__main__":
    main()
