import math

import pytest
import torch

from spatialvlm.fusion import ViewpointAlignment
from spatialvlm.geometry import make_pose

GEOMETRY_DIM, VIEW_DIM = 24, 16


def yaw_pose(angle: float, x: float = 0.0) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return make_pose(rotation, torch.tensor([x, 0.0, 0.0]))


def geometry(seed=0, batch=2, tokens=7):
    return torch.randn(batch, tokens, GEOMETRY_DIM, generator=torch.Generator().manual_seed(seed))


def test_output_has_one_extra_view_token_and_starts_as_identity():
    torch.manual_seed(0)
    module = ViewpointAlignment(GEOMETRY_DIM, VIEW_DIM)
    g = geometry()
    out = module(g, camera_token=torch.randn(2, VIEW_DIM))
    assert out.tokens.shape == (2, 8, GEOMETRY_DIM)
    assert torch.equal(out.tokens[:, :7], g)  # zero-initialised last layer: G^va = G
    assert out.padding_mask is None


def test_view_output_changes_with_camera_pose():
    torch.manual_seed(1)
    module = ViewpointAlignment(GEOMETRY_DIM, VIEW_DIM)
    with torch.no_grad():
        module.align_out.weight.normal_(0, 0.1)  # as after some training
    g = geometry(1, batch=1).expand(2, -1, -1)
    poses = torch.stack([yaw_pose(0.0), yaw_pose(0.8)])
    out = module(g, pose=poses)
    assert not torch.allclose(out.tokens[0], out.tokens[1], atol=1e-4)
    same = module(g, pose=torch.stack([yaw_pose(0.3), yaw_pose(0.3)]))
    assert torch.allclose(same.tokens[0], same.tokens[1])
    moved = module(g, pose=torch.stack([yaw_pose(0.3), yaw_pose(0.3, x=1.0)]))
    assert not torch.allclose(moved.tokens[0, -1], moved.tokens[1, -1], atol=1e-4)


def test_camera_token_takes_precedence_over_pose():
    module = ViewpointAlignment(GEOMETRY_DIM, VIEW_DIM)
    g, token = geometry(2), torch.randn(2, VIEW_DIM)
    a = module(g, camera_token=token, pose=torch.stack([yaw_pose(0.0), yaw_pose(1.0)]))
    b = module(g, camera_token=token)
    assert torch.equal(a.tokens, b.tokens)


def test_view_token_pools_only_unpadded_tokens():
    module = ViewpointAlignment(GEOMETRY_DIM, VIEW_DIM)
    g, token = geometry(3), torch.randn(2, VIEW_DIM)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[:, 5:] = True
    changed = g.clone()
    changed[:, 5:] = float("nan")
    a = module(g, camera_token=token, padding_mask=mask)
    b = module(changed, camera_token=token, padding_mask=mask)
    assert torch.equal(a.tokens[:, -1], b.tokens[:, -1])
    assert a.padding_mask[:, 5:7].all() and not a.padding_mask[:, -1].any()


def test_gradients_reach_view_encoder_from_pose_and_token():
    module = ViewpointAlignment(GEOMETRY_DIM, VIEW_DIM)
    module(geometry(4), pose=torch.stack([yaw_pose(0.1), yaw_pose(0.5)])).tokens.square().sum().backward()
    for part in (module.pose_encoder[0], module.view_encoder[0], module.view_token_proj, module.align_out):
        assert part.weight.grad.abs().sum() > 0


def test_missing_view_and_bad_shapes():
    module = ViewpointAlignment(GEOMETRY_DIM, VIEW_DIM)
    with pytest.raises(ValueError, match="camera_token .* or pose"):
        module(geometry())
    with pytest.raises(ValueError, match="camera_token must have shape"):
        module(geometry(), camera_token=torch.randn(3, VIEW_DIM))
    with pytest.raises(ValueError, match="pose must have shape"):
        module(geometry(), pose=torch.eye(4).expand(2, 4, 4)[:, :3])
