"""Geometry from the 3D foundation models people use: readers of their saved outputs and
backends that run them (each imported lazily, only when used).

=================  ===========================  ===========  ============================
backend            saved output read            scale        tokens
=================  ===========================  ===========  ============================
vggt               forward dict / demo npz      relative     aggregator tokens when saved
pi3                forward dict (π³, Pi3X)      relative;    —
                                                Pi3X metric
cut3r              ``outputs`` / demo folder    metres       VLM-3R features (``features=``)
depth_anything3    npz export / Prediction      caller's     —
mapanything        ``infer`` list / gradio npz  metres       —
=================  ===========================  ===========  ============================

Every reader returns a :class:`BackendGeometry` whose world frame is the first frame's camera;
:func:`write_geometry_folder` writes it as ``frame_XXXXX.safetensors`` + ``geometry.json``.
"""

from .common import (
    GEOMETRY_INFO_NAME,
    BackendGeometry,
    match_rows_to_frames,
    to_first_camera,
    write_geometry_folder,
)
from .cut3r import CUT3RBackend, read_cut3r_demo_folder, read_cut3r_output
from .depth_anything3 import DepthAnything3Backend, read_depth_anything3
from .mapanything import MapAnythingBackend, read_mapanything_output
from .pi3 import Pi3Backend, read_pi3_output
from .protocol import (
    BackendNotInstalledError,
    GeometryBackend,
    available_backends,
    get_backend,
    import_backend_module,
    register_backend,
    saved_frame_images,
)
from .readers import OUTPUT_FORMATS, read_backend_output
from .vggt import VGGTBackend, read_vggt_predictions, vggt_pose_encoding_to_extrinsics

__all__ = [
    "BackendGeometry",
    "BackendNotInstalledError",
    "CUT3RBackend",
    "DepthAnything3Backend",
    "GEOMETRY_INFO_NAME",
    "GeometryBackend",
    "MapAnythingBackend",
    "OUTPUT_FORMATS",
    "Pi3Backend",
    "VGGTBackend",
    "available_backends",
    "get_backend",
    "import_backend_module",
    "match_rows_to_frames",
    "read_backend_output",
    "read_cut3r_demo_folder",
    "read_cut3r_output",
    "read_depth_anything3",
    "read_mapanything_output",
    "read_pi3_output",
    "read_vggt_predictions",
    "register_backend",
    "saved_frame_images",
    "to_first_camera",
    "vggt_pose_encoding_to_extrinsics",
    "write_geometry_folder",
]
