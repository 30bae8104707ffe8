"""VLM² training end to end: the CLI overfits a tiny set; per-sample and stream memory modes."""

from __future__ import annotations

import json

import pytest
import torch

from spatialvlm.cli import main
from spatialvlm.models.processing import VLM2Processor
from spatialvlm.models.vlm2 import tiny_vlm2_config
from spatialvlm.train import DataArguments, parse_train_args, prepare_training
from spatialvlm.train.tasks.vlm2 import VideoConversationCollator, VideoConversationDataset, stream_warm_up
from train_fixtures import save_tiny_base, trainer_flags, write_dataset

MEMORY_FLAGS = dict(use_dual_memory="True", use_spatial_fusion="True")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm2_train")
    save_tiny_base(root / "base")
    write_dataset(root, num_samples=4, num_frames=8)
    return root


def test_cli_training_overfits_a_tiny_set(workspace):
    out = workspace / "overfit"
    flags = trainer_flags(
        workspace / "base", workspace / "data.json", out, **MEMORY_FLAGS,
        mm_tunable_parts="fusion,dual_memory,mm_mlp_adapter,mm_language_model",
        learning_rate="1e-2", max_steps="20", lr_scheduler_type="constant",
    )
    assert main(["train", *flags]) == 0
    losses = [entry["loss"] for entry in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in entry]
    assert len(losses) == 20
    first, last = sum(losses[:2]) / 2, sum(losses[-3:]) / 3
    assert last < 0.4 * first, losses
    assert (out / "trained_parameters.safetensors").is_file() and (out / "config.json").is_file()


def build_run(workspace, name, **overrides):
    flags = trainer_flags(workspace / "base", workspace / "data.json", workspace / name, **MEMORY_FLAGS, **overrides)
    return prepare_training(*parse_train_args(flags))


def test_per_sample_mode_resets_memory_and_backpropagates_through_every_frame(workspace):
    run = build_run(workspace, "per_sample", num_frames="6")
    trainer, model = run.trainer, run.trainer.model.eval()
    items = [trainer.train_dataset[0], trainer.train_dataset[1]]
    batch = trainer.data_collator(items)
    assert batch["pixel_values_videos"].shape[1] == 6 and "memory_state" not in batch
    # No state survives a step: the same batch gives the same loss again, and a sample's loss
    # does not depend on the other video in its batch (one memory per video, empty at its start).
    first = trainer.compute_loss(model, dict(batch)).detach()
    assert torch.equal(trainer.compute_loss(model, dict(batch)).detach(), first)
    alone = trainer.data_collator([items[0]])
    with torch.no_grad():
        pair_logits = model(**batch).logits[0, : alone["input_ids"].shape[1]]
        torch.testing.assert_close(model(**alone).logits[0], pair_logits, rtol=1e-4, atol=1e-5)
    # Back-propagation reaches the first frame through the memory.
    pixels = batch["pixel_values_videos"].clone().requires_grad_(True)
    trainer.compute_loss(model, {**batch, "pixel_values_videos": pixels}).backward()
    assert bool(pixels.grad[:, 0].abs().sum() > 0)


def test_a_batch_without_attention_mask_trains_as_the_padding_mask_would(workspace):
    # The collator leaves the mask out (right padding under a causal LM); the loss and every
    # gradient must equal those of the same batch with the explicit padding mask.
    run = build_run(workspace, "no_mask", num_frames="4")
    trainer, model = run.trainer, run.trainer.model.train()
    first, second = trainer.train_dataset[0], trainer.train_dataset[1]
    # The fixture's conversations have one length: five unlabelled tokens more at the end of one.
    tail = second["input_ids"][-1:].repeat(5)
    second = {**second, "input_ids": torch.cat([second["input_ids"], tail]),
              "labels": torch.cat([second["labels"], torch.full_like(tail, -100)])}
    lengths = torch.tensor([first["input_ids"].numel(), second["input_ids"].numel()])
    batch = trainer.data_collator([first, second])
    assert "attention_mask" not in batch and int(lengths[0]) < batch["input_ids"].shape[1]
    width = batch["input_ids"].shape[1]
    masked = {**batch, "attention_mask": (torch.arange(width)[None, :] < lengths[:, None]).long()}
    results = []
    for inputs in (batch, masked):
        torch.manual_seed(0)
        loss = model(**inputs).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        model.zero_grad(set_to_none=True)
    (loss_free, grads_free), (loss_masked, grads_masked) = results
    torch.testing.assert_close(loss_free, loss_masked, rtol=1e-6, atol=1e-6)
    assert len(grads_free) == len(grads_masked) > 0
    for free, masked_grad in zip(grads_free, grads_masked):
        torch.testing.assert_close(free, masked_grad, rtol=1e-5, atol=1e-6)


def test_stream_mode_carries_a_detached_memory_across_chunks(workspace):
    run = build_run(workspace, "stream", num_frames="6", memory_mode="stream", stream_chunk_frames="2")
    trainer, model = run.trainer, run.trainer.model.eval()
    video_model = model.model
    dataset = trainer.train_dataset
    processor = trainer.processing_class
    batch = trainer.data_collator([dataset[0], dataset[1]])
    # All 6 frames are read, the prompt shows the last chunk's 2 frames.
    assert batch["pixel_values_videos"].shape[1] == 6
    shown = int((batch["input_ids"][0] == processor.video_token_id).sum())
    assert shown == processor.num_video_tokens(2)

    # The memory handed to the last chunk equals running the first 4 frames in one call.
    warmed = stream_warm_up(video_model, batch, chunk_frames=2)
    assert warmed["pixel_values_videos"].shape[1] == 2
    assert torch.equal(warmed["pixel_values_videos"], batch["pixel_values_videos"][:, 4:])
    frame_names = [n for n in ("pixel_values_videos", "video_frame_mask", "geometry_coords", "geometry_coords_valid",
                               "geometry_tokens", "camera_tokens", "camera_poses") if n in batch]
    with torch.no_grad():
        reference = video_model.get_video_features(**{n: batch[n][:, :4] for n in frame_names}).memory_state
    state = warmed["memory_state"]
    for video in range(2):
        torch.testing.assert_close(state.working_entries(video), reference.working_entries(video))
        torch.testing.assert_close(state.episodic_entries(video), reference.episodic_entries(video))
    assert not state.working.keys.requires_grad  # detached: truncated back-propagation

    # Earlier chunks change the loss (memory carried) but get no gradient (state detached).
    pixels = batch["pixel_values_videos"].clone().requires_grad_(True)
    loss = trainer.compute_loss(model, {**batch, "pixel_values_videos": pixels})
    loss.backward()
    assert bool(pixels.grad[:, 4:].abs().sum() > 0)
    assert bool((pixels.grad[:, :4] == 0).all())
    changed = batch["pixel_values_videos"].clone()
    changed[:, :2] = -changed[:, :2]
    with torch.no_grad():
        assert not torch.equal(trainer.compute_loss(model, {**batch, "pixel_values_videos": changed}), loss.detach())


def test_stream_training_runs_through_the_trainer(workspace):
    run = build_run(workspace, "stream_train", num_frames="4", memory_mode="stream", stream_chunk_frames="2",
                    max_steps="3", learning_rate="1e-2")
    result = run.trainer.train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))


def test_bad_training_data_is_reported_with_the_record(workspace, tmp_path):
    config = tiny_vlm2_config(use_spatial_fusion=True)
    processor = VLM2Processor.from_pretrained(workspace / "base")
    records = json.loads((workspace / "data.json").read_text())
    without_geometry = [{k: v for k, v in records[0].items() if k != "geometry"}]
    with pytest.raises(ValueError, match="no 'geometry' folder"):
        VideoConversationDataset(without_geometry, processor, DataArguments(), config, workspace)
    # Stream chunks need every sampled frame: an 8-frame video cannot give 16.
    stream = DataArguments(num_frames=16, memory_mode="stream", stream_chunk_frames=4)
    dataset = VideoConversationDataset(records, processor, stream, config, workspace)
    with pytest.raises(ValueError, match="fewer than the 16 requested"):
        dataset[0]
    # Per-sample batches take the frames a short video has and mask the rest.
    short = VideoConversationDataset(records, processor, DataArguments(num_frames=16), config, workspace)
    batch = VideoConversationCollator(processor.tokenizer.pad_token_id)([short[0]])
    assert batch["pixel_values_videos"].shape[1] == 8 and bool(batch["video_frame_mask"].all())


def test_video_cache_decodes_each_video_once_and_gives_the_same_items(workspace, monkeypatch):
    """Two questions on one video: with a cache the video and its geometry are read once, and every
    item equals the uncached one (pixels to float16 precision, geometry and text exactly)."""
    import spatialvlm.train.tasks.vlm2 as task_module

    config = tiny_vlm2_config(use_spatial_fusion=True)
    processor = VLM2Processor.from_pretrained(workspace / "base")
    record = json.loads((workspace / "data.json").read_text())[0]
    second = {**record, "id": "scene0_q1",
              "conversations": [record["conversations"][0], {"from": "gpt", "value": "seven"}]}
    records = [record, second]
    plain = VideoConversationDataset(records, processor, DataArguments(num_frames=8), config, workspace)
    expected = [plain[0], plain[1]]

    reads = {"video": 0, "geometry": 0}
    read_video, load_source = task_module.read_video, task_module.load_geometry_source

    def counting_read(*args, **kwargs):
        reads["video"] += 1
        return read_video(*args, **kwargs)

    def counting_load(*args, **kwargs):
        reads["geometry"] += 1
        return load_source(*args, **kwargs)

    monkeypatch.setattr(task_module, "read_video", counting_read)
    monkeypatch.setattr(task_module, "load_geometry_source", counting_load)
    cache: dict = {}
    cached = VideoConversationDataset(records, processor, DataArguments(num_frames=8), config, workspace, video_cache=cache)
    items = [cached[0], cached[1], cached[0]]
    assert reads == {"video": 1, "geometry": 1}
    for item, reference in zip(items, expected + expected[:1]):
        assert set(item) == set(reference)
        for name, value in reference.items():
            if name == "pixel_values_videos":
                torch.testing.assert_close(item[name], value, atol=2e-3, rtol=0)
            else:
                assert torch.equal(item[name], value), name
    assert not torch.equal(items[0]["labels"], items[1]["labels"])
    # The first read and a cached one give the same item.
    assert torch.equal(items[0]["pixel_values_videos"], items[2]["pixel_values_videos"])
    # Other geometry settings are another entry, not a stale one; so are other pixel settings.
    processor.coordinate_clip = 2.0
    VideoConversationDataset(records, processor, DataArguments(num_frames=8), config, workspace, video_cache=cache)[0]
    assert reads == {"video": 1, "geometry": 2}
    processor.image_std = (0.25, 0.25, 0.25)
    VideoConversationDataset(records, processor, DataArguments(num_frames=8), config, workspace, video_cache=cache)[0]
    assert reads == {"video": 2, "geometry": 2}
