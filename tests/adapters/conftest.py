import pytest
import torch

from adapter_helpers import make_inputs


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The adapters here are tiny: one intra-op thread is faster than two fighting over a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def inputs():
    return make_inputs()
