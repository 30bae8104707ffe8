"""FAKE src.dust3r.inference of a CUT3R clone (test stand-in): ``inference(groups, model, device,
verbose=True)`` → ``(outputs, state_args)`` with ``outputs = {"pred": [...], "views": groups}``, each
pred holding pts3d_in_other_view (1 H W 3), conf, pts3d_in_self_view, conf_self and camera_pose
(1, 7) absT_quaR (camera-to-world t, quaternion w first), as CUT3R/CUT3R; checks the view keys
demo.py's prepare_input builds."""

import torch

import fake_scene

VIEW_KEYS = {"img", "ray_map", "true_shape", "idx", "instance", "camera_pose", "img_mask", "ray_mask", "update", "reset"}


def inference(groups, model, device, verbose=True):
    for view in groups:
        assert set(view) == VIEW_KEYS, sorted(view)
    images = torch.cat([v["img"] * 0.5 + 0.5 for v in groups])
    cam, world = fake_scene.camera_points(images), fake_scene.world_points(images)
    poses = fake_scene.camera_to_world(len(groups))
    pred = []
    for i in range(len(groups)):
        vector = torch.cat([poses[i, :3, 3], fake_scene.rotation_to_quaternion_wxyz(poses[i, :3, :3])])[None]
        pred.append({"pts3d_in_other_view": world[i:i + 1], "conf": torch.ones(1, *cam.shape[1:3]),
                     "pts3d_in_self_view": cam[i:i + 1], "conf_self": torch.ones(1, *cam.shape[1:3]), "camera_pose": vector})
    return {"pred": pred, "views": groups}, None
