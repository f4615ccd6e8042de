"""Shared fixtures. ../shared/data sits beside the repository root (also in CI); tests that need it skip when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path of a ../shared/data folder, or skip the test with a clear reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent: this test needs the shared face photos (see README, 'Data')")
    return path


@pytest.fixture
def repo_root() -> Path:
    return REPO
