import pytest
import torch

from c2bridge.encoders import build_encoders


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # the shared 2-core machine: more threads than free cores makes tiny matmuls ~100x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def enc():
    """The tiny preset's encoders, built once per module."""
    return build_encoders("tiny", device="cpu")
