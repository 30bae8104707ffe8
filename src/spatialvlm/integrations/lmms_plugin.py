"""lmms-eval model plugin: run spatialvlm's VLM² checkpoints on lmms-eval video tasks (``vsibench``,
``vsibench_debiased``, ``revsi_*_frame``, any task whose ``doc_to_visual`` gives a video path) as
``spatialvlm_vlm2``, and the SHIRG-X image path on image tasks (``chartqa``, ``docvqa_val``, any task
whose ``doc_to_visual`` gives one image) as ``spatialvlm_shirgx``.

Registered through lmms-eval's external-model entry point (``[project.entry-points."lmms_eval.models"]``
in spatialvlm's pyproject; lmms-eval ≥ 0.7 loads :func:`model_manifests` from the group
``lmms_eval.models``), so once spatialvlm and lmms-eval are installed::

    python -m lmms_eval --model spatialvlm_vlm2 \\
        --model_args pretrained=/ckpt/vlm2,frames=32,geometry_root=/data/geometry,dtype=bfloat16,device=cuda \\
        --tasks vsibench --batch_size 1 --log_samples --output_path runs/lmms

``--model_args`` (all optional but ``pretrained``):

- ``pretrained``: the checkpoint directory (``spatialvlm.models.load_vlm2``).
- ``frames``: the frame sampling policy (:class:`spatialvlm.data.frame_sampling.FrameSampling`:
  ``32``, ``16``, ``all``, ``1fps:64``); a doc with ``num_frames`` (ReVSI's pre-sampled videos) is
  read whole.
- ``geometry_root``: where ``<dataset>/<scene_name>_geometry/`` folders live (ReVSI:
  ``scene_id``); a checkpoint that fuses geometry needs it.
- ``dtype`` (``float32`` / ``bfloat16`` / ``float16``), ``device`` (``cuda``, ``cpu``).
- ``frame_log``: a jsonl file; each answered doc appends ``{task, doc_id, video, frame_indices}``,
  the frames the model saw (lmms-eval's own sample logs do not say).

``generate_until`` answers greedily with the task's ``max_new_tokens`` and cuts the answer at the
first of the task's ``until`` strings; ``loglikelihood`` scores a continuation after the context
(with the doc's video when the task gives one). The model is the same
:class:`spatialvlm.integrations.VLM2VideoPredictor` that ``spatialvlm eval --model`` uses.

``spatialvlm_shirgx`` (``--model_args pretrained=DIR,budget=768,decoding=autoregressive,
dtype=bfloat16,device=cuda``): the checkpoint is read as ``spatialvlm ask --image`` reads it (a
``spatialvlm train --task shirgx`` output with its trained selector, or any LLaVA-OneVision / VLM²
directory with the training-free selector, or ``no_selector=True`` for the base image path);
``budget`` is K (default: the adaptive head); ``generate_until`` only (image tasks are generative).

This module imports lmms-eval; nothing else in spatialvlm does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from spatialvlm.data.frame_sampling import FrameSampling
from spatialvlm.integrations.vlm2_predictor import VLM2VideoPredictor

__all__ = ["SpatialVLMVideo", "SpatialVLMImage", "model_manifests", "MODEL_ID", "IMAGE_MODEL_ID"]

MODEL_ID = "spatialvlm_vlm2"
IMAGE_MODEL_ID = "spatialvlm_shirgx"


def model_manifests() -> list:
    """The entry-point payload: lmms-eval's ``ModelManifest`` for each spatialvlm model."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [
        ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.SpatialVLMVideo", aliases=("spatialvlm",)),
        ModelManifest(model_id=IMAGE_MODEL_ID, simple_class_path=f"{__name__}.SpatialVLMImage"),
    ]


def _scene_of(doc: dict[str, Any]) -> tuple[str, str] | None:
    scene = doc.get("scene_name", doc.get("scene_id"))
    if scene is None:
        return None
    return str(doc.get("dataset") or ("revsi" if "scene_id" in doc else "")), str(scene)


class SpatialVLMVideo(lmms):
    """A VLM² video checkpoint as an lmms-eval ``simple`` model (see the module docstring)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        frames: str | int = "32",
        geometry_root: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
        frame_log: str | None = None,
        batch_size: int | str = 1,
        **unused: Any,
    ) -> None:
        super().__init__()
        if int(batch_size) != 1:
            raise ValueError(f"spatialvlm_vlm2 answers one question at a time; got batch_size={batch_size}")
        if unused:
            raise ValueError(f"spatialvlm_vlm2: unknown --model_args {sorted(unused)}; see spatialvlm.integrations.lmms_plugin")
        torch_dtype = getattr(torch, dtype) if dtype else None
        self.predictor = VLM2VideoPredictor(
            pretrained, frames=str(frames), geometry_root=geometry_root, dtype=torch_dtype, device=device
        )
        self.frame_log = Path(frame_log) if frame_log else None

    # ------------------------------------------------------------------ helpers
    def _doc(self, task: str, split: str, doc_id: int) -> dict[str, Any]:
        return self.task_dict[task][split][doc_id]

    def _video_and_geometry(self, doc_to_visual, doc: dict[str, Any]) -> tuple[str | None, Path | None]:
        visuals = doc_to_visual(doc) if doc_to_visual is not None else None
        visuals = [visual for visual in (visuals or []) if isinstance(visual, (str, Path))]
        if not visuals:
            return None, None
        if len(visuals) > 1:
            raise ValueError(f"spatialvlm_vlm2 takes one video per question; doc_to_visual gave {len(visuals)}")
        scene = _scene_of(doc)
        return str(visuals[0]), self.predictor.geometry_dir(*scene) if scene else None

    # ------------------------------------------------------------------ lmms API
    def generate_until(self, requests: list[Instance]) -> list[str]:
        answers = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            video, geometry = self._video_and_geometry(doc_to_visual, doc)
            if video is None:
                raise ValueError(f"task {task} doc {doc_id}: doc_to_visual gave no video path")
            # ReVSI docs name the frame count their video was pre-sampled to: read it whole.
            sampling = FrameSampling(num_frames=None) if "num_frames" in doc else None
            answer = self.predictor.answer(
                video, context, geometry, sampling=sampling, max_new_tokens=int(gen_kwargs.get("max_new_tokens", 16))
            )
            text = answer.text
            until = gen_kwargs.get("until") or []
            for stop in [until] if isinstance(until, str) else until:
                if stop:
                    text = text.split(stop)[0]
            if self.frame_log is not None:
                with self.frame_log.open("a") as handle:
                    handle.write(json.dumps({"task": task, "doc_id": doc_id, **answer.details}) + "\n")
            answers.append(text)
        return answers

    @torch.no_grad()
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        from spatialvlm.data.video import read_video
        from spatialvlm.models.inference import load_video_geometry

        model, processor = self.predictor.model, self.predictor.processor
        results = []
        for request in requests:
            context, continuation, doc_to_visual, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            video, geometry_dir = self._video_and_geometry(doc_to_visual, doc)
            videos = geometry = None
            if video is not None:
                clip = read_video(video, sampling=self.predictor.sampling, allow_fewer=True)
                videos = clip.frames
                if geometry_dir is not None and geometry_dir.is_dir():
                    geometry = load_video_geometry(geometry_dir, clip.indices)
                prompt = processor.video_prompt(context)
            else:
                prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": context}]}])
            batch = processor(prompt + continuation, videos=videos, geometry=geometry)
            batch = {
                name: value.to(device=model.device, dtype=model.dtype if value.is_floating_point() else None)
                for name, value in batch.items()
            }
            logits = model(**batch).logits[0].float()
            num_continuation = len(processor.tokenizer(continuation, add_special_tokens=False)["input_ids"])
            targets = batch["input_ids"][0, -num_continuation:]
            # Position i predicts token i + 1: the continuation's logits are the ones just before it.
            predicted = logits[-num_continuation - 1 : -1]
            log_probs = torch.log_softmax(predicted, dim=-1).gather(1, targets[:, None])[:, 0]
            results.append((float(log_probs.sum()), bool((predicted.argmax(-1) == targets).all())))
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("spatialvlm_vlm2 answers single-round questions (generate_until)")


class SpatialVLMImage(lmms):
    """The SHIRG-X image path as an lmms-eval ``simple`` model (see the module docstring)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        budget: int | str | None = None,
        decoding: str = "autoregressive",
        no_selector: bool | str = False,
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int | str = 1,
        **unused: Any,
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        # The same loading as `spatialvlm ask --image` (trained SHIRG-X checkpoint, or any LLaVA-OneVision
        # / VLM² directory with the training-free selector).
        from spatialvlm.models import ShirgXImagePath, load_shirgx_image_model

        if int(batch_size) != 1:
            raise ValueError(f"spatialvlm_shirgx answers one question at a time; got batch_size={batch_size}")
        if unused:
            raise ValueError(f"spatialvlm_shirgx: unknown --model_args {sorted(unused)}; see spatialvlm.integrations.lmms_plugin")
        if decoding not in ("autoregressive", "diffusion"):
            raise ValueError(f"spatialvlm_shirgx: decoding must be 'autoregressive' or 'diffusion', got {decoding!r}")
        no_selector = str(no_selector).lower() in ("1", "true", "yes")
        loaded = load_shirgx_image_model(Path(pretrained), getattr(torch, dtype), no_selector)
        model, selector, image_config = loaded.model, loaded.selector, loaded.image_config
        model.to(device).eval()
        if selector is not None:
            selector.to(device=device, dtype=model.dtype).eval()
        self.path = ShirgXImagePath(model, selector, image_config)
        self.tokenizer = AutoTokenizer.from_pretrained(pretrained)
        self.budget = None if budget in (None, "auto", "None") else int(budget)
        if self.budget is not None and selector is not None and self.budget not in selector.config.budgets:
            raise ValueError(f"spatialvlm_shirgx: budget must be one of the selector's budgets {selector.config.budgets}")
        self.decoding = decoding

    def generate_until(self, requests: list[Instance]) -> list[str]:
        from PIL import Image

        answers = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            images = [Image.open(v) if isinstance(v, (str, Path)) else v for v in visuals or []]
            if len(images) != 1 or not isinstance(images[0], Image.Image):
                raise ValueError(f"task {task} doc {doc_id}: spatialvlm_shirgx takes one image; doc_to_visual gave {len(images)}")
            result = self.path.answer(
                images[0].convert("RGB"), context, self.tokenizer, decoding=self.decoding, budget=self.budget,
                max_new_tokens=int(gen_kwargs.get("max_new_tokens", 32)),
            )
            text = result.text
            until = gen_kwargs.get("until") or []
            for stop in [until] if isinstance(until, str) else until:
                if stop:
                    text = text.split(stop)[0]
            answers.append(text)
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            "spatialvlm_shirgx scores generative image tasks (generate_until); use spatialvlm_vlm2 for loglikelihood"
        )

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("spatialvlm_shirgx answers single-round questions (generate_until)")
