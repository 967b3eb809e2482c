from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
LEROBOT_FIXTURES = DATA / "lerobot"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return LEROBOT_FIXTURES
