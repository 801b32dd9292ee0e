"""Shared fixtures: the public data in ../shared/data, markers, and determinism."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# The data lives beside the checkout (never committed); SCRATCHGPT_SHARED_DATA overrides it.
DATA_DIR = Path(
    os.environ.get(
        "SCRATCHGPT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """Path of a file in ../shared/data; skips locally, fails under CI=true, when it is missing."""

    def get(name: str) -> Path:
        path = DATA_DIR / name
        if not path.is_file():
            message = f"shared data file {path} is missing (see ../shared/data/SOURCES.md)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        return path

    return get


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
