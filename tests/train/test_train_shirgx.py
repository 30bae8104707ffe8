"""SHIRG-X training task: LoRA scope, parameter counts, budget sampling and targets, learning-rate
groups, loss falling, checkpoint round trip (tiny LLaVA-OneVision, images made with PIL)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shirgx_fixtures import BUDGETS, SCAFFOLD, save_tiny_llava, shirgx_flags, write_image_qa
from spatialvlm.cli import main
from spatialvlm.selection import load_selector
from spatialvlm.train import load_trained_model, parse_train_args, prepare_training
from spatialvlm.train.tasks.shirgx import (
    ShirgXModelArguments,
    ShirgXTask,
    budget_targets,
    load_image_qa_records,
    projector_lora_parameter_count,
    sample_budget,
)
from spatialvlm.train.tunable import canonical_parameter_name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("shirgx")
    return save_tiny_llava(root / "base"), write_image_qa(root), root


def _prepare(files, tmp_path, **flags):
    base, data, _ = files
    return prepare_training(*parse_train_args(shirgx_flags(base, data, tmp_path / "out", **flags)))


def _lora_modules(model: nn.Module) -> dict[str, int]:
    """Canonical module name → LoRA rank, for every module peft adapted."""
    return {
        canonical_parameter_name(name).removesuffix(".lora_A.default.weight"): parameter.shape[0]
        for name, parameter in model.named_parameters()
        if name.endswith(".lora_A.default.weight")
    }


def test_flags_and_defaults_follow_the_shirgx_recipe(tmp_path):
    required = ["--task", "shirgx", "--model_name_or_path", "m", "--data_path", "d.jsonl", "--output_dir", "o"]
    model_args, data_args, _ = parse_train_args(required)
    assert isinstance(model_args, ShirgXModelArguments)
    assert (model_args.projector_lora, model_args.projector_lora_r) == (True, 32)
    assert (model_args.projector_lr, model_args.coord_lr, model_args.budget_loss_weight) == (2e-4, 1e-3, 0.1)
    assert model_args.budget_list == (512, 768, 1024) and model_args.image_size == 672
    assert data_args.question_post_prompt.startswith("\nAnswer the question")
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"task": "shirgx", "model_name_or_path": "m", "data_path": "d", "output_dir": "o",
                                "budgets": "32,64", "projector_lora_r": 8}))
    model_args, _, _ = parse_train_args([str(path)])
    assert model_args.budget_list == (32, 64) and model_args.projector_lora_r == 8
    # The VLM² task keeps its own argument class (no SHIRG-X flags).
    vlm2_args, _, _ = parse_train_args(required[2:])
    assert vlm2_args.task == "vlm2" and not hasattr(vlm2_args, "projector_lora_r")
    with pytest.raises(ValueError, match="increasing"):
        ShirgXModelArguments(budgets="768,512")


def test_lora_touches_only_the_projector_and_the_selector_trains_fully(files, tmp_path):
    run = _prepare(files, tmp_path)
    model = run.trainer.model
    assert _lora_modules(model) == {
        "model.model.multi_modal_projector.linear_1": 32,
        "model.model.multi_modal_projector.linear_2": 32,
    }
    trained = {canonical_parameter_name(n) for n, p in model.named_parameters() if p.requires_grad and ".lora_" not in n}
    selector = {f"selector.{name}" for name, _ in model.get_base_model().selector.named_parameters()}
    assert trained == selector  # coordinate embedding and budget head, fully; nothing of the VLM
    # Real count, compared with the closed form at the tiny dims (SigLIP 32 → text 64 → 64).
    assert run.summary.trainable_per_part["mm_mlp_adapter"] == projector_lora_parameter_count(32, 64, 32)
    assert run.summary.trainable_per_part["coord_embed"] == (4 * 128 + 128) + (128 * 32 + 32)
    assert "mm_mlp_adapter" in str(run.summary)

    # LoRA on the language model too: its linears at lora_r, the projector still at 32, SigLIP untouched.
    both = _lora_modules(_prepare(files, tmp_path, lora_enable="True", lora_r="4", lora_alpha="8").trainer.model)
    assert both["model.model.multi_modal_projector.linear_1"] == 32
    assert both["model.model.language_model.layers.0.self_attn.q_proj"] == 4
    assert not [name for name in both if "vision_tower" in name]
    assert len(both) == 2 + 2 * 7  # projector + 7 Qwen2 linears × 2 layers


def test_projector_lora_count_at_real_dims():
    # Real-dims projector shapes only, on the meta device (no memory): LaViDa's 1152 → 4096 → 4096.
    from peft import get_peft_model
    from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionMultiModalProjector

    from spatialvlm.models.tiny import tiny_llava_onevision_config

    config = tiny_llava_onevision_config(vision_config={"hidden_size": 1152}, text_config={"hidden_size": 4096})
    holder = nn.Module()
    holder.model = nn.Module()
    with torch.device("meta"):
        holder.model.model = nn.Module()
        holder.model.model.multi_modal_projector = LlavaOnevisionMultiModalProjector(config)
    lora = ShirgXTask().lora_config(ShirgXModelArguments(task="shirgx", model_name_or_path="m"))
    peft_model = get_peft_model(holder, lora)
    count = sum(p.numel() for n, p in peft_model.named_parameters() if ".lora_" in n)
    assert count == projector_lora_parameter_count(1152, 4096, 32) == 430_080  # ≈ 0.43M, not ~65M
    assert projector_lora_parameter_count(1152, 3584, 32) == 380_928  # LLaVA-OneVision-7B's widths


def test_budget_sampling_is_seeded_and_covers_every_budget():
    draws = [sample_budget(BUDGETS, seed=0, step=step) for step in range(60)]
    counts = Counter(draws)
    assert set(counts) == set(BUDGETS) and min(counts.values()) >= 10  # uniform: 20 expected each
    assert draws == [sample_budget(BUDGETS, seed=0, step=step) for step in range(60)]  # a pure function
    assert draws != [sample_budget(BUDGETS, seed=1, step=step) for step in range(60)]


def test_budget_target_is_the_smallest_budget_within_the_margin():
    losses = torch.tensor([
        [1.00, 0.52, 0.50],  # 768 is within 0.05 of 1024's loss
        [0.90, 0.80, 0.50],  # only the largest qualifies
        [0.50, 0.60, 0.70],  # the smallest is already best
        [0.54, 0.56, 0.50],  # 512 within, although 768 is worse than it
    ])
    assert budget_targets(losses, margin=0.05).tolist() == [1, 2, 0, 0]
    assert budget_targets(losses, margin=0.0).tolist() == [2, 2, 0, 2]
    assert budget_targets(losses, margin=1.0).tolist() == [0, 0, 0, 0]


def test_forward_computes_every_budget_loss_and_the_head_loss(files, tmp_path):
    run = _prepare(files, tmp_path)
    model = run.trainer.model.eval()
    batch = run.trainer.data_collator([run.trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        out = model(**batch, budget=48, compute_budget_target=True)
        # Independent reference: each sample alone at each budget, the loss of the model's own logits.
        reference = torch.zeros(2, len(BUDGETS))
        for row in range(2):
            single = {key: value[row : row + 1] for key, value in batch.items()}
            for column, budget in enumerate(BUDGETS):
                single_out = model(**single, budget=budget)
                assert single_out.logits.shape[1] == batch["input_ids"].shape[1] + budget + SCAFFOLD - 1
                reference[row, column] = single_out.answer_loss
    torch.testing.assert_close(out.budget_answer_losses, reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.budget_targets, budget_targets(reference, 0.05))
    torch.testing.assert_close(out.budget_loss, F.cross_entropy(out.budget_logits, out.budget_targets))
    torch.testing.assert_close(out.loss, out.answer_loss + 0.1 * out.budget_loss)
    no_target = model(**batch, budget=48)
    assert no_target.budget_targets is None and float(no_target.budget_loss) == 0.0
    torch.testing.assert_close(no_target.loss, out.answer_loss)


def test_parameter_groups_get_their_learning_rates(files, tmp_path):
    run = _prepare(files, tmp_path, budget_head_lr="5e-4", weight_decay="0.01")
    optimizer = run.trainer.create_optimizer()
    rate_of = {id(p): (group["lr"], group["weight_decay"]) for group in optimizer.param_groups for p in group["params"]}
    trainable = {n: p for n, p in run.trainer.model.named_parameters() if p.requires_grad}
    assert len(rate_of) == len(trainable) == sum(len(g["params"]) for g in optimizer.param_groups)
    for name, parameter in trainable.items():
        lr, decay = rate_of[id(parameter)]
        expected = 2e-4 if "multi_modal_projector" in name and ".lora_" in name else (
            1e-3 if ".coord_embed." in name else 5e-4 if ".budget_head." in name else None)
        assert lr == expected, name
        assert decay == (0.0 if name.endswith("bias") else 0.01), name


def test_mixed_budget_training_lowers_the_loss_and_uses_the_sampled_budgets(files, tmp_path):
    # Default recipe (projector LoRA, coordinate embedding, budget head; language model frozen), at
    # learning rates scaled for the tiny model, measured at a fixed budget before and after.
    run = _prepare(files, tmp_path, max_steps="10", projector_lr="2e-2", coord_lr="2e-2", budget_target_every="2")
    trainer, model = run.trainer, run.trainer.model
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])

    def answer_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(model(**batch, budget=48).answer_loss)

    used = []
    model.get_base_model().selector.register_forward_hook(lambda module, args, out: used.append(out.budget))
    before = answer_loss()
    used.clear()
    trainer.train()
    used_in_training = list(used)
    after = answer_loss()
    assert after < before - 0.2, (before, after)
    # The step's budget first (with gradients), then the others for the target on even steps.
    expected = []
    for step in range(10):
        budget = sample_budget(BUDGETS, seed=0, step=step)
        expected += [budget] + ([k for k in BUDGETS if k != budget] if step % 2 == 0 else [])
    assert used_in_training == expected
    logged = [entry for entry in trainer.state.log_history if "answer_loss" in entry]
    assert [entry["budget"] for entry in logged] == [sample_budget(BUDGETS, 0, step) for step in range(10)]
    assert all(entry["budget_loss"] > 0 for entry in logged[::2]) and all(e["budget_loss"] == 0 for e in logged[1::2])


def test_overfits_a_tiny_set_by_reading_the_image(files, tmp_path):
    # With the language model tunable too, the 4 images' different answers are learnt: the mean
    # answer loss drops below ln(4)/3, the floor of a model that ignores the image (the digit is
    # 1 of the 3 answer tokens and would be a 1-in-4 guess).
    run = _prepare(
        files, tmp_path, max_steps="36", per_device_train_batch_size="4", lr_scheduler_type="constant",
        learning_rate="3e-3", projector_lr="3e-3", coord_lr="3e-3", projector_lora_r="8", projector_lora_alpha="16",
        budget_target_every="0",
        mm_tunable_parts="mm_mlp_adapter,coord_embed,mm_language_model",
    )
    run.trainer.train()
    losses = [entry["answer_loss"] for entry in run.trainer.state.log_history if "answer_loss" in entry]
    assert losses[0] > 3.0 and losses[-1] < 0.7 * math.log(4) / 3, f"{losses[::5]} … {losses[-1]}"


def test_checkpoint_round_trip_gives_identical_outputs(files, tmp_path, capsys):
    base, data, root = files
    run = _prepare(files, tmp_path, max_steps="3", projector_lr="1e-2", coord_lr="1e-2")
    trainer = run.trainer
    trainer.train()
    trainer.save_model()
    out_dir = tmp_path / "out"
    trained = trainer.model.eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    loaded = load_trained_model(out_dir)
    with torch.no_grad():
        reference = trained(**batch, budget=32)
        again = loaded(**batch, budget=32)
        merged = load_trained_model(out_dir, merge_lora=True)(**batch, budget=32)
    torch.testing.assert_close(again.logits, reference.logits, rtol=0, atol=0)
    torch.testing.assert_close(again.budget_logits, reference.budget_logits, rtol=0, atol=0)
    torch.testing.assert_close(merged.logits, reference.logits, rtol=1e-5, atol=1e-5)
    # Training moved what the checkpoint must carry back (adapters and selector).
    selector = trained.get_base_model().selector
    assert float(selector.coord_embed.out_proj.weight.abs().sum()) > 0
    lora_b = [p for n, p in trained.named_parameters() if "lora_B" in n]
    assert lora_b and all(float(p.abs().sum()) > 0 for p in lora_b)
    # The selector alone, in the layout `spatialvlm ask --image` reads.
    alone = load_selector(out_dir, vision_dim=32)
    assert alone.config == selector.config
    assert all(torch.equal(alone.state_dict()[k], v) for k, v in selector.state_dict().items())

    image = root / "images" / "img0.png"
    capsys.readouterr()
    code = main(["ask", "--image", str(image), "--model", str(out_dir), "--budget", "48", "--max-new-tokens", "3",
                 "--stats", "How many chairs are in the image?"])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    assert f"image tokens: {48 + SCAFFOLD}" in printed.err
    from PIL import Image
    from transformers import AutoTokenizer

    path = load_trained_model(out_dir, merge_lora=True).image_path()
    expected = path.answer(Image.open(image), "How many chairs are in the image?", AutoTokenizer.from_pretrained(out_dir),
                           budget=48, max_new_tokens=3)
    assert printed.out.strip() == expected.text


def test_reads_the_synthetic_image_suite_and_llava_records(tmp_path):
    from spatialvlm.data.synthetic_images.dataset import ImageSuiteConfig, generate_image_suite

    suite = generate_image_suite(tmp_path / "suite", ImageSuiteConfig(num_images=2, split="train"), show_progress=False)
    suite_file = tmp_path / "suite" / "train.jsonl" if Path(suite).is_dir() else Path(suite)
    rows = [json.loads(line) for line in suite_file.read_text().splitlines()]
    records = load_image_qa_records(suite_file, post_prompt=" Short answer.")
    assert [r["image"] for r in records] == [row["image"] for row in rows]
    assert records[0]["conversations"] == [
        {"from": "human", "value": rows[0]["question"] + " Short answer."},
        {"from": "gpt", "value": rows[0]["answers"][0]},
    ]
    # Relevance reads the bare question, tokenised as ShirgXImagePath.answer tokenises it.
    from spatialvlm.models.shirgx_vlm import question_token_ids
    from spatialvlm.models.tiny import IMAGE_TOKEN_ID, build_tiny_tokenizer
    from spatialvlm.selection import ShirgXConfig
    from spatialvlm.train.arguments import DataArguments
    from spatialvlm.train.tasks.shirgx import ImageQADataset, ShirgXTrainingConfig

    assert records[0]["question"] == rows[0]["question"]
    tokenizer = build_tiny_tokenizer()
    training_config = ShirgXTrainingConfig(
        selector=ShirgXConfig(vision_dim=32, grid=(16, 16), budgets=(32, 48), default_budget=32), image_size=224)
    dataset = ImageQADataset(records, tokenizer, IMAGE_TOKEN_ID, training_config, DataArguments(model_max_length=4096),
                             suite_file.parent)
    assert dataset[0]["question_ids"].tolist() == question_token_ids(tokenizer, rows[0]["question"])
    llava = tmp_path / "llava.json"
    turns = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}]
    llava.write_text(json.dumps([{"id": "a", "image": "x.png", "conversations": turns}]))
    assert load_image_qa_records(llava)[0]["conversations"] == turns
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "q", "question": "?", "answers": ["1"]}) + "\n")
    with pytest.raises(ValueError, match="record 0 \\(q\\).*no 'image'"):
        load_image_qa_records(bad)


def test_ask_reads_a_selector_saved_beside_a_plain_model(files, tmp_path, capsys):
    import shutil

    from spatialvlm.selection import ShirgXConfig, ShirgXSelector, save_selector

    base, _, root = files
    model_dir = Path(shutil.copytree(base, tmp_path / "model"))
    save_selector(ShirgXSelector(ShirgXConfig(vision_dim=32, grid=(16, 16), budgets=BUDGETS, default_budget=48)), model_dir)
    capsys.readouterr()
    code = main(["ask", "--image", str(root / "images" / "img1.png"), "--model", str(model_dir), "--budget", "32",
                 "--max-new-tokens", "2", "--stats", "How many?"])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    assert f"image tokens: {32 + SCAFFOLD}" in printed.err  # 224 px view from the saved 16×16 grid
