"""Shared pytest fixtures.

Keep this file small: one fixture per shared resource, each with a docstring.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the project's shared real data (``../shared/data`` beside the repository).

    Tests that use it are skipped where that folder is absent; the product itself
    never reads it.
    """
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path}")
    return path
