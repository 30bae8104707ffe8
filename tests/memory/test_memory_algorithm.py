"""Algorithm 1 against independent references: the naive list implementation, hand-built cases."""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from naive_memory import NaiveDualMemory  # noqa: E402

from spatialvlm.memory import DualMemory, most_similar_slot, oldest_or_free_slot  # noqa: E402

DIM, HEADS, TOKENS = 32, 4, 9


def make_memory(working_size=3, episodic_size=5, **kwargs) -> DualMemory:
    torch.manual_seed(0)
    return DualMemory(DIM, num_heads=HEADS, working_size=working_size, episodic_size=episodic_size,
                      dropout=0.0, **kwargs).eval()


def run_naive(memory, frames, frame_mask=None):
    naive = NaiveDualMemory(memory)
    videos = naive.init_state(frames.shape[0])
    out = torch.zeros_like(frames)
    for b, video in enumerate(videos):
        for t in range(frames.shape[1]):
            if frame_mask is None or frame_mask[b, t]:
                out[b, t] = naive.step_video(frames[b, t], video)[0]
    return out, videos


@pytest.mark.parametrize("length", [1, 2, 4, 7, 13], ids=["single", "short", "medium", "eq-cap", "long"])
def test_matches_naive_reference_for_all_lengths(length):
    # working_size 3, episodic_size 5: lengths cover < L_w, L_w..L_e, > L_e (replacement active).
    memory = make_memory()
    frames = torch.randn(2, length, TOKENS, DIM)
    with torch.no_grad():
        fused, state = memory.process(frames)
        expected, videos = run_naive(memory, frames)
    torch.testing.assert_close(fused, expected, atol=2e-5, rtol=1e-4)
    for b, video in enumerate(videos):
        torch.testing.assert_close(state.working_entries(b), torch.stack(video.working))
        torch.testing.assert_close(state.episodic_entries(b), torch.stack(video.episodic), atol=2e-5, rtol=1e-4)
        assert state.working_fill[b] == min(length, 3) and state.episodic_fill[b] == min(length, 5)


def test_working_memory_is_fifo_of_the_inputs():
    memory = make_memory(working_size=4)
    frames = torch.randn(1, 11, TOKENS, DIM)
    with torch.no_grad():
        _, state = memory.process(frames[:, :3])
        assert torch.equal(state.working_entries(0), frames[0, :3])  # filling: appended in order
        _, state = memory.process(frames[:, 3:], state=state)
    assert torch.equal(state.working_entries(0), frames[0, 7:11])  # full: the last 4, oldest first


def test_episodic_replacement_follows_list_simulation_driven_by_module_outputs():
    # Simulate Algorithm 1's list on the module's own M_t: delete argmax cos of token means, append.
    memory = make_memory(episodic_size=4)
    frames = torch.randn(3, 15, TOKENS, DIM)
    with torch.no_grad():
        fused, state = memory.process(frames)
    for b in range(3):
        entries: list[torch.Tensor] = []
        for t in range(15):
            m = fused[b, t]
            if len(entries) == 4:
                sims = torch.tensor([F.cosine_similarity(m.mean(0), e.mean(0), dim=0) for e in entries])
                del entries[int(sims.argmax())]
            entries.append(m)
        torch.testing.assert_close(state.episodic_entries(b), torch.stack(entries))


def test_replacement_ties_go_to_lowest_list_index_not_lowest_slot():
    # Slots hold stamps (list order) 5, 2, 9; slots 0 and 1 are tied best: the list's first is slot 1.
    means = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    stamps = torch.tensor([[5, 2, 9]])
    assert most_similar_slot(torch.tensor([[2.0, 0.0]]), means, stamps).item() == 1
    # Free slots (-1) are never chosen even if their stored mean matches.
    stamps = torch.tensor([[-1, 2, 9]])
    assert most_similar_slot(torch.tensor([[0.0, 1.0]]), means, stamps).item() == 2


def test_module_breaks_exact_ties_by_list_order():
    # Fill the episodic memory, learn the next M_t on a clone, then make two slots exact ties with
    # it: the one inserted earlier (lower list index) must be replaced, whatever its slot number.
    memory = make_memory(episodic_size=4)
    frames = torch.randn(1, 7, TOKENS, DIM)
    with torch.no_grad():
        _, state = memory.process(frames[:, :6])
        next_fused, _ = memory(frames[:, 6], state.clone())
        bank = state.episodic
        # Reorder the list so slot 1 precedes slot 0, then tie those two slots exactly.
        bank.stamps[0] = torch.tensor([5, 2, 3, 4])
        bank.means[0, 0] = bank.means[0, 1] = next_fused[0].mean(0)
        _, state = memory(frames[:, 6], state)
    assert state.counters.last_replaced.item() == 1
    assert state.counters.replacements[0, 1] == 1 and state.counters.replacements[0, 0] == 0
    torch.testing.assert_close(state.episodic_entries(0)[-1], next_fused[0])


def test_fifo_slot_choice():
    assert oldest_or_free_slot(torch.tensor([[-1, -1, -1], [0, -1, -1], [3, 1, 2]])).tolist() == [0, 1, 1]


def test_empty_memory_attends_to_the_current_frame():
    # At t = 0 each attention reads the frame's own tokens: a hand-written single-video formula.
    memory = make_memory()
    h = torch.randn(1, TOKENS, DIM)

    def self_attention(attn, x):
        q, kv = attn.q_proj(x), attn.kv_proj(x)
        k, v = kv.split(DIM, dim=-1)
        split = lambda t: t.view(TOKENS, HEADS, DIM // HEADS).transpose(0, 1)  # noqa: E731
        weights = (split(q) @ split(k).transpose(-1, -2) / math.sqrt(DIM // HEADS)).softmax(-1)
        return attn.out_proj((weights @ split(v)).transpose(0, 1).reshape(TOKENS, DIM))

    with torch.no_grad():
        fused, state = memory(h)
        m_w = self_attention(memory.working.attention, h[0])
        m_e = self_attention(memory.episodic.attention, h[0])
        gate = torch.sigmoid(memory.gate(torch.cat([m_w, m_e], -1)))
    torch.testing.assert_close(fused[0], gate * m_w + (1 - gate) * m_e, atol=1e-5, rtol=1e-4)
    assert not state.may_have_empty and state.working_fill.item() == 1


def test_memory_changes_output_after_first_frame():
    # From t = 1 the stored entries, not the current frame, are the keys: a different frame
    # history must change the output for the same current frame.
    memory = make_memory()
    a, b, current = torch.randn(3, 1, 1, TOKENS, DIM)
    with torch.no_grad():
        out_a, _ = memory.process(torch.cat([a, current], 1))
        out_b, _ = memory.process(torch.cat([b, current], 1))
    assert not torch.allclose(out_a[:, 1], out_b[:, 1], atol=1e-4)


@settings(max_examples=8, deadline=None)
@given(
    working_size=st.integers(1, 4), episodic_size=st.integers(1, 5),
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=3),
)
def test_property_padded_batch_matches_naive(working_size, episodic_size, lengths):
    memory = make_memory(working_size, episodic_size)
    steps = max(lengths)
    frames = torch.randn(len(lengths), steps, TOKENS, DIM)
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        fused, state = memory.process(frames, mask)
        expected, videos = run_naive(memory, frames, mask)
    torch.testing.assert_close(fused, expected, atol=2e-5, rtol=1e-4)
    for b, video in enumerate(videos):
        assert state.working_entries(b).shape[0] == len(video.working)
        assert state.episodic_entries(b).shape[0] == len(video.episodic)
        if video.episodic:
            torch.testing.assert_close(state.episodic_entries(b), torch.stack(video.episodic), atol=2e-5, rtol=1e-4)
