"""Zero-cost proxies: scores of an untrained network from one batch that rank architectures
without training. Each is a function `(model, inputs, targets) -> float`, larger = better,
that leaves `model` untouched (it works on a copy).

- `synflow` (Tanaka et al. 2020): sum of |theta * dR/dtheta| with R the summed output of the
  linearised network (|weights|, BatchNorm and activations removed, float64) on an all-ones
  input; data-free.
- `jacov` (NASWOT v1, Mellor et al. 2020, as NASLib computes it): -sum(log(l + k) + 1/(l + k))
  over the eigenvalues l of the correlation matrix of the input Jacobians of the batch.
- `naswot` (NASWOT v2): log-determinant of the Hamming-similarity kernel of the binary
  activation codes of the batch (plus the identity, to stay finite when codes repeat).
- `grad_norm`: sum over weight tensors of the L2 norm of the loss gradient.
- `snip` (Lee et al. 2019): sum of |theta * dL/dtheta| for the cross-entropy loss L.
- `params`: number of parameters (weights masked out by sparse layers not counted).

"Weights" are the parameters named `...weight` with two or more dimensions: conv, linear and
attention projections, not norms or biases (NASLib takes Conv2d and Linear weights).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]

# Activations whose input sign forms the NASWOT code of a unit.
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.Mish,
               nn.ELU, nn.PReLU)
JACOV_EPS = 1e-5  # NASLib's k


def weight_tensors(model: nn.Module) -> list[nn.Parameter]:
    """The prunable weights: parameters named `...weight` with at least 2 dimensions."""
    return [p for name, p in model.named_parameters()
            if name.rsplit(".", 1)[-1].endswith("weight") and p.dim() >= 2]


def _copy(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    clone.zero_grad(set_to_none=True)
    return clone


# --- loss-gradient proxies (grad_norm, snip) ---------------------------------------------------
def loss_gradients(model: nn.Module, inputs: torch.Tensor,
                   targets: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, d cross-entropy / d weight) per weight tensor, in training mode as NASLib
    does (BatchNorm uses the batch's statistics)."""
    clone = _copy(model).train()
    loss = F.cross_entropy(clone(inputs), targets)
    loss.backward()
    pairs = []
    for weight in weight_tensors(clone):
        grad = weight.grad if weight.grad is not None else torch.zeros_like(weight)
        pairs.append((weight.detach(), grad.detach()))
    return pairs


def grad_norm_from(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return float(sum(float(g.norm()) for _, g in pairs))


def snip_from(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return float(sum(float((w * g).abs().sum()) for w, g in pairs))


def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Sum of the per-tensor L2 norms of the cross-entropy gradient of the weights."""
    return grad_norm_from(loss_gradients(model, inputs, targets))


def snip(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Connection sensitivity: sum of |weight * gradient| of the cross-entropy."""
    return snip_from(loss_gradients(model, inputs, targets))


# --- input-side proxies (jacov, naswot) --------------------------------------------------------
def input_pass(model: nn.Module, inputs: torch.Tensor, jacobian: bool = True,
               codes: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One forward (training mode) giving the input Jacobians of the summed output, (N, D),
    and the NASWOT kernel of the binary activation codes, (N, N), as requested."""
    clone = _copy(model).train()
    n = inputs.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64)
    seen = [0]
    handles = []
    if codes:
        def record(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            # A pre-hook reads the input before an in-place activation overwrites it; the
            # kernel is accumulated per layer, so codes of the whole network are never held.
            code = (args[0].detach() > 0).flatten(1).float()
            kernel.add_((code @ code.T + (1.0 - code) @ (1.0 - code).T).double())
            seen[0] += 1

        handles = [m.register_forward_pre_hook(record) for m in clone.modules()
                   if isinstance(m, ACTIVATIONS)]
    x = inputs.detach().clone().requires_grad_(jacobian)
    try:
        with torch.set_grad_enabled(jacobian):
            out = clone(x)
            if jacobian:
                out.backward(torch.ones_like(out))
    finally:
        for handle in handles:
            handle.remove()
    jac = None
    if jacobian:
        grad = x.grad if x.grad is not None else torch.zeros_like(x)
        jac = grad.reshape(grad.shape[0], -1).double().numpy()
    return jac, (kernel.numpy() if codes and seen[0] else None)


def jacov_from(jac: np.ndarray) -> float:
    """NASLib's `eval_score` of Jacobian rows. A constant row (the output ignores the input)
    has no correlation; it counts as perfectly correlated, the worst case, so the score stays
    finite and lowest for networks that cannot tell inputs apart."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(jac)
    corr = np.nan_to_num(np.atleast_2d(corr), nan=1.0)
    eig = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    return float(-np.sum(np.log(eig + JACOV_EPS) + 1.0 / (eig + JACOV_EPS)))


def naswot_from(kernel: np.ndarray | None) -> float:
    if kernel is None:
        raise ValueError("naswot needs activation modules (ReLU, GELU, ...) in the network")
    _, logdet = np.linalg.slogdet(kernel + np.eye(kernel.shape[0]))
    return float(logdet)


def jacov(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> float:
    """Correlation of input Jacobians across the batch (higher = less correlated = better)."""
    jac, _ = input_pass(model, inputs, jacobian=True, codes=False)
    assert jac is not None
    return jacov_from(jac)


def naswot(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> float:
    """log det(K + I), K[i, j] = number of units with the same on/off state for inputs i, j."""
    _, kernel = input_pass(model, inputs, jacobian=False, codes=True)
    return naswot_from(kernel)


# --- data-free proxies (synflow, params) -------------------------------------------------------
def synflow(model: nn.Module, inputs: torch.Tensor,
            targets: torch.Tensor | None = None) -> float:
    """Synaptic flow of the linearised network. Only the input's shape is used."""
    clone = _linearised(model)
    with torch.no_grad():
        for param in clone.parameters():
            param.abs_()
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64)
    clone(ones).sum().backward()
    total = 0.0
    for weight in weight_tensors(clone):
        if weight.grad is not None:
            total += float((weight.detach() * weight.grad).abs().sum())
    return total


def _linearised(model: nn.Module) -> nn.Module:
    """A float64 copy in eval mode with BatchNorm and activations replaced by identities.
    With |weights| and a positive input every ReLU passes its input through, so for ReLU
    networks this is exactly SynFlow's network; for ReLU6/h-swish/GELU it keeps the flow from
    saturating. BatchNorm must go: with one constant input it would zero every activation."""
    clone = _copy(model)
    _replace(clone, (nn.modules.batchnorm._BatchNorm, *ACTIVATIONS))
    for module in clone.modules():
        if getattr(module, "inplace", False):
            module.inplace = False  # an in-place op must not overwrite a tensor kept for backward
    return clone.eval().double()


def _replace(model: nn.Module, kinds: tuple[type, ...]) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, kinds):
            setattr(model, name, nn.Identity())
        else:
            _replace(child, kinds)


def params(model: nn.Module, inputs: torch.Tensor | None = None,
           targets: torch.Tensor | None = None) -> float:
    """Number of parameters, less the weights a sparse layer's mask holds at zero."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        mask = getattr(module, "mask", None)
        weight = getattr(module, "weight", None)
        if isinstance(mask, torch.Tensor) and isinstance(weight, torch.Tensor) \
                and mask.shape == weight.shape:
            total -= int(weight.numel() - int(mask.count_nonzero()))
    return float(total)


PROXIES: dict[str, ProxyFn] = {"synflow": synflow, "jacov": jacov, "naswot": naswot,
                               "grad_norm": grad_norm, "snip": snip, "params": params}
PROXY_NAMES: tuple[str, ...] = tuple(PROXIES)


def score_proxies(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                  names: Iterable[str] = PROXY_NAMES) -> dict[str, float]:
    """Several proxies at once; passes that proxies share (the loss gradients of grad_norm and
    snip, the forward of jacov and naswot) run once. Same values as the single functions."""
    names = list(names)
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxy {unknown[0]!r}; known: {', '.join(PROXY_NAMES)}")
    scores: dict[str, float] = {}
    if {"grad_norm", "snip"} & set(names):
        pairs = loss_gradients(model, inputs, targets)
        if "grad_norm" in names:
            scores["grad_norm"] = grad_norm_from(pairs)
        if "snip" in names:
            scores["snip"] = snip_from(pairs)
    if {"jacov", "naswot"} & set(names):
        jac, kernel = input_pass(model, inputs, jacobian="jacov" in names,
                                 codes="naswot" in names)
        if jac is not None:
            scores["jacov"] = jacov_from(jac)
        if "naswot" in names:
            scores["naswot"] = naswot_from(kernel)
    if "synflow" in names:
        scores["synflow"] = synflow(model, inputs)
    if "params" in names:
        scores["params"] = params(model)
    return {n: scores[n] for n in names}
