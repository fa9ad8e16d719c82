"""Suite-wide settings: offline, headless, deterministic."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Test processes share a loaded 2-core box with each other: one thread each avoids oversubscription (two-thread
# processes next to busy ones ran many times slower; on an idle machine two threads are 1.4x faster).
torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every module starts single-threaded again (a test that changes the thread count cannot leak it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
