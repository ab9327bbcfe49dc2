"""Differentiable architecture search over any space a `Relaxation` can express.

`darts` (first-order DARTS, Liu et al. 2019): the supernet mixes every candidate with
softmax(alpha); steps alternate between alpha (Adam, on a validation batch) and the weights
(SGD, on a training batch), both at the current values of the other.

`gumbel` (FBNet, Wu et al. 2019; ProxylessNAS's cost term): the mixing weights are
Gumbel-softmax samples of the same distributions, with a temperature annealed from
`tau_start` to `tau_end`, so the weights train on (soft) sampled architectures.

Both add `cost_weight * E[cost] / cost(largest network)` to the architecture loss, with E[cost]
exact under the current probabilities (see `costs.py`): FLOPs from the analytical per-block
cost, `flops_sparse` for sparse candidates (DASS's sparsity-aware objective: a sparse
candidate is charged only its non-zero multiply-accumulates and is trained with its mask, so
its accuracy is that of the sparse network), or latency from a lookup table. A sweep over cost
weights shares one weight warm-up and traces a cost/accuracy front.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from estimators.data import DataSplits
from nas.differentiable.batches import BatchStream
from nas.differentiable.config import SearchConfig
from nas.differentiable.costs import BlockCost, CostModel, cost_model
from nas.differentiable.derive import argmax_choice, derive
from nas.differentiable.distribution import ArchDistribution, one_hot, tau_at
from nas.differentiable.errors import SearchConfigError
from nas.differentiable.relax import Relaxation, relax
from nas.differentiable.result import SearchResult, skip_stats
from nas.differentiable.supernet import RelaxedSupernet
from nas.objectives import Constraint
from nas.sampling import CostFn
from search_spaces import Arch, Dimension, SearchSpace
from search_spaces.arch import Gene

SKIP_MARGIN = 0.01  # lead in probability before a skip counts towards the early stop
# Called after each step of a phase: (phase, step, total steps, info).
PhaseProgress = Callable[[str, int, int, Mapping[str, float]], None]  # (phase, step, total, info)


class DifferentiableSearch:
    """Search `space` on `data` (train split for weights, val split for the architecture)."""

    def __init__(self, space: SearchSpace, data: DataSplits, config: SearchConfig = SearchConfig(),
                 constraints: Sequence[Constraint] = (), cost_fn: CostFn | None = None,
                 block_cost: BlockCost | None = None, seed: int = 0,
                 progress: PhaseProgress | None = None):
        from estimators.flops import FlopsEstimator

        self.space, self.data, self.config = space, data, config
        self.constraints = tuple(constraints)
        self.cost_fn: CostFn = cost_fn if cost_fn is not None else FlopsEstimator()
        self.seed, self.progress = int(seed), progress
        self.relaxation: Relaxation = relax(space, config.fixed, data.num_classes,
                                            data.in_channels, pin=self._pin, seed=self.seed)
        decomposed = any(p.kind == "decomposed" for p in self.relaxation.positions)
        self.method = config.method if config.method != "auto" else (
            "darts" if decomposed else "gumbel")
        self.guard = config.guard if config.guard != "auto" else (
            "early_stop" if self.method == "darts" else "none")
        self.cost: CostModel = cost_model(self.relaxation, config.cost_metric, block_cost,
                                          self.cost_fn)
        self.bounds: list[tuple[Constraint, CostModel]] = [
            (c, self.cost if c.metric == config.cost_metric else
             cost_model(self.relaxation, c.metric, None, self.cost_fn))
            for c in self.constraints]
        self.options = {d.name: d.options for d in self.relaxation.searched}

    # --- fixed genes ---------------------------------------------------------------------------
    def _pin(self, dim: Dimension) -> Gene:
        """A dimension that reshapes the network: its largest value at which the smallest
        architecture still meets the constraints."""
        if not self.constraints:
            return dim.options[-1]
        from nas.objectives import all_satisfied

        base = {d.name: d.options[0] for d in self.space.dimensions}
        base.update(self.config.fixed)
        for option in reversed(dim.options):
            arch = self.space.make({**base, dim.name: option})
            if all_satisfied(self.constraints, self.cost_fn(arch)):
                return option
        return dim.options[0]

    # --- public --------------------------------------------------------------------------------
    def run(self, cost_weight: float = 0.0) -> SearchResult:
        return self.sweep([cost_weight])[0]

    def sweep(self, cost_weights: Sequence[float]) -> list[SearchResult]:
        """One result per cost weight (in the order given), after one shared warm-up."""
        weights = [float(w) for w in cost_weights]
        if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
            raise SearchConfigError(f"cost weights must be finite numbers >= 0, got {weights}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = RelaxedSupernet(self.relaxation)
            optimizer = self._weight_optimizer(net)
            self._warmup(net, optimizer)
            snapshot = (copy.deepcopy(net.state_dict()), copy.deepcopy(optimizer.state_dict()))
            results = []
            for weight in weights:
                net.load_state_dict(snapshot[0])
                # load_state_dict keeps the given momentum tensors and steps update them in
                # place: each weight gets its own copy, so no weight sees another's steps.
                optimizer.load_state_dict(copy.deepcopy(snapshot[1]))
                results.append(self._phase(net, optimizer, weight))
        return results

    # --- training ------------------------------------------------------------------------------
    def _weight_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        decay = [p for p in net.parameters() if p.dim() > 1]
        no_decay = [p for p in net.parameters() if p.dim() <= 1]
        return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                                {"params": no_decay, "weight_decay": 0.0}],
                               lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)

    def _lr(self, step: int) -> float:
        """Cosine decay over warm-up plus one phase."""
        total = self.config.warmup_steps + self.config.steps
        return 0.5 * self.config.lr * (1.0 + math.cos(math.pi * min(step, total) / total))

    def _stream(self, split: str, tag: list[int]) -> BatchStream:
        cfg = self.config
        return BatchStream(self.data, split, cfg.batch_size, [self.seed, *tag],
                           limit=cfg.train_images if split == "train" else None,
                           resolution=cfg.resolution)

    def _weight_step(self, net: RelaxedSupernet, optimizer: torch.optim.Optimizer, step: int,
                     batch: tuple[torch.Tensor, torch.Tensor], mixing: Mapping[str, torch.Tensor],
                     aux: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = self._lr(step)
        inputs, labels = batch
        loss = F.cross_entropy(net(inputs, mixing, aux), labels)
        if not torch.isfinite(loss):
            raise SearchConfigError(f"the supernet diverged at step {step} (loss {float(loss)}); "
                                    f"lower lr (now {self.config.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), self.config.grad_clip)
        optimizer.step()
        return float(loss.detach())

    def _warmup(self, net: RelaxedSupernet, optimizer: torch.optim.Optimizer) -> None:
        """Weights only, on uniform mixing (darts) or Gumbel samples of uniform logits."""
        cfg = self.config
        if cfg.warmup_steps == 0:
            return
        generator = torch.Generator().manual_seed(self.seed)
        dist = ArchDistribution(self.relaxation.searched, init_scale=0.0)
        stream = self._stream("train", [0])
        net.train()
        for step in range(cfg.warmup_steps):
            with torch.no_grad():
                mixing = (dist.probs() if self.method == "darts"
                          else dist.gumbel(cfg.tau_start, generator))
            aux = 1.0 if self.guard == "aux_skip" else 0.0
            loss = self._weight_step(net, optimizer, step, stream.next(), mixing, aux)
            if self.progress is not None:
                self.progress("warmup", step + 1, cfg.warmup_steps, {"loss": loss})

    def _phase(self, net: RelaxedSupernet, optimizer: torch.optim.Optimizer,
               cost_weight: float) -> SearchResult:
        cfg = self.config
        start = time.perf_counter()
        tag = int(round(cost_weight * 1e6))
        torch.manual_seed(int(np.random.SeedSequence([self.seed, tag]).generate_state(1)[0]))
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed, tag, 1]).generate_state(1)[0]))
        dist = ArchDistribution(self.relaxation.searched, generator=generator)
        arch_opt = torch.optim.Adam(dist.parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999),
                                    weight_decay=cfg.arch_weight_decay)
        train, val = self._stream("train", [1, tag]), self._stream("val", [2, tag])
        reference = self.cost.reference()
        history: list[dict[str, float]] = []
        stopped_at: int | None = None
        # early_stop: skip dominance must last `patience` steps (a transient early in the
        # search is not a collapse); the logits from before it began are restored.
        patience = max(1, int(cfg.stop_patience * cfg.steps))
        clean, dominated_since = dist.snapshot(), None
        step = 0
        net.train()
        for step in range(cfg.steps):
            tau = tau_at(step, cfg.steps, cfg.tau_start, cfg.tau_end)
            aux = 1.0 - step / cfg.steps if self.guard == "aux_skip" else 0.0
            ce, expected = self._arch_step(net, dist, arch_opt, val.next(), tau, aux, generator,
                                           cost_weight, reference)
            if self.guard == "early_stop":
                if not self._skip_dominated(dist):
                    clean, dominated_since = dist.snapshot(), None
                else:
                    dominated_since = step if dominated_since is None else dominated_since
                    if step - dominated_since + 1 >= patience:
                        dist.restore(clean)
                        stopped_at = dominated_since
                        break
            with torch.no_grad():
                mixing = dist.probs() if self.method == "darts" else dist.gumbel(tau, generator)
            loss = self._weight_step(net, optimizer, cfg.warmup_steps + step, train.next(),
                                     mixing, aux)
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                history.append(self._log(step, dist, loss, ce, expected, tau, aux))
                if self.progress is not None:
                    self.progress(f"w={cost_weight:g}", step + 1, cfg.steps, history[-1])
        return self._result(net, dist, cost_weight, stopped_at,
                            step + 1 if stopped_at is None else stopped_at, history,
                            time.perf_counter() - start)

    def _arch_step(self, net: RelaxedSupernet, dist: ArchDistribution,
                   arch_opt: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor],
                   tau: float, aux: float, generator: torch.Generator, cost_weight: float,
                   reference: float) -> tuple[float, float]:
        inputs, labels = batch
        mixing = dist.probs() if self.method == "darts" else dist.gumbel(tau, generator)
        ce = F.cross_entropy(net(inputs, mixing, aux), labels)
        probs = dist.probs()
        expected = self.cost.expected(probs)
        loss = ce + cost_weight * expected / reference
        for constraint, model in self.bounds:
            loss = loss + self.config.constraint_weight * F.relu(
                model.expected(probs) / constraint.bound - 1.0)
        params = list(dist.parameters())
        grads = torch.autograd.grad(loss, params)
        for param, grad in zip(params, grads):
            param.grad = grad
        arch_opt.step()
        return float(ce.detach()), float(expected.detach())

    def _skip_dominated(self, dist: ArchDistribution) -> bool:
        # The margin keeps the initial noise of the logits (~1e-3) from counting as a trend.
        edges, _, _ = skip_stats(self.options, dist.numpy_probs(), SKIP_MARGIN)
        return edges > self.config.max_skip

    def _log(self, step: int, dist: ArchDistribution, loss: float, ce: float, expected: float,
             tau: float, aux: float) -> dict[str, float]:
        edges, _, weight = skip_stats(self.options, dist.numpy_probs())
        entry = {"step": float(step), "train_loss": loss, "val_ce": ce,
                 "expected_cost": expected, "skip_edges": float(edges), "skip_weight": weight}
        if self.method == "gumbel":
            entry["tau"] = tau
        if self.guard == "aux_skip":
            entry["aux"] = aux
        return entry

    # --- outcome -------------------------------------------------------------------------------
    def _result(self, net: RelaxedSupernet, dist: ArchDistribution, cost_weight: float,
                stopped_at: int | None, steps: int, history: list[dict[str, float]],
                seconds: float) -> SearchResult:
        probs = dist.numpy_probs()
        arch = derive(self.relaxation, probs, self.constraints, self.cost_fn)
        choice = self.relaxation.choice_of(arch)
        metrics = {k: float(v) for k, v in self.cost_fn(arch).items()
                   if isinstance(v, (int, float))}
        metrics.setdefault(self.config.cost_metric, self.cost.of(choice))
        with torch.no_grad():
            expected = float(self.cost.expected(dist.probs()))
        edges, dims, weight = skip_stats(self.options, probs)
        return SearchResult(cost_weight, arch, probs, metrics, expected,
                            supernet_accuracy(net, self.relaxation, choice, self.data,
                                              self.config.eval_images, self.config.resolution),
                            edges, dims, weight, stopped_at, steps, seconds, history)

    def argmax_arch(self, probs: Mapping[str, Sequence[float]]) -> Arch:
        """The most probable architecture, ignoring constraints."""
        return self.relaxation.arch(argmax_choice(probs))


@torch.no_grad()
def supernet_accuracy(net: RelaxedSupernet, relaxation: Relaxation, choice: Mapping[str, int],
                      data: DataSplits, limit: int, resolution: int | None = None) -> float:
    """Top-1 % of one architecture inside the supernet on validation images, with batch
    statistics in BatchNorm (the shared running statistics belong to the mixture) and no
    dropout; the running statistics are left untouched."""
    from estimators.train import resize_batch

    mixing = one_hot(choice, relaxation.searched)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    net.eval()
    for m in norms:
        m.train()
        m.momentum = 0.0
    correct = total = 0
    try:
        for inputs, labels in data.batches("val", 500, limit=limit):
            logits = net(resize_batch(inputs, resolution), mixing)
            correct += int((logits.argmax(dim=1) == labels).sum())
            total += int(labels.shape[0])
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
        net.train()
    return 100.0 * correct / max(total, 1)
