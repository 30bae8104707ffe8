"""Grounding check: balanced presence questions from visible pixels; the yes/no accuracy read-out."""

import json

import numpy as np
import pytest
import torch

from spatialvlm.data.synthetic import CATEGORIES
from spatialvlm.experiments.vlm2_grounding import GroundingConfig, presence_records, run_grounding, yes_no_accuracy


def _scene(directory, name, objects, visible):
    (directory / "synthetic").mkdir(exist_ok=True)
    (directory / "synthetic" / f"{name}.json").write_text(json.dumps({
        "objects": [{"category": c} for c in objects], "visible_pixels": np.asarray(visible).tolist()}))


def test_presence_questions_follow_the_pixels_seen_in_the_sampled_frames(tmp_path):
    # 4 frames, 2 sampled (indices 0 and 3). Scene 0: chair seen 150 px in sampled frames, sofa only in
    # an unsampled frame, tv 60 px (under the 100-px threshold). Scene 1: no chair in the room.
    _scene(tmp_path, "train_00000", ["chair", "sofa", "tv"], [[100, 0, 30], [0, 500, 0], [0, 0, 0], [50, 0, 30]])
    _scene(tmp_path, "train_00001", ["sofa"], [[200, ], [0], [0], [0]])
    fixed = presence_records(tmp_path, "train", 2, "fixed:chair", num_frames=2, render_frames=4, min_pixels=100)
    assert [(r["id"], r["conversations"][1]["value"]) for r in fixed] == [("train_00000_chair", "yes"), ("train_00001_chair", "no")]
    assert fixed[0]["conversations"][0]["value"] == "<video>\nIs there a chair in this room? Answer yes or no."
    # The sofa is in scene 0 but unseen in the sampled frames: a fixed sofa question there is skipped.
    assert [r["id"] for r in presence_records(tmp_path, "train", 2, "fixed:sofa", 2, 4, 100)] == ["train_00001_sofa"]
    both = presence_records(tmp_path, "train", 2, "any", 2, 4, 100, seed=3)
    answers = [(r["id"].split("_", 2)[2], r["conversations"][1]["value"]) for r in both]
    # Per scene one visible category (scene 0: only the chair qualifies) and one not in the room.
    assert answers[0] == ("chair", "yes") and answers[2] == ("sofa", "yes")
    assert answers[1][1] == answers[3][1] == "no"
    assert answers[1][0] not in ("chair", "sofa", "tv") and answers[3][0] != "sofa"
    assert answers[1][0] in {c.name for c in CATEGORIES}
    with pytest.raises(ValueError, match="fixed:<category>"):
        presence_records(tmp_path, "train", 2, "fixed:unicorn", 2, 4, 100)


def test_yes_no_accuracy_compares_the_two_logits_at_the_first_answer_token():
    class Scripted(torch.nn.Module):
        """Logits that favour 'yes' (id 7) at every position of rows 0 and 2, 'no' (id 3) elsewhere."""

        def forward(self, input_ids, **_):
            logits = torch.zeros(*input_ids.shape, 10)
            logits[:, :, 3] = 1.0
            logits[[0, 2], :, 7] = 2.0
            return type("Out", (), {"logits": logits})()

    labels = torch.full((4, 6), -100)
    labels[:, 4] = torch.tensor([7, 7, 3, 3])  # truths: yes, yes, no, no
    batch = {"input_ids": torch.zeros(4, 6, dtype=torch.long), "labels": labels}
    # Predictions: yes, no, yes, no → rows 0 and 3 right.
    assert yes_no_accuracy(Scripted(), [batch], yes_id=7, no_id=3) == 0.5


def test_tiny_grounding_run_writes_curves_and_a_figure(tmp_path):
    from pathlib import Path

    from spatialvlm.data.synthetic import SynthConfig, generate_split

    bench = tmp_path / "bench"
    for split, scenes in (("train", 2), ("test", 1)):
        generate_split(bench, SynthConfig(num_scenes=scenes, num_frames=8, image_size=112, seed=2, split=split), show_progress=False)
    base = Path(__file__).resolve().parents[2] / "checkpoints" / "vlm2-base-synthetic"
    config = GroundingConfig(data_dir=str(bench), base=str(base), out_dir=str(tmp_path / "out"), modes=("any",),
                             num_frames=2, render_frames=8, train_scenes=2, test_scenes=1, min_pixels=1, steps=2,
                             eval_every=1, progress=False, fresh_language_model=True, init_range=0.05)
    (result,) = run_grounding(config)
    assert result["step"] == [0, 1, 2] and all(0.0 <= a <= 1.0 for a in result["accuracy"])
    assert result["test_questions"] == 2 and result["test_yes_share"] == 0.5
    assert (tmp_path / "out" / "grounding.png").stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "grounding.json").read_text())
    assert saved["results"][0]["accuracy"] == result["accuracy"]
