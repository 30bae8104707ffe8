"""Gradients reach both attentions and the gate, from the first frame on and through the memory."""

import pytest
import torch

from spatialvlm.memory import DualMemory

DIM, TOKENS = 32, 9


def grads_of(memory):
    return {name: p.grad for name, p in memory.named_parameters()}


@pytest.mark.parametrize("length", [1, 5])
def test_every_parameter_gets_gradient(length):
    # length 1: only the empty-memory rule is at work, and still every part must learn.
    torch.manual_seed(0)
    memory = DualMemory(DIM, num_heads=4, working_size=2, episodic_size=3, dropout=0.1).train()
    frames = torch.randn(2, length, TOKENS, DIM, requires_grad=True)
    fused, _ = memory.process(frames)
    fused.square().mean().backward()
    for name, grad in grads_of(memory).items():
        assert grad is not None and grad.abs().sum() > 0, name
    for prefix in ("working.attention.kv_proj", "episodic.attention.kv_proj", "gate.0", "gate.2"):
        assert any(name.startswith(prefix) for name in grads_of(memory))


def test_gradient_flows_back_through_stored_entries():
    # The output at t = 2 depends on frame 0 only through the memories: its gradient must reach it.
    torch.manual_seed(0)
    memory = DualMemory(DIM, num_heads=4, working_size=4, episodic_size=4, dropout=0.0)
    frames = torch.randn(1, 3, TOKENS, DIM, requires_grad=True)
    fused, _ = memory.process(frames)
    fused[:, 2].sum().backward()
    assert frames.grad[:, 0].abs().sum() > 0 and frames.grad[:, 2].abs().sum() > 0


def test_gradients_match_naive_reference():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from naive_memory import NaiveDualMemory

    torch.manual_seed(0)
    memory = DualMemory(DIM, num_heads=4, working_size=2, episodic_size=3, dropout=0.0)
    frames = torch.randn(1, 6, TOKENS, DIM)
    fused, _ = memory.process(frames)
    fused.square().sum().backward()
    fast = {k: v.clone() for k, v in grads_of(memory).items()}
    memory.zero_grad()
    naive = NaiveDualMemory(memory)
    video = naive.init_state(1)[0]
    # The naive list keeps graph-carrying entries, so its gradient is full backpropagation too.
    out = torch.stack([naive.step_video(frames[0, t], video)[0] for t in range(6)])
    out.square().sum().backward()
    for name, grad in grads_of(memory).items():
        torch.testing.assert_close(fast[name], grad, atol=1e-4, rtol=1e-3, msg=name)
