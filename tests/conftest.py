"""Shared test setup: the ``gpu`` marker skips on machines without CUDA."""

import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the device machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    """Tests choose backends explicitly; a developer's NVFP4_BACKEND must not leak in."""
    if "NVFP4_BACKEND" in os.environ and not os.environ.get("NVFP4_TEST_KEEP_BACKEND_ENV"):
        monkeypatch.delenv("NVFP4_BACKEND")
    yield
