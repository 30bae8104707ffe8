"""One-call helpers: load a checkpoint, answer a question about a video.

Used by ``spatialvlm ask`` and by the evaluation harness::

    model, processor = load_vlm2("checkpoints/vlm2")
    text = answer_video_question(model, processor, "scene.mp4", "How many chairs?", geometry="scene_geo/")
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

from ..data.frame_sampling import FrameSampling, sample_frame_indices
from ..data.video import read_video
from ..diagnostics.memory_stats import MemoryTrace, MemoryTraceRecorder
from ..geometry import FrameGeometry, GeometrySource, check_metric_scale, load_geometry_source, read_frames
from ..memory import MemoryState
from .processing import VLM2Processor
from .vlm2 import VLM2ForConditionalGeneration, VLM2VideoOutput

__all__ = [
    "EncodedVideo",
    "VideoAnswer",
    "encode_video",
    "load_vlm2",
    "ask_video",
    "answer_video_question",
    "load_video_geometry",
    "generate_answer",
]

VideoLike = str | os.PathLike | np.ndarray

# Frames per encoding call when a progress bar is shown (memory carried between calls).
ENCODE_CHUNK_FRAMES = 8


@dataclass
class VideoAnswer:
    """What ``ask_video`` returns.

    Attributes:
        text: the decoded answer (special tokens removed, whitespace stripped).
        frame_indices: (T,) video frame indices the model saw.
        memory_state: the dual memory after the last frame (None without memory).
        encode_seconds: time spent reading the video and geometry and encoding them.
        decode_seconds: time spent in the language model (prefill + generation).
        num_new_tokens: tokens generated.
        memory_trace: the memory after every frame when asked for (``record_memory=True``).
    """

    text: str
    frame_indices: np.ndarray
    memory_state: MemoryState | None = field(default=None, repr=False)
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    num_new_tokens: int = 0
    memory_trace: MemoryTrace | None = field(default=None, repr=False)


def load_vlm2(
    model_dir: str | os.PathLike,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    **flags: Any,
) -> tuple[VLM2ForConditionalGeneration, VLM2Processor]:
    """Load a VLM² or a plain LLaVA-OneVision checkpoint directory and its processor, offline.

    A ``spatialvlm train`` output folder or one of its ``checkpoint-N`` folders loads too: the base
    model it records, its LoRA adapters (merged) and its trained VLM² modules.

    Args:
        model_dir: local directory (``config.json``, safetensors weights, tokenizer files), or a
            training output / checkpoint (``spatialvlm_training.json``, ``trained_parameters.safetensors``).
        dtype: e.g. ``torch.bfloat16``; None keeps the stored dtype (float32 here).
        device: where to put the model; None leaves it on CPU.
        flags: VLM² flags overriding the stored config (``use_dual_memory=True``, ...).

    Returns:
        ``(model in eval mode, processor)``. ``model.vlm2_new_weights`` lists the VLM² weights the
        checkpoint did not hold (freshly initialised).
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if _is_training_checkpoint(path):
        model = _load_training_checkpoint(path, dtype, flags)
    else:
        kwargs: dict[str, Any] = dict(flags)
        if dtype is not None:
            kwargs["dtype"] = dtype
        model = VLM2ForConditionalGeneration.from_pretrained(path, **kwargs)
    if device is not None:
        model = model.to(device)
    # The model was trained with one coordinate normalisation: its config decides the processor's.
    processor = VLM2Processor.from_pretrained(path, coordinate_normalization=model.config.coordinate_normalization)
    return model.eval(), processor


def _is_training_checkpoint(path: Path) -> bool:
    from ..train.checkpoint import MANIFEST_NAME

    return (path / MANIFEST_NAME).is_file()


def _load_training_checkpoint(path: Path, dtype: torch.dtype | str | None, flags: dict[str, Any]) -> VLM2ForConditionalGeneration:
    """Base + merged LoRA + trained VLM² parts of a ``spatialvlm train`` output (or checkpoint-N)."""
    from ..train.checkpoint import CheckpointManifest, load_trained_model
    from .vlm2 import VLM2Config

    manifest = CheckpointManifest.load(path)
    if manifest.task != "vlm2":
        raise ValueError(
            f"{path} is a '{manifest.task}' training checkpoint, not a VLM² video model"
            + ("; ask about an image with it (spatialvlm ask --image)" if manifest.task == "shirgx" else "")
        )
    config = VLM2Config.from_base(VLM2Config.from_pretrained(path), **flags) if flags else None
    model = load_trained_model(path, merge_lora=True, torch_dtype=dtype, config=config)
    if not isinstance(model, VLM2ForConditionalGeneration):
        raise TypeError(f"{path} rebuilt a {type(model).__name__}, not a VLM2ForConditionalGeneration")
    return model


def load_video_geometry(
    geometry: str | os.PathLike | GeometrySource | FrameGeometry,
    frame_indices: Sequence[int],
    progress: bool = False,
    coordinate_normalization: str = "per_video",
    total_frames: int | None = None,
) -> FrameGeometry:
    """Geometry of the sampled frames, matched by video frame index: batched FrameGeometry (T, ...).

    ``geometry`` is a folder (``frame_00000.safetensors`` ... or ScanNet-style), any
    ``GeometrySource``, or an already batched FrameGeometry with one entry per sampled frame.
    ``coordinate_normalization="metric"`` refuses a source without metric scale. A VLM-3R ``.pt``
    feature file needs the video's ``total_frames`` to match its rows to frame indices.
    """
    if isinstance(geometry, FrameGeometry):
        return geometry
    is_feature_file = isinstance(geometry, (str, os.PathLike)) and Path(geometry).suffix == ".pt"
    source = load_geometry_source(geometry, total_frames=total_frames) if is_feature_file else load_geometry_source(geometry)
    check_metric_scale(source, coordinate_normalization)
    try:
        return read_frames(source, [int(i) for i in frame_indices], progress=progress)
    except KeyError as error:
        raise ValueError(f"geometry does not cover the sampled frames: {error.args[0]}") from error


def _sample_frames(
    video: VideoLike, frames: FrameSampling | str | int | None, allow_fewer_frames: bool
) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Frames, their video indices, the video's frame count and, for a file with a frame rate, the
    frames' times (the keyword arguments of ``VLM2Processor.video_prompt``; empty for raw frames).

    ``frames`` is a :class:`FrameSampling` policy (or its text / count; None: every frame): the
    indices are :func:`sample_frame_indices`'s, as ``spatialvlm eval`` and ``train`` pick them.
    """
    sampling = FrameSampling(num_frames=None) if frames is None else FrameSampling.parse(frames)
    if isinstance(video, (str, os.PathLike)):
        if sampling.fps is None:
            # Uniform / all: read_video's own path, which raises FewerFramesError (a CLI fix names it).
            clip = read_video(video, num_frames=sampling.num_frames, allow_fewer=allow_fewer_frames)
        else:
            clip = read_video(video, sampling=sampling, allow_fewer=allow_fewer_frames)
        timing: dict[str, Any] = {}
        if clip.fps > 0:
            timing = dict(frame_seconds=(clip.indices / clip.fps).tolist(), video_seconds=clip.total_frames / clip.fps)
        return clip.frames, clip.indices, clip.total_frames, timing
    frames = np.asarray(video)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video frames must have shape (T, H, W, 3); got {tuple(frames.shape)}")
    total = frames.shape[0]
    if sampling.fps is not None:
        raise ValueError(
            f"fps-based frame sampling ({sampling.describe()}) needs a video file's frame rate; "
            "raw frames take a frame count or 'all'"
        )
    if sampling.num_frames is not None and total < sampling.num_frames and not allow_fewer_frames:
        raise ValueError(
            f"the video has {total} frames, fewer than the {sampling.num_frames} requested; "
            "ask for fewer frames or pass allow_fewer_frames=True"
        )
    indices = sample_frame_indices(total, sampling, allow_fewer=True)
    return frames[indices], indices, total, {}


class _TqdmStreamer(BaseStreamer):
    """Advances a tqdm bar by one per generated token (the first ``put`` is the prompt)."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="decoding", unit="tok", disable=not enabled, leave=False)
        self.seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        self.bar.update(1)

    def end(self) -> None:
        self.bar.close()


@torch.no_grad()
def generate_answer(
    model: VLM2ForConditionalGeneration,
    processor: VLM2Processor,
    prompt: str,
    video_features: torch.Tensor,
    max_new_tokens: int = 16,
    progress: bool = False,
) -> tuple[str, int]:
    """Greedy answer to ``prompt`` whose ``<video>`` stands for precomputed ``video_features``.

    Args:
        prompt: chat prompt with one ``<video>`` placeholder (e.g. ``processor.video_prompt(q)``).
        video_features: (S, Dt) language-model tokens of the video in the model's layout; S must be
            ``processor.num_video_tokens(T)`` for some T.
    Returns:
        ``(text, number of new tokens)``.
    """
    num_frames = processor.num_frames_of(video_features.shape[0])
    text = prompt.replace(processor.video_token, processor.video_token * processor.num_video_tokens(num_frames), 1)
    encoded = processor.tokenizer(text, return_tensors="pt")
    device = model.device
    streamer = _TqdmStreamer(max_new_tokens, progress)
    output = model.generate(
        input_ids=encoded["input_ids"].to(device),
        attention_mask=encoded["attention_mask"].to(device),
        mm_encoder_outputs={"video": VLM2VideoOutput(pooler_output=video_features[None])},
        max_new_tokens=max_new_tokens,
        do_sample=False,
        streamer=streamer,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    new_tokens = output[0, encoded["input_ids"].shape[1] :]
    return processor.decode(new_tokens, skip_special_tokens=True).strip(), int(new_tokens.shape[0])


@dataclass
class EncodedVideo:
    """A video read, sampled and encoded once, to be asked any number of questions
    (``ask_video(model, processor, encoded, question)``): the video tokens do not depend on the
    question, so each question then costs only the language model.

    Attributes:
        features: (S, Dt) the language-model tokens of the video (``pack_video_tokens`` layout).
        frame_indices: (T,) video frame indices the model saw.
        timing: what ``processor.video_prompt`` needs of the frames' times (empty for raw frames).
        memory_state: the dual memory after the last frame (None without memory).
        encode_seconds: time spent reading the video and geometry and encoding them.
        memory_trace: the memory after every frame when asked for (``record_memory=True``).
    """

    features: torch.Tensor
    frame_indices: np.ndarray
    timing: dict[str, Any] = field(default_factory=dict)
    memory_state: MemoryState | None = field(default=None, repr=False)
    encode_seconds: float = 0.0
    memory_trace: MemoryTrace | None = field(default=None, repr=False)


@torch.no_grad()
def encode_video(
    model: VLM2ForConditionalGeneration,
    processor: VLM2Processor,
    video: VideoLike,
    geometry: str | os.PathLike | GeometrySource | FrameGeometry | None = None,
    num_frames: int | None = 32,
    allow_fewer_frames: bool = False,
    progress: bool = False,
    record_memory: bool = False,
    frames: FrameSampling | str | None = None,
) -> EncodedVideo:
    """Read, sample and encode one video (vision tower, fusion, memory, projector, pooling).

    Arguments as :func:`ask_video`'s; the result answers any question through ``ask_video``.
    """
    config = model.config
    if record_memory and not config.use_dual_memory:
        raise ValueError("record_memory needs a model with use_dual_memory=True")
    if geometry is None and config.needs_geometry:
        raise ValueError(
            "this model needs per-frame geometry (use_spatial_fusion=True): pass geometry (a folder of "
            "frame_XXXXX.safetensors, a GeometrySource) or load the model with use_spatial_fusion=False"
        )
    start = time.perf_counter()
    video_frames, indices, total_frames, timing = _sample_frames(
        video, num_frames if frames is None else frames, allow_fewer_frames
    )
    frame_geometry = None if geometry is None else load_video_geometry(
        geometry,
        indices,
        progress=progress,
        coordinate_normalization=processor.coordinate_normalization,
        total_frames=total_frames,
    )
    # The prompt's text is not part of the video inputs; any prompt with the timing gives them.
    batch = processor(processor.video_prompt("", **timing), videos=video_frames, geometry=frame_geometry)
    device, dtype = model.device, model.dtype
    video_inputs = {
        name: value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        for name, value in batch.items()
        if name not in ("input_ids", "attention_mask")
    }
    num_sampled = video_inputs["pixel_values_videos"].shape[1]
    # Chunks of frames with the memory state carried over give the same tokens as one call (tested);
    # they let a bar show progress, and single frames let the memory be read after each one.
    chunk = 1 if record_memory else (ENCODE_CHUNK_FRAMES if progress else num_sampled)
    features, memory_state, trace = _encode_in_chunks(model, video_inputs, chunk, progress, record_memory)
    return EncodedVideo(features, indices, timing, memory_state, time.perf_counter() - start, trace)


@torch.no_grad()
def ask_video(
    model: VLM2ForConditionalGeneration,
    processor: VLM2Processor,
    video: VideoLike | EncodedVideo,
    question: str,
    geometry: str | os.PathLike | GeometrySource | FrameGeometry | None = None,
    num_frames: int | None = 32,
    max_new_tokens: int = 16,
    allow_fewer_frames: bool = False,
    progress: bool = False,
    record_memory: bool = False,
    frames: FrameSampling | str | None = None,
) -> VideoAnswer:
    """Answer one question about one video.

    Args:
        video: a video file (decoded with PyAV), frames (T, H, W, 3) uint8, or an
            :class:`EncodedVideo` from :func:`encode_video` (then the reading, sampling and
            geometry arguments are not used and only the language model runs).
        question: the question text (the chat template is applied here).
        geometry: per-frame geometry (see ``load_video_geometry``); required when the model's config
            has ``use_spatial_fusion=True``.
        num_frames: frames sampled uniformly (32 as VSI-Bench); None uses every frame.
        max_new_tokens: answer length limit (greedy decoding).
        allow_fewer_frames: use all frames of a video shorter than ``num_frames`` instead of raising.
        progress: tqdm bars for reading, encoding and decoding.
        record_memory: also return a ``diagnostics.MemoryTrace`` (frames then go through the memory
            one call at a time, which gives the same tokens).
        frames: a frame sampling policy (``"32"``, ``"1fps:64"``, ``"all"``, a ``FrameSampling``)
            used instead of ``num_frames``: the frames ``spatialvlm eval --frames`` picks.
    """
    encoded = video if isinstance(video, EncodedVideo) else encode_video(
        model, processor, video, geometry, num_frames, allow_fewer_frames, progress, record_memory, frames
    )
    start = time.perf_counter()
    prompt = processor.video_prompt(question, **encoded.timing)
    text, num_new = generate_answer(model, processor, prompt, encoded.features, max_new_tokens, progress)
    return VideoAnswer(
        text=text,
        frame_indices=encoded.frame_indices,
        memory_state=encoded.memory_state,
        encode_seconds=encoded.encode_seconds,
        decode_seconds=time.perf_counter() - start,
        num_new_tokens=num_new,
        memory_trace=encoded.memory_trace,
    )


def _encode_in_chunks(
    model: VLM2ForConditionalGeneration,
    video_inputs: dict[str, torch.Tensor],
    chunk_frames: int,
    progress: bool,
    record_memory: bool,
) -> tuple[torch.Tensor, MemoryState | None, MemoryTrace | None]:
    """One video (B = 1) through the model ``chunk_frames`` frames per call, the memory carried over.

    Returns the packed video tokens (T · P + 1, Dt), the final memory and, with ``record_memory``
    (``chunk_frames`` = 1), the memory after every frame.
    """
    from tqdm.auto import tqdm

    num_frames = video_inputs["pixel_values_videos"].shape[1]
    state, features = None, []
    recorder = MemoryTraceRecorder() if record_memory else None
    with tqdm(total=num_frames, desc="encoding", unit="frame", disable=not progress, leave=False) as bar:
        for start in range(0, num_frames, chunk_frames):
            step = {name: value[:, start : start + chunk_frames] for name, value in video_inputs.items()}
            encoded = model.model.get_video_features(**step, memory_state=state, return_dict=True)
            state = encoded.memory_state
            features.append(encoded.frame_features)
            if recorder is not None:
                recorder.record(state)
            bar.update(step["pixel_values_videos"].shape[1])
    frame_features = torch.cat(features)
    counts = torch.tensor([num_frames], device=frame_features.device)
    trace = recorder.finish() if recorder is not None else None
    return model.model.pack_video_tokens(frame_features, counts), state, trace


def answer_video_question(
    model: VLM2ForConditionalGeneration,
    processor: VLM2Processor,
    video: VideoLike | EncodedVideo,
    question: str,
    **options: Any,
) -> str:
    """``ask_video(model, processor, video, question, **options).text``: the answer string
    (``options``: ``geometry``, ``num_frames``, ``max_new_tokens``, ``frames``, ... as ``ask_video``)."""
    return ask_video(model, processor, video, question, **options).text
