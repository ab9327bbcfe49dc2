"""Few-shot supernets (Zhao et al., "Few-shot Neural Architecture Search", ICML 2021) against
the ranking ground truth (issue 13): does splitting the trained one-shot supernet by the
choice of one gene rank architectures better than the one-shot supernet given the same extra
training?

1. The one-shot supernet exactly as `nas search` trains it by default (cached, as in
   `ranking_estimators.py`).
2. The split gene: the one whose options move the one-shot supernet's own scores most (the
   spread of the per-option mean score over `--probe` random architectures that are not
   ground-truth cells; no ground-truth accuracy is read to choose it). `--gene` overrides.
3. One sub-supernet per option of that gene: a copy of the one-shot weights, trained
   `--epochs` more with the default sampling rule, every sampled subnet taking that option
   (lr `--lr`, cosine to zero, no warm-up). An architecture is scored by the sub-supernet of its
   option, with the default scoring (BatchNorm recalibration, validation images).
4. The control: the one-shot supernet trained as many more steps as all sub-supernets
   together (options x `--epochs` epochs), unsplit, with the same schedule.

Both are written as `scores-supernet_fewshot-...json` and `scores-supernet_continued-...json`
beside the other estimators' scores, so `ranking_estimators.py --markdown` tables them.
Sub-supernets are kept in the cache as they finish, so a run resumes.

    python bench/supernet_fewshot.py --space nb201 --recipe e24 --epochs 3
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from ranking_estimators import supernet_setup  # noqa: E402
from ranking_groundtruth import (  # noqa: E402
    GROUND_TRUTHS,
    ROOT,
    architectures,
    ground_truth,
    load_split_data,
)
from ranking_report import OUT, agreement  # noqa: E402

import estimators.supernet.trainer as trainer_module  # noqa: E402
from estimators.files import atomic_write_text  # noqa: E402
from estimators.supernet import SupernetEstimator, train_supernet  # noqa: E402
from estimators.supernet.trainer import SandwichTrainer, supernet_for  # noqa: E402
from search_spaces import Arch, SearchSpace  # noqa: E402


@contextmanager
def gene_fixed(space: SearchSpace, gene: str | None, option: object) -> Iterator[None]:
    """While active, every subnet the supernet trainer samples takes `option` for `gene`
    (`gene` None: sampling unchanged)."""
    original = trainer_module.step_archs

    def fixed(supernet, recipe, epoch, step):  # type: ignore[no-untyped-def]
        archs, distill = original(supernet, recipe, epoch, step)
        return [space.make({**a.as_dict(), gene: option}) for a in archs], distill

    if gene is not None:
        trainer_module.step_archs = fixed
    try:
        yield
    finally:
        trainer_module.step_archs = original


def continue_training(base: torch.nn.Module, space: SearchSpace, data, recipe, epochs: int,
                      lr: float, seed: int, gene: str | None, option: object,
                      path: Path) -> tuple[torch.nn.Module, float]:
    """A copy of `base` trained `epochs` more (cached at `path`); (supernet, seconds)."""
    supernet = supernet_for(space, data, recipe)
    if path.exists():
        saved = torch.load(path, weights_only=True)
        supernet.load_state_dict(saved["weights"])
        return supernet, float(saved["seconds"])
    supernet.load_state_dict(base.state_dict())
    more = dataclasses.replace(recipe, epochs=epochs, lr=lr, warmup=0.0, seed=seed)
    trainer = SandwichTrainer(supernet, data, more)
    start = time.perf_counter()
    with gene_fixed(space, gene, option):
        for epoch in range(epochs):
            record = trainer.run_epoch(epoch)
            print(f"  {gene}={option} epoch {epoch + 1}/{epochs}: loss {record['loss']:.3f} "
                  f"({record['seconds']:.0f} s)", flush=True)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weights": supernet.state_dict(), "seconds": seconds}, path)
    return supernet, seconds


def choose_gene(estimator: SupernetEstimator, space: SearchSpace, avoid: set[str],
                count: int) -> tuple[str, dict[str, float]]:
    """The gene whose options' mean one-shot score differs most over `count` random archs."""
    rng = np.random.default_rng(2021)
    archs: list[Arch] = []
    while len(archs) < count:
        arch = space.sample(rng)
        if arch.key not in avoid:
            archs.append(arch)
    scores = np.array([estimator(a)["acc"] for a in archs])
    genes = [a.as_dict() for a in archs]
    spread = {}
    for dim in space.dimensions:
        values = np.array([g[dim.name] for g in genes])
        means = [scores[values == o].mean() for o in dim.options if (values == o).any()]
        spread[dim.name] = float(np.std(means))
    return max(spread, key=spread.__getitem__), spread


def score(estimators: dict[object, SupernetEstimator], gene: str | None,
          archs: list[Arch]) -> tuple[dict[str, float], float]:
    scores, seconds = {}, []
    for arch in archs:
        key = arch.as_dict()[gene] if gene is not None else None
        metrics = estimators[key](arch)
        scores[arch.key] = metrics["acc"]
        seconds.append(metrics["supernet_seconds"])
    return scores, float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="nb201", choices=sorted(GROUND_TRUTHS))
    parser.add_argument("--recipe", default="e24", help="ground-truth recipe to compare with")
    parser.add_argument("--gene", default=None, help="split gene (default: chosen, see above)")
    parser.add_argument("--epochs", type=int, default=3, help="more epochs per sub-supernet")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--probe", type=int, default=100,
                        help="random archs scored to choose the gene")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "nas" / "ranking-bench"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    truth = GROUND_TRUTHS[args.space]
    space = truth.space()
    genes = {d.name: d.options for d in space.dimensions}
    if args.gene is not None and args.gene not in genes:  # before minutes of training
        parser.error(f"--gene: one of {', '.join(genes)}")
    data = load_split_data(args.space, truth.protocols[args.recipe],
                           Path(args.data) / "fashion-mnist")
    recipe, images = supernet_setup(args.space, None)
    base = train_supernet(space, data, recipe, cache_dir=args.cache, log=print, quiet=True)
    archs = architectures(args.space)
    one_shot = SupernetEstimator(base, data, **images)
    gene, spread = (args.gene, {}) if args.gene else \
        choose_gene(one_shot, space, {a.key for a in archs}, args.probe)
    print(f"split gene {gene} (spread of option means: "
          f"{json.dumps({k: round(v, 2) for k, v in spread.items()})})", flush=True)
    options = genes[gene]
    folder = Path(args.cache) / "fewshot" / f"{args.space}-{gene}-e{args.epochs}-lr{args.lr:g}"
    runs = {
        f"supernet:fewshot-{gene}-e{args.epochs}": (gene, list(options)),
        f"supernet:continued-e{args.epochs * len(options)}": (None, [None]),
    }
    rows = {r["key"]: r for r in ground_truth(args.space, args.recipe) if r["connected"]}
    for name, (split, values) in runs.items():
        epochs = args.epochs if split else args.epochs * len(options)
        estimators, seconds = {}, 0.0
        for index, value in enumerate(values):
            supernet, spent = continue_training(
                base.supernet, space, data, recipe, epochs, args.lr, recipe.seed + 1 + index,
                split, value, folder / f"{name.replace(':', '_')}-{value}.pt")
            estimators[value] = SupernetEstimator(supernet, data, recipe=recipe, **images)
            seconds += spent
        scores, per_arch = score(estimators, split, archs)
        record = {"name": name, "scores": scores, "seconds_per_arch": per_arch,
                  "train_seconds": float(sum(r["seconds"] for r in base.history)) + seconds,
                  "extra_train_seconds": seconds, "split_gene": split,
                  "gene_spread": spread, "extra_epochs": epochs, "lr": args.lr,
                  "recipe": recipe.as_dict(), **images}
        out = OUT / args.space / f"scores-{name.replace(':', '_')}.json"
        atomic_write_text(out, json.dumps(record, indent=1))
        keys = [k for k in rows if k in scores]
        figures = agreement(np.array([rows[k]["acc"] for k in keys]),
                            np.array([scores[k] for k in keys]))
        print(f"{name}: Kendall tau {figures['kendall_tau']:.3f} "
              f"({figures['tau_90_low']:.2f} to {figures['tau_90_high']:.2f}) on {len(keys)} "
              f"connected cells; {seconds:.0f} s of extra training", flush=True)


if __name__ == "__main__":
    main()
