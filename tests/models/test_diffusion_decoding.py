"""Masked-diffusion decoding: prefix-cache equivalence, the attention pattern, the unmasking schedule."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from spatialvlm.models.diffusion import (
    DiffusionConfig,
    MaskedDiffusionGenerator,
    additive_mask,
    attention_allowed,
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
                               temperature=temperature, use_prefix_cache=use_cache)
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


def _naive_generate(model, prompt, length, steps, block_length):
    """LLaDA's reference loop, per row, recomputing everything, with an explicit prefix-DLM pattern."""
    result = []
    for row in prompt:
        x = torch.cat([row, torch.full((length,), MASK)])
        p = len(row)
        allowed = torch.ones(p + length, p + length, dtype=torch.bool)
        allowed[:p, p:] = False
        blocks = length // block_length
        per_block = steps // blocks
        for b in range(blocks):
            for s in range(per_block):
                k = block_length // per_block + (s < block_length % per_block)
                with torch.no_grad():
                    logits = model(input_ids=x[None], attention_mask=additive_mask(allowed[None], torch.float32),
                                   position_ids=torch.arange(p + length)[None]).logits[0, p:]
                logits[:, MASK] = float("-inf")
                probs = logits.softmax(-1)
                best = probs.argmax(-1)
                conf = probs.max(-1).values
                for i in range(length):
                    if x[p + i] != MASK or not (b * block_length <= i < (b + 1) * block_length):
                        conf[i] = float("-inf")
                for i in conf.topk(k).indices.tolist():
                    x[p + i] = best[i]
        result.append(x[p:])
    return torch.stack(result)


def test_generate_matches_naive_llada_loop():
    model = _model()
    prompt = torch.randint(0, MASK, (2, 7))
    out = _generator(model, answer_length=8, steps=6, block_length=4).generate(prompt)
    assert torch.equal(out.sequences, _naive_generate(model, prompt, 8, 6, 4))


def test_attention_pattern_is_prefix_dlm_and_bidirectional():
    model = _model()
    generator = _generator(model, answer_length=5, use_prefix_cache=False)
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


def test_schedule_commits_the_planned_tokens_block_by_block():
    model = _model()
    config = DiffusionConfig(mask_token_id=MASK, answer_length=12, steps=7, block_length=4)
    schedule = transfer_schedule(config)
    # 3 blocks, 7 // 3 = 2 steps each, 4 tokens -> 2 + 2.
    assert schedule == [(0, 2), (0, 2), (1, 2), (1, 2), (2, 2), (2, 2)]
    out = MaskedDiffusionGenerator.from_model(model, config).generate(torch.randint(0, MASK, (2, 5)))
    assert (out.sequences != MASK).all()
    for step, (_, count) in enumerate(schedule):
        assert ((out.unmask_step == step).sum(1) == count).all()
    # Every position of block b is committed before any position of block b + 1.
    block_steps = out.unmask_step.view(2, 3, 4)
    assert (block_steps[:, :-1].amax(-1) < block_steps[:, 1:].amin(-1)).all()
    # Remainders go to the first steps; a block never takes more steps than it has tokens.
    assert transfer_schedule(DiffusionConfig(mask_token_id=0, answer_length=7, steps=3)) == [(0, 3), (0, 2), (0, 2)]
    assert len(transfer_schedule(DiffusionConfig(mask_token_id=0, answer_length=4, steps=30))) == 4


def test_config_errors():
    with pytest.raises(ValueError, match="divide"):
        DiffusionConfig(mask_token_id=0, answer_length=10, block_length=4)
    with pytest.raises(ValueError, match="prefix_dlm"):
        DiffusionConfig(mask_token_id=0, attention="bidirectional")
    with pytest.raises(ValueError, match="exactly one"):
        _generator(_model(), answer_length=4).generate()
