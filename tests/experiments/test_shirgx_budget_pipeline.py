"""The SHIRG-X budget experiment's training/eval pipeline: bootstrap CI and full-resolution coverage
against hand computations; vision-tower pretraining on exact patch labels; the --quick CLI end to end
(diffusion objective, frozen pretrained tower, one seed through --seeds)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from spatialvlm.experiments.shirgx_budget import (
    BudgetExperimentConfig,
    bootstrap_ci,
    full_resolution_coverage,
    pretrain_vision_tower,
    quick_config,
)


def test_bootstrap_ci_brackets_the_mean_and_collapses_on_constant_scores():
    assert bootstrap_ci([1.0] * 20) == [100.0, 100.0]
    scores = [1.0] * 30 + [0.0] * 70
    low, high = bootstrap_ci(scores, samples=2000, seed=3)
    # Binomial standard error at p = 0.3, n = 100: 4.6 points, so the 95 % interval is about ±9.
    assert low < 30 < high and 19 < low < 25 and 35 < high < 41
    assert bootstrap_ci(scores, samples=2000, seed=3) == [low, high]  # seeded
    assert all(np.isnan(bootstrap_ci([])))


def test_full_resolution_coverage_counts_only_single_patch_tokens():
    # Tokens over 16 patches: patch 3 alone, a 2×2 average of {5, 6, 9, 10}, patch 9 alone.
    source_index = torch.tensor([[[3, -1, -1, -1], [5, 6, 9, 10], [9, -1, -1, -1]]])
    region = torch.zeros(1, 16, dtype=torch.bool)
    region[0, [3, 5, 9, 12]] = True
    # 3 and 9 are kept alone; 5 only inside an average; 12 nowhere.
    assert full_resolution_coverage(source_index, region).tolist() == [pytest.approx(2 / 4)]


def test_pretraining_the_tower_on_patch_labels_lowers_the_loss():
    from spatialvlm.data.synthetic_images import DETAIL_FAMILIES, ImageSuiteConfig, make_image, patch_labels
    from spatialvlm.models.shirgx_vlm import build_shirgx_base
    from spatialvlm.data.preprocess import siglip_preprocess
    from spatialvlm.models.tiny import tiny_llava_onevision_config

    config = tiny_llava_onevision_config(vision_config={"hidden_size": 16, "intermediate_size": 32,
                                                        "num_hidden_layers": 1, "image_size": 672})
    torch.manual_seed(0)
    vlm = build_shirgx_base(config)
    before = {k: v.clone() for k, v in vlm.model.vision_tower.state_dict().items()}
    suite = ImageSuiteConfig(num_images=2, seed=0, families=DETAIL_FAMILIES[:2])
    images = [make_image(suite, i) for i in range(2)]
    pixels = siglip_preprocess([item.rendered.image for item in images], 672)
    labels = [patch_labels(np.asarray(item.rendered.image), item.rendered.description) for item in images]
    stacked = {key: torch.stack([torch.from_numpy(label[key]).flatten() for label in labels]) for key in labels[0]}
    settings = BudgetExperimentConfig(pretrain_steps=12, pretrain_batch_size=2, pretrain_learning_rate=1e-2,
                                      show_progress=False)
    stats = pretrain_vision_tower(vlm, (pixels, stacked), (pixels, stacked), settings)
    assert len(stats["losses"]) == 12 and stats["losses"][-1] < stats["losses"][0]
    assert set(stats["test_accuracy"]) == {"color", "glyph", "frame_recall"}
    after = vlm.model.vision_tower.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the tower itself trained


def test_quick_config_is_the_documented_quick_run():
    config = quick_config(train_images=4)
    assert config.objective == "diffusion" and config.freeze_vision and config.pretrain_steps > 0
    assert set(config.families) == {"dense_marks", "dense_glyphs", "dense_bars"} and config.train_images == 4


@pytest.mark.slow
def test_quick_cli_runs_diffusion_rows_on_a_frozen_pretrained_tower(tmp_path):
    command = [sys.executable, "-m", "spatialvlm.experiments.shirgx_budget", "--quick", "--out", str(tmp_path),
               "--train-images", "3", "--test-images", "3", "--pretrain-steps", "2", "--epochs", "1", "--seeds", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "seed0" / "results.json").read_text())
    assert result["config"]["objective"] == "diffusion" and len(result["pretrain"]["losses"]) == 2
    for row in ("shirgx", "pool"):
        for budget, (low, high) in result["accuracy_ci"][row].items():
            if budget != "adaptive":
                assert low <= result["accuracy"][row][budget] <= high
        assert set(result["selector_ms"][row]) >= {"0", "512", "768", "1024", "2304"}
        assert result["spread"][row]["2304"]["region_full_res"] == 100  # every patch kept alone
    assert "Seeds [0]" in (tmp_path / "seeds.md").read_text()
    # The rows trained on top of the frozen pretrained tower: the saved base tower is what they used.
    assert "shirgx" in done.stdout and "pool" in done.stdout


def _word_tokenizer():
    from spatialvlm.data.synthetic_images import PALETTE
    from spatialvlm.models.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens([*PALETTE, "frame"])
    return tokenizer


def test_patch_label_words_are_one_token_each_only_with_the_added_words():
    from spatialvlm.data.synthetic_images import GLYPH_ALPHABET, PALETTE
    from spatialvlm.experiments.shirgx_budget import patch_label_words
    from spatialvlm.models.tiny import build_tiny_tokenizer

    with pytest.raises(ValueError, match="answer_words_as_tokens"):
        patch_label_words(build_tiny_tokenizer())  # its BPE splits "purple"
    tokenizer = _word_tokenizer()
    words = patch_label_words(tokenizer)
    assert words["color"][0] == -1 and words["glyph"][0] == -1 and words["frame"][0] == -1
    assert [tokenizer.decode([i]) for i in words["color"][1:].tolist()] == list(PALETTE)
    assert "".join(tokenizer.decode([i]) for i in words["glyph"][1:].tolist()) == GLYPH_ALPHABET
    assert tokenizer.decode(words["frame"][1:].tolist()) == "frame"


def test_label_word_targets_sum_the_embeddings_of_each_patch_label():
    from spatialvlm.data.synthetic_images import GLYPH_ALPHABET, IGNORE_LABEL
    from spatialvlm.experiments.shirgx_budget import label_word_targets, patch_label_words

    tokenizer = _word_tokenizer()
    words = patch_label_words(tokenizer)
    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(len(tokenizer), 5)
    # Patches: a green mark; a framed "E"; text ink that is no whole character (ignored); background.
    labels = {"color": torch.tensor([[2, 0, 0, 0]]), "glyph": torch.tensor([[0, 1 + GLYPH_ALPHABET.index("E"), IGNORE_LABEL, 0]]),
              "frame": torch.tensor([[0, 1, 0, 0]])}
    targets = label_word_targets(labels, words, embeddings)
    row = lambda word: embeddings.weight[tokenizer.convert_tokens_to_ids(word)]  # noqa: E731
    expected = torch.stack([row("green"), embeddings.weight[tokenizer("E", add_special_tokens=False)["input_ids"][0]]
                            + row("frame"), torch.zeros(5), torch.zeros(5)])[None]
    assert torch.allclose(targets, expected)


def _tiny_vlm_and_patches(families, count=2, text_width=16):
    from spatialvlm.data.preprocess import siglip_preprocess
    from spatialvlm.data.synthetic_images import ImageSuiteConfig, make_image, patch_labels
    from spatialvlm.models.shirgx_vlm import build_shirgx_base
    from spatialvlm.models.tiny import tiny_llava_onevision_config

    tokenizer = _word_tokenizer()
    config = tiny_llava_onevision_config(
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "image_size": 672},
        text_config={"hidden_size": text_width, "intermediate_size": 2 * text_width, "vocab_size": len(tokenizer)},
    )
    torch.manual_seed(0)
    vlm = build_shirgx_base(config)
    suite = ImageSuiteConfig(num_images=count, seed=0, families=families)
    images = [make_image(suite, i) for i in range(count)]
    pixels = siglip_preprocess([item.rendered.image for item in images], 672)
    labels = [patch_labels(np.asarray(item.rendered.image), item.rendered.description) for item in images]
    stacked = {key: torch.stack([torch.from_numpy(label[key]).flatten() for label in labels]) for key in labels[0]}
    return vlm, tokenizer, pixels, stacked


def test_aligning_the_projector_moves_patch_tokens_onto_their_label_words():
    from spatialvlm.experiments.shirgx_budget import align_projector

    vlm, tokenizer, pixels, labels = _tiny_vlm_and_patches(("dense_marks", "dense_glyphs"))
    tower_before = {k: v.clone() for k, v in vlm.model.vision_tower.state_dict().items()}
    untrained = align_projector(vlm, (pixels, labels), (pixels, labels), tokenizer,
                                BudgetExperimentConfig(align_steps=0, show_progress=False))
    stats = align_projector(vlm, (pixels, labels), (pixels, labels), tokenizer,
                            BudgetExperimentConfig(align_steps=40, pretrain_batch_size=2, align_learning_rate=1e-2,
                                                   show_progress=False))
    assert len(stats["losses"]) == 40 and stats["losses"][-1] < 0.7 * stats["losses"][0]
    # A random projector's tokens are unrelated to the words (cosine ≈ 0); aligned, they point at them.
    assert abs(untrained["test_cosine"]) < 0.3 and stats["test_cosine"] > untrained["test_cosine"] + 0.3
    after = vlm.model.vision_tower.state_dict()
    assert all(torch.equal(tower_before[k], after[k]) for k in tower_before)  # only the projector trained


def test_shared_reader_rows_read_with_one_model_and_the_trained_selector_weights(tmp_path):
    from spatialvlm.experiments.shirgx_budget import BUDGET_ROWS, _Experiment, _mixture_paths, _shared_row_path

    config = quick_config(out_dir=str(tmp_path), train_images=2, test_images=2, pretrain_steps=0,
                          answer_words_as_tokens=True, reader="shared", show_progress=False)
    experiment = _Experiment(config)
    assert experiment.vlm_config.text_config.vocab_size == len(experiment.tokenizer)
    model, _ = experiment.model_for(BUDGET_ROWS[0])
    with torch.no_grad():
        for parameter in model.selector.parameters():
            parameter.add_(torch.randn_like(parameter))
    paths = _mixture_paths(experiment, model)
    assert set(paths) == set(config.reader_rows)
    assert all(path.model is model.model for name, (path, _) in paths.items() if name != "shirgx")
    assert paths["all"][1] == 2304 - 144  # every patch, raster order
    rows = {row.name: row for row in BUDGET_ROWS}
    for name in ("shirgx", "shirgx-no-coord", "shirgx-no-spread", "pool"):
        path = _shared_row_path(experiment, rows[name], model)
        assert path.model is model.model
        if name.startswith("shirgx"):
            trained = model.selector.state_dict()
            assert all(torch.equal(trained[k], v) for k, v in path.selector.state_dict().items())
            assert path.selector.config.add_coord_embedding == (name != "shirgx-no-coord")
            assert path.selector.config.neighbour_weight == (0.0 if name == "shirgx-no-spread" else 0.2)
    with pytest.raises(ValueError, match="tome"):
        experiment.config = quick_config(reader_rows=("tome",))
        _mixture_paths(experiment, model)


def test_align_steps_without_word_tokens_is_refused(tmp_path):
    from spatialvlm.experiments.shirgx_budget import _Experiment

    with pytest.raises(ValueError, match="answer_words_as_tokens"):
        _Experiment(quick_config(out_dir=str(tmp_path), train_images=1, test_images=1, align_steps=3, show_progress=False))


def test_spearman_uses_average_ranks_for_ties():
    from spatialvlm.experiments.shirgx_budget import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties: ranks of x = (1.5, 1.5, 3, 4) − 1 → Pearson with y's ranks (0, 1, 2, 3) by hand.
    a = np.array([0.5, 0.5, 2.0, 3.0])
    b = np.array([0.0, 1.0, 2.0, 3.0])
    expected = ((a - a.mean()) * (b - b.mean())).sum() / np.sqrt(((a - a.mean()) ** 2).sum() * ((b - b.mean()) ** 2).sum())
    assert spearman([512, 512, 768, 1024], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(expected)
    assert np.isnan(spearman([512, 512, 512], [0.1, 0.2, 0.3]))  # one K for every image


def test_content_positions_stop_at_the_answers_end_token():
    from spatialvlm.experiments.shirgx_budget import _content_positions

    eos, pad, newline = 9, 8, 7
    labels = torch.tensor([[-100, -100, 3, 4, eos, newline, pad], [-100, 5, eos, newline, pad, pad, pad]])
    assert _content_positions(labels, eos).tolist() == [
        [False, False, True, True, False, False, False], [False, True, False, False, False, False, False]]


@pytest.mark.parametrize("objective", ["diffusion", "ar"])
def test_reader_curriculum_learns_to_read_the_answer_patch(tmp_path, objective):
    from spatialvlm.experiments.shirgx_budget import _Experiment, pretrain_reader

    # AR: teacher-forced under the causal mask (no mask token in the config); diffusion: fully masked answer.
    config = quick_config(out_dir=str(tmp_path), train_images=4, test_images=1, families=("dense_marks",), objective=objective,
                          pretrain_steps=0, answer_words_as_tokens=True, freeze_projector=True, show_progress=False,
                          reader_stages=(1, 4), reader_stage_steps=60, batch_size=4, reader_learning_rate=1e-2)
    experiment = _Experiment(config)
    from spatialvlm.models.shirgx_vlm import load_shirgx_base

    vlm = load_shirgx_base(experiment.base_dir)
    frozen = {name: tensor.clone() for name, tensor in vlm.state_dict().items()
              if "vision_tower" in name or "multi_modal_projector" in name or "embed_tokens" in name}
    train = (experiment.train_items, experiment.train_records)
    # One question text, several answers: only reading the image token can get them all right.
    assert len({r["question"] for r in experiment.train_records}) == 1
    assert len({r["answers"][0] for r in experiment.train_records}) >= 3
    stats = pretrain_reader(vlm, train, train, experiment.tokenizer, config)
    assert stats["stages"] == [1, 4] and [len(losses) for losses in stats["losses"]] == [2, 2]
    assert stats["losses"][0][-1] < stats["losses"][0][0]
    # Held-out here = the four training images: the read-out of their framed marks is learnt.
    assert stats["test_accuracy"][-1] == 100.0
    after = vlm.state_dict()
    assert all(torch.equal(frozen[name], after[name]) for name in frozen)  # only the LM body and head trained


def test_reader_scaffold_share_puts_the_pooled_scaffold_before_the_patches_on_that_share_of_steps(tmp_path, monkeypatch):
    import spatialvlm.experiments.shirgx_budget as budget_module
    from spatialvlm.experiments.shirgx_budget import _Experiment, pretrain_reader
    from spatialvlm.models.shirgx_vlm import ShirgXImagePath, load_shirgx_base
    from spatialvlm.selection import dual_scale_tokens

    config = quick_config(out_dir=str(tmp_path), train_images=4, test_images=1, families=("dense_marks",),
                          pretrain_steps=0, answer_words_as_tokens=True, freeze_projector=True, show_progress=False,
                          reader_stages=(1, 4), reader_stage_steps=60, batch_size=4, reader_learning_rate=1e-2,
                          reader_scaffold_share=1.0)
    experiment = _Experiment(config)
    vlm = load_shirgx_base(experiment.base_dir)
    train = (experiment.train_items, experiment.train_records)
    seen = []
    build = ShirgXImagePath.build_inputs

    def spy(self, input_ids, image_tokens, *args, **kwargs):
        seen.append((vlm.training, image_tokens.detach().clone()))
        return build(self, input_ids, image_tokens, *args, **kwargs)

    monkeypatch.setattr(ShirgXImagePath, "build_inputs", spy)
    stats = pretrain_reader(vlm, train, train, experiment.tokenizer, config)
    assert stats["scaffold_steps"] == 120
    # Training: 144 scaffold tokens + the stage's patches; the per-stage tests: the patches alone.
    assert {tokens.shape[1] for training, tokens in seen if training} == {145, 148}
    assert {tokens.shape[1] for training, tokens in seen if not training} == {1, 4}
    # The scaffold is the 4×4 mean of the image's projected patches (an independent pooling here).
    layer = vlm.config.vision_feature_layer
    with torch.no_grad():
        pixels = torch.stack([item["pixel_values"] for item in experiment.train_items])
        projected = vlm.model.multi_modal_projector(vlm.model.vision_tower(
            pixels, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states[layer])
    pooled = projected.view(4, 12, 4, 12, 4, -1).mean(dim=(2, 4)).flatten(1, 2)
    torch.testing.assert_close(pooled, dual_scale_tokens(projected, (48, 48), 4)[0])
    first = seen[0][1]
    assert any(torch.allclose(first[i, :144], pooled[j], atol=1e-5) for i in range(4) for j in range(4))
    # A share of the steps: drawn per step from the run's own stream.
    half = pretrain_reader(load_shirgx_base(experiment.base_dir), train, train, experiment.tokenizer,
                           dataclasses.replace(config, reader_scaffold_share=0.5, reader_stage_steps=20))
    assert 10 <= half["scaffold_steps"] <= 30  # of 40: Binomial(40, 0.5) lies there but for ~1e-3
    with pytest.raises(ValueError, match="share of steps in \\[0, 1\\]"):
        budget_module.run_budget_experiment(dataclasses.replace(config, reader_scaffold_share=1.5))


def test_answer_padded_labels_pad_tokens_up_to_the_decoders_length():
    from spatialvlm.experiments.shirgx_budget import _answer_padded

    item = {"input_ids": torch.tensor([7, 7, 3, 9, 6]), "labels": torch.tensor([-100, -100, 3, 9, 6]), "other": 1}
    padded = _answer_padded(item, 5, pad_token_id=0)
    assert padded["input_ids"].tolist() == [7, 7, 3, 9, 6, 0, 0] and padded["labels"].tolist() == [-100, -100, 3, 9, 6, 0, 0]
    assert padded["other"] == 1 and item["input_ids"].numel() == 5  # a copy; the item is untouched
    assert _answer_padded(item, 3, pad_token_id=0) is item  # already that long


def test_answer_end_pass_learns_the_padded_answers_end_and_keeps_the_content_read(tmp_path):
    """The decoder's first step sees ``max_new_tokens`` masks. The content-only curriculum reads the
    content but was never asked for the end positions; the end pass scores them (end token, newline,
    padding): their cross-entropy falls well below what the content pass left; the content stays read."""
    from spatialvlm.data.synthetic_images import region_patch_mask
    from spatialvlm.experiments.shirgx_budget import (
        _answer_logits, _answer_padded, _content_positions, _Experiment, pretrain_reader,
    )
    from spatialvlm.models.shirgx_vlm import ShirgXImagePath, load_shirgx_base
    from spatialvlm.train.conversation import IGNORE_INDEX

    config = quick_config(out_dir=str(tmp_path), train_images=4, test_images=1, families=("dense_marks",),
                          pretrain_steps=0, answer_words_as_tokens=True, freeze_projector=True, show_progress=False,
                          batch_size=4, max_new_tokens=4)
    experiment = _Experiment(config)
    vlm = load_shirgx_base(experiment.base_dir)
    vlm.get_input_embeddings().requires_grad_(False)
    train = (experiment.train_items, experiment.train_records)
    tokenizer, path, layer = experiment.tokenizer, ShirgXImagePath(vlm), vlm.config.vision_feature_layer

    def end_loss() -> float:
        losses = []
        for item, record in zip(*train):
            item = _answer_padded(item, 4, tokenizer.pad_token_id)
            with torch.no_grad():
                hidden = vlm.model.vision_tower(item["pixel_values"][None], output_hidden_states=True,
                                                interpolate_pos_encoding=True).hidden_states[layer]
                region = torch.from_numpy(np.flatnonzero(region_patch_mask(record["regions"]).flatten()))
                inputs = path.build_inputs(item["input_ids"][None], vlm.model.multi_modal_projector(hidden)[:, region],
                                           labels=item["labels"][None])
                labels = inputs.pop("labels")
                content = _content_positions(labels, tokenizer.eos_token_id)
                logits, labels, content = _answer_logits(vlm, inputs, labels, content, tokenizer.mask_token_id)
            end = (labels != IGNORE_INDEX) & ~content
            assert int(end.sum()) == 3 and labels[end].tolist() == [tokenizer.eos_token_id, labels[end][1], tokenizer.pad_token_id]
            losses.append(float(torch.nn.functional.cross_entropy(logits[end], labels[end])))
        return sum(losses) / len(losses)

    stats = pretrain_reader(vlm, train, train, experiment.tokenizer, config, stages=(1, 4), steps=60, learning_rate=1e-2)
    assert stats["test_accuracy"][-1] == 100.0
    end_before = end_loss()
    stats = pretrain_reader(vlm, train, train, experiment.tokenizer, config, stages=(4,), steps=100,
                            learning_rate=1e-2, score_end=True)
    end_after = end_loss()
    # The pass's own held-out measure (content at 4 tokens, in the padded layout) stays exact.
    assert stats["stages"] == [4] and stats["test_accuracy"][-1] == 100.0
    assert end_after < 0.5 * end_before, (end_before, end_after)


def test_a_base_is_reused_across_after_base_settings_and_records_without_new_settings(tmp_path, monkeypatch):
    import spatialvlm.experiments.shirgx_budget as budget

    config = quick_config(out_dir=str(tmp_path), train_images=2, test_images=1, pretrain_steps=1,
                          answer_words_as_tokens=True, reader="shared", epochs=1, rows=("shirgx",),
                          eval_budgets=(512,), train_budgets=(512, 768), show_progress=False)
    budget.run_budget_experiment(config)
    record = tmp_path / "base" / "pretrain.json"
    stored = json.loads(record.read_text())
    for key in ("reader_end_stages", "reader_end_steps", "reader_end_learning_rate"):
        del stored["config"][key]  # a base written before these settings existed
    record.write_text(json.dumps(stored))
    monkeypatch.setattr(budget, "pretrain_vision_tower", lambda *args: pytest.fail("the tower was retrained"))
    # A mixture rate and an answer-end pass differ from the base's run: the base is reused, the reader is not.
    changed = dataclasses.replace(config, out_dir=str(tmp_path), learning_rate=1e-4, reader_end_stages=(1,),
                                  reader_end_steps=2)
    (tmp_path / "reader" / "reader_training.json").unlink()
    result = budget.run_budget_experiment(changed)
    assert result.pretrain["reader_end"]["stages"] == [1] and len(result.pretrain["reader_end"]["losses"][0]) == 1
    # Resumed, the reader's record still reports its answer-end pass.
    monkeypatch.setattr(budget, "_train_shared", lambda *args: pytest.fail("the shared reader was retrained"))
    assert budget.run_budget_experiment(changed).pretrain["reader_end"] == result.pretrain["reader_end"]
    with pytest.raises(ValueError, match="pretrain_steps"):
        budget.run_budget_experiment(dataclasses.replace(changed, pretrain_steps=2))


def test_answer_end_pass_needs_the_shared_reader(tmp_path):
    from spatialvlm.experiments.shirgx_budget import run_budget_experiment

    with pytest.raises(ValueError, match="reader='shared'"):
        run_budget_experiment(quick_config(out_dir=str(tmp_path), reader_end_stages=(1,), show_progress=False))


def test_shared_reader_run_saves_a_reader_that_spatialvlm_ask_loads(tmp_path):
    from PIL import Image

    from spatialvlm.experiments.shirgx_budget import run_budget_experiment
    from spatialvlm.models.shirgx_vlm import ShirgXImagePath, load_shirgx_image_model
    from transformers import AutoTokenizer

    config = quick_config(out_dir=str(tmp_path), train_images=2, test_images=1, pretrain_steps=1, align_steps=1,
                          answer_words_as_tokens=True, freeze_projector=True, reader="shared", reader_stages=(1,),
                          reader_stage_steps=1, epochs=1, rows=("shirgx", "pool"), eval_budgets=(0, 512),
                          train_budgets=(512,), show_progress=False)
    result = run_budget_experiment(config)
    assert set(result.accuracy) == {"shirgx", "pool"} and len(result.train_losses["shared"]) == 1
    assert "reader" in result.pretrain and "relevance_top1_in_region" in result.pretrain["align"]
    assert set(json.loads((tmp_path / "partial_results.json").read_text())["accuracy"]) == {"shirgx", "pool"}
    loaded = load_shirgx_image_model(tmp_path / "reader")
    assert "shirgx_selector" in loaded.selector_source  # the trained selector, not an untrained one
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "reader")
    assert len(tokenizer) == loaded.model.config.text_config.vocab_size
    assert all(len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1 for word in ("purple", "frame"))
    image = Image.open(tmp_path / "data" / result_image(tmp_path))
    answer = ShirgXImagePath(loaded.model, loaded.selector, loaded.image_config).answer(
        image, "What color is the mark in the black frame?", tokenizer, decoding="diffusion", budget=512, max_new_tokens=4)
    assert answer.num_image_tokens == 512 + 144


def result_image(folder) -> str:
    return json.loads((folder / "data" / "test.jsonl").read_text().splitlines()[0])["image"]


def test_fitting_the_budget_head_alone_learns_targets_it_could_not_have_by_default():
    from spatialvlm.experiments.shirgx_budget import fit_budget_head
    from spatialvlm.selection.budget import BudgetHead

    torch.manual_seed(0)
    head = BudgetHead(8, (512, 768, 1024), default_index=1)
    entropy = torch.rand(90, 8)
    # The target is a threshold rule on one channel: a head that learnt nothing answers 768 always.
    targets = torch.bucketize(entropy[:, 3].contiguous(), torch.tensor([1 / 3, 2 / 3]))
    assert (head.choose(head(entropy)) == 768).all()
    log = fit_budget_head(head, entropy, targets, steps=400, learning_rate=3e-2)
    chosen = head.choose(head(entropy))
    expected = torch.tensor([512, 768, 1024])[targets]
    assert (chosen == expected).float().mean() > 0.9
    assert log[-1] < 0.5 * log[0]


def test_budget_head_targets_are_the_whole_answer_masked_losses_of_each_budget(tmp_path):
    from spatialvlm.experiments.shirgx_budget import BUDGET_ROWS, _Experiment, budget_head_targets
    from spatialvlm.models.diffusion import additive_mask
    from spatialvlm.selection.budget import patch_entropy
    from spatialvlm.train.tasks.shirgx import budget_targets

    config = quick_config(out_dir=str(tmp_path), train_images=2, test_images=1, pretrain_steps=0,
                          train_budgets=(512, 1024), show_progress=False)
    experiment = _Experiment(config)
    model, path = experiment.model_for(BUDGET_ROWS[0])
    entropy, losses, targets = budget_head_targets(model, experiment.train_items)
    assert entropy.shape == (2, config.vision_width) and losses.shape == (2, 2)
    assert torch.equal(targets, budget_targets(losses, model.training_config.budget_target_margin))
    # Independent forward: every answer position is the mask token, bidirectional attention, the mean
    # cross-entropy over the answer tokens at their own positions (no shift).
    vlm, mask_id = path.model, experiment.vlm_config.text_config.mask_token_id
    for index, item in enumerate(experiment.train_items):
        hidden = path.vision_hidden_states(item["pixel_values"][None])
        with torch.no_grad():
            for column, budget in enumerate((512, 1024)):
                tokens = path.select_and_project(hidden, vlm.get_input_embeddings()(item["question_ids"][None]), None, budget).tokens
                inputs = path.build_inputs(item["input_ids"][None], tokens, torch.ones(1, len(item["input_ids"]), dtype=torch.long),
                                           item["labels"][None])
                labels = inputs.pop("labels")[0]
                answer = labels != -100
                embeds = inputs["inputs_embeds"].clone()
                embeds[0, answer] = vlm.get_input_embeddings()(torch.tensor(mask_id))
                everything = torch.ones(1, len(labels), len(labels), dtype=torch.bool)
                logits = vlm(inputs_embeds=embeds, attention_mask=additive_mask(everything, embeds.dtype)).logits[0]
                expected = torch.nn.functional.cross_entropy(logits[answer], labels[answer])
                assert losses[index, column] == pytest.approx(float(expected), rel=1e-4)
        layer = experiment.vlm_config.vision_feature_layer
        assert torch.allclose(entropy[index], patch_entropy(hidden[layer])[0])


def test_a_run_resumes_its_base_and_reader_and_refuses_other_settings(tmp_path, monkeypatch):
    import spatialvlm.experiments.shirgx_budget as budget

    config = quick_config(out_dir=str(tmp_path), train_images=2, test_images=1, pretrain_steps=1,
                          answer_words_as_tokens=True, reader="shared", epochs=1, rows=("shirgx",),
                          eval_budgets=(512,), train_budgets=(512, 768), show_progress=False)
    first = budget.run_budget_experiment(config)
    # The resumed run trains nothing: its base and reader come from OUT, its budget head is fitted anew.
    monkeypatch.setattr(budget, "_train_shared", lambda *args: pytest.fail("the shared reader was retrained"))
    monkeypatch.setattr(budget, "pretrain_vision_tower", lambda *args: pytest.fail("the tower was retrained"))
    second = budget.run_budget_experiment(dataclasses.replace(config, budget_head_steps=5))
    assert second.accuracy == first.accuracy and second.predictions == first.predictions
    assert second.pretrain["losses"] == first.pretrain["losses"]
    fit = second.pretrain["budget_head"]
    assert sum(fit["target_counts"]) == 2 and fit["budgets"] == [512, 768] and len(fit["loss_log"]) == 2
    with pytest.raises(ValueError, match="learning_rate"):
        budget.run_budget_experiment(dataclasses.replace(config, learning_rate=0.5))


def test_ar_reader_logits_are_teacher_forced_each_answer_token_predicted_from_what_precedes_it():
    """The AR objective's read-out forward: the logit that scores answer token j equals the last logit
    of a separate forward over the turn cut just before token j (an independent reference: no shift
    to get wrong), and its target is token j. Unshifted logits would see the token they predict."""
    from spatialvlm.experiments.shirgx_budget import _answer_logits

    vlm, _, _, _ = _tiny_vlm_and_patches(("dense_marks",), count=1)
    vlm.eval()
    torch.manual_seed(1)
    width, length, answer_start = vlm.config.text_config.hidden_size, 9, 6
    embeds = torch.randn(2, length, width)
    attention = torch.ones(2, length, dtype=torch.long)
    labels = torch.full((2, length), -100)
    labels[:, answer_start:] = torch.randint(5, 20, (2, length - answer_start))
    content = labels != -100
    with torch.no_grad():
        logits, targets, scored = _answer_logits(vlm, {"inputs_embeds": embeds, "attention_mask": attention}, labels, content, None)
        assert logits.shape[1] == targets.shape[1] == scored.shape[1] == length - 1
        for j in range(answer_start, length):
            # Position j - 1 of the shifted output scores token j ...
            assert scored[:, j - 1].all() and torch.equal(targets[:, j - 1], labels[:, j])
            # ... from the turn before token j alone.
            prefix = vlm(inputs_embeds=embeds[:, :j], attention_mask=attention[:, :j]).logits[:, -1]
            torch.testing.assert_close(logits[:, j - 1], prefix, atol=1e-5, rtol=1e-5)
        assert not scored[:, : answer_start - 1].any()


# The second look's command in docs/results.md, with the third look's --budget-head-steps 500 and the
# sixth look's answer-end pass: the evidence run that --preset reader names.
_DOCUMENTED_READER_RUN = (
    "--quick --train-images 600 --test-images 120 --epochs 2 --learning-rate 1e-3 --pretrain-steps 200 "
    "--align-steps 300 --answer-words-as-tokens --reader shared --freeze-projector "
    "--reader-stages 1,1,1,1,1,1,16,64,256,656,1168 --reader-stage-steps 350 --threads 1 "
    "--rows shirgx,shirgx-no-coord,shirgx-no-merge,shirgx-no-spread,pool,random,bipartite,tome,visionzip,divprune "
    "--budget-head-steps 500 --reader-end-stages 256,656,1168 --reader-end-steps 150 --reader-end-learning-rate 1e-3"
)


def test_the_reader_preset_is_the_documented_evidence_command():
    from spatialvlm.experiments.shirgx_budget import build_config

    documented, _ = build_config(_DOCUMENTED_READER_RUN.split())
    preset, _ = build_config(["--preset", "reader"])
    assert preset == documented
    quick, _ = build_config(["--preset", "reader-quick", "--test-images", "7"])
    # The cut trains as the evidence run does (every setting but the evaluation's and the thread
    # count is the same) and evaluates less; flags still override it.
    differ = {f.name for f in dataclasses.fields(quick) if getattr(quick, f.name) != getattr(documented, f.name)}
    assert differ <= {"rows", "test_images", "eval_budgets", "threads"} and quick.test_images == 7
    assert set(quick.rows) < set(documented.rows) and set(quick.eval_budgets) < set(documented.eval_budgets)
    none, _ = build_config(["--preset", "reader", "--reader-end-stages", ""])
    assert none.reader_end_stages == () and preset.reader_end_stages == (256, 656, 1168)
    with pytest.raises(SystemExit):
        build_config(["--quick", "--preset", "reader"])


def test_seeds_side_by_side_give_the_sequential_results(tmp_path):
    from spatialvlm.experiments.shirgx_budget import _run_seeds_side_by_side, run_budget_experiment

    def tiny(seed: int, where: str):
        return quick_config(out_dir=str(tmp_path / where / f"seed{seed}"), seed=seed, train_images=2, test_images=2,
                            pretrain_steps=1, epochs=1, rows=("shirgx", "pool"), eval_budgets=(0, 512),
                            train_budgets=(512,), show_progress=False)

    parallel = _run_seeds_side_by_side([tiny(0, "jobs"), tiny(1, "jobs")], jobs=2)
    sequential = [run_budget_experiment(tiny(seed, "one")) for seed in (0, 1)]
    assert [r.config["seed"] for r in parallel] == [0, 1]  # in the configs' order, whichever ended first
    for side, alone in zip(parallel, sequential):
        assert side.predictions == alone.predictions and side.train_losses == alone.train_losses
        assert side.accuracy == alone.accuracy
    assert (tmp_path / "jobs" / "seed1" / "log.txt").is_file()
    assert parallel[0].train_losses != parallel[1].train_losses  # the seeds differ: the check can fail


def test_paired_gap_ci_is_the_mean_difference_with_a_question_paired_bootstrap():
    from spatialvlm.experiments.shirgx_budget import paired_gap_ci

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 400).astype(float), rng.integers(0, 2, 400).astype(float)
    gap, low, high = paired_gap_ci(a, b, samples=2000, seed=1)
    assert gap == pytest.approx(100 * (a.mean() - b.mean()))
    assert low < gap < high
    # A naive reference: resample question indices, both rows' answers together, in a Python loop.
    draws = np.random.default_rng(1).integers(400, size=(2000, 400))
    means = sorted(100 * (a[d] - b[d]).mean() for d in draws)
    assert low == pytest.approx(np.quantile(means, 0.025)) and high == pytest.approx(np.quantile(means, 0.975))
    # Identical rows: no gap and no spread (paired); one row always right, the other never: +100 exactly.
    assert paired_gap_ci(a, a) == [0.0, 0.0, 0.0]
    assert paired_gap_ci(np.ones(10), np.zeros(10)) == [100.0, 100.0, 100.0]
    with pytest.raises(ValueError, match="align question by question"):
        paired_gap_ci([1.0, 0.0], [1.0])


def _fake_result(seed: int, scores: dict[str, list[float]]):
    from spatialvlm.experiments.shirgx_budget import BudgetExperimentResult

    return BudgetExperimentResult(
        config={"eval_budgets": [512], "bootstrap_samples": 200, "seed": seed},
        accuracy={row: {"512": 100 * float(np.mean(v))} for row, v in scores.items()},
        family_accuracy={row: {"512": {"dense_color": 100 * float(np.mean(v))}} for row, v in scores.items()},
        scores={row: {"512": list(v)} for row, v in scores.items()},
    )


def test_summarise_pools_finished_runs_and_reports_shirgx_minus_each_row(tmp_path, capsys):
    from spatialvlm.experiments.shirgx_budget import main, paired_gap_ci

    first = _fake_result(0, {"shirgx": [1, 1, 0, 0], "divprune": [1, 1, 1, 0], "pool": [0, 0, 0, 0]})
    # A run with one row fewer (a cut run): only the rows every run has are pooled.
    second = _fake_result(3, {"shirgx": [1, 0, 1, 1], "divprune": [1, 0, 0, 1]})
    for name, result in (("a", first), ("b", second)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(dataclasses.asdict(result)))
    out = tmp_path / "pooled"
    assert main(["--summarise", f"{tmp_path / 'a'},{tmp_path / 'b'}", "--out", str(out)]) == 0
    summary = (out / "seeds.md").read_text()
    assert "Seeds [0, 3]" in summary and "| pool |" not in summary
    gap, low, high = paired_gap_ci([1, 1, 0, 0, 1, 0, 1, 1], [1, 1, 1, 0, 1, 0, 0, 1], 200, 0)
    assert gap == 0.0  # 5 of 8 right for both
    # Seed 0: SHIRG-X behind (50 vs 75); seed 3: ahead (75 vs 50).
    assert f"| divprune | {gap:+.1f} [{low:+.0f}, {high:+.0f}] 1/0/1 |" in summary
    with pytest.raises(SystemExit, match="results.json not found"):
        main(["--summarise", str(tmp_path / "nowhere"), "--out", str(out)])
    third = _fake_result(4, {"shirgx": [1.0]})
    third.config["eval_budgets"] = [768]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text(json.dumps(dataclasses.asdict(third)))
    with pytest.raises(SystemExit, match="different budgets"):
        main(["--summarise", f"{tmp_path / 'a'},{tmp_path / 'c'}", "--out", str(out)])
