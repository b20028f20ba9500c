from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GENERATED = ROOT / "generated"


@pytest.fixture(scope="session")
def seed_path() -> Path:
    return EXAMPLES / "seed_rnn.sdm"
