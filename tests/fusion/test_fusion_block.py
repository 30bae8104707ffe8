import pytest
import torch
from torch import nn
from vlm3r_reference import VLM3RCrossAttentionFusion

from spatialvlm.fusion import GeometryFusion, SpatialFusion, SpatialFusionConfig
from spatialvlm.geometry import normalize_world_coords, points_to_patch_coords

DIM, GEOMETRY_DIM, VIEW_DIM, HEADS = 48, 24, 16, 4


def config(**overrides):
    base = dict(dim=DIM, geometry_dim=GEOMETRY_DIM, view_dim=VIEW_DIM, num_heads=HEADS)
    return SpatialFusionConfig(**{**base, **overrides})


def frame_inputs(seed=0, batch=3, patches=16, geometry_tokens=20):
    gen = torch.Generator().manual_seed(seed)
    return dict(
        visual=torch.randn(batch, patches, DIM, generator=gen),
        coords=torch.randn(batch, patches, 3, generator=gen),
        coords_valid=torch.rand(batch, patches, generator=gen) > 0.25,
        geometry_tokens=torch.randn(batch, geometry_tokens, GEOMETRY_DIM, generator=gen),
        camera_token=torch.randn(batch, VIEW_DIM, generator=gen),
    )


def with_randomised_norms(module):
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.LayerNorm):
                sub.weight.uniform_(0.5, 1.5)
                sub.bias.normal_(0, 0.1)
    return module


@pytest.mark.parametrize("train", [False, True])
def test_both_switches_off_is_vlm3r_fusion(train):
    torch.manual_seed(0)
    block = with_randomised_norms(SpatialFusion(config(use_coordinate_injection=False, use_viewpoint_alignment=False)))
    naive = VLM3RCrossAttentionFusion(DIM, GEOMETRY_DIM, HEADS, 0.1)
    naive.load_state_dict(block.geometry_fusion.state_dict())  # VLM-3R checkpoints load the same way
    block.train(train), naive.train(train)
    x = frame_inputs()
    torch.manual_seed(123)
    ours = block(**x)  # coords and camera token are ignored when their switches are off
    torch.manual_seed(123)
    ref = naive(x["visual"], x["geometry_tokens"])
    assert torch.allclose(ours, ref, atol=1e-5)
    assert sum(p.numel() for p in block.parameters() if p.requires_grad) == sum(p.numel() for p in naive.parameters()) + sum(
        p.numel() for p in block.point_encoder.parameters()
    )


def test_key_padding_equals_dropping_the_padded_keys():
    fusion = with_randomised_norms(GeometryFusion(DIM, GEOMETRY_DIM, HEADS, dropout=0.0)).eval()
    x = frame_inputs(1, batch=2)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[0, 12:] = True
    mask[1, :3] = True
    padded = x["geometry_tokens"].clone()
    padded[mask] = float("nan")  # garbage in padded slots must not leak
    out = fusion(x["visual"], padded, mask)
    for b in range(2):
        alone = fusion(x["visual"][b : b + 1], x["geometry_tokens"][b : b + 1, ~mask[b]])
        assert torch.allclose(out[b : b + 1], alone, atol=1e-5)


def test_frame_without_any_key_passes_through():
    fusion = GeometryFusion(DIM, GEOMETRY_DIM, HEADS).eval()
    x = frame_inputs(2, batch=2)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[1] = True
    out = fusion(x["visual"], x["geometry_tokens"], mask)
    assert torch.equal(out[1], x["visual"][1])
    assert torch.allclose(out[0], fusion(x["visual"][:1], x["geometry_tokens"][:1]), atol=1e-6)


def test_full_block_on_27x27_grid_against_27x27_and_mismatched_geometry():
    torch.manual_seed(3)
    block = SpatialFusion(config()).eval()
    gen = torch.Generator().manual_seed(3)
    points = torch.randn(2, 432, 432, 3, generator=gen)  # CUT3R-sized point map, 432 px
    for grid in [(27, 27), (24, 24)]:  # SigLIP 384 px / patch 14, and a 336 px tower
        coords, patch_valid = points_to_patch_coords(points, None, grid)
        coords = normalize_world_coords(coords[None], patch_valid[None])[0]
        visual = torch.randn(2, grid[0] * grid[1], DIM, generator=gen)
        geometry = torch.randn(2, 27 * 27, GEOMETRY_DIM, generator=gen)  # CUT3R: 432 px / patch 16
        out = block(visual, coords, patch_valid, geometry, camera_token=torch.randn(2, VIEW_DIM, generator=gen), return_dict=True)
        assert out.tokens.shape == visual.shape
        assert out.geometry_tokens.shape == (2, 27 * 27 + 1, GEOMETRY_DIM)
        assert torch.isfinite(out.tokens).all()


def test_rgbd_frames_without_geometry_tokens_use_point_tokens():
    torch.manual_seed(4)
    block = SpatialFusion(config()).eval()
    x = frame_inputs(4)
    x["coords_valid"][2] = False  # a frame with no valid depth at all
    poses = torch.eye(4).repeat(3, 1, 1)
    out = block(x["visual"], x["coords"], x["coords_valid"], pose=poses, return_dict=True)
    assert out.geometry_tokens.shape == (3, 17, GEOMETRY_DIM)
    assert torch.equal(out.geometry_padding_mask[:, :16], ~x["coords_valid"])
    assert torch.isfinite(out.tokens).all()
    # the 3D branch is live: moving the points changes the output of frames with valid points
    moved = block(x["visual"], x["coords"] + 0.5, x["coords_valid"], pose=poses)
    assert not torch.allclose(moved[:2], out.tokens[:2], atol=1e-5)
    # with alignment off, a frame with no valid patch has no key and passes through untouched
    plain = SpatialFusion(config(use_viewpoint_alignment=False)).eval()
    out_plain = plain(x["visual"], x["coords"], x["coords_valid"])
    assert torch.equal(out_plain[2], x["visual"][2])


def test_gradients_reach_phi_gate_view_encoder_and_attention():
    torch.manual_seed(5)
    block = SpatialFusion(config(dropout=0.0))
    block(**frame_inputs(5)).square().mean().backward()
    parts = {
        "phi": block.coordinate_injection.coord_mlp[0].weight,
        "gate": block.coordinate_injection.gate_proj.weight,
        "psi_v": block.viewpoint_alignment.view_encoder[0].weight,
        "alignment": block.viewpoint_alignment.align_out.weight,
        "attention": block.geometry_fusion.cross_attention.in_proj_weight,
        "key_proj": block.geometry_fusion.spatial_encoder_key_proj.weight,
    }
    for name, param in parts.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_softmax_gate_block_and_dict_output():
    block = SpatialFusion(config(coordinate_gate_type="softmax")).eval()
    x = frame_inputs(6)
    out = block(**x, return_dict=True)
    assert torch.allclose(out.gate.sum(-1), torch.ones(3))
    assert torch.equal(out.tokens, block(**x))


def test_bad_inputs_raise_clear_errors():
    block = SpatialFusion(config())
    x = frame_inputs(7)
    with pytest.raises(ValueError, match="coords must have shape"):
        block(**{**x, "coords": x["coords"][:2]})
    with pytest.raises(ValueError, match="coords must have shape"):
        block(**{**x, "coords": x["coords"][..., :2]})
    with pytest.raises(ValueError, match="geometry_tokens must have shape"):
        block(**{**x, "geometry_tokens": x["geometry_tokens"][..., :5]})
    with pytest.raises(ValueError, match="visual must have shape"):
        block(**{**x, "visual": x["visual"][0]})
    with pytest.raises(ValueError, match="needs geometry_tokens .* or coords"):
        block(x["visual"], camera_token=x["camera_token"])
    with pytest.raises(ValueError, match="camera_token .* or pose"):
        block(x["visual"], x["coords"], geometry_tokens=x["geometry_tokens"])


def test_config_validation_and_round_trip():
    cfg = config(coordinate_gate_type="softmax", dropout=0.0)
    assert SpatialFusionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown SpatialFusionConfig keys"):
        SpatialFusionConfig.from_dict({"use_coord_injection": False})
    with pytest.raises(ValueError, match="coordinate_gate_type"):
        SpatialFusionConfig(coordinate_gate_type="relu")
    with pytest.raises(ValueError, match="divisible"):
        SpatialFusionConfig(dim=100, num_heads=18)
    defaults = SpatialFusionConfig()
    assert (defaults.dim, defaults.geometry_dim, defaults.num_heads, defaults.dropout) == (1152, 768, 18, 0.1)
