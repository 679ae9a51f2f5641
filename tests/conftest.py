"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
SAMPLES = TESTS / "data" / "samples"  # copies of ../shared/samples (real installations' CDRs)


@pytest.fixture
def samples_dir() -> Path:
    return SAMPLES
