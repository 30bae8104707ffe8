"""SHIRG-X training on a masked-diffusion LM: LaViDa's complementary-masking loss, checked by hand on a
fixed mask, and through the task against a re-derivation from the language model's own forward."""

from __future__ import annotations

import json
import math

import pytest
import torch

from shirgx_fixtures import BUDGETS, save_tiny_llava, shirgx_flags, write_image_qa
from spatialvlm.models.diffusion import additive_mask
from spatialvlm.models.tiny import MASK_TOKEN_ID
from spatialvlm.train import parse_train_args, prepare_training
from spatialvlm.train.conversation import IGNORE_INDEX
from spatialvlm.train.tasks.shirgx import diffusion_answer_mask, masked_diffusion_loss

I = IGNORE_INDEX


def _ce(row, target):
    """−log softmax(row)[target], by hand."""
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def test_loss_matches_a_hand_computation_on_a_fixed_mask():
    torch.manual_seed(0)
    labels = torch.tensor([[I, I, 2, 0, 3], [I, 1, 1, 2, I]])
    masked = torch.tensor([[False, False, True, False, True], [False, False, True, False, False]])
    ratio = torch.tensor([0.4, 0.25])
    logits = torch.randn(4, 5, 4)
    rows = logits.tolist()
    # Copy 0/1: masked positions; copies 2/3 (the complement): the other answer positions.
    terms = {(b, i): _ce(rows[b][i], labels[b, i].item()) for b in range(2) for i in range(5) if masked[b, i]}
    terms.update({(b, i): _ce(rows[2 + b][i], labels[b, i].item())
                  for b in range(2) for i in range(5) if labels[b, i] != I and not masked[b, i]})
    assert len(terms) == 6  # every answer token exactly once, at its own position (no shift)
    loss, per_sample = masked_diffusion_loss(logits, labels, masked, ratio, "lavida")
    assert loss.item() == pytest.approx(sum(terms.values()) / 6, rel=1e-6)
    assert per_sample[0].item() == pytest.approx((terms[0, 2] + terms[0, 3] + terms[0, 4]) / 3, rel=1e-6)
    assert per_sample[1].item() == pytest.approx((terms[1, 1] + terms[1, 2] + terms[1, 3]) / 3, rel=1e-6)
    # ELBO (1/t) weighting: per copy Σ CE / (ratio · answer length), mean over the 4 copies.
    elbo = ((terms[0, 2] + terms[0, 4]) / (0.4 * 3) + terms[1, 2] / (0.25 * 3)
            + terms[0, 3] / (0.6 * 3) + (terms[1, 1] + terms[1, 3]) / (0.75 * 3)) / 4
    loss, _ = masked_diffusion_loss(logits, labels, masked, ratio, "elbo")
    assert loss.item() == pytest.approx(elbo, rel=1e-6)
    with pytest.raises(ValueError, match="2B"):
        masked_diffusion_loss(logits[:2], labels, masked, ratio)


def test_forward_process_masks_the_answer_at_ratio_t():
    answer = torch.zeros(3, 4000, dtype=torch.bool)
    answer[:, 100:] = True
    answer[2, 101:] = False  # a one-token answer is always masked
    masked, ratio = diffusion_answer_mask(answer, generator=torch.Generator().manual_seed(1))
    assert not (masked & ~answer).any() and masked[2, 100]
    fraction = masked[:2].sum(1) / answer[:2].sum(1)
    torch.testing.assert_close(fraction, ratio[:2], atol=0.03, rtol=0)
    again, _ = diffusion_answer_mask(answer, generator=torch.Generator().manual_seed(1))
    assert torch.equal(masked, again)


@pytest.fixture(scope="module")
def diffusion_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("shirgx_diffusion")
    base = save_tiny_llava(root / "base")
    config = json.loads((base / "config.json").read_text())
    # What `spatialvlm convert lavida` writes: the LM is a bidirectional masked-diffusion model.
    config["text_config"].update(mask_token_id=MASK_TOKEN_ID, diffusion_training_attention="bidirectional")
    (base / "config.json").write_text(json.dumps(config))
    return base, write_image_qa(root), root


def test_task_trains_lavidas_objective_bidirectionally(diffusion_files, tmp_path):
    base, data, _ = diffusion_files
    run = prepare_training(*parse_train_args(shirgx_flags(base, data, tmp_path / "out")))
    model = run.trainer.model.eval()
    inner = model.get_base_model()
    assert inner.diffusion_attention == "bidirectional" and inner.mask_token_id == MASK_TOKEN_ID
    batch = run.trainer.data_collator([run.trainer.train_dataset[i] for i in range(2)])
    labels = torch.where(batch["attention_mask"] == 0, batch["input_ids"], batch["labels"])  # padding is answer
    answer = labels != I
    masked = answer & (torch.arange(answer.shape[1]) % 2 == 0)
    ratio = torch.tensor([0.5, 0.5])
    with torch.no_grad():
        out = model(**batch, budget=48, compute_budget_target=True, diffusion_mask=(masked, ratio))
        # Re-derivation: each copy's embeddings with mask-token rows, all positions attending to all.
        path = inner.image_path()
        hidden = path.vision_hidden_states(batch["pixel_values"])
        vlm = inner.model
        embed = vlm.get_input_embeddings()
        per_budget = []
        for k in BUDGETS:
            feats = path.select_and_project(hidden, embed(batch["question_ids"]), batch["question_mask"].bool(), k)
            inputs = path.build_inputs(batch["input_ids"], feats.tokens, None, labels)
            big_labels = inputs["labels"]
            big_answer = big_labels != I
            big_masked = torch.zeros_like(big_answer)
            big_masked[big_answer] = masked[answer]
            total, count, sample = 0.0, 0, torch.zeros(2)
            for copy in (big_masked, big_answer & ~big_masked):
                x = torch.where(copy[..., None], embed(torch.tensor([MASK_TOKEN_ID])), inputs["inputs_embeds"])
                length = x.shape[1]
                full = torch.ones(2, length, length, dtype=torch.bool)
                logits = vlm.lm_head(vlm.model.language_model(
                    inputs_embeds=x, attention_mask=additive_mask(full, x.dtype),
                    position_ids=torch.arange(length)[None].expand(2, -1)).last_hidden_state)
                ce = torch.nn.functional.cross_entropy(logits[copy], big_labels[copy], reduction="none")
                total, count = total + ce.sum(), count + copy.sum()
                for row in range(2):
                    sample[row] += torch.nn.functional.cross_entropy(
                        logits[row][copy[row]], big_labels[row][copy[row]], reduction="sum")
            per_budget.append(sample / big_answer.sum(1))
            if k == 48:
                expected_loss = total / count
    torch.testing.assert_close(out.answer_loss, expected_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.budget_answer_losses, torch.stack(per_budget, 1), atol=1e-5, rtol=1e-5)
    assert out.logits.shape[0] == 4  # the masked copies, then the complementary ones
    # A drawn mask (no diffusion_mask) trains through the Trainer with finite losses.
    run.trainer.args.max_steps = 4
    run.trainer.train()
    logged = [entry["answer_loss"] for entry in run.trainer.state.log_history if "answer_loss" in entry]
    assert len(logged) == 4 and all(math.isfinite(v) for v in logged)


def test_prefix_dlm_checkpoints_train_under_lavidas_prefix_lm_mask(diffusion_files, tmp_path):
    base, data, _ = diffusion_files
    run = prepare_training(*parse_train_args(shirgx_flags(base, data, tmp_path / "out")))
    inner = run.trainer.model.get_base_model().eval()
    batch = run.trainer.data_collator([run.trainer.train_dataset[0]])
    path = inner.image_path()
    feats = path.select_and_project(path.vision_hidden_states(batch["pixel_values"]), budget=48)
    inputs = path.build_inputs(batch["input_ids"], feats.tokens, None, batch["labels"])
    answer = inputs.pop("labels") != I
    first = int(answer.float().argmax())
    masked = torch.zeros_like(answer)
    changed = dict(inputs, inputs_embeds=inputs["inputs_embeds"].clone())
    changed["inputs_embeds"][0, -1] += 1.0  # the last answer token (never masked here)
    for attention, prompt_sees_answer in (("bidirectional", True), ("prefix_dlm", False)):
        inner.diffusion_attention = attention
        with torch.no_grad():
            before, after = inner._diffusion_logits(inputs, answer, masked), inner._diffusion_logits(changed, answer, masked)
        # The prompt (before the first answer token) sees the answer only under full attention;
        # the answer always sees the prompt.
        assert (not torch.allclose(before[:, :first], after[:, :first], atol=1e-6)) == prompt_sees_answer
        assert not torch.allclose(before[:, first:-1], after[:, first:-1], atol=1e-6)
