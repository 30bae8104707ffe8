"""A VLM² checkpoint as a benchmark predictor: one frame-sampling policy, geometry looked up per video.

``spatialvlm eval --model`` and the lmms-eval plugin (:mod:`spatialvlm.integrations.lmms_eval`)
answer with this one class, so both sample frames with
:func:`spatialvlm.data.frame_sampling.sample_frame_indices` and find geometry the same way:
``<geometry_root>/<dataset>/<scene_name>_geometry/`` (the synthetic layout; ScanNet-style folders
and ``frame_XXXXX.safetensors`` folders both open), matched to the sampled frames by video frame
index.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spatialvlm.data.frame_sampling import FrameSampling
from spatialvlm.eval.runner import PredictorAnswer

__all__ = ["VLM2VideoPredictor"]


class VLM2VideoPredictor:
    """Answers ``(item, prompt)`` with a VLM² (or plain LLaVA-OneVision) checkpoint, greedily.

    Args:
        model_dir: the checkpoint directory (``load_vlm2``).
        frames: the frame sampling policy (``"32"``, ``"all"``, ``"1fps:64"``, a ``FrameSampling``).
        geometry_root: where ``<dataset>/<scene_name>_geometry/`` folders live; None: no geometry.
        max_new_tokens: answer length (16 as the official VSI-Bench / ReVSI YAML).
        dtype, device: as ``load_vlm2``.
        coordinate_normalization: override the checkpoint's ("per_video", "metric", "fixed").
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        frames: str | int | FrameSampling = "32",
        geometry_root: str | os.PathLike | None = None,
        max_new_tokens: int = 16,
        dtype: Any = None,
        device: Any = None,
        coordinate_normalization: str | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise FileNotFoundError(f"model directory {self.model_dir} does not exist")
        self.sampling = FrameSampling.parse(frames)
        self.geometry_root = Path(geometry_root) if geometry_root is not None else None
        self.max_new_tokens = max_new_tokens
        flags = {} if coordinate_normalization is None else {"coordinate_normalization": coordinate_normalization}
        self._load_options = {"dtype": dtype, "device": device, **flags}
        self._loaded: tuple[Any, Any] | None = None
        # The last video encoded: a benchmark asks several questions per video in a row, and the
        # video's tokens do not depend on the question.
        self._last_encoded: tuple[tuple[str, str, str], Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        # Loaded on first use, so check_inputs can refuse a run in a second, not after a 7B load.
        if self._loaded is None:
            from spatialvlm.models.inference import load_vlm2

            self._loaded = load_vlm2(self.model_dir, **self._load_options)
        return self._loaded

    @property
    def model(self) -> Any:
        return self._load()[0]

    @property
    def processor(self) -> Any:
        return self._load()[1]

    @property
    def needs_geometry(self) -> bool:
        """Whether the checkpoint fuses per-frame geometry (read from ``config.json`` when it says so,
        without loading the weights)."""
        config_path = self.model_dir / "config.json"
        if self._loaded is None and config_path.is_file():
            import json

            try:
                config = json.loads(config_path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{config_path} is not valid JSON: {error}") from error
            if "use_spatial_fusion" in config:
                return bool(config["use_spatial_fusion"])
        return bool(self.model.config.needs_geometry)

    @property
    def decoding(self) -> dict[str, Any]:
        """The decoding settings (greedy)."""
        dtype = self._load_options.get("dtype")
        return {"max_new_tokens": self.max_new_tokens, "do_sample": False, "num_beams": 1,
                "dtype": str(dtype).removeprefix("torch.") if dtype is not None else "as stored"}

    def geometry_dir(self, dataset: str, scene_name: str) -> Path | None:
        if self.geometry_root is None:
            return None
        return self.geometry_root / dataset / f"{scene_name}_geometry"

    def check_inputs(self, items: Sequence[Any]) -> None:
        """Every video exists and, for a checkpoint that fuses geometry, every geometry folder does;
        a one-line error names the first missing scene and path (and how many more)."""
        missing_videos = [item for item in items if not Path(item.video_path).is_file()]
        if missing_videos:
            first = missing_videos[0]
            more = f" (and {len(missing_videos) - 1} more questions)" if len(missing_videos) > 1 else ""
            raise FileNotFoundError(f"scene {first.scene_name} ({first.dataset}): video {first.video_path} does not exist{more}")
        if not self.needs_geometry:
            return
        scenes = {(item.dataset, item.scene_name) for item in items}
        missing = sorted(
            scene for scene in scenes if self.geometry_dir(*scene) is None or not self.geometry_dir(*scene).is_dir()
        )
        if missing:
            dataset, scene = missing[0]
            more = f" (and {len(missing) - 1} more scenes)" if len(missing) > 1 else ""
            where = self.geometry_dir(dataset, scene) or "(no --geometry-root given)"
            raise FileNotFoundError(
                f"scene {scene} ({dataset}): no geometry folder at {where}{more}; this checkpoint fuses "
                f"per-frame geometry (use_spatial_fusion) — write the folders there or point --geometry-root at them"
            )

    def answer(
        self,
        video_path: str | os.PathLike,
        prompt: str,
        geometry_dir: Path | None = None,
        sampling: FrameSampling | None = None,
        max_new_tokens: int | None = None,
    ) -> PredictorAnswer:
        """Answer ``prompt`` about one video; the details record the frames the model saw.

        ``sampling`` and ``max_new_tokens`` override the predictor's for this question.
        """
        from spatialvlm.data.video import read_video
        from spatialvlm.models.inference import ask_video, encode_video, load_video_geometry

        sampling = sampling or self.sampling
        key = (str(video_path), repr(sampling), str(geometry_dir))
        if self._last_encoded is None or self._last_encoded[0] != key:
            clip = read_video(video_path, sampling=sampling, allow_fewer=True)
            geometry = None
            if geometry_dir is not None and geometry_dir.is_dir():
                geometry = load_video_geometry(
                    geometry_dir, clip.indices, coordinate_normalization=self.processor.coordinate_normalization
                )
            encoded = encode_video(self.model, self.processor, clip.frames, geometry=geometry, num_frames=None)
            encoded.frame_indices = clip.indices
            self._last_encoded = (key, encoded)
        result = ask_video(
            self.model, self.processor, self._last_encoded[1], prompt,
            max_new_tokens=max_new_tokens or self.max_new_tokens,
        )
        return PredictorAnswer(result.text, {
            "video": str(video_path),
            "frame_indices": [int(index) for index in result.frame_indices],
            "num_new_tokens": int(result.num_new_tokens),
        })

    def __call__(self, item: Any, prompt: str) -> PredictorAnswer:
        return self.answer(item.video_path, prompt, self.geometry_dir(item.dataset, item.scene_name))
