"""Statistics, traces, plots and the demo/viz commands built on them."""

import math

import numpy as np
import pytest
import torch

from spatialvlm.cli import main
from spatialvlm.diagnostics import (
    MemoryTrace,
    memory_statistics,
    plot_memory_trace,
    record_memory_trace,
    replacement_label_agreement,
    synthetic_scene_stream,
)
from spatialvlm.memory import DualMemory

DIM, TOKENS = 16, 4


def make_memory(**kwargs):
    torch.manual_seed(0)
    return DualMemory(DIM, num_heads=2, working_size=2, episodic_size=3, dropout=0.0, **kwargs).eval()


@torch.no_grad()
def test_statistics_match_the_stream():
    memory = make_memory()
    frames = torch.randn(2, 6, TOKENS, DIM)
    mask = torch.tensor([[True] * 6, [True] * 2 + [False] * 4])
    fused, state = memory.process(frames, mask)
    stats = memory_statistics(state)
    assert [s.frames_seen for s in stats] == [6, 2]
    assert [(s.working_fill, s.episodic_fill) for s in stats] == [(2, 3), (2, 2)]
    assert sum(stats[0].replacements) == 3 and sum(stats[1].replacements) == 0
    assert stats[0].working_entropy is None  # not recorded without record_statistics
    # Mean gate recomputed independently from the module's gate MLP on the same step inputs.
    assert 0.0 < stats[0].mean_gate < 1.0


@torch.no_grad()
def test_gate_statistic_equals_gate_recomputed_by_hand():
    memory = make_memory()
    h = torch.randn(1, TOKENS, DIM)
    fused, state = memory(h)
    # At t = 0 both attentions read h itself; recompute γ from their outputs.
    def read(attn):
        keys, values = attn.project_entry(h)
        return attn(h, keys, values, torch.ones(1, 1, 1, TOKENS, dtype=torch.bool))[0]
    m_w, m_e = read(memory.working.attention), read(memory.episodic.attention)
    gate = torch.sigmoid(memory.gate(torch.cat([m_w, m_e], -1)))
    assert math.isclose(memory_statistics(state)[0].mean_gate, gate.mean().item(), rel_tol=1e-5)


@torch.no_grad()
def test_entropy_is_bounded_and_exact_at_first_frame():
    memory = make_memory(record_statistics=True)
    # Identical tokens -> uniform attention over the TOKENS keys at t = 0: entropy log(TOKENS).
    h = torch.randn(1, 1, DIM).expand(1, TOKENS, DIM).contiguous()
    _, state = memory(h)
    assert math.isclose(state.counters.last_working_entropy.item(), math.log(TOKENS), rel_tol=1e-5)
    _, state = memory.process(torch.randn(1, 8, TOKENS, DIM), state=state)
    stats = memory_statistics(state)[0]
    assert 0 < stats.working_entropy <= math.log(2 * TOKENS) + 1e-5
    assert 0 < stats.episodic_entropy <= math.log(3 * TOKENS) + 1e-5


@torch.no_grad()
def test_recording_does_not_change_outputs():
    frames = torch.randn(2, 6, TOKENS, DIM)
    plain, _ = make_memory().process(frames)
    recorded, _ = make_memory(record_statistics=True).process(frames)
    torch.testing.assert_close(plain, recorded, atol=1e-5, rtol=1e-4)


def test_trace_roundtrip_and_plot(tmp_path):
    stream = synthetic_scene_stream(lengths=(12, 9), num_tokens=TOKENS, dim=DIM, num_scenes=3,
                                    segment_frames=(2, 4))
    assert stream.frame_mask.sum(1).tolist() == [12, 9] and (stream.scenes[1, 9:] == -1).all()
    memory = make_memory(record_statistics=True)
    fused, state, trace = record_memory_trace(memory, stream.frames, stream.frame_mask,
                                              labels=stream.scenes.numpy())
    direct, _ = memory.process(stream.frames, stream.frame_mask)
    torch.testing.assert_close(fused, direct, atol=1e-5, rtol=1e-4)
    assert trace.working_fill[:, 0].tolist() == [1, 2] + [2] * 10
    assert np.isnan(trace.gate[9:, 1]).all() and (trace.replaced_slot[:3] == -1).all()
    # A replacement's slot holds the new frame's stamp afterwards.
    t, b = np.argwhere(trace.replaced_slot >= 0)[0]
    assert trace.episodic_stamps[t, b, trace.replaced_slot[t, b]] == t
    agreement = replacement_label_agreement(trace)
    assert 0.0 <= agreement <= 1.0
    trace.save(tmp_path / "trace.json")
    loaded = MemoryTrace.load(tmp_path / "trace.json")
    np.testing.assert_array_equal(loaded.replaced_slot, trace.replaced_slot)
    np.testing.assert_allclose(loaded.gate, trace.gate)
    png = plot_memory_trace(loaded, tmp_path / "sub" / "m.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_agreement_by_hand():
    # One video, episodic_size 1: frame 1 replaces frame 0 (same label), frame 2 replaces 1 (different).
    trace = MemoryTrace(
        working_fill=np.ones((3, 1), int), episodic_fill=np.ones((3, 1), int),
        replaced_slot=np.array([[-1], [0], [0]]), gate=np.zeros((3, 1)),
        working_entropy=np.full((3, 1), np.nan), episodic_entropy=np.full((3, 1), np.nan),
        episodic_stamps=np.array([[[0]], [[1]], [[2]]]), working_size=1, episodic_size=1,
        labels=np.array([[7], [7], [8]]),
    )
    assert replacement_label_agreement(trace) == 0.5


def test_viz_memory_command(tmp_path, capsys):
    assert main(["viz", "memory", "--synthetic", "--lengths", "12,8", "--out", str(tmp_path / "m.png")]) == 0
    assert "(2 videos, 12 steps)" in capsys.readouterr().out
    trace = record_memory_trace(make_memory(), torch.randn(1, 5, TOKENS, DIM))[2]
    trace.save(tmp_path / "memory_trace.json")
    assert main(["viz", "memory", "--trace", str(tmp_path / "memory_trace.json"),
                 "--out", str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["viz", "memory", "--synthetic", "--lengths", "0"]) == 2
    assert main(["viz", "memory", "--trace", str(tmp_path / "missing.json")]) == 2
    with pytest.raises(SystemExit):
        main(["viz"])  # a subcommand is required
