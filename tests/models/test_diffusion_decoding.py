"""Masked-diffusion decoding: prefix-cache equivalence, the attention pattern, the unmasking schedule,
and token-for-token agreement with re-derivations of LLaDA's and LaViDa's ``generate()``."""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from spatialvlm.models.diffusion import (
    DiffusionConfig,
    MaskedDiffusionGenerator,
    additive_mask,
    attention_allowed,
    block_transfer_counts,
    transfer_schedule,
)

VOCAB, MASK = 48, 47


def _model(kind="qwen2", attn="sdpa", seed=0):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = Qwen2ForCausalLM(Qwen2Config(**common)) if kind == "qwen2" else LlamaForCausalLM(LlamaConfig(**common))
    model.config._attn_implementation = attn
    return model.eval()


def _generator(model, **kwargs):
    return MaskedDiffusionGenerator.from_model(model, DiffusionConfig(mask_token_id=MASK, **kwargs))


@pytest.mark.parametrize(
    "kind,attn,block_length,temperature",
    [("qwen2", "sdpa", None, 0.0), ("qwen2", "eager", 4, 0.0), ("llama", "sdpa", 4, 0.7)],
)
def test_prefix_cache_equals_full_recompute(kind, attn, block_length, temperature):
    model = _model(kind, attn)
    prompt = torch.randint(0, MASK, (3, 9))
    attention_mask = torch.ones(3, 9, dtype=torch.long)
    attention_mask[1, :4] = 0  # left padding
    attention_mask[2, :1] = 0
    outputs = []
    for use_cache in (True, False):
        generator = _generator(model, answer_length=12, steps=12, block_length=block_length,
                               temperature=temperature, attention="prefix_dlm", use_prefix_cache=use_cache)
        rng = torch.Generator().manual_seed(3)
        outputs.append(generator.generate(prompt, prompt_attention_mask=attention_mask, generator=rng,
                                          output_logits=True))
    cached, full = outputs
    assert torch.equal(cached.sequences, full.sequences)
    assert torch.equal(cached.unmask_step, full.unmask_step)
    assert len(cached.step_logits) == len(full.step_logits) == 12
    for a, b in zip(cached.step_logits, full.step_logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert cached.num_model_calls == 13 and full.num_model_calls == 12


def _bidirectional_logits(model, ids, key_valid, prefix_length=None):
    """Logits of the whole sequence with absolute positions (as LLaDA's model runs), padding keys
    hidden; with ``prefix_length`` the prefix rows see only the prefix (LaViDa's prefix_lm)."""
    batch, total = ids.shape
    allowed = key_valid[:, None, :].expand(batch, total, total).clone()
    if prefix_length is not None:
        allowed[:, :prefix_length, prefix_length:] = False
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=additive_mask(allowed, torch.float32),
                     position_ids=torch.arange(total)[None].expand(batch, total)).logits


def _confidence(logits, x0, remasking):
    p = torch.softmax(logits.double(), -1)
    if remasking == "low_confidence":
        return p.gather(-1, x0[..., None])[..., 0]
    if remasking == "margin":
        ordered = p.sort(-1, descending=True).values
        return ordered[..., 0] - ordered[..., 1]
    return (p * (p + 1e-10).log()).sum(-1)  # entropy


def _llada_generate(model, prompt, attention_mask, steps, gen_length, block_length, cfg_scale=0.0,
                    remasking="low_confidence", temperature=0.0, rng=None):
    """ML-GSAI/LLaDA generate.py, re-derived: the whole prompt + answer every step, per-row top-k."""
    batch, p = prompt.shape
    x = torch.cat([prompt, torch.full((batch, gen_length), MASK)], 1)
    key_valid = torch.cat([attention_mask.bool(), torch.ones(batch, gen_length, dtype=torch.bool)], 1)
    prompt_index = x != MASK
    blocks = gen_length // block_length
    per_block = steps // blocks
    for b in range(blocks):
        base, rem = divmod(block_length, per_block)
        counts = [base + (i < rem) for i in range(per_block)]
        for i in range(per_block):
            mask_index = x == MASK
            logits = _bidirectional_logits(model, x, key_valid)
            if cfg_scale > 0:
                un_x = x.clone()
                un_x[prompt_index] = MASK
                un_logits = _bidirectional_logits(model, un_x, key_valid)
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            if temperature > 0:
                # Only the answer's noise is drawn here; the generator draws the same (B, L, V) block.
                noise = torch.rand((batch, gen_length, logits.shape[-1]), generator=rng, dtype=torch.float64)
                noisy = logits.double().clone()
                noisy[:, p:] = noisy[:, p:].exp() / (-noise.log()) ** temperature
                noisy[:, :p] = 0
                x0 = noisy.argmax(-1)
            else:
                x0 = logits.argmax(-1)
            conf = _confidence(logits, x0, remasking)
            conf[:, p + (b + 1) * block_length:] = -math.inf
            x0 = torch.where(mask_index, x0, x)
            conf = torch.where(mask_index, conf, torch.tensor(-math.inf, dtype=torch.float64))
            for j in range(batch):
                chosen = conf[j].topk(counts[i]).indices
                x[j, chosen] = x0[j, chosen]
    return x[:, p:]


@pytest.mark.parametrize(
    "steps,gen_length,block_length,cfg_scale,remasking,padded",
    [(8, 8, 4, 0.0, "low_confidence", False), (8, 8, 8, 0.0, "margin", True),
     (4, 8, 4, 1.5, "entropy", False), (16, 16, 4, 0.0, "low_confidence", True)],
)
def test_generate_matches_llada_generate(steps, gen_length, block_length, cfg_scale, remasking, padded):
    model = _model("llama", seed=2)
    prompt = torch.randint(0, MASK, (2, 7))
    attention_mask = torch.ones(2, 7, dtype=torch.long)
    if padded:
        attention_mask[1, :3] = 0  # LLaDA's batched example pads on the left
    expected = _llada_generate(model, prompt, attention_mask, steps, gen_length, block_length, cfg_scale, remasking)
    generator = _generator(model, answer_length=gen_length, steps=steps, block_length=block_length,
                           cfg_scale=cfg_scale, remasking=remasking)
    assert generator.config.attention == "bidirectional" and not generator.config.use_prefix_cache
    out = generator.generate(prompt, prompt_attention_mask=attention_mask)
    assert torch.equal(out.sequences, expected)
    assert out.num_model_calls == steps * (2 if cfg_scale else 1)


def test_temperature_sampling_is_float64_gumbel_like_llada():
    model = _model("llama", seed=4)
    prompt = torch.randint(0, MASK, (2, 5))
    ones = torch.ones(2, 5, dtype=torch.long)
    expected = _llada_generate(model, prompt, ones, 8, 8, 4, temperature=0.8, rng=torch.Generator().manual_seed(7))
    out = _generator(model, answer_length=8, steps=8, block_length=4, temperature=0.8).generate(
        prompt, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out.sequences, expected)
    greedy = _generator(model, answer_length=8, steps=8, block_length=4).generate(prompt)
    assert not torch.equal(out.sequences, greedy.sequences)  # the noise is really in effect


def _lavida_counts(block_length, steps, shift):
    """LaViDa's get_num_transfer_tokens_sch for schedule='shift', re-derived."""
    steps = min(steps, block_length)
    t = torch.linspace(0, 1, steps + 1)
    marks = (shift * t / (1 + (shift - 1) * t) * block_length).long()
    counts = torch.clamp(marks[1:] - marks[:-1], 1, None)
    delta, j = int(counts.sum()) - block_length, 0
    while delta > 0:
        j = j % len(counts)
        if counts[j] == 1:
            j += 1
            continue
        counts[j] -= 1
        delta -= 1
        j += 1
    return counts.flip(-1).tolist()


def test_generate_matches_lavida_prefix_lm_step_ratio_shift():
    """LaViDa's COCO setting: prefix_lm=True, step_ratio=0.5, schedule='shift' (shift 0.33)."""
    model = _model("qwen2", seed=5)
    prompt = torch.randint(0, MASK, (1, 9))
    length, block = 16, 8
    per_block = int(length // (length // block) * 0.5)
    counts = _lavida_counts(block, per_block, 0.33)
    x = torch.cat([prompt, torch.full((1, length), MASK)], 1)
    valid = torch.ones(1, 9 + length, dtype=torch.bool)
    for b in range(length // block):
        for count in counts:
            mask_index = x == MASK
            logits = _bidirectional_logits(model, x, valid, prefix_length=9)
            x0 = logits.argmax(-1)
            conf = _confidence(logits, x0, "low_confidence")
            conf[:, 9 + (b + 1) * block:] = -math.inf
            conf = torch.where(mask_index, conf, torch.tensor(-math.inf, dtype=torch.float64))
            chosen = conf[0].topk(count).indices
            x[0, chosen] = torch.where(mask_index, x0, x)[0, chosen]
    config = dict(answer_length=length, block_length=block, step_ratio=0.5, schedule="shift", schedule_shift=0.33,
                  attention="prefix_dlm")
    out = _generator(model, **config).generate(prompt)
    assert _generator(model, **config).config.use_prefix_cache
    assert torch.equal(out.sequences, x[:, 9:])
    assert out.num_model_calls == 1 + 2 * len(counts)


def test_attention_pattern_is_prefix_dlm_and_bidirectional():
    model = _model()
    generator = _generator(model, answer_length=5, attention="prefix_dlm", use_prefix_cache=False)
    prompt = torch.randint(0, MASK, (1, 6))
    prefix = generator.encode_prefix(prompt)
    answer = torch.randint(0, MASK, (1, 5))
    changed = answer.clone()
    changed[0, -1] = (answer[0, -1] + 1) % MASK
    before, after = generator.answer_logits(prefix, answer), generator.answer_logits(prefix, changed)
    # The first answer position sees the last one: attention is not causal.
    assert (before[0, 0] - after[0, 0]).abs().max() > 1e-4
    # The prefix never sees the answer: its hidden states are the same whatever the answer is.
    allowed = attention_allowed(prefix.valid, 5)
    positions = torch.arange(11)[None]
    hidden = [model.model(input_ids=torch.cat([prompt, a], 1), attention_mask=additive_mask(allowed, torch.float32),
                          position_ids=positions).last_hidden_state for a in (answer, changed)]
    torch.testing.assert_close(hidden[0][:, :6], hidden[1][:, :6])
    assert not torch.allclose(hidden[0][:, 6:], hidden[1][:, 6:])


def test_padded_row_equals_unpadded_row():
    model = _model(seed=1)
    prompt = torch.randint(0, MASK, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), prompt], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    generator = _generator(model, answer_length=6, steps=6)
    alone = generator.generate(prompt, output_logits=True)
    batched = generator.generate(padded, prompt_attention_mask=mask, output_logits=True)
    assert torch.equal(alone.sequences, batched.sequences)
    torch.testing.assert_close(alone.step_logits[0], batched.step_logits[0], atol=1e-5, rtol=1e-5)


def test_lavida_schedules_by_hand():
    # shift α = 3, 8 tokens, 4 steps: σ = 3t / (1 + 2t) = 0, .5, .75, .9, 1 → ⌊8σ⌋ = 0, 4, 6, 7, 8
    # → 4, 2, 1, 1 → reversed.
    assert block_transfer_counts(8, 4, "shift", 3.0) == [1, 1, 2, 4]
    # cosine: σ = (1 − cos πt) / 2 = 0, .146, .5, .854, 1 → 0, 1, 4, 6, 8 → 1, 3, 2, 2 → reversed.
    assert block_transfer_counts(8, 4, "cosine") == [2, 2, 3, 1]
    # logit-normal: σ = Φ(logit t) = 0, .136, .5, .864, 1 → the same marks as cosine here.
    assert block_transfer_counts(8, 4, "logit_normal") == [2, 2, 3, 1]
    # shift 0.33, 4 tokens, 2 steps: ⌊4σ⌋ = 0, 0, 4 → 0, 4 → at least one: 1, 4 → one too many,
    # taken from the first step above 1 → 1, 3 → reversed.
    assert block_transfer_counts(4, 2, "shift", 0.33) == [3, 1]
    assert block_transfer_counts(8, 4, "linear") == [2, 2, 2, 2]
    assert block_transfer_counts(7, 3, "uniform") == [3, 2, 2]
    assert block_transfer_counts(3, 5, "uniform") == [1, 1, 1, 0, 0]  # LLaDA: extra steps commit nothing
    assert block_transfer_counts(3, 5, "shift") == [1, 1, 1]  # LaViDa: at most one step per token
    for steps in (1, 3, 5, 8):
        assert sum(block_transfer_counts(8, steps, "shift", 0.33)) == 8
        assert _lavida_counts(8, steps, 0.33) == block_transfer_counts(8, steps, "shift", 0.33)


class _MaskFavouringHead(torch.nn.Module):
    """The model's head with the mask token's logit raised above every other."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, hidden):
        logits = self.head(hidden)
        return logits.index_add(-1, torch.tensor([MASK]), torch.full((*logits.shape[:-1], 1), 100.0))


def test_mask_logit_left_alone_unless_suppressed():
    model = _model()
    head = _MaskFavouringHead(model.get_output_embeddings())
    prompt = torch.randint(0, MASK, (1, 5))
    kept = MaskedDiffusionGenerator(model.model, head, DiffusionConfig(mask_token_id=MASK, answer_length=6))
    # LLaDA's loop commits the mask prediction, so the positions stay masked.
    assert (kept.generate(prompt).sequences == MASK).all()
    suppressed = MaskedDiffusionGenerator(
        model.model, head, DiffusionConfig(mask_token_id=MASK, answer_length=6, suppress_mask_token=True))
    assert (suppressed.generate(prompt).sequences != MASK).all()


def test_schedule_commits_the_planned_tokens_block_by_block():
    model = _model()
    config = DiffusionConfig(mask_token_id=MASK, answer_length=12, steps=6, block_length=4)
    schedule = transfer_schedule(config)
    # 3 blocks, 6 / 3 = 2 steps each, 4 tokens -> 2 + 2.
    assert schedule == [(0, 2), (0, 2), (1, 2), (1, 2), (2, 2), (2, 2)]
    out = MaskedDiffusionGenerator.from_model(model, config).generate(torch.randint(0, MASK, (2, 5)))
    for step, (_, count) in enumerate(schedule):
        assert ((out.unmask_step == step).sum(1) == count).all()
    # Every position of block b is committed before any position of block b + 1.
    block_steps = out.unmask_step.view(2, 3, 4)
    assert (block_steps[:, :-1].amax(-1) < block_steps[:, 1:].amin(-1)).all()
    # Default: one token per step (LLaDA's 128 / 128 and LaViDa's evaluation).
    assert transfer_schedule(DiffusionConfig(mask_token_id=0, answer_length=8, block_length=4)) == [(0, 1)] * 4 + [(1, 1)] * 4
    # LaViDa's knobs: steps_per_block (clamped to the block) and step_ratio.
    assert len(transfer_schedule(DiffusionConfig(mask_token_id=0, answer_length=8, block_length=4, steps_per_block=9))) == 8
    assert transfer_schedule(DiffusionConfig(mask_token_id=0, answer_length=8, block_length=4, step_ratio=0.5)) == \
        [(0, 2), (0, 2), (1, 2), (1, 2)]


def test_attention_follows_the_checkpoint():
    model = _model()
    assert _generator(model).config.attention == "bidirectional"  # an unmarked model: LLaDA's own training
    model.config.diffusion_training_attention = "prefix_dlm"
    trained = _generator(model).config
    assert trained.attention == "prefix_dlm" and trained.use_prefix_cache
    model.config.diffusion_training_attention = "bidirectional"
    assert _generator(model, use_prefix_cache=True).config.attention == "prefix_dlm"  # asked for: the cache implies it


def test_config_errors():
    with pytest.raises(ValueError, match="divide"):
        DiffusionConfig(mask_token_id=0, answer_length=10, block_length=4)
    with pytest.raises(ValueError, match="divisible by the number of blocks"):
        DiffusionConfig(mask_token_id=0, answer_length=12, block_length=4, steps=7)
    with pytest.raises(ValueError, match="prefix_dlm"):
        DiffusionConfig(mask_token_id=0, attention="bidirectional", use_prefix_cache=True)
    with pytest.raises(ValueError, match="not both"):
        DiffusionConfig(mask_token_id=0, steps=8, steps_per_block=4)
    with pytest.raises(ValueError, match="no denoising step"):
        DiffusionConfig(mask_token_id=0, answer_length=4, step_ratio=0.1)
    with pytest.raises(ValueError, match="remasking"):
        DiffusionConfig(mask_token_id=0, remasking="lowest")
    with pytest.raises(ValueError, match="exactly one"):
        _generator(_model(), answer_length=4).generate()
