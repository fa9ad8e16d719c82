import pytest

from c2bridge.encoders import build_encoders


@pytest.fixture(scope="module")
def enc():
    """The tiny preset's encoders, built once per module."""
    return build_encoders("tiny", device="cpu")
