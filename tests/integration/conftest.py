"""Integration tier: the built-in world's default model (trained once, then cached)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def default_dir():
    import os

    import torch

    from slimkit.models.default import default_model_dir

    # the unit tier pins one thread; training the default model (first use) wants every core
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return default_model_dir()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def world_dir():
    from slimkit.models.default import default_world_dir

    return default_world_dir()


@pytest.fixture(scope="session")
def default_pair(default_dir):
    from slimkit.models import load_model

    model, tok = load_model(default_dir)
    return model, tok
