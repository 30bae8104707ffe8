"""Issue 14 options: output="paper"|"residual", read_order, against the naive reference and by hand."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from naive_memory import NaiveDualMemory  # noqa: E402

from spatialvlm.memory import DualMemory  # noqa: E402

DIM, HEADS, TOKENS = 32, 4, 9
MODES = [(o, r) for o in ("paper", "residual") for r in ("read_then_write", "write_then_read")]


def make_memory(output="paper", read_order="read_then_write", randomise_out=True, **kwargs) -> DualMemory:
    torch.manual_seed(0)
    memory = DualMemory(DIM, num_heads=HEADS, working_size=3, episodic_size=5, dropout=0.0,
                        output=output, read_order=read_order, **kwargs).eval()
    if memory.output_proj is not None and randomise_out:
        # A trained residual memory: a zero projection would hide a wrong M_t from the comparison.
        with torch.no_grad():
            memory.output_proj.weight.normal_(0, 0.2)
            memory.output_proj.bias.normal_(0, 0.2)
    return memory


def run_naive(memory, frames, frame_mask=None):
    naive = NaiveDualMemory(memory)
    videos = naive.init_state(frames.shape[0])
    out = torch.zeros_like(frames)
    for b, video in enumerate(videos):
        for t in range(frames.shape[1]):
            if frame_mask is None or frame_mask[b, t]:
                out[b, t] = naive.step_video(frames[b, t], video)[0]
    return out, videos


@pytest.mark.parametrize("output,read_order", MODES)
@pytest.mark.parametrize("lengths", [[1, 1], [4, 2], [9, 13]], ids=["single", "short", "replacing"])
def test_every_mode_matches_naive_reference(output, read_order, lengths):
    memory = make_memory(output, read_order)
    steps = max(lengths)
    frames = torch.randn(len(lengths), steps, TOKENS, DIM)
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        fused, state = memory.process(frames, mask)
        expected, videos = run_naive(memory, frames, mask)
    torch.testing.assert_close(fused, expected, atol=2e-5, rtol=1e-4)
    for b, video in enumerate(videos):
        torch.testing.assert_close(state.working_entries(b), torch.stack(video.working))
        torch.testing.assert_close(state.episodic_entries(b), torch.stack(video.episodic), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("read_order", ["read_then_write", "write_then_read"])
def test_residual_starts_as_identity_and_stores_algorithm_1_output(read_order):
    paper = make_memory("paper", read_order)
    residual = make_memory("residual", read_order, randomise_out=False)
    residual.load_state_dict({**paper.state_dict(), **{k: v for k, v in residual.state_dict().items() if "output_proj" in k}})
    frames = torch.randn(2, 8, TOKENS, DIM)
    with torch.no_grad():
        out_paper, state_paper = paper.process(frames)
        out_residual, state_residual = residual.process(frames)
    assert torch.equal(out_residual, frames)  # zero-initialised out: exactly the input
    assert not torch.allclose(out_paper, frames)
    for b in range(2):  # the episodic memory holds M_t in both modes
        assert torch.equal(state_residual.episodic_entries(b), state_paper.episodic_entries(b))


def test_paper_mode_hides_the_current_frame_the_options_show_it():
    # A uniform first frame makes every key of W_1 and E_1 one vector: Algorithm 1's M_1 is then
    # the same whatever the second frame is (the example); both options change that.
    first = torch.randn(1, 1, 1, DIM).expand(1, 1, TOKENS, DIM)
    seconds = torch.randn(2, 1, 1, TOKENS, DIM)

    def last_output(memory):
        with torch.no_grad():
            return [memory.process(torch.cat([first, second], dim=1))[0][:, 1] for second in seconds]

    a, b = last_output(make_memory("paper", "read_then_write"))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for output, read_order in [("residual", "read_then_write"), ("paper", "write_then_read")]:
        a, b = last_output(make_memory(output, read_order))
        assert (a - b).abs().max() > 1e-2, (output, read_order)


def test_write_then_read_working_memory_holds_the_current_frame_when_read():
    # Hand check at t = 0: with H_0 stored first, M^w_0 is attention over H_0's own tokens, the
    # same as the empty-memory rule gives; at t = 1 the working keys are [H_0; H_1].
    memory = make_memory("paper", "write_then_read")
    frames = torch.randn(1, 2, TOKENS, DIM)
    with torch.no_grad():
        out, state = memory.process(frames)
        attn = memory.working.attention
        keys, values = attn.project_entry(frames[:, :2].reshape(1, 2 * TOKENS, DIM))
        m_w, _ = attn(frames[:, 1], keys, values)
        # Recompute M^e_1 over E = [M_0] and the gate by hand.
        e_keys, e_values = memory.episodic.attention.project_entry(state.episodic_entries(0)[:1])
        m_e, _ = memory.episodic.attention(frames[:, 1], e_keys, e_values)
        gate = torch.sigmoid(memory.gate(torch.cat([m_w, m_e], -1)))
    torch.testing.assert_close(out[:, 1], gate * m_w + (1 - gate) * m_e, atol=1e-5, rtol=1e-4)


def test_residual_gradients_reach_the_memory_after_out_learns():
    # At zero init only `out` gets gradient (standard for a zero-initialised branch); one SGD step
    # on it opens the path and every memory parameter then learns.
    torch.manual_seed(0)
    memory = DualMemory(DIM, num_heads=HEADS, working_size=2, episodic_size=3, dropout=0.0, output="residual")
    frames = torch.randn(1, 4, TOKENS, DIM)
    target = torch.randn_like(frames)
    (memory.process(frames)[0] - target).square().mean().backward()
    assert memory.output_proj.weight.grad.abs().sum() > 0
    assert memory.gate[0].weight.grad.abs().sum() == 0
    with torch.no_grad():
        memory.output_proj.weight -= 10.0 * memory.output_proj.weight.grad
    memory.zero_grad()
    (memory.process(frames)[0] - target).square().mean().backward()
    for name, parameter in memory.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bad_option_values_are_refused_in_one_line():
    with pytest.raises(ValueError, match="output must be one of"):
        DualMemory(DIM, output="residul")
    with pytest.raises(ValueError, match="read_order must be one of"):
        DualMemory(DIM, read_order="write_first")
