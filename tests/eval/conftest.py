"""Shared fixtures of the evaluation tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: OpenMP threads only add waiting on a busy machine
    yield
    torch.set_num_threads(n)
