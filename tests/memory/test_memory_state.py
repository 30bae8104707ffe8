"""State lifecycle: save/restore, device/dtype moves, detach, constant size on long streams."""

import tracemalloc

import pytest
import torch

from spatialvlm.memory import DualMemory, MemoryState

DIM, TOKENS = 32, 9


def make_memory(**kwargs) -> DualMemory:
    torch.manual_seed(0)
    return DualMemory(DIM, num_heads=4, working_size=3, episodic_size=4, dropout=0.0, **kwargs).eval()


@torch.no_grad()
def test_save_and_load_resumes_to_identical_outputs(tmp_path):
    memory = make_memory(record_statistics=True)
    frames = torch.randn(2, 12, TOKENS, DIM)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 3:] = False
    straight, straight_state = memory.process(frames, mask)
    _, state = memory.process(frames[:, :7], mask[:, :7])
    state.save(tmp_path / "state.safetensors")
    restored = MemoryState.load(tmp_path / "state.safetensors")
    assert restored.may_have_empty == state.may_have_empty and restored.num_tokens == TOKENS
    resumed, resumed_state = memory.process(frames[:, 7:], mask[:, 7:], state=restored)
    assert torch.equal(resumed, straight[:, 7:])
    for name in ("replacements", "frames_seen", "gate_sum", "episodic_entropy_sum"):
        assert torch.equal(getattr(resumed_state.counters, name), getattr(straight_state.counters, name))


def test_save_and_load_unallocated_state(tmp_path):
    state = make_memory().init_state(3)
    state.save(tmp_path / "s.safetensors")
    restored = MemoryState.load(tmp_path / "s.safetensors")
    assert restored.working is None and restored.batch_size == 3 and restored.num_tokens is None


def test_load_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a MemoryState"):
        MemoryState.load(tmp_path / "other.safetensors")


@torch.no_grad()
def test_to_dtype_and_clone_are_independent():
    memory = make_memory()
    _, state = memory.process(torch.randn(1, 5, TOKENS, DIM))
    half = state.to(dtype=torch.float64)
    assert half.working.keys.dtype == torch.float64 and half.working.stamps.dtype == torch.long
    assert half.dtype == torch.float64
    snapshot = state.clone()
    memory(torch.randn(1, TOKENS, DIM), state)
    assert not torch.equal(snapshot.working.stamps, state.working.stamps)


def test_detach_cuts_the_graph():
    memory = make_memory()
    _, state = memory.process(torch.randn(1, 3, TOKENS, DIM))
    # The banks are written in place; the graph lives in their graph logs (issue 14).
    assert state.requires_grad and state.episodic.requires_grad
    assert not state.detach().requires_grad


def test_inference_step_updates_tensors_in_place():
    memory = make_memory()
    with torch.no_grad():
        _, state = memory.process(torch.randn(1, 6, TOKENS, DIM))
        pointers = [t.data_ptr() for t in (state.working.keys, state.episodic.values, state.episodic.entries)]
        memory(torch.randn(1, TOKENS, DIM), state)
    assert pointers == [t.data_ptr() for t in (state.working.keys, state.episodic.values, state.episodic.entries)]


def _state_bytes(state: MemoryState) -> int:
    banks = [state.working, state.episodic]
    tensors = [getattr(b, n) for b in banks for n in ("entries", "keys", "values", "means", "stamps")]
    tensors += [getattr(state.counters, n) for n in state.counters.__dataclass_fields__]
    return sum(t.numel() * t.element_size() for t in tensors)


def _stream(frames, trace_python_memory: bool):
    # Tiny tensors: one thread avoids paying thread wake-ups on each of the ~100 ops of a step.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run_stream(frames, trace_python_memory)
    finally:
        torch.set_num_threads(threads)


def _run_stream(frames, trace_python_memory: bool):
    torch.manual_seed(0)
    memory = DualMemory(8, num_heads=2, working_size=8, episodic_size=32, dropout=0.0, check_finite=False).eval()
    state = memory.init_state(1)
    for t in range(100):  # fill both memories
        _, state = memory(frames[t], state)
    size_full = _state_bytes(state)
    pointers = [state.working.keys.data_ptr(), state.episodic.entries.data_ptr()]
    if trace_python_memory:
        tracemalloc.start()
    for t in range(100, 1000):
        _, state = memory(frames[t], state)
    middle = tracemalloc.get_traced_memory()[0] if trace_python_memory else 0
    for t in range(1000, len(frames)):
        _, state = memory(frames[t], state)
    if trace_python_memory:
        end = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert end - middle < 64 * 1024  # no Python-side growth over 4,000 more frames
    assert _state_bytes(state) == size_full
    assert pointers == [state.working.keys.data_ptr(), state.episodic.entries.data_ptr()]  # no reallocation
    assert state.counters.frames_seen.item() == len(frames)
    assert state.counters.replacements.sum().item() == len(frames) - 32


@torch.no_grad()
def test_state_size_is_constant_over_5000_frames():
    _stream(torch.randn(5000, 1, 4, 8), trace_python_memory=False)


@pytest.mark.slow
@torch.no_grad()
def test_python_heap_is_flat_over_5000_frames():
    _stream(torch.randn(5000, 1, 4, 8), trace_python_memory=True)


def test_graph_log_gather_matches_a_per_video_loop_and_routes_gradients_back():
    # The log's rebuild (row index_select over a flattened view) against the plain definition:
    # slot l of video b holds log entry source[b, l] of the entries concatenated along dim 2.
    from spatialvlm.memory.state import GraphLog

    torch.manual_seed(0)
    batch, heads, tokens, head_dim, slots = 3, 2, 5, 4, 4
    logged = [torch.randn(batch, heads, s, tokens, head_dim, requires_grad=True) for s in (4, 1, 1, 1)]
    total = 7
    source = torch.stack([torch.randperm(total)[:slots] for _ in range(batch)])
    keys, values = GraphLog(logged, [t * 2 for t in logged], source, total).gather()
    everything = torch.cat(logged, dim=2)
    for b in range(batch):
        for slot in range(slots):
            assert torch.equal(keys[b, :, slot], everything[b, :, source[b, slot]])
            assert torch.equal(values[b, :, slot], 2 * everything[b, :, source[b, slot]])
    weight = torch.randn_like(keys)
    grads = torch.autograd.grad((keys * weight).sum(), logged)
    expected = torch.zeros_like(everything)
    for b in range(batch):
        for slot in range(slots):
            expected[b, :, source[b, slot]] += weight[b, :, slot]
    assert torch.equal(torch.cat(grads, dim=2), expected)
