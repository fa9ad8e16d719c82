import pytest

from adapter_helpers import make_inputs


@pytest.fixture
def inputs():
    return make_inputs()
