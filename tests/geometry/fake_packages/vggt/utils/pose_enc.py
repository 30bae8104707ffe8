"""FAKE vggt.utils.pose_enc (a test stand-in): ``pose_encoding_to_extri_intri(pose_encoding,
image_size_hw=None, pose_encoding_type="absT_quaR_FoV", build_intrinsics=True)`` with VGGT's maths:
T = enc[..., :3], quaternion XYZW = enc[..., 3:7], fov_h, fov_w; extrinsics (…, 3, 4) world-to-camera;
fx = (W/2)/tan(fov_w/2), fy = (H/2)/tan(fov_h/2), principal point (W/2, H/2)."""

import torch


def _quat_to_mat(quaternions):
    i, j, k, r = torch.unbind(quaternions, -1)
    two_s = 2.0 / (quaternions * quaternions).sum(-1)
    o = torch.stack(
        (
            1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
            two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
            two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j),
        ),
        -1,
    )
    return o.reshape(quaternions.shape[:-1] + (3, 3))


def pose_encoding_to_extri_intri(pose_encoding, image_size_hw=None, pose_encoding_type="absT_quaR_FoV", build_intrinsics=True):
    T = pose_encoding[..., :3]
    R = _quat_to_mat(pose_encoding[..., 3:7])
    extrinsics = torch.cat([R, T[..., None]], dim=-1)
    intrinsics = None
    if build_intrinsics:
        H, W = image_size_hw
        fy = (H / 2.0) / torch.tan(pose_encoding[..., 7] / 2.0)
        fx = (W / 2.0) / torch.tan(pose_encoding[..., 8] / 2.0)
        intrinsics = torch.zeros(pose_encoding.shape[:2] + (3, 3))
        intrinsics[..., 0, 0] = fx
        intrinsics[..., 1, 1] = fy
        intrinsics[..., 0, 2] = W / 2
        intrinsics[..., 1, 2] = H / 2
        intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics
