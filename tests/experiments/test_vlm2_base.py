"""The synthetic base's per-patch labels and scene descriptions, against hand computations."""

import numpy as np

from spatialvlm.data.synthetic import CATEGORIES, Scene, SceneObject
from spatialvlm.experiments.vlm2_base import NUM_PATCH_CLASSES, NUM_ROOM_CLASSES, describe_scene, patch_labels


def test_patch_labels_are_pixel_shares_and_means():
    assert NUM_PATCH_CLASSES == NUM_ROOM_CLASSES + len(CATEGORIES)
    # One 4×4 frame, 2×2 patches. Room pixels: floor (z = 0), wall (z = 1), ceiling (z = 2.5).
    instance = np.array([[[-1, -1, 0, 0], [-1, -1, 0, 1], [-1, -1, -1, -1], [-1, -1, -1, -1]]])
    height = np.array([[[0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.5, 0.7], [2.5, 2.5, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]])
    depth = np.full((1, 4, 4), np.e)
    depth[0, 0, 0] = 1.0
    classes, log_depth, mean_height = patch_labels(instance, depth, height, 2.5, 2, categories=[5, 9])
    assert classes.shape == (1, 4, NUM_PATCH_CLASSES)
    np.testing.assert_allclose(classes.sum(-1), 1.0)
    # Patch 0 (top left): 2 floor, 2 wall pixels. Patch 1: 3 of object 0 (class 5), 1 of object 1 (class 9).
    np.testing.assert_allclose(classes[0, 0, :3], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(classes[0, 1, [5, 9]], [0.75, 0.25])
    # Patch 2 (bottom left): 2 ceiling, 2 wall pixels; patch 3: all floor.
    np.testing.assert_allclose(classes[0, 2, :3], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(classes[0, 3, 0], 1.0)
    np.testing.assert_allclose(log_depth[0], [0.75, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(mean_height[0], [0.5, 0.55, 1.75, 0.0])


def test_description_lists_categories_in_order_of_first_appearance_with_counts():
    def box(category):
        return SceneObject(category, np.zeros(3), np.ones(3))

    scene = Scene(np.array([5.0, 5.0, 3.0]), [box("chair"), box("sofa"), box("chair"), box("tv"), box("lamp")])
    visible = np.zeros((4, 5), dtype=int)
    visible[2, 0] = 10  # chair 0 first at frame 2
    visible[3, 2] = 10  # chair 1 at frame 3
    visible[0, 1] = 5  # sofa at frame 0
    visible[1, 3] = 1  # tv at frame 1; the lamp is never seen
    assert describe_scene(scene, visible) == "sofa, tv, 2 chair"


def test_committed_base_loads_and_answers_in_the_trained_format():
    import json
    from pathlib import Path

    from spatialvlm.data.synthetic import SynthConfig, make_scene
    from spatialvlm.eval.metrics import official_float
    from spatialvlm.models import ask_video, load_vlm2

    directory = Path(__file__).resolve().parents[2] / "checkpoints" / "vlm2-base-synthetic"
    model, processor = load_vlm2(directory)
    assert not model.config.use_spatial_fusion and not model.config.use_dual_memory
    synth = json.loads((directory / "synthetic_base.json").read_text())["synth"]
    assert (synth["num_frames"], synth["image_size"]) == (32, 112) == (32, model.config.vision_config.image_size)
    item = make_scene(SynthConfig(num_frames=8, image_size=112, seed=123, split="unit"), 0)
    prompt = ("These are frames of a video.\nHow many chair(s) are in this room?\n"
              "Please answer the question using a single word or phrase.")
    answer = ask_video(model, processor, item.frames.rgb, prompt, num_frames=None, max_new_tokens=4).text
    # A random model emits arbitrary tokens; the base learnt to answer a count with a number.
    assert official_float(answer) is not None, answer


def test_ridge_probe_recovers_a_linear_answer_and_ignores_noise_features():
    from spatialvlm.experiments.vlm2_probe import ridge_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = 3.0 * x[:, 0] + 2.0  # only the first feature matters
    test = rng.normal(size=(50, 3))
    predicted = ridge_probe(x, y, test, strength=1.0)
    # λ = 1 against 400 standardised samples shrinks the slope by under 1 %.
    np.testing.assert_allclose(predicted, 3.0 * test[:, 0] + 2.0, atol=0.05 * np.abs(3.0 * test[:, 0]).max())
    # The intercept is not penalised: a constant target comes back exactly.
    np.testing.assert_allclose(ridge_probe(x, np.full(400, 7.0), test, strength=100.0), 7.0)


def test_probe_reads_the_video_tokens_the_language_model_receives(tmp_path, monkeypatch):
    """``lm_input_features`` pools exactly the video features ``ask_video`` hands to the LM."""
    import torch

    import spatialvlm.models.inference as inference
    from spatialvlm.data.synthetic import SynthConfig, generate_split
    from spatialvlm.experiments.vlm2_probe import lm_input_features
    from spatialvlm.models import VLM2ForConditionalGeneration, ask_video, build_tiny_processor
    from spatialvlm.models.vlm2 import tiny_vlm2_config

    config = tiny_vlm2_config(use_spatial_fusion=True, use_dual_memory=True)
    generate_split(tmp_path, SynthConfig(num_scenes=1, num_frames=8, image_size=config.vision_config.image_size,
                                         split="test"), show_progress=False)
    video, geometry = tmp_path / "synthetic" / "test_00000.mp4", tmp_path / "synthetic" / "test_00000_geometry"
    torch.manual_seed(0)
    model = VLM2ForConditionalGeneration(config).eval()
    processor = build_tiny_processor(config)

    seen = {}

    def record(model, processor, prompt, video_features, *args):
        seen["features"] = video_features
        return "", 0

    monkeypatch.setattr(inference, "generate_answer", record)
    with torch.no_grad():
        ask_video(model, processor, str(video), "How big is the room?", geometry=str(geometry), num_frames=8)
    tokens = seen["features"].reshape(-1, seen["features"].shape[-1]).numpy()
    probed = lm_input_features(model, processor, video, geometry, 8)
    np.testing.assert_allclose(probed, np.concatenate([tokens.mean(0), tokens.max(0)]), atol=1e-5)


def test_description_scores_compare_category_sets_and_pick_the_best_constant():
    from spatialvlm.experiments.vlm2_describe import best_constant_set, description_categories, jaccard

    assert description_categories("2 chair, sofa, 3 lamp") == {"chair", "sofa", "lamp"}
    assert description_categories("") == set()
    assert jaccard({"chair", "sofa"}, {"sofa", "tv", "lamp"}) == 0.25
    truths = [{"chair", "sofa"}, {"chair"}, {"chair", "tv"}, {"chair", "sofa", "lamp"}]
    # Ranked: chair (4), sofa (2), then tv / lamp (1). {chair}: (1/2 + 1 + 1/2 + 1/3) / 4 = 0.583;
    # {chair, sofa}: (1 + 1/2 + 1/3 + 2/3) / 4 = 0.625; a third category only lowers it.
    assert best_constant_set(truths) == {"chair", "sofa"}


def test_named_paths_of_the_probe_flags():
    import pytest

    from spatialvlm.experiments.vlm2_probe import parse_named_paths

    assert parse_named_paths(" vision=a/b , vlm2=c=d,") == {"vision": "a/b", "vlm2": "c=d"}
    assert parse_named_paths("") == {}
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_named_paths("vision")


def test_language_stage_trains_a_fresh_language_model_alone_on_the_questions_without_video(tiny_bench, tmp_path):
    """``text_steps``: between stage (a) and (b) the LM alone learns the VSI turns with the video cut
    out; the tower and projector stay stage (a)'s, stage (b) starts from it, a rerun reuses it."""
    import json

    import torch

    from spatialvlm.data.readers import read_benchmark
    from spatialvlm.eval.metrics import question_types
    from spatialvlm.experiments.vlm2_base import BaseConfig, build_base, encode_question
    from spatialvlm.models import load_vlm2

    config = BaseConfig(data_dir=str(tiny_bench), out_dir=str(tmp_path / "base"), seed=5, num_frames=8, image_size=112,
                        vision_hidden_size=32, vision_layers=1, text_hidden_size=32, text_layers=1, vision_scenes=2,
                        vision_frames_per_scene=2, vision_steps=2, lm_max_steps=2, held_out_scenes=1, text_steps=40,
                        progress=False)
    final = build_base(config)
    out = tmp_path / "base"
    stage_a, _ = load_vlm2(out / "stage_a")
    text, processor = load_vlm2(out / "stage_text")
    a, t = stage_a.state_dict(), text.state_dict()
    changed = {key for key in a if not torch.equal(a[key], t[key])}
    assert changed and all(key.startswith(("model.language_model.", "lm_head.")) for key in changed)
    assert any(key.startswith("model.language_model.layers.") for key in changed)

    # The examples are the ablation's VSI turns with exactly the video positions removed.
    item = read_benchmark(tiny_bench, "train", question_types("vsibench"))[0]
    with_video, labels = encode_question(processor, item, 8)
    keep = with_video != processor.video_token_id
    without, text_labels = encode_question(processor, item, 8, video_tokens=0)
    assert int((~keep).sum()) == processor.num_video_tokens(8)
    torch.testing.assert_close(without, with_video[keep])
    torch.testing.assert_close(text_labels, labels[keep])

    log = json.loads((out / "base_training.json").read_text())
    curve = log["stage_text"]
    assert curve["step"][-1] == 40 and len(curve["train_loss"]) == len(curve["held_out_loss"])
    assert curve["held_out_loss"][-1] < curve["held_out_loss_before"] - 1.0  # the answer format is learnt
    assert log["stage_b"]["start"] == str(out / "stage_text")
    recorded = json.loads((final / "synthetic_base.json").read_text())["stage_text_held_out_loss"]
    assert recorded == {"before": curve["held_out_loss_before"], "after": curve["held_out_loss"][-1]}

    # A rerun reuses the language stage instead of training it again.
    stamp = (out / "stage_text" / "model.safetensors").stat().st_mtime_ns
    build_base(config)
    assert (out / "stage_text" / "model.safetensors").stat().st_mtime_ns == stamp


def test_stage_a_from_takes_the_tower_of_a_checkpoint_and_this_seeds_init_for_the_rest(tiny_bench, tmp_path):
    """``stage_a_from``: stage (a) is not trained; OUT/stage_a holds exactly the given checkpoint's
    vision tower and, for every other weight, the fresh initialisation of this base's own seed."""
    import json

    import pytest
    import torch

    from spatialvlm.experiments.vlm2_base import BaseConfig, build_base, tiny_model_config
    from spatialvlm.models import VLM2ForConditionalGeneration, load_vlm2

    sizes = dict(data_dir=str(tiny_bench), num_frames=8, image_size=112, vision_hidden_size=32, vision_layers=1,
                 text_hidden_size=32, text_layers=1, vision_scenes=2, vision_frames_per_scene=2, held_out_scenes=1,
                 progress=False)
    source_dir = build_base(BaseConfig(out_dir=str(tmp_path / "a"), seed=5, vision_steps=3, **sizes), stage_a_only=True)
    config = BaseConfig(out_dir=str(tmp_path / "b"), seed=7, stage_a_from=str(source_dir), **sizes)
    stage_a = build_base(config, stage_a_only=True)

    copied = load_vlm2(stage_a)[0].state_dict()
    source = load_vlm2(source_dir)[0].state_dict()
    torch.manual_seed(7)
    fresh = VLM2ForConditionalGeneration(tiny_model_config(config)).state_dict()
    tower = [key for key in copied if key.startswith("model.vision_tower.")]
    assert tower and all(torch.equal(copied[key], source[key]) for key in tower)
    assert any(not torch.equal(source[key], fresh[key]) for key in tower)  # the copy is not just seed 7's init
    rest = [key for key in copied if key not in tower]
    assert all(torch.equal(copied[key], fresh[key]) for key in rest)
    assert any(not torch.equal(copied[key], source[key]) for key in rest)  # seed 7, not the source's seed 5
    log = json.loads((tmp_path / "b" / "base_training.json").read_text())
    assert log["stage_a_from"] == str(source_dir) and "stage_a" not in log

    wider = BaseConfig(out_dir=str(tmp_path / "c"), seed=7, stage_a_from=str(source_dir), **{**sizes, "vision_hidden_size": 48})
    with pytest.raises(ValueError, match="does not match"):
        build_base(wider, stage_a_only=True)
