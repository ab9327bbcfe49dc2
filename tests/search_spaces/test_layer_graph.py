"""The EvoNorm layer space: keys, validity of samples and mutations, modules, reference layers
against their formulas, one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from search_spaces import Arch, InvalidArchError, NasError, get_space, list_spaces
from search_spaces.layer_graph import (
    MUTATIONS,
    REFERENCES,
    LayerGraph,
    LayerSpace,
    NonFiniteLayerError,
    build,
)

EPS = 1e-5
SHAPE = (4, 8, 5, 5)
GROUPS = 2


@pytest.fixture(scope="module")
def space() -> LayerSpace:
    return get_space("evonorm")


def _runs(arch: Arch) -> None:
    """Builds, runs forward and backward, keeps the shape; or reports NaN/inf in one line."""
    module = build(arch, SHAPE[1], GROUPS)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).requires_grad_()
    try:
        y = module(x)
    except NonFiniteLayerError as exc:
        assert "\n" not in str(exc) and exc.node in str(exc)
        return
    assert y.shape == SHAPE
    y.square().mean().backward()
    grads = [x.grad] + [p.grad for p in module.parameters()]
    assert all(torch.isfinite(g).all() for g in grads if g is not None), arch.key


# --- keys and validity ---------------------------------------------------------------------------
def test_space_is_found_by_name_but_is_not_a_network_space(space):
    assert isinstance(space, LayerSpace) and "evonorm" not in list_spaces()
    with pytest.raises(NasError, match="not a network"):
        space.build(space.min_arch())


def test_keys_round_trip_over_random_samples(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        body = space.encode(arch)
        assert space.contains(arch) and ":" not in body
        assert Arch.decode(arch.key) == arch and space.parse(arch.key).key == arch.key
        assert LayerGraph.parse(body).canonical().text == body  # keys are canonical


def test_any_gene_assignment_makes_a_valid_layer(space):
    """As TPE and RL draw genes: every full assignment is some layer (dead slots pruned)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        genes = {d.name: d.options[rng.integers(len(d.options))] for d in space.dimensions}
        arch = space.make(genes)
        assert space.contains(arch) and Arch.decode(arch.key) == arch
        space.graph(arch).check(space.config.max_nodes)


def test_equal_graphs_have_equal_keys(space):
    key = space.parse("evonorm_b0").key
    reordered = ("n1=var_bwh(x);n2=sqrt(n1);n3=var_wh(x);n4=sqrt(n3);n5=mul(v1,x);"
                 "n6=add(n4,n5);n7=max(n2,n6);n8=div(x,n7);n9=mul(gamma,n8);n10=add(beta,n9)")
    with_dead_and_duplicate = ("n1=var_bwh(x);n2=sqrt(n1);n3=exp(v0);n4=var_wh(x);n5=sqrt(n4);"
                               "n6=mul(v1,x);n7=add(n6,n5);n8=var_bwh(x);n9=sqrt(n8);"
                               "n10=max(n7,n9);n11=div(x,n10);n12=mul(gamma,n11);"
                               "n13=add(beta,n12)")
    assert space.parse(reordered).key == space.parse(with_dead_and_duplicate).key == key
    assert space.parse("n1=mul(v1,x)").key == "evonorm:n1=mul(x,v1)"  # commutative: sorted


def test_samples_and_mutations_are_valid_and_run(space):
    rng = np.random.default_rng(2)
    impossible = 0
    for _ in range(25):
        arch = space.sample(rng)
        _runs(arch)
        for kind in (None, *MUTATIONS):
            try:
                child = space.mutate(arch, rng, kind=kind)
            except InvalidArchError as exc:  # e.g. no other input of n1=neg(x) reads x
                assert kind is not None and repr(kind) in str(exc), str(exc)
                impossible += 1
                continue
            assert child.key != arch.key and space.contains(child), kind
            space.graph(child).check(space.config.max_nodes)
            _runs(child)
        assert space.contains(space.crossover(arch, space.sample(rng), rng))
    assert impossible < 10


def test_search_operators_take_moments_of_x_dependent_nodes_only(space):
    from search_spaces.layer_graph.operators import constant_moments

    rng = np.random.default_rng(5)
    assert constant_moments(LayerGraph.parse("n1=mean_group(gamma);n2=mul(n1,x)")) == ["n1"]
    assert constant_moments(LayerGraph.parse("n1=var_bwh(x);n2=var_wh(n1);n3=mul(n2,x)")) == []
    for name in REFERENCES:
        assert constant_moments(space.graph(space.parse(name))) == []
    parent = space.parse("n1=var_group(x);n2=sqrt(n1);n3=div(x,n2)")
    moments = 0
    for _ in range(300):
        child = space.mutate(parent, rng)
        assert constant_moments(space.graph(child)) == [], child.key
        for arch in (space.sample(rng), space.crossover(parent, child, rng)):
            graph = space.graph(arch)
            assert constant_moments(graph) == [], arch.key
            moments += any("_" in node.op for node in graph.nodes)
    assert moments > 100  # moments are still drawn, of x-dependent nodes


def test_insert_adds_a_node_and_mutations_leave_the_identity(space):
    rng = np.random.default_rng(3)
    s0 = space.parse("evonorm_s0")
    grown = [len(space.graph(space.mutate(s0, rng, kind="insert")).nodes) for _ in range(20)]
    assert max(grown) == len(space.graph(s0).nodes) + 1
    assert space.mutate(space.min_arch(), rng).key != "evonorm:x"
    with pytest.raises(InvalidArchError, match="most nodes"):
        space.mutate(space.max_arch(), rng, kind="insert")


BAD_KEYS = [
    ("", "no nodes"),
    ("garbage", "is not n1="),
    ("n1=add(x)", "takes 2 input"),
    ("n1=sigmoid(x,x)", "takes 1 input"),
    ("n1=foo(x)", "unknown primitive 'foo'"),
    ("n1=neg(n1)", "neither an initial node"),
    ("n1=neg(y)", "neither an initial node"),
    ("n1=neg(x);n3=neg(n1)", "numbered n3"),
    ("n1=neg(x);n2=mean_wh(n1)", "not a per-element function of x"),
    ("n1=add(v0,v1)", "not a per-element function of x"),
    (";".join(["n1=neg(x)"] + [f"n{i}=neg(n{i - 1})" for i in range(2, 18)]), "at most 16"),
]


@pytest.mark.parametrize("body, why", BAD_KEYS)
def test_bad_keys_are_one_line_errors_naming_the_fault(space, body, why):
    with pytest.raises(NasError) as info:
        space.decode(body)
    message = str(info.value)
    assert "\n" not in message and why in message and "expected the form" in message, message


def test_non_finite_outputs_are_reported_not_returned(space):
    module = build("evonorm:n1=exp(x);n2=exp(n1);n3=mul(n2,x)", 8)
    with pytest.raises(NonFiniteLayerError) as info:
        module(torch.full(SHAPE, 10.0))
    assert info.value.node == "n2" and "(exp)" in str(info.value)


def test_build_checks_its_arguments(space):
    arch = space.parse("gn_relu")
    with pytest.raises(NasError, match="divisor"):
        build(arch, 8, groups=3)
    assert build(arch, 24).groups == 24 and build(arch, 64).groups == 32
    with pytest.raises(ValueError, match="channels"):
        build(arch, 8)(torch.randn(2, 4, 3, 3))
    module = build(space.parse("bn_relu"), 8)
    assert sorted(dict(module.named_parameters())) == ["beta", "gamma"]
    assert sorted(dict(module.named_buffers())) == ["running_n1", "running_n4"]


# --- reference layers against their formulas -----------------------------------------------------
def _var(t: torch.Tensor, dims) -> torch.Tensor:
    return t.var(dims, unbiased=False, keepdim=True)


def _group(t: torch.Tensor, statistic) -> torch.Tensor:
    n, c, h, w = t.shape
    grouped = t.reshape(n, GROUPS, c // GROUPS, h, w)
    return statistic(grouped, (2, 3, 4)).expand_as(grouped).reshape(n, c, h, w)


def _formula(name: str, x, p, running=None):
    """The reference layers written out; `running` (mean, var) replaces batch statistics."""
    v1, gamma, beta = (p[k].view(1, -1, 1, 1) if k in p else None for k in ("v1", "gamma",
                                                                            "beta"))
    batch_mean, batch_var = running or (x.mean((0, 2, 3), keepdim=True), _var(x, (0, 2, 3)))
    if name == "evonorm_b0":
        instance_std = torch.sqrt(_var(x, (2, 3)) + EPS)
        return x / torch.maximum(torch.sqrt(batch_var + EPS), v1 * x + instance_std) * gamma \
            + beta
    if name == "evonorm_s0":
        return x * torch.sigmoid(v1 * x) / torch.sqrt(_group(x, _var) + EPS) * gamma + beta
    if name == "bn_relu":
        return torch.relu((x - batch_mean) / torch.sqrt(batch_var + EPS) * gamma + beta)
    mean = _group(x, lambda t, d: t.mean(d, keepdim=True))
    return torch.relu((x - mean) / torch.sqrt(_group(x, _var) + EPS) * gamma + beta)


def _batches():
    gen = torch.Generator().manual_seed(4)
    return [torch.randn(SHAPE, generator=gen) * (1 + i) + i for i in range(3)]


@pytest.mark.parametrize("name", list(REFERENCES))
def test_reference_layers_match_their_formulas(space, name):
    module = build(space.parse(name), SHAPE[1], GROUPS)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(5)))
    params = dict(module.named_parameters())
    mean, var = torch.zeros(1, 8, 1, 1), torch.ones(1, 8, 1, 1)
    n = SHAPE[0] * SHAPE[2] * SHAPE[3]
    for x in _batches():
        with torch.no_grad():
            torch.testing.assert_close(module(x), _formula(name, x, params), rtol=0, atol=1e-5)
        mean = 0.9 * mean + 0.1 * x.mean((0, 2, 3), keepdim=True)
        var = 0.9 * var + 0.1 * _var(x, (0, 2, 3)) * n / (n - 1)
    module.eval()
    x = _batches()[0] * 3
    with torch.no_grad():
        torch.testing.assert_close(module(x), _formula(name, x, params, (mean, var)),
                                   rtol=0, atol=1e-5)


def test_bn_relu_and_gn_relu_match_torch(space):
    bn_relu = build(space.parse("bn_relu"), 8)
    batch_norm = torch.nn.BatchNorm2d(8, eps=EPS, momentum=0.1)
    for x in _batches():
        torch.testing.assert_close(bn_relu(x), torch.relu(batch_norm(x)), rtol=0, atol=1e-5)
    bn_relu.eval(), batch_norm.eval()
    x = _batches()[1]
    torch.testing.assert_close(bn_relu(x), torch.relu(batch_norm(x)), rtol=0, atol=1e-5)
    gn_relu = build(space.parse("gn_relu"), 8, GROUPS)
    torch.testing.assert_close(gn_relu(x), torch.relu(F.group_norm(x, GROUPS, eps=EPS)),
                               rtol=0, atol=1e-5)
