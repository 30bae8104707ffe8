"""Lookup-formation experiment: presence questions from region shares, tied tokens, prompts, a tiny run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spatialvlm.experiments import vlm2_lookup
from spatialvlm.experiments.vlm2_lookup import LookupConfig, LookupModel, TiedTokens, presence_items, run_lookup

BASE = Path(__file__).resolve().parents[2] / "checkpoints" / "vlm2-base-synthetic"
REGION = 28


def _scene(frames: int, pixels: dict[tuple[int, int], int]) -> np.ndarray:
    """(frames, 4, 17) features: the room everywhere except (frame, category) → that many pixels in block 0."""
    features = np.zeros((frames, 4, 17), dtype=np.float32)
    features[..., 1] = 1.0  # wall
    for (frame, category), count in pixels.items():
        features[frame, 0, 3 + category] = count / REGION**2
        features[frame, 0, 1] -= count / REGION**2
    return features


def test_presence_questions_follow_the_pixels_of_the_clip():
    features = {
        "train_00000": _scene(4, {(0, 0): 200, (1, 5): 50, (3, 7): 120}),  # chair seen early, tv too small, plant late
        "train_00001": _scene(4, {}),  # nothing visible: no "yes" question possible
    }
    full = presence_items(features, 4, REGION, 100, seed=0)
    assert [(scene, stride) for scene, stride, _, _ in full] == [("train_00000", 1)] * 2
    (_, _, yes_category, yes), (_, _, no_category, no) = full
    assert yes and not no and yes_category in (0, 7)
    assert no_category not in (0, 5, 7)  # 50 px of tv is neither "yes" nor "none at all"
    # A 1-frame clip is frame 0 alone: only the chair is visible, and the tv and the plant are absent in it.
    short = presence_items(features, 1, REGION, 100, seed=0)
    assert [(stride, yes) for _, stride, _, yes in short] == [(4, True), (4, False)]
    assert short[0][2] == 0
    for seed in range(20):
        assert presence_items(features, 1, REGION, 100, seed=seed)[1][2] != 0


def test_tied_tokens_are_share_weighted_word_embeddings_then_the_newline():
    torch.manual_seed(0)
    tokens = TiedTokens(width=6, init_range=0.1, mode="tied")
    table = torch.randn(11, 6)
    features = torch.rand(2, 3, 4, 17)
    out = tokens(features, table)
    assert out.shape == (2, 3 * 4 + 1, 6)
    vectors = torch.cat([tokens.room, table])  # (14, 6): floor, wall, ceiling, then the 11 categories
    for b in range(2):
        for t in range(3):
            for p in range(4):
                expected = sum(features[b, t, p, c] * vectors[c] for c in range(14))
                torch.testing.assert_close(out[b, t * 4 + p], expected)
        torch.testing.assert_close(out[b, -1], tokens.newline)
    # The untied tokens ignore the word embeddings; tied+mlp is their sum with the tied ones.
    torch.manual_seed(0)
    untied = TiedTokens(width=6, init_range=0.1, mode="mlp")
    torch.testing.assert_close(untied(features, table), untied(features, torch.zeros(11, 6)))
    both = TiedTokens(width=6, init_range=0.1, mode="tied+mlp")
    both.room.data.copy_(tokens.room.data)
    mlp = both.mlp(features).flatten(1, 2)
    torch.testing.assert_close(both(features, table)[:, :-1], out[:, :-1] + mlp)
    with pytest.raises(ValueError, match="tokens must be one of"):
        TiedTokens(width=6, init_range=0.1, mode="linear")


def test_prompts_end_where_each_row_needs_the_answer():
    ids = {"prefix": [5, 6], "suffix": [7, 8, 9], "echo": [7, 10], "yes": 1, "no": 2, "first_category_id": 100}
    features = {"train_00000": np.zeros((4, 4, 17), np.float32)}
    items = [("train_00000", 2, 3, True), ("train_00000", 2, 9, False)]
    clips, prompts, targets, preambles = vlm2_lookup._batch(items, features, ids, one_hop=False, echo=False)
    assert preambles is None
    assert clips.shape == (2, 2, 4, 17)  # every 2nd frame of 4
    assert prompts == [[5, 6, 103, 7, 8, 9], [5, 6, 109, 7, 8, 9]] and targets.tolist() == [1, 2]
    _, prompts, _, _ = vlm2_lookup._batch(items, features, ids, one_hop=True, echo=False)
    assert prompts == [[5, 6, 103], [5, 6, 109]]  # the answer position is the category word
    _, prompts, targets, _ = vlm2_lookup._batch(items, features, ids, one_hop=False, echo=True)
    assert prompts == [[5, 6, 103, 7, 10], [5, 6, 109, 7, 10]] and targets.tolist() == [103, 109]


def test_question_first_and_both_put_the_question_before_the_video():
    ids = {"prefix": [5, 6], "suffix": [7, 8, 9], "echo": [7, 10], "yes": 1, "no": 2, "first_category_id": 100}
    features = {"train_00000": np.zeros((4, 4, 17), np.float32)}
    items = [("train_00000", 1, 3, True)]
    first, both = vlm2_lookup.ROWS["question-first"], vlm2_lookup.ROWS["question-both"]
    _, prompts, targets, preambles = vlm2_lookup._batch(items, features, ids, False, False, first)
    assert preambles == [[5, 6, 103, 7, 8, 9]] and prompts == [[]] and targets.tolist() == [1]
    _, prompts, _, preambles = vlm2_lookup._batch(items, features, ids, False, False, both)
    assert preambles == [[5, 6, 103, 7, 8, 9]] and prompts == [[5, 6, 103, 7, 8, 9]]
    # The one-hop warm-up and the echo task keep their own layout (question after the video only).
    _, prompts, _, preambles = vlm2_lookup._batch(items, features, ids, True, False, first)
    assert preambles is None and prompts == [[5, 6, 103]]


def test_question_first_logits_are_read_at_the_videos_closing_token():
    from spatialvlm.models import load_vlm2

    base, _ = load_vlm2(BASE)
    model = LookupModel(base.config.text_config, "tied", seed=0).eval()
    features = torch.rand(2, 2, 4, 17)
    question = [[10, 11, 12], [20, 21, 22]]
    with torch.no_grad():
        logits = model(features, [[], []], question)
        # Independent: the whole sequence by hand, question embeddings then video tokens (+ newline).
        embed = model.language_model.embed_tokens
        video = model.tokens(features, embed.weight[model.first_category_id:])
        sequence = torch.cat([embed(torch.tensor(question)), video], 1)
        expected = model.head(model.language_model(inputs_embeds=sequence).last_hidden_state[:, -1])
    torch.testing.assert_close(logits, expected)
    with pytest.raises(ValueError, match="one common length|share one length"):
        model(features, [[], []], [[1, 2], [3]])


def test_logits_at_the_last_prompt_token_do_not_depend_on_the_batch_padding():
    from spatialvlm.models import load_vlm2

    base, _ = load_vlm2(BASE)
    model = LookupModel(base.config.text_config, "tied", seed=0).eval()
    features = torch.rand(2, 2, 4, 17)
    prompts = [[10, 11, 12, 13, 14], [20, 21]]
    with torch.no_grad():
        together = model(features, prompts)
        alone = torch.cat([model(features[i:i + 1], prompts[i:i + 1]) for i in range(2)])
    assert together.shape == (2, base.config.text_config.vocab_size + 11)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_tiny_lookup_run_writes_curves_and_resumes(tiny_bench, tmp_path, monkeypatch):
    config = LookupConfig(data_dir=str(tiny_bench), base=str(BASE), out_dir=str(tmp_path / "out"), seed=5, render_frames=8,
                          num_frames=4, train_scenes=2, test_scenes=1, rows=("two-hop", "curriculum", "echo"), seeds=(0,),
                          steps=4, eval_every=2, progress=False)
    summary = run_lookup(config)
    assert set(summary) == {"two-hop", "curriculum", "echo"}
    for row in summary.values():
        assert row["step"] == [0, 2, 4] and all(0.0 <= a <= 1.0 for a in row["mean"])
        assert len(row["first_step_at_70"]) == 1 and row["first_step_at_70"][0] in (None, 0, 2, 4)
        assert row["test_questions"] % 2 == 0 and row["test_questions"] > 0  # one yes and one no per scene
    stored = json.loads((tmp_path / "out" / "lookup.json").read_text())
    assert stored["rows"]["two-hop"]["mean"] == summary["two-hop"]["mean"]
    assert (tmp_path / "out" / "lookup.png").stat().st_size > 0
    # A finished (row, seed) is read back, never retrained.
    monkeypatch.setattr(vlm2_lookup, "_train_row", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert run_lookup(config) == summary


def test_unknown_rows_and_token_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="rows come from"):
        run_lookup(LookupConfig(out_dir=str(tmp_path), rows=("three-hop",)))
    with pytest.raises(ValueError, match="tokens from"):
        run_lookup(LookupConfig(out_dir=str(tmp_path), tokens="linear"))


def test_token_subset_keeps_the_strongest_evidence_token_and_clip_order():
    from spatialvlm.experiments.vlm2_base import NUM_ROOM_CLASSES

    clip = np.zeros((2, 4, 17), np.float32)
    clip[..., 14] = np.arange(8).reshape(2, 4)  # a position tag per token (an x coordinate)
    clip[1, 2, NUM_ROOM_CLASSES + 5] = 0.6  # category 5 shows most in token 6 (frame 1, block 2)
    clip[0, 1, NUM_ROOM_CLASSES + 5] = 0.2
    rng = np.random.default_rng(0)
    one = vlm2_lookup._token_subset(clip, 5, 1, rng)
    assert one.shape == (1, 1, 17) and one[0, 0, 14] == 6
    four = vlm2_lookup._token_subset(clip, 5, 4, rng)
    tags = four[0, :, 14].tolist()
    assert 6 in tags and tags == sorted(tags) and len(set(tags)) == 4
    # An absent category: any one token; a count beyond the clip: the whole clip, flattened.
    assert vlm2_lookup._token_subset(clip, 7, 1, rng).shape == (1, 1, 17)
    np.testing.assert_array_equal(vlm2_lookup._token_subset(clip, 5, 99, rng)[0], clip.reshape(8, 17))
    # In a batch every clip is cut the same way: (B, 1, n, 17).
    features = {"train_00000": clip}
    ids = {"prefix": [5], "suffix": [7], "echo": [7], "yes": 1, "no": 2, "first_category_id": 100}
    clips, _, _, _ = vlm2_lookup._batch([("train_00000", 1, 5, True)] * 2, features, ids, False, False, None, 4, rng)
    assert clips.shape == (2, 1, 4, 17)


def test_num_layers_deepens_the_language_model_and_keeps_its_width_and_tokens():
    from spatialvlm.models import load_vlm2

    base, _ = load_vlm2(BASE)
    text = base.config.text_config
    default, deeper = LookupModel(text, "tied", seed=0), LookupModel(text, "tied", seed=0, num_layers=text.num_hidden_layers + 2)
    assert len(default.language_model.layers) == text.num_hidden_layers
    assert len(deeper.language_model.layers) == text.num_hidden_layers + 2
    assert deeper.language_model.config.hidden_size == text.hidden_size
    with torch.no_grad():
        logits = deeper.eval()(torch.rand(1, 2, 4, 17), [[10, 11]])
    assert logits.shape == (1, text.vocab_size + 11) and torch.isfinite(logits).all()
