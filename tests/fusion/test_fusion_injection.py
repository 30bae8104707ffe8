import pytest
import torch

from spatialvlm.fusion import CoordinateInjection

DIM = 32


def inputs(seed=0, batch=2, patches=10):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, patches, DIM, generator=gen)
    coords = torch.randn(batch, patches, 3, generator=gen)
    valid = torch.rand(batch, patches, generator=gen) > 0.3
    return tokens, coords, valid


def test_sigmoid_injection_matches_formula():
    torch.manual_seed(0)
    module = CoordinateInjection(DIM)
    with torch.no_grad():
        module.gate_proj.weight.normal_(0, 0.1)
    tokens, coords, valid = inputs()
    out = module.compute(tokens, coords, valid)
    phi = module.coord_mlp(coords)
    w, b = module.gate_proj.weight[0], module.gate_proj.bias
    alpha = torch.sigmoid(tokens @ w[:DIM] + phi @ w[DIM:] + b)
    expected = torch.where(valid[..., None], tokens + alpha[..., None] * phi, tokens)
    assert torch.allclose(out.tokens, expected, atol=1e-5)
    assert torch.allclose(out.gate, torch.where(valid, alpha, torch.zeros_like(alpha)), atol=1e-6)


def test_closed_gate_is_identity():
    module = CoordinateInjection(DIM)
    with torch.no_grad():
        module.gate_proj.bias.fill_(-1e4)
    tokens, coords, valid = inputs(1)
    assert torch.equal(module(tokens, coords, valid), tokens)


def test_initialisation_barely_disturbs_features():
    torch.manual_seed(1)
    module = CoordinateInjection(DIM)
    tokens, coords, valid = inputs(2)
    out = module.compute(tokens, coords, valid)
    assert torch.allclose(out.gate[valid], torch.sigmoid(torch.tensor(-4.0)).expand(int(valid.sum())))
    change = (out.tokens - tokens).norm(dim=-1)
    assert (change <= 0.0181 * module.coord_mlp(coords).norm(dim=-1) + 1e-6).all()


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_invalid_patches_untouched_even_with_nan_coords(gate):
    module = CoordinateInjection(DIM, gate=gate, gate_init_bias=2.0)
    tokens, coords, valid = inputs(3)
    coords[~valid] = float("nan")
    out = module.compute(tokens, coords, valid)
    assert torch.equal(out.tokens[~valid], tokens[~valid])
    assert not torch.equal(out.tokens[valid], tokens[valid])
    assert (out.gate[~valid] == 0).all()


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_fully_invalid_frame_stays_finite_forward_and_backward(gate):
    module = CoordinateInjection(DIM, gate=gate)
    tokens, coords, valid = inputs(4)
    valid[0] = False
    coords[0] = float("inf")
    tokens.requires_grad_(True)
    out = module(tokens, coords, valid)
    assert torch.equal(out[0], tokens[0])
    out.square().sum().backward()
    for name, param in module.named_parameters():
        assert torch.isfinite(param.grad).all(), name
    assert torch.isfinite(tokens.grad).all()


def test_softmax_gate_is_a_distribution_over_valid_patches():
    module = CoordinateInjection(DIM, gate="softmax")
    with torch.no_grad():
        module.gate_proj.weight.normal_(0, 0.2)
    tokens, coords, valid = inputs(5)
    gate = module.compute(tokens, coords, valid).gate
    assert torch.allclose(gate.sum(-1), torch.ones(2))
    assert (gate[~valid] == 0).all() and (gate[valid] > 0).all()


def test_gradients_reach_phi_and_gate_at_initialisation():
    module = CoordinateInjection(DIM)
    tokens, coords, valid = inputs(6)
    module(tokens, coords, valid).sum().backward()
    assert module.coord_mlp[0].weight.grad.abs().sum() > 0
    assert module.gate_proj.weight.grad.abs().sum() > 0
    assert module.gate_proj.bias.grad.abs().sum() > 0


def test_bad_shapes():
    module = CoordinateInjection(DIM)
    tokens, coords, valid = inputs(7)
    with pytest.raises(ValueError, match="coords must have shape"):
        module(tokens, coords[..., :2], valid)
    with pytest.raises(ValueError, match="coords must have shape"):
        module(tokens, coords[:1], valid)
    with pytest.raises(ValueError, match="tokens must have shape"):
        module(tokens[..., :5], coords, valid)
    with pytest.raises(ValueError, match="gate"):
        CoordinateInjection(DIM, gate="tanh")
