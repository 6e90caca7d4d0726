import pytest

from tests.runtime.scripted import Journal


@pytest.fixture
def journal() -> Journal:
    return Journal()
