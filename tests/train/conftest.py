"""Shared fixtures of the training tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train faster on one thread than on two (thread wake-ups dominate), notably on a
    loaded machine; restored afterwards for the other test folders."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
