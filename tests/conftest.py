"""Shared fixtures. The shared face photos are in $MASK2FACE_SHARED_DATA, else ../shared/data beside the repository
root (also in CI); tests that need them skip when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MASK2FACE_SHARED_DATA") or REPO.parent / "shared" / "data")


def shared_data(name: str) -> Path:
    """Path of a ../shared/data folder, or skip the test with a clear reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent: this test needs the shared face photos; put them in ../shared/data beside "
                    "the clone or set MASK2FACE_SHARED_DATA (README, 'Data and licences')")
    return path


@pytest.fixture
def repo_root() -> Path:
    return REPO
