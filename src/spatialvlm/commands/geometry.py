"""``spatialvlm geometry``: per-frame geometry for a plain video from a 3D foundation model.

    spatialvlm geometry extract --backend vggt --weights VGGT-1B/ scene.mp4 scene_geo/
    spatialvlm geometry convert --format vggt predictions.npz scene_geo/ --video scene.mp4 --num-frames 32

``extract`` runs a backend the user installed on the frames ``spatialvlm ask`` would sample
(``--num-frames`` uniform, or ``--all-frames``) and writes ``frame_XXXXX.safetensors`` (named by
video frame index) + ``geometry.json`` (backend, metric scale, units, world frame = first sampled
camera). ``convert`` reads a model's saved output instead. ``ask --geometry-backend`` calls
:func:`cached_geometry` to do the same on the fly, cached beside the video.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path

BACKEND_NAMES = ("vggt", "pi3", "cut3r", "depth_anything3", "mapanything")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "geometry",
        help="per-frame geometry for a video from a 3D model (VGGT, π³, CUT3R, Depth Anything 3, MapAnything)",
        description="Write per-frame geometry (our schema) for a video: run a 3D model, or convert its saved output.",
    )
    subcommands = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    _register_extract(subcommands)
    _register_convert(subcommands)


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-frames", type=int, default=32, help="frames sampled uniformly, as ask (default 32)")
    parser.add_argument("--all-frames", action="store_true", help="every frame instead of sampling")
    parser.add_argument("--allow-fewer-frames", action="store_true", help="use all frames of a shorter video")


def _register_extract(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "extract",
        help="run a 3D model on the frames ask samples and write our geometry schema",
        description=(
            "Run an installed 3D foundation model on the frames `spatialvlm ask` samples from VIDEO and write "
            "OUT/frame_XXXXX.safetensors + OUT/geometry.json. Backends: " + ", ".join(BACKEND_NAMES)
            + "; --backend-module adds your own (docs/geometry.md)."
        ),
    )
    parser.add_argument("video", type=Path, help="video file")
    parser.add_argument("out", type=Path, help="geometry folder to write")
    parser.add_argument("--backend", required=True, help=f"3D model: {', '.join(BACKEND_NAMES)} or a registered one")
    parser.add_argument("--weights", type=Path, required=True, help="local weights (file or from_pretrained folder)")
    parser.add_argument(
        "--backend-module", action="append", default=[], metavar="MODULE",
        help="import this Python module first (it registers more backends with register_backend)",
    )
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="backend constructor option, e.g. points_from=point_head (vggt) or variant=pi3 (pi3)",
    )
    _add_sampling(parser)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress output")
    parser.set_defaults(run=_run_extract)


def _register_convert(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "convert",
        help="convert a 3D model's saved output (npz / pt / demo folder) to our geometry schema",
        description=(
            "Read a saved output of VGGT (predictions.npz), π³ (torch.save of its dict), CUT3R (demo output "
            "folder or saved outputs), Depth Anything 3 (exports/npz/results.npz) or MapAnything (torch.save "
            "of infer()'s list, or the Gradio predictions.npz) and write our schema. Rows are matched to video "
            "frames with --video (the frames ask samples) or --frame-indices."
        ),
    )
    parser.add_argument("input", type=Path, help="the saved output (file or folder)")
    parser.add_argument("out", type=Path, help="geometry folder to write")
    parser.add_argument("--format", required=True, choices=BACKEND_NAMES, help="which model wrote the input")
    rows = parser.add_mutually_exclusive_group(required=True)
    rows.add_argument("--video", type=Path, help="the video: rows are the frames ask samples from it")
    rows.add_argument("--frame-indices", metavar="I,J,...", help="the video frame index of each row")
    _add_sampling(parser)
    parser.add_argument("--features", type=Path, help="cut3r: VLM-3R .pt features giving the camera / patch tokens")
    parser.add_argument(
        "--metric", action="store_true",
        help="depth_anything3: the export is metric (a metric / nested model); its npz does not record it",
    )
    parser.add_argument("--points-from", choices=("depth", "point_head"), help="vggt: points from depth (default) or the point head")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=_run_convert)


def sample_frames(video: Path, num_frames: int, all_frames: bool, allow_fewer: bool):
    """The frames ``ask`` samples (same sampler): a :class:`spatialvlm.data.video.VideoClip`."""
    from ..data.video import FewerFramesError, read_video

    if video.is_dir():
        raise ValueError(f"video {video} is a folder, not a video file")
    if not video.is_file():
        raise FileNotFoundError(f"video {video} does not exist")
    if num_frames < 1:
        raise ValueError(f"--num-frames must be >= 1, got {num_frames}")
    try:
        return read_video(video, num_frames=None if all_frames else num_frames, allow_fewer=allow_fewer)
    except FewerFramesError as error:
        raise ValueError(f"{error.problem}; pass --num-frames {error.available} (or fewer), --all-frames or --allow-fewer-frames") from error


def _parse_options(options: list[str]) -> dict[str, str]:
    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ValueError(f"--option must be KEY=VALUE, got {option!r}")
        parsed[key] = value
    return parsed


def load_backend(name: str, weights: Path, device: str, modules: list[str] = (), options: dict | None = None):
    """Import user modules, build the backend by name, check the weights, load it."""
    from ..geometry.backends import get_backend

    for module in modules:
        importlib.import_module(module)
    backend = get_backend(name, **(options or {}))
    if not weights.exists():
        raise FileNotFoundError(f"--weights {weights} does not exist (a weights file or a from_pretrained folder)")
    backend.load(weights, device)
    return backend


def _sampling_info(clip, video: Path, all_frames: bool, num_frames: int) -> dict:
    stat = video.stat()
    return {
        "video": {"path": str(video.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "sampling": {"num_frames": None if all_frames else num_frames, "total_frames": int(clip.total_frames)},
    }


def _run_extract(args: argparse.Namespace) -> int:
    from ..geometry.backends.extract import extract_geometry
    from .inputs import check_device

    check_device(args.device)
    from ..geometry.backends import get_backend

    for module in args.backend_module:  # user backends register on import
        importlib.import_module(module)
    get_backend(args.backend, **_parse_options(args.option))  # an unknown name or option fails before decoding
    clip = sample_frames(args.video, args.num_frames, args.all_frames, args.allow_fewer_frames)
    backend = load_backend(args.backend, args.weights, args.device, args.backend_module, _parse_options(args.option))
    extra = {**_sampling_info(clip, args.video, args.all_frames, args.num_frames), "weights": str(args.weights.resolve())}
    geometry = extract_geometry(backend, clip.frames, clip.indices.tolist(), args.out, extra=extra, progress=not args.no_progress)
    print(_summary(args.out, geometry, clip.indices.tolist()))
    return 0


def _run_convert(args: argparse.Namespace) -> int:
    from ..geometry.backends import read_backend_output, write_geometry_folder

    options: dict = {}
    if args.features is not None:
        if args.format != "cut3r":
            raise ValueError("--features applies to --format cut3r only")
        options["features"] = args.features
    if args.metric:
        if args.format != "depth_anything3":
            raise ValueError("--metric applies to --format depth_anything3 only (the other formats record their scale)")
        options["metric_scale"] = True
    if args.points_from is not None:
        if args.format != "vggt":
            raise ValueError("--points-from applies to --format vggt only")
        options["points_from"] = args.points_from
    geometry = read_backend_output(args.format, args.input, **options)
    extra: dict = {"converted_from": str(args.input.resolve())}
    if args.video is not None:
        clip = sample_frames(args.video, args.num_frames, args.all_frames, args.allow_fewer_frames)
        indices = clip.indices.tolist()
        extra.update(_sampling_info(clip, args.video, args.all_frames, args.num_frames))
    else:
        try:
            indices = [int(part) for part in args.frame_indices.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--frame-indices must be comma-separated integers, got {args.frame_indices!r}") from None
    write_geometry_folder(args.out, geometry, indices, extra=extra, progress=not args.no_progress)
    print(_summary(args.out, geometry, indices))
    return 0


def _summary(out: Path, geometry, indices: list[int]) -> str:
    scale = "metric (metres)" if geometry.metric_scale else f"relative scale ({geometry.units})"
    return f"wrote {len(indices)} frames of {geometry.backend} geometry to {out}: {scale}; world frame = camera of frame {indices[0]}"


# -- ask --geometry-backend ------------------------------------------------------------------------
def cache_folder(video: Path, backend: str, num_frames: int | None) -> Path:
    """Where ``ask --geometry-backend`` keeps a video's geometry: ``<video>.geometry/<backend>_<N|all>``."""
    return video.parent / f"{video.name}.geometry" / f"{backend}_{'all' if num_frames is None else num_frames}"


def cached_geometry(
    video: Path,
    backend: str,
    weights: Path,
    *,
    num_frames: int | None,
    allow_fewer_frames: bool,
    device: str,
    progress: bool,
) -> Path:
    """The geometry folder of ``video`` from ``backend``: reused when ``geometry.json`` says it was
    made from this file (size, mtime), these weights and these frames; else extracted now."""
    from ..geometry.backends.extract import extract_geometry

    folder = cache_folder(video, backend, num_frames)
    clip = sample_frames(video, num_frames or 1, num_frames is None, allow_fewer_frames)
    extra = {**_sampling_info(clip, video, num_frames is None, num_frames or 0), "weights": str(weights.resolve())}
    info_file = folder / "geometry.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        same = all(info.get(key) == value for key, value in extra.items()) and info.get("backend") == backend
        if same and info.get("frame_indices") == clip.indices.tolist():
            print(f"geometry: reusing {folder} ({backend})", file=sys.stderr)
            return folder
    loaded = load_backend(backend, weights, device)
    staging = folder.with_name(folder.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    extract_geometry(loaded, clip.frames, clip.indices.tolist(), staging, extra=extra, progress=progress)
    if folder.exists():
        shutil.rmtree(folder)  # a stale cache of ours (other video bytes, weights or frames)
    staging.rename(folder)
    print(f"geometry: {backend} geometry of {len(clip)} frames cached in {folder}", file=sys.stderr)
    return folder


def geometry_from_backend(args: argparse.Namespace) -> Path:
    """``ask --geometry-backend NAME --geometry-weights PATH``: the geometry folder to answer with."""
    if args.geometry_backend is None or args.geometry_weights is None:
        raise ValueError("--geometry-backend and --geometry-weights go together; give both")
    if args.geometry is not None:
        raise ValueError("--geometry-backend makes the geometry; drop --geometry (or --geometry-backend to use that folder)")
    if args.no_fusion:
        raise ValueError("--no-fusion answers without geometry; drop --geometry-backend")
    return cached_geometry(
        args.video, args.geometry_backend, args.geometry_weights,
        num_frames=None if args.all_frames else args.num_frames, allow_fewer_frames=args.allow_fewer_frames,
        device=args.device, progress=not args.no_progress,
    )


def draw_geometry_beside(directory: Path, viz: Path) -> Path:
    """``ask --viz memory.png``: also draw the geometry the model got, as ``memory_geometry.png``."""
    from ..diagnostics.geometry_plot import plot_geometry

    out = viz.with_name(f"{viz.stem}_geometry{viz.suffix or '.png'}")
    try:
        plot_geometry(directory, out)
    except (ValueError, FileNotFoundError) as error:  # e.g. token-only geometry: the answer still stands
        print(f"spatialvlm ask: warning: no geometry picture ({error})", file=sys.stderr)
        return out
    print(f"geometry picture saved to {out}", file=sys.stderr)
    return out
