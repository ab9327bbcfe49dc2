"""EvoNorm's batch-independence claim (issue 16) on Fashion-MNIST: one small ResNet trained with
each normalization-activation kind at small and large batch sizes, everything else equal.

The learning rate scales linearly with the batch size (0.1 at 128, the rule the GroupNorm and
EvoNorm papers use for small batches); every run sees the same images (`--train-images` per
epoch, `--epochs` epochs) and ends as `nas train` does (BatchNorm statistics re-estimated on
2,000 training images, which helps BN-ReLU: its small-batch loss is measured after that fix;
`--bn-images 0` keeps the running averages of training instead, rows marked `-avg`).
Results (test accuracy per norm, batch size and seed) go to results/bench/evonorm/batch.json
as they are made, so a run resumes.

    python bench/evonorm_batch.py [--batches 2 4 8 128] [--seeds 0 1] [--epochs 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "results" / "bench" / "evonorm"
SPACE = str(ROOT / "bench" / "spaces" / "evonorm_resnet.yaml")
DATA_DIR = ROOT.parent / "shared" / "data" / "fashion-mnist"
ARCH = "basic-d1.1.1-w1.0.1.0.1.0-r64"
NORMS = ("bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0")
FIRST_EPOCHS = 2  # the first runs' length: their names and records carry no epochs


def run(batches: list[int], seeds: list[int], epochs: int, images: int,
        bn_images: int, norms: list[str]) -> dict:
    import torch

    from estimators.data import load_data
    from estimators.standalone import TRAIN_DEFAULTS, train_to_checkpoint
    from search_spaces import get_space

    torch.set_num_threads(1)
    path = OUT / "batch.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    space = get_space(SPACE)
    for seed in seeds:
        data = load_data("fashion-mnist", DATA_DIR, seed=seed)
        for batch in batches:
            for norm in norms:
                name = f"{norm}-b{batch}-s{seed}" + ("" if bn_images else "-avg") + \
                    ("" if epochs == FIRST_EPOCHS else f"-e{epochs}")
                if name in results:
                    continue
                recipe = replace(TRAIN_DEFAULTS, epochs=epochs, batch_size=batch,
                                 lr=0.1 * batch / 128, train_images=images,
                                 bn_images=bn_images)
                out = OUT / "runs" / f"{name}.pt"
                out.parent.mkdir(parents=True, exist_ok=True)
                trained = train_to_checkpoint(out, data, space.parse(f"{ARCH}-{norm}"),
                                              recipe=recipe, seed=seed, force=True)
                results[name] = {"norm": norm, "batch": batch, "seed": seed,
                                 "bn_images": bn_images, "epochs": epochs,
                                 "val_acc": trained.info["val_acc"],
                                 "test_acc": trained.info["test_acc"],
                                 "seconds": round(trained.seconds, 1)}
                path.write_text(json.dumps(results, indent=1))
                print(name, results[name], flush=True)
    return results


def table(results: dict, bn_images: int, epochs: int) -> str:
    results = {k: r for k, r in results.items()
               if r.get("bn_images", 2000) == bn_images
               and r.get("epochs", FIRST_EPOCHS) == epochs}
    batches = sorted({r["batch"] for r in results.values()})
    lines = ["| norm | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|" + "---|" * len(batches)]
    for norm in [n for n in NORMS if any(r["norm"] == n for r in results.values())]:
        cells = []
        for batch in batches:
            accs = [r["test_acc"] for r in results.values()
                    if r["norm"] == norm and r["batch"] == batch]
            if not accs:
                cells.append("-")
            elif len(accs) == 1:
                cells.append(f"{accs[0]:.2f}")
            else:
                cells.append(f"{statistics.mean(accs):.2f} ± "
                             f"{statistics.stdev(accs) / len(accs) ** 0.5:.2f} (n={len(accs)})")
        lines.append(f"| {norm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4, 8, 128])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=FIRST_EPOCHS)
    parser.add_argument("--norms", nargs="+", choices=NORMS, default=list(NORMS))
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--bn-images", type=int, default=2000,
                        help="BatchNorm re-estimation images at the end (0: running averages)")
    parser.add_argument("--report", action="store_true", help="print the tables only")
    args = parser.parse_args()
    if not DATA_DIR.is_dir():
        parser.error(f"Fashion-MNIST is not at {DATA_DIR} (../shared beside the checkout)")
    path = OUT / "batch.json"
    results = json.loads(path.read_text()) if args.report and path.is_file() else \
        run(args.batches, args.seeds, args.epochs, args.train_images, args.bn_images, args.norms)
    groups = sorted({(r.get("epochs", FIRST_EPOCHS), r.get("bn_images", 2000))
                     for r in results.values()}, key=lambda g: (g[0], -g[1]))
    what = {2000: "re-estimated on 2,000 training images", 0: "running averages of training"}
    text = "\n\n".join(f"{epochs} epochs, BatchNorm statistics: {what[images]}\n\n"
                       f"{table(results, images, epochs)}" for epochs, images in groups)
    (OUT / "batch.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
