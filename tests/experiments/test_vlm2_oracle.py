"""Oracle-perception experiment: region ground truth, token layout, prompt encoding, a tiny run."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spatialvlm.experiments.vlm2_base import NUM_PATCH_CLASSES
from spatialvlm.experiments.vlm2_oracle import OracleConfig, OracleTokens, region_features, run_oracle

BASE = Path(__file__).resolve().parents[2] / "checkpoints" / "vlm2-base-synthetic"


def test_region_features_are_class_shares_and_mean_points_of_each_block():
    rng = np.random.default_rng(0)
    frames, side, region, room_height = 2, 8, 4, 2.5
    instance = rng.integers(-1, 3, size=(frames, side, side))
    height = rng.choice([0.0, 1.0, room_height], size=(frames, side, side))
    points = rng.normal(size=(frames, side, side, 3)).astype(np.float32)
    categories = [4, 7, 12]
    features = region_features(instance, height, points, room_height, categories, region)
    assert features.shape == (frames, 4, NUM_PATCH_CLASSES + 3)
    for t in range(frames):
        for block in range(4):
            r, c = divmod(block, 2)
            rows, cols = slice(r * region, (r + 1) * region), slice(c * region, (c + 1) * region)
            counts = np.zeros(NUM_PATCH_CLASSES)
            for i, z in zip(instance[t, rows, cols].ravel(), height[t, rows, cols].ravel()):
                counts[categories[i] if i >= 0 else (0 if z == 0.0 else 2 if z == room_height else 1)] += 1
            np.testing.assert_allclose(features[t, block, :NUM_PATCH_CLASSES], counts / region**2, atol=1e-6)
            np.testing.assert_allclose(features[t, block, NUM_PATCH_CLASSES:], points[t, rows, cols].reshape(-1, 3).mean(0), atol=1e-5)


def test_oracle_tokens_follow_the_pooled_grid_order_then_one_newline():
    torch.manual_seed(0)
    tokens = OracleTokens(num_features=5, width=8, init_range=0.1)
    features = torch.randn(1, 3, 4, 5)
    out = tokens(features)
    assert out.shape == (1, 3 * 4 + 1, 8)
    torch.testing.assert_close(out[0, -1], tokens.newline)
    changed = features.clone()
    changed[0, 1, 2] += 1.0  # frame 1, block 2 → token 1·4 + 2
    moved = (tokens(changed) - out).abs().sum(-1)[0]
    assert moved[6] > 0 and torch.count_nonzero(moved) == 1


def test_region_xyz_equals_the_stored_geometry_files(tiny_bench, tmp_path):
    """The re-rendered features agree with what ``spatialvlm synth`` wrote (an independent path)."""
    from spatialvlm.data.video import uniform_frame_indices
    from spatialvlm.experiments.vlm2_oracle import _render_features
    from spatialvlm.geometry import frame_filename, load_frame_geometry

    config = OracleConfig(data_dir=str(tiny_bench), seed=5, render_frames=8, image_size=112, num_frames=4, progress=False)
    features = _render_features(config, "test", 1, 28, tmp_path / "test.npz")["test_00000"]
    assert features.shape == (4, 16, NUM_PATCH_CLASSES + 3)
    for row, index in enumerate(uniform_frame_indices(8, 4)):
        stored = load_frame_geometry(tiny_bench / "synthetic" / "test_00000_geometry" / frame_filename(int(index))).points.numpy()
        blocks = stored.reshape(4, 28, 4, 28, 3).mean(axis=(1, 3)).reshape(16, 3)
        np.testing.assert_allclose(features[row, :, NUM_PATCH_CLASSES:], blocks, atol=2e-2)  # float16 storage
    # A benchmark rendered with another seed is refused, not silently mislabelled.
    with pytest.raises(ValueError, match="is not scene test_00000 of seed 6"):
        _render_features(dataclasses.replace(config, seed=6), "test", 1, 28, tmp_path / "other.npz")


def test_prompt_encoding_matches_the_ablation_training_items(tiny_bench):
    """The oracle's (input_ids, labels) are the ones the ablation's dataset builds for the question."""
    from spatialvlm.data.readers import read_benchmark
    from spatialvlm.eval.metrics import question_types
    from spatialvlm.experiments.vlm2_ablation import llava_records
    from spatialvlm.experiments.vlm2_base import encode_question
    from spatialvlm.models import load_vlm2
    from spatialvlm.train import DataArguments
    from spatialvlm.train.tasks.vlm2 import VideoConversationDataset

    model, processor = load_vlm2(BASE)
    items = read_benchmark(tiny_bench, "test", question_types("vsibench"))[:3]
    dataset = VideoConversationDataset(llava_records(items, geometry=False), processor, DataArguments(num_frames=4),
                                       model.config, root=tiny_bench)
    for index, item in enumerate(items):
        input_ids, labels = encode_question(processor, item, 4)
        torch.testing.assert_close(input_ids, dataset[index]["input_ids"])
        torch.testing.assert_close(labels, dataset[index]["labels"])
        assert int((input_ids == processor.video_token_id).sum()) == 4 * 16 + 1


def test_tiny_oracle_run_scores_every_held_out_question_and_resumes(tiny_bench, tmp_path):
    config = OracleConfig(data_dir=str(tiny_bench), base=str(BASE), out_dir=str(tmp_path / "out"), seed=5,
                          render_frames=8, image_size=112, num_frames=4, train_scenes=2, test_scenes=1,
                          rows=("oracle-cls-xyz=cls,xyz",), seeds=(0,), steps=3, progress=False)
    summary = run_oracle(config)
    assert [row.name for row in summary] == ["oracle-cls-xyz"]
    result_path = tmp_path / "out" / "runs" / "oracle-cls-xyz" / "seed0" / "result.json"
    result = json.loads(result_path.read_text())
    predictions = (tmp_path / "out" / "runs" / "oracle-cls-xyz" / "seed0" / "eval" / "predictions.jsonl").read_text().splitlines()
    from spatialvlm.data.readers import read_benchmark
    from spatialvlm.eval.metrics import question_types

    test_rows = read_benchmark(tiny_bench, "test", question_types("vsibench"))
    assert len(predictions) == len(test_rows) > 0 and 0.0 <= result["official"]["overall"] <= 100.0
    assert result["loss_log"][-1][0] == 3 and np.isfinite(result["train_loss"])
    stamp = result_path.stat().st_mtime_ns
    run_oracle(config)  # finished (row, seed): read back, not retrained
    assert result_path.stat().st_mtime_ns == stamp
    assert "oracle-cls-xyz" in (tmp_path / "out" / "results.md").read_text()


def test_rows_must_name_known_features():
    assert OracleConfig(rows=("a=none", "b=cls,xyz")).row_features() == {"a": ("none",), "b": ("cls", "xyz")}
    for bad in ("oracle=colour", "oracle=none,cls", "=cls"):
        with pytest.raises(ValueError, match="NAME=FEATURES"):
            OracleConfig(rows=(bad,)).row_features()


def test_blind_control_gives_every_scene_the_same_video_tokens():
    from spatialvlm.experiments.vlm2_oracle import OracleLM

    config = OracleConfig(base=str(BASE), image_size=112)
    (blind, _), (seeing, _) = OracleLM.from_base(config, ("none",), seed=0), OracleLM.from_base(config, ("cls", "xyz"), seed=0)
    ids = torch.full((2, 4), blind.video_token_id)  # 1 frame × 3 blocks + the newline
    features = np.random.default_rng(0).normal(size=(2, 1, 3, 17)).astype(np.float32)
    with torch.no_grad():
        a, b = blind.embeddings(ids, features), seeing.embeddings(ids, features)
    torch.testing.assert_close(a[0], a[1])
    assert not torch.allclose(b[0], b[1])


def test_oracle_refuses_a_benchmark_whose_frames_the_base_does_not_read():
    from spatialvlm.experiments.vlm2_oracle import OracleLM

    with pytest.raises(ValueError, match="frames are 56 px but .* reads 112 px"):
        OracleLM.from_base(OracleConfig(base=str(BASE), image_size=56), ("cls",), seed=0)


def test_tied_tokens_add_the_share_weighted_word_embeddings_of_single_token_category_names():
    from spatialvlm.data.synthetic import CATEGORIES
    from spatialvlm.experiments.vlm2_oracle import OracleLM

    config = OracleConfig(base=str(BASE), image_size=112, tied=True)
    oracle, processor = OracleLM.from_base(config, ("cls", "xyz"), seed=0)
    tokenizer = processor.tokenizer
    for category in CATEGORIES:  # every name, "trash can" included, is one token inside a question
        pieces = tokenizer.encode(f"How many {category.name}(s) are in this room?")
        assert tokenizer.convert_tokens_to_ids(category.name) in pieces
    assert oracle.language_model.embed_tokens.num_embeddings == len(tokenizer) == 512 + len(CATEGORIES)
    features = np.random.default_rng(1).random(size=(1, 2, 3, 17)).astype(np.float32)
    ids = torch.full((1, 2 * 3 + 1), oracle.video_token_id)
    with torch.no_grad():
        video = oracle.embeddings(ids, features)[0]
        untied = oracle.tokens.mlp(torch.from_numpy(features)).flatten(1, 2)[0]
        words = oracle.language_model.embed_tokens.weight[oracle.category_ids]
        vectors = torch.cat([oracle.tokens.room, words])  # floor, wall, ceiling, then the categories
        for t in range(2):
            for p in range(3):
                expected = untied[t * 3 + p] + sum(float(features[0, t, p, c]) * vectors[c] for c in range(14))
                torch.testing.assert_close(video[t * 3 + p], expected)
    # A blind row keeps the tokenizer but gets no class information.
    blind, _ = OracleLM.from_base(config, ("none",), seed=0)
    assert blind.tokens.room is None
    two = np.random.default_rng(2).random(size=(2, 2, 3, 17)).astype(np.float32)
    with torch.no_grad():
        tokens = blind.embeddings(torch.full((2, 7), blind.video_token_id), two)
    torch.testing.assert_close(tokens[0], tokens[1])


def _presence_stages_of(tiny_bench, tmp_path, recipe):
    """(processor, stages) of a 3-scene, 4-frame tied presence stage built with ``recipe``."""
    from spatialvlm.experiments.vlm2_oracle import OracleLM, _presence_stages, _render_features

    config = OracleConfig(data_dir=str(tiny_bench), base=str(BASE), seed=5, render_frames=8, image_size=112, num_frames=4,
                          tied=True, min_pixels=1, pretrain_recipe=recipe, progress=False)
    _, processor = OracleLM.from_base(config, ("cls",), seed=0)
    features = _render_features(config, "train", 3, 28, tmp_path / "train.npz")
    return config, processor, features, _presence_stages(config, processor, features, 28, seed=0)


def test_presence_stages_grow_the_clip_and_match_their_video_tokens(tiny_bench, tmp_path):
    from spatialvlm.experiments.vlm2_oracle import _presence_stages

    config, processor, features, stages = _presence_stages_of(tiny_bench, tmp_path, "curriculum")
    assert [until for until, _ in stages] == [0.3, 0.6, 1.0]
    yes_ids = processor.tokenizer.encode("yes")
    for (_, examples), frames in zip(stages, (1, 4, 4)):
        assert examples and len(examples) % 2 == 0  # one visible and one absent category per scene
        answers = []
        for input_ids, labels, clip in examples:
            assert clip.shape == (frames, 16, 17)
            assert int((input_ids == processor.video_token_id).sum()) == processor.num_video_tokens(frames) == frames * 16 + 1
            answers.append(labels[labels != -100][: len(yes_ids)].tolist() == yes_ids)
        assert answers.count(True) == answers.count(False)

    # one-hop-first: the first stage's answer follows the category word, right after the video.
    from spatialvlm.data.synthetic import CATEGORIES

    first, second = _presence_stages(dataclasses.replace(config, pretrain_recipe="one-hop-first"), processor, features, 28, seed=0)
    assert first[0] == 0.3 and second[0] == 1.0
    names = {processor.tokenizer.convert_tokens_to_ids(c.name) for c in CATEGORIES}
    for input_ids, labels, clip in first[1]:
        video = processor.num_video_tokens(len(clip))
        assert (input_ids[:video] == processor.video_token_id).all() and processor.video_token_id not in input_ids[video:]
        answer = (labels != -100).nonzero()[0, 0]
        assert int(input_ids[answer - 1]) in names
    for input_ids, labels, _ in second[1]:  # the chat-layout question: the template's tokens sit between
        assert int(input_ids[(labels != -100).nonzero()[0, 0] - 1]) not in names
    with pytest.raises(ValueError, match="pretrain_recipe"):
        _presence_stages(dataclasses.replace(config, pretrain_recipe="two-hop-first"), processor, features, 28, seed=0)


@pytest.mark.parametrize("recipe", ["token-mixed", "token-curriculum"])
def test_token_presence_stages_cut_clips_to_the_evidence_token_plus_others(tiny_bench, tmp_path, recipe):
    from spatialvlm.data.synthetic import CATEGORIES
    from spatialvlm.experiments.vlm2_base import NUM_ROOM_CLASSES

    _, processor, _, stages = _presence_stages_of(tiny_bench, tmp_path, recipe)
    assert [until for until, _ in stages] == [0.2, 0.35, 0.5, 0.65, 1.0]
    names = [processor.tokenizer.convert_tokens_to_ids(c.name) for c in CATEGORIES]
    for (_, examples), tokens in zip(stages, (1, 4, 16, 64, None)):
        for input_ids, labels, clip in examples:
            count = 4 * 16 if tokens is None or tokens >= 64 else tokens  # 4 frames × 16 blocks at most
            assert clip.shape == ((4, 16, 17) if tokens is None else (1, count, 17))
            assert int((input_ids == processor.video_token_id).sum()) == count + 1  # + the newline token
    # One token: a "yes" question's token shows the asked category (it is the strongest evidence).
    for input_ids, labels, clip in stages[0][1]:
        category = names.index(next(int(t) for t in input_ids if int(t) in names))
        if processor.tokenizer.decode(labels[labels != -100][:1]).strip() == "yes":
            assert clip[0, 0, NUM_ROOM_CLASSES + category] > 0


def test_tiny_tied_run_with_presence_pretraining_records_the_presence_accuracy(tiny_bench, tmp_path):
    config = OracleConfig(data_dir=str(tiny_bench), base=str(BASE), out_dir=str(tmp_path / "out"), seed=5,
                          render_frames=8, image_size=112, num_frames=4, train_scenes=2, test_scenes=1, min_pixels=1,
                          rows=("tied=cls,xyz",), seeds=(0,), steps=2, pretrain_steps=2, tied=True, progress=False)
    run_oracle(config)
    result = json.loads((tmp_path / "out" / "runs" / "tied" / "seed0" / "result.json").read_text())
    assert "tied to the category words, 2 presence steps (one-hop-first) first" in result["description"]
    share = float(result["description"].split("then ")[1].split(" %")[0])
    assert share in (0.0, 50.0, 100.0)  # one test scene: one "yes" and one "no" question
    assert result["loss_log"][-1][0] == 2 and np.isfinite(result["train_loss"])


def test_interleaved_pools_take_their_share_of_the_steps_evenly():
    from spatialvlm.experiments.vlm2_oracle import _interleaved_pool

    first, second = ["presence"], ["vsi"]
    for share_first, share_second in ((1, 1), (1, 3), (3000, 2500)):
        picks = [_interleaved_pool(((share_first, first), (share_second, second)), step) is first for step in range(1100)]
        fraction = share_first / (share_first + share_second)
        # Every prefix holds ⌊n·f⌋ first-pool steps: the share exactly, spread evenly (never a long run).
        assert all(sum(picks[:n]) == int(n * fraction) for n in range(1, 1101))
    assert [_interleaved_pool(((1, first), (1, second)), s)[0] for s in range(4)] == ["vsi", "presence", "vsi", "presence"]


def test_mixed_recipe_interleaves_presence_with_the_vsi_steps_in_one_schedule(tiny_bench, tmp_path, monkeypatch):
    import spatialvlm.experiments.vlm2_oracle as oracle_module

    calls = []
    original = oracle_module._train

    def spy(config, oracle, processor, stages, steps, seed, desc):
        calls.append((steps, [until for until, _ in stages], [type(examples) for _, examples in stages], desc))
        return original(config, oracle, processor, stages, steps, seed, desc)

    monkeypatch.setattr(oracle_module, "_train", spy)
    config = OracleConfig(data_dir=str(tiny_bench), base=str(BASE), out_dir=str(tmp_path / "out"), seed=5,
                          render_frames=8, image_size=112, num_frames=4, train_scenes=2, test_scenes=1, min_pixels=1,
                          rows=("tied=cls,xyz",), seeds=(0,), steps=3, pretrain_steps=3, pretrain_recipe="mixed",
                          tied=True, progress=False)
    run_oracle(config)
    # One schedule of 6 steps; the presence clips grow over it (1, 4, then all frames), each stage a pool pair.
    assert len(calls) == 1 and calls[0][0] == 6 and calls[0][1] == [0.3, 0.6, 1.0]
    assert calls[0][2] == [tuple, tuple, tuple]
    result = json.loads((tmp_path / "out" / "runs" / "tied" / "seed0" / "result.json").read_text())
    assert "3 presence steps (mixed) interleaved with the VSI steps" in result["description"]
    assert result["loss_log"][-1][0] == 6


def test_token_raw_first_forms_without_the_chat_template_then_ends_in_it(tiny_bench, tmp_path):
    from spatialvlm.experiments.vlm2_oracle import PRESENCE_PROMPT

    _, processor, _, stages = _presence_stages_of(tiny_bench, tmp_path, "token-raw-first")
    assert [until for until, _ in stages] == [0.2, 0.35, 0.5, 0.65, 0.8, 1.0]
    tokenizer = processor.tokenizer
    for index, (_, examples) in enumerate(stages):
        for input_ids, labels, clip in examples:
            video = clip.shape[0] * clip.shape[1] + 1
            assert int((input_ids == processor.video_token_id).sum()) == video
            answer = int((labels != -100).nonzero()[0, 0])
            if index < 5:  # raw: the video first, then the prompt's own tokens, then the answer
                assert (input_ids[:video] == processor.video_token_id).all()
                prompt = tokenizer.decode(input_ids[video:answer])
                assert prompt.startswith("These are frames of a video.") and prompt.endswith(PRESENCE_PROMPT.split("\n")[-1])
                assert tokenizer.decode(labels[answer:]).strip() in ("yes", "no")
            else:  # chat: the system turn comes before the video, the template's tokens before the answer
                assert int(input_ids[0]) != processor.video_token_id
                assert tokenizer.decode(input_ids[:answer]).rstrip().endswith("assistant")


def test_rehearsal_interleaves_whole_clip_presence_with_the_vsi_steps_after_the_stage(tiny_bench, tmp_path, monkeypatch):
    import spatialvlm.experiments.vlm2_oracle as oracle_module

    calls = []
    original = oracle_module._train

    def spy(config, oracle, processor, stages, steps, seed, desc):
        calls.append((steps, stages))
        return original(config, oracle, processor, stages, steps, seed, desc)

    monkeypatch.setattr(oracle_module, "_train", spy)
    config = OracleConfig(data_dir=str(tiny_bench), base=str(BASE), out_dir=str(tmp_path / "out"), seed=5,
                          render_frames=8, image_size=112, num_frames=4, train_scenes=2, test_scenes=1, min_pixels=1,
                          rows=("tied=cls,xyz",), seeds=(0,), steps=3, pretrain_steps=2, rehearsal_steps=2,
                          pretrain_recipe="token-curriculum", tied=True, progress=False)
    run_oracle(config)
    (stage_steps, presence_stages), (vsi_steps, vsi_stages) = calls
    assert stage_steps == 2 and vsi_steps == 5 and len(vsi_stages) == 1
    (share, rehearsed), (vsi_share, vsi) = vsi_stages[0][1]
    assert (share, vsi_share) == (2, 3)
    assert rehearsed is presence_stages[-1][1]  # whole clips in the chat layout, the stage's last
    assert all(clip.shape[0] == 4 for _, _, clip in rehearsed) and all(clip.shape[0] == 4 for _, _, clip in vsi)
    result = json.loads((tmp_path / "out" / "runs" / "tied" / "seed0" / "result.json").read_text())
    assert "; 2 presence steps among the VSI steps; " in result["description"]
    after = float(result["description"].split("; ")[-1].split(" %")[0])
    assert after in (0.0, 50.0, 100.0) and result["loss_log"][-1][0] == 5


def test_freezing_attention_after_the_stage_keeps_the_stages_attention_and_trains_the_rest(tiny_bench, tmp_path, monkeypatch):
    import spatialvlm.experiments.vlm2_oracle as oracle_module

    snapshots = []
    original = oracle_module._train

    def spy(config, oracle, processor, stages, steps, seed, desc):
        log = original(config, oracle, processor, stages, steps, seed, desc)
        snapshots.append({name: tensor.clone() for name, tensor in oracle.state_dict().items()})
        return log

    monkeypatch.setattr(oracle_module, "_train", spy)
    config = OracleConfig(data_dir=str(tiny_bench), base=str(BASE), out_dir=str(tmp_path / "out"), seed=5,
                          render_frames=8, image_size=112, num_frames=4, train_scenes=2, test_scenes=1, min_pixels=1,
                          rows=("tied=cls,xyz",), seeds=(0,), steps=3, pretrain_steps=2, learning_rate=1e-2,
                          pretrain_recipe="token-curriculum", freeze_attention_after_stage=True, tied=True, progress=False)
    run_oracle(config)
    after_stage, after_vsi = snapshots
    attention = [name for name in after_stage if ".self_attn." in name]
    others = [name for name in after_stage if name.startswith("language_model.layers.") and ".mlp." in name]
    assert attention and others
    assert all(torch.equal(after_stage[name], after_vsi[name]) for name in attention)
    assert any(not torch.equal(after_stage[name], after_vsi[name]) for name in others)
    result = json.loads((tmp_path / "out" / "runs" / "tied" / "seed0" / "result.json").read_text())
    assert "; attention frozen for the VSI steps" in result["description"]


@pytest.mark.parametrize("knobs", [{"rehearsal_steps": 5}, {"freeze_attention_after_stage": True},
                                   {"rehearsal_steps": 5, "pretrain_steps": 3, "pretrain_recipe": "token-mixed"},
                                   {"freeze_attention_after_stage": True, "pretrain_steps": 3, "pretrain_recipe": "mixed"}])
def test_knobs_that_act_after_a_presence_stage_refuse_a_run_without_one(tmp_path, knobs):
    config = OracleConfig(data_dir=str(tmp_path / "missing"), base=str(BASE), out_dir=str(tmp_path / "out"), **knobs)
    with pytest.raises(ValueError, match="acts after a presence stage"):
        run_oracle(config)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_text_stage_trains_and_scores_the_questions_without_their_video(tiny_bench, tmp_path, monkeypatch):
    import spatialvlm.experiments.vlm2_oracle as oracle_module
    from spatialvlm.data.readers import read_benchmark
    from spatialvlm.eval.metrics import question_types

    calls = []
    original = oracle_module._train

    def spy(config, oracle, processor, stages, steps, seed, desc):
        calls.append((steps, stages, processor, oracle))
        return original(config, oracle, processor, stages, steps, seed, desc)

    monkeypatch.setattr(oracle_module, "_train", spy)
    config = OracleConfig(data_dir=str(tiny_bench), base=str(BASE), out_dir=str(tmp_path / "out"), seed=5,
                          render_frames=8, image_size=112, num_frames=4, train_scenes=2, test_scenes=1,
                          rows=("tied=cls,xyz",), seeds=(0,), steps=2, text_steps=3, tied=True, progress=False)
    run_oracle(config)
    (text_steps, text_stages, processor, oracle), (vsi_steps, vsi_stages, _, _) = calls
    assert (text_steps, vsi_steps) == (3, 2)
    text, vsi = text_stages[0][1], vsi_stages[0][1]
    assert len(text) == len(vsi) > 0
    video = processor.video_token_id
    for (text_ids, text_labels, text_clip), (ids, labels, clip) in zip(text, vsi):
        # The same turn with the video cut to its newline token: the tokens around it are unchanged.
        assert int((text_ids == video).sum()) == 1 and text_clip.shape[0] == 0 and clip.shape[0] == 4
        kept = ids != video
        kept[int((ids == video).nonzero()[-1])] = True  # the video's last position (the newline)
        torch.testing.assert_close(text_ids, ids[kept])
        torch.testing.assert_close(text_labels, labels[kept])
    # Scored without the video: any features give the same answer.
    item = read_benchmark(tiny_bench, "test", question_types("vsibench"))[0]
    noise = np.random.default_rng(3).normal(size=(4, 16, 17)).astype(np.float32)
    answers = {oracle_module._OraclePredictor(oracle, processor, {item.scene_name: features}, 4, text_only=True)(item, "")
               for features in (noise, 10 * noise, np.zeros_like(noise))}
    assert len(answers) == 1
    stage = json.loads((tmp_path / "out" / "runs" / "tied" / "seed0" / "text_stage.json").read_text())
    assert stage["text_steps"] == 3 and 0.0 <= stage["official"]["overall"] <= 100.0
    result = json.loads((tmp_path / "out" / "runs" / "tied" / "seed0" / "result.json").read_text())
    assert f"3 text-only VSI steps first ({stage['official']['overall']:.1f} held-out)" in result["description"]


def test_validation_scores_training_scenes_it_never_trains_on(tiny_bench, tmp_path, monkeypatch):
    import spatialvlm.experiments.vlm2_oracle as oracle_module
    from spatialvlm.data.readers import read_benchmark
    from spatialvlm.eval.metrics import question_types

    config = OracleConfig(train_scenes=1, test_scenes=1, validation=True)
    assert config.trained_on("train_00000") and not config.trained_on("train_00001")
    assert config.held_out("train_00001") and not config.held_out("train_00000") and not config.held_out("test_00000")
    assert dataclasses.replace(config, validation=False).held_out("test_00000")

    trained = []
    original = oracle_module._train

    def spy(config, oracle, processor, stages, steps, seed, desc):
        trained.append(len(stages[0][1]))
        return original(config, oracle, processor, stages, steps, seed, desc)

    monkeypatch.setattr(oracle_module, "_train", spy)
    config = dataclasses.replace(config, data_dir=str(tiny_bench), base=str(BASE), out_dir=str(tmp_path / "out"), seed=5,
                                 render_frames=8, image_size=112, num_frames=4, rows=("blind=none",), seeds=(0,), steps=1,
                                 progress=False)
    run_oracle(config)
    questions = read_benchmark(tiny_bench, "train", question_types("vsibench"))
    assert trained == [sum(item.scene_name == "train_00000" for item in questions)]
    scored = (tmp_path / "out" / "validation" / "runs" / "blind" / "seed0" / "eval" / "predictions.jsonl").read_text().splitlines()
    assert {json.loads(line)["scene_name"] for line in scored} == {"train_00001"}
    assert (tmp_path / "out" / "validation" / "results.md").is_file() and not (tmp_path / "out" / "results.md").exists()
