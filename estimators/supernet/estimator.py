"""The `supernet` accuracy estimator: a subnet's top-1 % with weights inherited from a trained
supernet. For each arch: extract the subnet (`space.build(arch)` holding the shared weights),
recalibrate its BatchNorm statistics on training images (always: the shared running
statistics belong to no subnet in particular), then score it on the validation split.

The images are normalised (and resized) once, when the estimator is made; a subnet then
costs one extraction and two forward passes (calibration, validation), run in channels-last
layout with dead kernel taps trimmed (see `search_spaces.supernets.dead_taps`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from estimators.accuracy import ProxyEstimator
from estimators.base import AccuracyEstimator, EstimatorOptions, Resolution, Shared, option
from estimators.batchnorm import fold_batchnorm, recalibrate_batchnorm
from estimators.data import DataSplits
from estimators.progress import StepProgress
from estimators.supernet.blend import BLEND_REFERENCE, BLEND_WEIGHT, ProxyBlend, cached_blend
from estimators.supernet.finetune import SubnetFinetune
from estimators.supernet.recipe import STYLE_RECIPE, SupernetRecipe, default_recipe
from estimators.supernet.trainer import (
    TrainedSupernet,
    input_size,
    supernet_for,
)
from estimators.supernet.training import load_trained, train_supernet
from estimators.threads import available_cores, torch_threads
from estimators.train import resize_batch
from search_spaces import Arch, NasError, SearchSpace, get_space
from search_spaces.supernets import Supernet
from search_spaces.supernets.dead_taps import dead_taps_trimmed

CALIBRATION_IMAGES = 500  # OFA uses 2,000 ImageNet images; 500 of 28x28 settle the means
EVAL_IMAGES = 2000
# (calibration, evaluation) images by supernet style where they differ: one-shot subnets are
# cheap to score and close in accuracy, and 5,000 validation images rank them better than
# 2,000 (Kendall tau 0.57 -> 0.63 on reduced NB201, docs/ranking.md)
STYLE_IMAGES: dict[str, tuple[int, int]] = {"one-shot": (1000, 5000)}
# fine-tuning each subnet alone before scoring (estimators.supernet.finetune) is off by
# default: on reduced NB201 it ranked better at 2.7 times the scoring cost (docs/ranking.md)
FINETUNE_LR = 0.01


@dataclass(frozen=True)
class SupernetOptions(EstimatorOptions):
    """Recipe fields (None: the recipe's default), the estimator's images, where trained
    supernets are cached and how many processes train it (Ray Train, data-parallel)."""

    epochs: float | None = option(None, "training epochs (default: the recipe's)", "whole1")
    train_images: int | None = option(None, "training images per epoch (default: the "
                                            "recipe's)", "int1")
    batch_size: int | None = option(None, "training batch (default: the recipe's)", "int2")
    lr: float | None = option(None, "peak learning rate (default: the recipe's)", "positive")
    weight_decay: float | None = option(None, f"L2 penalty on conv/linear weights (default "
                                              f"{SupernetRecipe.weight_decay:g}; one-shot "
                                              f"spaces "
                                              f"{STYLE_RECIPE['one-shot']['weight_decay']:g})",
                                        "nonnegative")
    random_subnets: int | None = option(None, "random subnets per step besides the largest "
                                              "and smallest (default: the recipe's)", "int0")
    resolution: Resolution = option(None, "training input size: None (the data's), 'arch' "
                                          "or pixels", "resolution")
    sampling: str | None = option(None, "subnets per step: auto, sandwich, fair or uniform "
                                        "(default: the recipe's)", "sampling")
    subnets_per_pass: int | None = option(None, "subnets sharing one forward-backward, each on "
                                                "its own slice of the batch (ViT-ResNAS "
                                                "multi-architectural sampling; default 1: each "
                                                "subnet on the whole batch, one backward each)",
                                          "int1")
    rank_loss: float | None = option(None, "weight of RD-NAS's ranking loss with FLOPs as the "
                                           "prior: each step's subnets with more FLOPs are "
                                           "trained to a loss no higher than those with "
                                           "fewer (default: the recipe's; 0: off)",
                                     "nonnegative")
    norm_affine: bool | None = option(None, "train BatchNorm's scale and shift (default: the "
                                            "recipe's, true); false holds them at 1 and 0",
                                      "bool")
    calibration_images: int | None = option(None, "training images BatchNorm is recalibrated "
                                                  "on per subnet (default 500; one-shot "
                                                  "spaces 1,000)", "int2")
    eval_images: int | None = option(None, "validation images each subnet is scored on "
                                           "(default 2,000; one-shot spaces 5,000)", "int1")
    finetune_steps: int | None = option(None, "SGD steps each subnet takes on its own from "
                                              "its inherited weights before it is scored, on "
                                              "the same seeded batches for every subnet "
                                              "(default 0)", "int0")
    finetune_lr: float | None = option(None, "learning rate of those steps (default 0.01)",
                                       "positive")
    blend_proxy: str | None = option(None, "zero-cost proxy whose rank moves the supernet's "
                                           "accuracy (default: the space's own, jacov on "
                                           "NB201; 'none': the supernet alone)",
                                     "proxy_or_none")
    blend_weight: float = option(BLEND_WEIGHT, "the proxy's share of the blended rank",
                                 "fraction")
    blend_reference: int = option(BLEND_REFERENCE, "random architectures the two ranks are "
                                                   "read against (scored once per supernet)",
                                  "int2")
    cache_dir: str | None = option(None, "where trained supernets are cached (default: the "
                                         "user cache)", "text")
    train_workers: int = option(1, "processes training the supernet (Ray Train, "
                                   "data-parallel)", "int1")

    def check(self) -> None:
        supernet_recipe(self.as_dict())


# The options that are recipe fields (every SupernetOptions field that SupernetRecipe has):
# `supernet_recipe` passes them on, `nas supernet train` reads its flags of the same names.
RECIPE_OPTIONS = tuple(f.name for f in fields(SupernetOptions)
                       if f.name in {r.name for r in fields(SupernetRecipe)})


def supernet_recipe(options: Mapping[str, Any],
                    space: SearchSpace | str | None = None) -> SupernetRecipe:
    """The training recipe of a `supernet` estimator's options (None: the default for the
    space's supernet style, or `SupernetRecipe()`'s without a space)."""
    values = {k: options[k] for k in RECIPE_OPTIONS if options.get(k) is not None}
    if isinstance(values.get("epochs"), float) and values["epochs"].is_integer():
        values["epochs"] = int(values["epochs"])  # --epochs is a float for the train estimator
    return SupernetRecipe(**values) if space is None else default_recipe(space, **values)


def scoring_settings(space: SearchSpace | str, calibration: int | None = None,
                     evaluation: int | None = None, finetune_steps: int | None = None,
                     finetune_lr: float | None = None) -> dict[str, Any]:
    """How each subnet of `space` is scored: calibration and evaluation images, fine-tuning
    steps and rate (None: its supernet style's default)."""
    style = (get_space(space) if isinstance(space, str) else space).supernet_style
    images = STYLE_IMAGES.get(style, (CALIBRATION_IMAGES, EVAL_IMAGES))
    chosen = (calibration, evaluation, finetune_steps, finetune_lr)
    names = ("calibration_images", "eval_images", "finetune_steps", "finetune_lr")
    return {name: default if value is None else value
            for name, value, default in zip(names, chosen, (*images, 0, FINETUNE_LR))}


def blend_proxy(space: SearchSpace | str, chosen: str | None = None) -> str | None:
    """The proxy blended into the supernet's accuracy on `space`: `chosen` (None: the space's
    own `score_proxy`; "none": no blend)."""
    if chosen is None:
        return (get_space(space) if isinstance(space, str) else space).score_proxy
    return None if chosen == "none" else chosen


@torch.inference_mode()
def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
         batch_size: int = 250) -> float:
    """Top-1 accuracy (%) of `model` (in eval mode) on `images` (batches of 250: faster on a
    CPU than larger ones, whose activations fall out of cache)."""
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start:start + batch_size])
        correct += int((logits.argmax(dim=1) == labels[start:start + batch_size]).sum())
    return 100.0 * correct / max(1, images.shape[0])


class SupernetEstimator(AccuracyEstimator):
    """`acc_supernet`: top-1 % on the first `eval_images` of `split` (None: the whole split)
    after BatchNorm recalibration on `calibration_images` seeded training images. `acc`: the
    same, moved toward a zero-cost proxy's rank where a `blend` is given (`blend_<proxy>`:
    the proxy's score; estimators.supernet.blend)."""

    name = "supernet"
    Options = SupernetOptions
    needs_data = True
    unit = "percent"
    summary = "subnets with weights inherited from a supernet trained once and cached"
    space_bound = True
    test_split = True

    def __init__(self, trained: TrainedSupernet | Supernet, data: DataSplits, *,
                 recipe: SupernetRecipe | None = None,
                 calibration_images: int = CALIBRATION_IMAGES,
                 eval_images: int | None = EVAL_IMAGES, split: str = "val", seed: int = 0,
                 blend: ProxyBlend | None = None, finetune_steps: int = 0,
                 finetune_lr: float = FINETUNE_LR):
        super().__init__()
        if split not in ("val", "test"):
            raise NasError(f"split must be 'val' or 'test' (final reports), got {split!r}")
        if calibration_images < 2:
            raise NasError(f"BatchNorm calibration needs at least 2 images, got "
                           f"{calibration_images}")
        if isinstance(trained, TrainedSupernet):
            self.supernet, self.recipe = trained.supernet, trained.recipe
        else:
            self.supernet, self.recipe = trained, recipe or SupernetRecipe()
        self.data, self.split, self.seed = data, split, seed
        count = min(calibration_images, len(data.train))
        self.calibration = data.sample_batch(count, seed, "train")[0]
        held = data.split(split)
        limit = len(held) if eval_images is None else min(eval_images, len(held))
        self.images = data.normalize(held.images[:limit])
        self.labels = held.labels[:limit]
        self.finetune = SubnetFinetune(data, finetune_steps, finetune_lr,
                                       self.recipe.batch_size, seed)
        self._resized: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.set_blend(blend)

    # --- the plugin's declarations ----------------------------------------------------------
    @classmethod
    def metrics(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        return ("acc", "acc_supernet", "eval_images")

    @classmethod
    def prepare(cls, config: Mapping[str, Any], shared: Shared,
                log: Callable[[str], None] | None = None) -> None:
        """Train the supernet of the config's space on `shared["data"]` (or load it from the
        cache) into `shared["supernet"]`: its weights as a plain state dict, plus where it is
        cached. Training runs before any evaluation, alone on the machine: every core (2
        threads train ~1.5x faster than 1 on two idle cores)."""
        with torch_threads(max(int(config["threads"]), available_cores())):
            options = config["options"]
            # resume: an interrupted training (a killed search) continues from its last epoch.
            trained = train_supernet(config["space"], shared["data"],
                                     supernet_recipe(options, config["space"]),
                                     workers=int(options["train_workers"]), resume=True,
                                     quiet=log is None, cache_dir=options["cache_dir"], log=log)
            if log is not None:
                log(f"supernet {'reused from' if trained.reused else 'trained into'} "
                    f"{trained.path}" + ("" if trained.reused else f" in {trained.seconds:.0f}s"))
            state = {k: v.detach().clone() for k, v in trained.supernet.state_dict().items()}
            shared["supernet"] = {"state": state, "key": trained.key, "path": str(trained.path),
                                  "reused": trained.reused, "train_seconds": trained.seconds}
            proxy = blend_proxy(config["space"], options["blend_proxy"])
            if proxy is not None:  # the reference is scored here, once, by the unblended one
                start = time.perf_counter()
                plain = cls.from_config(config, shared)
                blend = plain.fit_blend(get_space(config["space"]), proxy,
                                        options["blend_weight"], options["blend_reference"],
                                        trained.path)
                shared["supernet"]["blend"] = blend.as_dict()
                if log is not None:
                    log(f"supernet accuracy blended with the rank of {proxy} (weight "
                        f"{blend.weight:.2f}, {len(blend.reference_acc)} reference "
                        f"architectures, {time.perf_counter() - start:.0f}s)")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], shared: Shared) -> SupernetEstimator:
        """The estimator on the shared weights (each process rebuilds the supernet from its
        config and loads them: the weights travel, the module does not)."""
        if "supernet" not in shared:
            raise NasError("the supernet estimator needs prepare(config) to have trained "
                           "or loaded the supernet")
        options = config["options"]
        recipe = supernet_recipe(options, config["space"])
        data = shared["data"]
        supernet = supernet_for(config["space"], data, recipe)
        supernet.load_state_dict(shared["supernet"]["state"])
        supernet.eval()
        blend = shared["supernet"].get("blend")
        return cls(supernet, data, recipe=recipe, seed=config["seed"],
                   blend=None if blend is None else ProxyBlend.from_dict(blend),
                   **scoring_settings(config["space"], options["calibration_images"],
                                      options["eval_images"], options["finetune_steps"],
                                      options["finetune_lr"]))

    @classmethod
    def create(cls, space: SearchSpace | str, *, data: DataSplits | None = None,
               split: str = "val", seed: int = 0, cache_dir: str | Path | None = None,
               **_: Any) -> SupernetEstimator:
        """The estimator on the cached supernet trained with the default recipe (not
        trained here: a NasError says how to train it)."""
        from estimators.data import load_data

        return cls.for_space(space, data if data is not None else load_data(), train=False,
                             cache_dir=cache_dir, split=split, seed=seed)

    @property
    def label(self) -> str:
        return "supernet" if self.split == "val" else "supernet:test"

    def _inputs(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibration and evaluation images at `size` pixels, channels last (cached)."""
        if size not in self._resized:
            layout = torch.channels_last
            self._resized[size] = (
                resize_batch(self.calibration, size).contiguous(memory_format=layout),
                resize_batch(self.images, size).contiguous(memory_format=layout))
        return self._resized[size]

    def extract(self, arch: Arch) -> nn.Module:
        """The subnet of `arch` with inherited weights (fine-tuned alone for `finetune_steps`)
        and recalibrated BatchNorm."""
        size = input_size(self.supernet, self.data, self.recipe, arch)
        model = self.finetune(self.supernet.extract(arch), size)
        model = model.to(memory_format=torch.channels_last)
        calibration, _ = self._inputs(size)
        with dead_taps_trimmed():
            recalibrate_batchnorm(model, calibration)
        return model

    def estimate(self, arch: Arch) -> dict[str, float]:
        start = time.perf_counter()
        size = input_size(self.supernet, self.data, self.recipe, arch)
        model = self.extract(arch)
        fold_batchnorm(model)  # scoring only: the statistics are final
        _, images = self._inputs(size)
        with dead_taps_trimmed():
            acc = top1(model, images, self.labels)
        metrics = {"acc": acc, "acc_supernet": acc, "eval_images": float(images.shape[0])}
        if self.blend is not None and self.blend_scorer is not None:
            proxy_start = time.perf_counter()
            score = self.blend_scorer.estimate(arch)[self.blend.proxy]
            metrics.update({"acc": self.blend(acc, score), f"blend_{self.blend.proxy}": score,
                            "blend_seconds": time.perf_counter() - proxy_start})
        return {**metrics, "supernet_seconds": time.perf_counter() - start}

    def fit_blend(self, space: SearchSpace, proxy: str, weight: float = BLEND_WEIGHT,
                  count: int = BLEND_REFERENCE,
                  checkpoint: str | Path | None = None) -> ProxyBlend:
        """The blend of `proxy` into this estimator's accuracy, its reference (`count` random
        architectures of `space`) scored here, or read from beside the trained supernet's
        `checkpoint` (`blend_cache`) when a run with the same settings and supernet wrote it."""
        scorer = self.proxy_scorer(proxy)

        def supernet_acc(arch: Arch) -> float:
            return float(self.estimate(arch)["acc_supernet"])

        def proxy_score(arch: Arch) -> float:
            return float(scorer.estimate(arch)[proxy])

        cache = None if checkpoint is None else self.blend_cache(checkpoint, proxy, count)
        return cached_blend(space, supernet_acc, proxy_score, proxy, weight, count, cache)

    def proxy_scorer(self, proxy: str) -> ProxyEstimator:
        """`proxy` on the untrained network of an arch, at the supernet's input size."""
        return ProxyEstimator(self.data, proxy, proxies=(proxy,), seed=self.seed,
                              resolution=self.recipe.resolution)

    def blend_cache(self, checkpoint: str | Path, proxy: str, count: int) -> tuple[Path, str]:
        """Where the blend reference of this estimator's settings is kept (beside the trained
        supernet's checkpoint, whose name is its training's key), and a stamp of the
        checkpoint (its size and time), so a supernet trained again is scored again."""
        checkpoint = Path(checkpoint)
        found = checkpoint.stat()
        return (checkpoint.with_name(
            f"{checkpoint.stem}.blend-{proxy}-n{count}-c{self.calibration.shape[0]}"
            f"-e{self.images.shape[0]}{self.finetune.describe()}-{self.split}-s{self.seed}"
            f".json"),
            f"{found.st_size}-{found.st_mtime_ns}")

    def set_blend(self, blend: ProxyBlend | None) -> None:
        """Blend the accuracy by `blend` from now on (None: the supernet alone)."""
        self.blend = blend
        self.blend_scorer = None if blend is None else self.proxy_scorer(blend.proxy)
        self.forget()

    # --- construction from a space ------------------------------------------------------------
    @classmethod
    def for_space(cls, space: SearchSpace | str, data: DataSplits, *,
                  recipe: SupernetRecipe | None = None, train: bool = True,
                  workers: int = 1, quiet: bool = True, cache_dir: str | Path | None = None,
                  progress: StepProgress | None = None, blend: str | None = None,
                  blend_weight: float = BLEND_WEIGHT, blend_reference: int = BLEND_REFERENCE,
                  **kwargs) -> SupernetEstimator:
        """The estimator on the cached supernet of (space, data, recipe: default the space's
        `default_recipe`); trained first when `train` (else a NasError says how to train it).
        Calibration and evaluation images default to the space's style's; `blend` names the
        proxy blended into the accuracy (None: the space's own, "none": no blend)."""
        resolved = get_space(space) if isinstance(space, str) else space
        recipe = recipe or default_recipe(resolved)
        kwargs = {**scoring_settings(resolved, *(kwargs.pop(name, None) for name in (
            "calibration_images", "eval_images", "finetune_steps", "finetune_lr"))), **kwargs}
        if train:
            trained = train_supernet(resolved, data, recipe, workers=workers, quiet=quiet,
                                     cache_dir=cache_dir, progress=progress)
        else:
            found = load_trained(resolved, data, recipe, cache_dir)
            if found is None:
                raise NasError(f"no trained supernet of {resolved.name} on {data.name} with "
                               f"this recipe in the cache; run `nas supernet train --space "
                               f"{resolved.name} --data {data.name}` first")
            trained = found
        estimator = cls(trained, data, **kwargs)
        proxy = blend_proxy(resolved, blend)
        if proxy is not None:
            estimator.set_blend(estimator.fit_blend(resolved, proxy, blend_weight,
                                                    blend_reference, trained.path))
        return estimator


__all__ = ["RECIPE_OPTIONS", "SupernetEstimator", "SupernetOptions", "blend_proxy",
           "recalibrate_batchnorm", "scoring_settings", "supernet_recipe", "top1"]
