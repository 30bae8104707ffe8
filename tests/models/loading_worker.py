"""One process of the cross-process loading tests (``test_vlm2_loading.py``); run as a script.

    python loading_worker.py MODEL_DIR OUT_FILE [--save-session DIR | --resume-session DIR]

Loads ``MODEL_DIR`` with ``load_vlm2`` and writes to ``OUT_FILE`` (safetensors):

- ``param.<name>`` / ``buffer.<name>``: every parameter and every buffer (persistent or not) as loaded;
- ``ask_logits``: the language model's logits for one question about a fixed clip (the clip is
  generated here from a seed, so every process sees the same input);
- ``stream_context`` / ``stream_logits``: a ``VLM2StreamingSession`` fed every frame of the clip,
  then asked the question.

``--save-session DIR`` also saves a second session after the first ``SPLIT`` frames; ``--resume-session
DIR`` instead loads that session, feeds the remaining frames and writes its ``stream_*`` entries.
The geometry has points and poses but no 3D-model tokens (as the synthetic and RGB-D sources), so
the fusion's keys come from ``PointTokenEncoder``.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
from safetensors.torch import save_file

from spatialvlm.geometry import stack_frames
from spatialvlm.models import VLM2StreamingSession, load_vlm2
from spatialvlm.models.tiny import tiny_frame_geometry
from spatialvlm.models.vlm2 import VLM2VideoOutput

NUM_FRAMES, SPLIT = 5, 3
QUESTION = "How many chairs are in the room?"


def clip():
    frames = np.random.default_rng(0).integers(0, 256, (NUM_FRAMES, 32, 48, 3), dtype=np.uint8)
    geometry = [
        dataclasses.replace(frame, geometry_tokens=None, camera_token=None) for frame in tiny_frame_geometry(NUM_FRAMES)
    ]
    return frames, geometry


@torch.no_grad()
def logits_for(model, processor, video_features: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Logits of the question's prompt with ``video_features`` (S, Dt), ``num_frames`` frames' tokens,
    in place of its video."""
    prompt = processor.video_prompt(QUESTION)
    text = prompt.replace(processor.video_token, processor.video_token * processor.num_video_tokens(num_frames), 1)
    encoded = processor.tokenizer(text, return_tensors="pt")
    output = model(
        input_ids=encoded["input_ids"],
        attention_mask=encoded["attention_mask"],
        mm_encoder_outputs={"video": VLM2VideoOutput(pooler_output=video_features[None])},
    )
    return output.logits[0]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("out_file")
    parser.add_argument("--save-session")
    parser.add_argument("--resume-session")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, processor = load_vlm2(args.model_dir)
    frames, geometry = clip()
    out: dict[str, torch.Tensor] = {}
    if args.resume_session:
        session = VLM2StreamingSession(model, processor)
        session.load(args.resume_session)
        session.add_frames(frames[SPLIT:], geometry[SPLIT:])
    else:
        out.update({f"param.{name}": p for name, p in model.named_parameters(remove_duplicate=False)})
        out.update({f"buffer.{name}": b for name, b in model.named_buffers(remove_duplicate=False)})
        batch = processor(processor.video_prompt(QUESTION), videos=frames, geometry=stack_frames(geometry))
        video_inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        features = model.model.get_video_features(**video_inputs, return_dict=True).pooler_output[0]
        out["ask_logits"] = logits_for(model, processor, features, NUM_FRAMES)
        if args.save_session:
            first = VLM2StreamingSession(model, processor)
            first.add_frames(frames[:SPLIT], geometry[:SPLIT])
            first.save(args.save_session)
        session = VLM2StreamingSession(model, processor)
        session.add_frames(frames, geometry)
    out["stream_context"] = session.context_features()
    out["stream_logits"] = logits_for(model, processor, out["stream_context"], NUM_FRAMES)
    save_file({name: tensor.detach().contiguous().clone() for name, tensor in out.items()}, args.out_file)


if __name__ == "__main__":
    main()
