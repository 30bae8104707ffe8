"""PointTokenEncoder holds no state beyond its MLP weights: the octaves are exact in every build path."""

import math

import torch

from spatialvlm.fusion.point_encoder import PointTokenEncoder

COORDS = torch.tensor([[[0.5, -1.0, 2.0], [7.9, 0.25, -3.5], [0.0, 0.0, 0.0]]])
VALID = torch.tensor([[True, True, False]])


def _reference(encoder: PointTokenEncoder, coords: torch.Tensor, valid: torch.Tensor, frequencies: int) -> torch.Tensor:
    """The docstring's formula, written out: MLP([C ; sin(2^k π C) ; cos(2^k π C)]), invalid → origin."""
    coords = torch.where(valid[..., None], coords, torch.zeros(()))
    columns = [coords]
    for function in (torch.sin, torch.cos):
        for axis in range(3):
            for k in range(frequencies):
                columns.append(function(coords[..., axis : axis + 1] * (math.pi * 2.0**k)))
    # Layout of the encoder: per axis, its F octaves side by side (flatten of (3, F)).
    sines = torch.cat(columns[1 : 1 + 3 * frequencies], -1)
    cosines = torch.cat(columns[1 + 3 * frequencies :], -1)
    features = torch.cat([coords, sines, cosines], -1)
    return encoder.mlp(features.to(encoder.mlp[0].weight.dtype))


def test_no_non_persistent_state_and_output_matches_the_formula():
    torch.manual_seed(0)
    encoder = PointTokenEncoder(16, num_frequencies=4)
    # Everything the module computes with is in its state dict: nothing a loader could leave unfilled.
    assert set(dict(encoder.named_buffers())) == set()
    with torch.no_grad():
        torch.testing.assert_close(encoder(COORDS, VALID), _reference(encoder, COORDS, VALID, 4), rtol=1e-6, atol=1e-6)


def test_meta_build_then_load_gives_the_eager_output():
    """The from_pretrained path: build on meta, materialise uninitialised, load the state dict."""
    torch.manual_seed(0)
    eager = PointTokenEncoder(16)
    with torch.device("meta"):
        lazy = PointTokenEncoder(16)
    lazy = lazy.to_empty(device="cpu")
    lazy.load_state_dict(eager.state_dict())
    with torch.no_grad():
        assert torch.equal(lazy(COORDS, VALID), eager(COORDS, VALID))


def test_bfloat16_model_keeps_float32_octaves():
    """model.to(bfloat16) casts buffers; the octaves must stay exact (π·2^5 · 7.9 ≈ 794 rad)."""
    torch.manual_seed(0)
    encoder = PointTokenEncoder(16).to(torch.bfloat16)
    with torch.no_grad():
        torch.testing.assert_close(encoder(COORDS, VALID), _reference(encoder, COORDS, VALID, 6), rtol=0, atol=0)
