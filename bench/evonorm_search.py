"""The EvoNorm layer search (issue 16) at its documented defaults on Fashion-MNIST, then the
best layer it found against the four reference layers.

1. `nas evolve-layer` with `LayerSearchSettings()`'s defaults (docs/evonorm.md, "The search")
   in results/bench/evonorm/search/run (resumable: run the script again after a kill).
2. The search's pick that is not BN-ReLU (the finalist of highest mean validation accuracy
   retrained from seeds 1 and 2; without finalists, the highest mean fitness) and BN-ReLU,
   GN-ReLU, EvoNorm-B0, EvoNorm-S0 are each trained on each evaluation architecture with the
   fitness recipe from two seeds that took no part in the choice (`--seeds`, default 3 4;
   the stop-22 run, without finalists, used 1 2), plugged in the same way, and scored on the
   test split (all 10,000 images) and
   the validation images the fitness uses. Results go to compare.json as they are made
   (resumable) and compare.md: the mean of the seeds per architecture, and whether each layer
   is within 1 point of BN-ReLU's test accuracy on every architecture.

No model file is written; the tables (run folder files, compare.json, compare.md) are what a
run leaves.

    python bench/evonorm_search.py [--seeds 3 4] [--candidates N] [--population P]
        [--initial references] [--workers W] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "results" / "bench" / "evonorm" / "search"
DATA_DIR = ROOT.parent / "shared" / "data" / "fashion-mnist"
REFERENCE_NAMES = ("bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0")
WITHIN = 1.0  # points of test accuracy below BN-ReLU's that still count as matching it


def search(out: Path, changes: dict) -> dict:
    """Run (or continue) the search; its result."""
    from nas.evonorm import LayerSearchSettings, run_layer_search

    settings = LayerSearchSettings(data="fashion-mnist", data_dir=str(DATA_DIR), **changes)
    return run_layer_search(settings, out / "run",
                            log=lambda text: print(time.strftime("%H:%M:%S"), text, flush=True))


def score(layer: str, arch: str, data, settings, seed: int) -> dict:
    """Val and test accuracy (%) of `layer` in network `arch` trained by the fitness recipe."""
    from estimators.train import evaluate
    from nas.evonorm.fitness import fitness_recipe
    from nas.evonorm.plug import plugged_network, train_plugged
    from nas.evonorm.protocols import LAYER_FAILURES
    from search_spaces import first_line

    start = time.perf_counter()
    try:
        model = plugged_network(arch, layer, data.num_classes, data.in_channels, seed)
        recipe = replace(fitness_recipe(settings), eval_images=None)  # the whole test split
        test = train_plugged(model, data, recipe, seed, settings.recal_images, split="test")
        val = evaluate(model, data, "val", recipe.eval_batch_size, settings.eval_images)
    except LAYER_FAILURES as exc:
        return {"val": math.nan, "test": math.nan, "error": first_line(exc, 160)}
    return {"val": val, "test": test, "seconds": round(time.perf_counter() - start, 1)}


def pick(result: dict, rows: list, columns: list[str]) -> dict | None:
    """The search's pick that is not BN-ReLU: the first such finalist (retrained from the
    finalist seeds), else the layer of highest mean fitness."""
    from nas.evonorm.evolution import best
    from search_spaces.layer_graph import REFERENCES

    for row in result.get("finalists") or []:
        if row["key"] != REFERENCES["bn_relu"] and not math.isnan(row["retrained_mean"]):
            return rows[row["trial"]]
    return best(rows, columns, exclude=[REFERENCES["bn_relu"]])


def compare(out: Path, result: dict, seeds: list[int], recipe: dict, name: str) -> dict:
    """Train the best layer and the references from each seed (resumable), by the fitness
    recipe with `recipe`'s changes (epochs, train_images), into `name`.json."""
    import torch

    from estimators.data import load_data
    from nas.evonorm import LayerSearchSettings
    from search_spaces.layer_graph import REFERENCES

    torch.set_num_threads(1)
    config = json.loads((Path(result["run_dir"]) / "config.json").read_text())
    settings = replace(LayerSearchSettings.from_json(config["settings"]), **recipe)
    rows = json.loads((Path(result["run_dir"]) / "checkpoint.json").read_text())["trials"]
    columns = result["columns"]
    found = pick(result, rows, columns)
    layers = {name: REFERENCES[name] for name in REFERENCE_NAMES}
    if found is not None:
        layers = {"found": found["key"], **layers}
    path = out / f"{name}.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    before = saved.get("layers", {})  # scores of a layer that changed (a longer search) go
    scores = {cell: v for cell, v in saved.get("scores", {}).items()
              if before.get(cell.split("|")[0]) == layers.get(cell.split("|")[0])}
    data = load_data(settings.data, settings.data_dir, val_fraction=settings.val_fraction,
                     seed=settings.seed, resolution=settings.resolution)
    for name, key in layers.items():
        for column, arch in zip(columns, settings.archs):
            for seed in seeds:
                cell = f"{name}|{column}|{seed}"
                if cell in scores:
                    continue
                scores[cell] = score(key, arch, data, settings, seed)
                print(cell, scores[cell], flush=True)
                path.write_text(json.dumps({"layers": layers, "columns": columns,
                                            "archs": list(settings.archs),
                                            "found_trial": found and found["trial"],
                                            "recipe": {"epochs": settings.epochs,
                                                       "train_images": settings.train_images},
                                            "scores": scores}, indent=1))
    return json.loads(path.read_text())


def table(saved: dict, seeds: list[int]) -> str:
    columns, scores = saved["columns"], saved["scores"]
    recipe = saved.get("recipe")
    lengthened = f" at {recipe['epochs']:g} epochs of {recipe['train_images']} images" \
        if recipe else ""

    def mean(name: str, column: str, split: str) -> float:
        values = [scores[f"{name}|{column}|{s}"][split] for s in seeds
                  if f"{name}|{column}|{s}" in scores]
        return statistics.mean(values) if values else math.nan

    lines = [f"Test accuracy (%), mean of seeds {', '.join(map(str, seeds))} (validation in "
             f"brackets); each layer plugged into every EvoNorm-S0 position of the network "
             f"and trained by the search's fitness recipe{lengthened}.", "",
             "| layer | " + " | ".join(columns) + f" | within {WITHIN:g} point of BN-ReLU on "
             f"each arch |", "|---|" + "---|" * (len(columns) + 1)]
    for name in saved["layers"]:
        cells, close = [], True
        for column in columns:
            test, val = mean(name, column, "test"), mean(name, column, "val")
            cells.append(f"{test:.2f} ({val:.2f})")
            close &= test >= mean("bn_relu", column, "test") - WITHIN
        label = name if name != "found" else f"found (trial {saved['found_trial']})"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {'yes' if close else 'no'} |")
    if "found" in saved["layers"]:
        lines += ["", f"Found layer: `{saved['layers']['found']}`"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4],
                        help="seeds of the comparison: neither the search's (0) nor the "
                             "finalists' (1 2)")
    parser.add_argument("--out", type=Path, default=OUT, help="results folder")
    parser.add_argument("--candidates", type=int, help="search budget (default: the setting's)")
    parser.add_argument("--population", type=int, help="population (default: the setting's)")
    parser.add_argument("--train-images", type=int, help="fitness images (default: the "
                                                           "setting's)")
    parser.add_argument("--initial", help="how the population starts (default: the setting's)")
    parser.add_argument("--workers", type=int, help="Ray workers (default: the setting's)")
    parser.add_argument("--compare-epochs", type=float,
                        help="train the comparison this many epochs (default: the fitness "
                             "recipe's); results in compare-epochs<E>....json/md")
    parser.add_argument("--compare-images", type=int,
                        help="training images per epoch of the comparison (default: the "
                             "fitness recipe's)")
    args = parser.parse_args()
    if not DATA_DIR.is_dir():
        parser.error(f"Fashion-MNIST is not at {DATA_DIR} (../shared beside the checkout)")
    changes = {k: v for k, v in (("candidates", args.candidates),
                                 ("population", args.population),
                                 ("train_images", args.train_images),
                                 ("initial", args.initial), ("workers", args.workers),
                                 ("batch", args.workers)) if v is not None}
    args.out.mkdir(parents=True, exist_ok=True)
    result = search(args.out, changes)
    recipe = {k: v for k, v in (("epochs", args.compare_epochs),
                                ("train_images", args.compare_images)) if v is not None}
    name = "compare" + "".join(f"-{k}{v:g}" for k, v in recipe.items())
    saved = compare(args.out, result, args.seeds, recipe, name)
    text = table(saved, args.seeds)
    (args.out / f"{name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
